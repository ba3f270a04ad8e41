#!/usr/bin/env bash
# The two studies in docs/results.md, exactly as run. Each writes its experiment directory
# under ${OUT:-studies}/ and its report; copy figures into docs/figures/ to update the docs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-studies}
bash scripts/setup.sh

# 1. LeNet-300-100 on the real MNIST-5k split, paper hyperparameters (Adam 1.2e-3, batch 60,
#    layerwise 20% / output 10%), 5 seeds, 16 levels, reinit and random controls.
.venv/bin/ticketlab run --dataset mnist --model lenet_300_100 --levels 16 --seeds 5 \
    --controls reinit,random --iterations 3000 --eval-every 50 --workers 2 --out "$OUT" --no-progress

# 2. An MLP on MNIST-1D, 5 seeds, ticket vs random pruning down to >= 97% sparsity (18 levels),
#    replicates and controls trained as one batched computation.
.venv/bin/ticketlab run --dataset mnist1d --model mlp_100_100 --levels 18 --seeds 5 \
    --controls random --iterations 4000 --lr 2e-3 --batch-size 100 --eval-every 100 --batch 10 \
    --out "$OUT" --no-progress
