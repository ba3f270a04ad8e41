"""Shared helpers for the benchmark scripts: machine description and robust statistics."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
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
    print_availability()
    print()


def median(values) -> float:
    return statistics.median(values)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def spread(values) -> str:
    """min..max of a sample, to show how noisy the repeats were."""
    return f"{_fmt(min(values))}..{_fmt(max(values))}"


_SPIN = "import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end: pass\nprint(time.process_time())"


def available_cores(processes: int | None = None, seconds: float = 1.0) -> float:
    """CPU actually available right now: run ``processes`` busy loops at once, sum their CPU time / wall.

    On an idle machine this is close to the core count; background load shows up as less.
    """
    import subprocess

    processes = processes or os.cpu_count() or 1
    code = _SPIN.format(seconds=seconds)
    procs = [subprocess.Popen([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    cpu = sum(float(p.communicate()[0].strip() or 0) for p in procs)
    return cpu / seconds


def print_availability() -> float:
    cores = available_cores()
    print(f"CPU available to this benchmark right now (busy-loop probe): {cores:.2f} of {os.cpu_count()} cores"
          + ("  <-- the machine is busy; ratios are not representative" if cores < 0.85 * (os.cpu_count() or 1) else ""))
    return cores


_RUNNER = r"""
import json, sys, time
t0 = time.perf_counter()
import ticketlab
from ticketlab.config import RunOptions
spec = json.loads(sys.argv[1])
t1 = time.perf_counter()
result = ticketlab.run(spec["config"], RunOptions(**spec["options"]))
t2 = time.perf_counter()
print(json.dumps({"directory": str(result.directory), "import_s": t1 - t0, "run_s": t2 - t1,
                  "unit_s": [r["wall_time_s"] for r in result.runs]}))
"""


def run_experiment_subprocess(config: dict, options: dict, src: "str | os.PathLike | None" = None) -> dict:
    """Run ``ticketlab.run(config, RunOptions(**options))`` in a fresh Python process, as the CLI would.

    Returns {"wall_s": what the user waits for (process start to exit), "run_s": ticketlab.run alone,
    "import_s", "directory", "unit_s": [each unit's own wall_time_s]}. A fresh process per run means
    every run pays the same one-off costs (torch import, dataset parsing, torch's lazy imports).
    ``src`` runs another checkout's ``src`` folder (e.g. a previous release) instead of this one.
    """
    import json
    import subprocess
    import time

    start = time.perf_counter()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src or _SRC), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps({"config": config, "options": options})],
                         capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"experiment failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    info["wall_s"] = wall
    return info


@contextlib.contextmanager
def scratch_directory(prefix: str, keep: bool = False):
    """A fresh temporary directory for a benchmark's experiments; removed afterwards unless ``keep``."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield base
    finally:
        if keep:
            print(f"\nexperiment directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
