#!/usr/bin/env bash
# Install everything the tests need, then run them (one torch thread: see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python -m pytest -q "$@"
