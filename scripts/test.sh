#!/usr/bin/env bash
# Install everything the tests need, then run them (one torch thread: see tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The report test renders report.html in headless Chromium: install Debian's package when
# possible; otherwise warn, and that one test skips with its reason.
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
            echo "warning: could not install chromium; the Chromium report test will be skipped" >&2
        fi
    else
        echo "warning: chromium not found and not installable here (needs root and apt-get); the Chromium report test will be skipped" >&2
    fi
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python -m pytest -q "$@"
