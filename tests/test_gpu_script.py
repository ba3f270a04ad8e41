"""bench/gpu.py without a GPU: the one-line skip, and the CPU smoke run writing every section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu.py"
SECTIONS = ("correctness", "throughput", "export", "study")


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run its GPU sections")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    done = run_script("--out", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and "skipped" in lines[0] and "no CUDA device" in lines[0], done.stdout
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written


def test_cpu_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "out"
    done = run_script("--cpu-smoke", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "gpu.json").read_text())
    assert report["mode"].startswith("cpu smoke")
    for name in SECTIONS:
        section = report["sections"][name]
        assert section["ok"], (name, section.get("error"))
        assert section["seconds"] >= 0
    assert report["sections"]["correctness"]["counts"]  # pytest ran and its counts were read
    models = {row["model"] for row in report["sections"]["throughput"]["rows"] if "error" not in row}
    assert models == {"lenet_300_100", "conv2", "transformer_modadd"}
    assert "busy_fraction" in report["sections"]["throughput"]["busy"]
    assert {row["dtype"] for row in report["sections"]["export"]["rows"]} == {"float16", "bfloat16"}
    study = report["sections"]["study"]
    assert study["finished"] and study["units_done"] > 0 and study["verdicts"]
    summary = (out / "gpu.md").read_text()
    assert all(f"## {name}" in summary for name in SECTIONS)
