"""Shared helpers for the benchmark scripts: machine description and robust statistics."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import torch

# Let the scripts run from a checkout without installing (src layout).
_SRC = Path(__file__).resolve().parents[1] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_machine(title: str) -> None:
    print(f"# {title}")
    print(f"torch {torch.__version__} | python {platform.python_version()} | "
          f"torch threads {torch.get_num_threads()} | interop threads {torch.get_num_interop_threads()}")
    print(f"CPU: {cpu_model()} | logical cores {os.cpu_count()} | load average (1/5/15 min) {load_average()}")
    print()


def median(values) -> float:
    return statistics.median(values)


def spread(values) -> str:
    """min..max of a sample, to show how noisy the repeats were."""
    return f"{min(values):.3g}..{max(values):.3g}"
