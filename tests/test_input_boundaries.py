"""Bad input refused at the boundary: one line on stderr, exit code 2, nothing written.

Issue 18's cases: numeric flags out of range (``verify --seeds -1``, thread counts), a
``--transfer-from`` source that does not fit the new experiment (refused before the new
experiment's directory exists), and labels that are NaN, infinite or out of range (refused
before training, instead of surfacing later as a "divergence" blamed on the learning rate).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import ticketlab
from ticketlab.config import RunOptions
from ticketlab.errors import ConfigError

from conftest import cli

QUICK = ["--iterations", "20", "--eval-every", "10", "--no-progress", "--no-report", "--device", "cpu",
         "--workers", "1"]
BASE = ["--dataset", "digits", "--model", "mlp_16", "--levels", "1", *QUICK]


def _snapshot(path: Path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes (None if ``path`` does not exist)."""
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"" for p in sorted(path.rglob("*"))}


def _refused(args: list[str], watched: Path, fragment: str, capsys) -> str:
    """Run the CLI; assert one ``error:`` line containing ``fragment``, exit 2, ``watched`` unchanged."""
    before = _snapshot(watched)
    code, _, err = cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert _snapshot(watched) == before
    return lines[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A small finished experiment (digits, 2 levels): transfer source and bundle origin."""
    root = tmp_path_factory.mktemp("source")
    config = {"model": "mlp_16", "levels": 2, "data": {"dataset": "digits"},
              "train": {"iterations": 20, "eval_every": 10}}
    result = ticketlab.run(config, RunOptions(root=str(root), device="cpu", workers=1, progress=False))
    return result.directory


# ---------------------------------------------------------------------------- numeric flags
def test_verify_refuses_negative_seeds(source, tmp_path, capsys):
    from ticketlab.bundle import make_bundle

    bundle = make_bundle(source, 1, tmp_path / "t.ticket.safetensors")
    work = tmp_path / "work"
    _refused(["verify", str(bundle), "--seeds", "-1", "--workdir", str(work)], work, "--seeds", capsys)


@pytest.mark.parametrize("threads", ["0", "100000"])
def test_run_refuses_thread_counts_torch_cannot_use(threads, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(["run", *BASE, "--threads", threads, "--out", str(out)], out, "threads must be between 1 and", capsys)


@pytest.mark.parametrize("command", ["stability", "bench"])
def test_reading_commands_refuse_zero_threads(command, source, capsys):
    extra = ["--level", "1"] if command == "bench" else []
    _refused([command, str(source), *extra, "--threads", "0"], source, "--threads must be between 1 and", capsys)


def test_thread_limit_is_the_core_count_locally_and_wide_on_ray():
    cores = os.cpu_count() or 1
    RunOptions(threads=cores).validate()
    with pytest.raises(ConfigError, match="CPU core"):
        RunOptions(threads=cores + 1).validate()
    RunOptions(threads=cores + 1, executor="ray").validate()  # another machine may have more cores


# ---------------------------------------------------------------------------- transfer sources
TRANSFER_MISMATCHES = {
    "other-seed": (["--seed", "1"], "seed 0 there, 1 here"),
    "other-model": (["--model", "mlp_32"], "model 'mlp_16' there, 'mlp_32' here"),
    "other-input-shape": (["--dataset", "mnist1d"], "dataset 'digits' there, 'mnist1d' here"),
    "more-levels": (["--levels", "3"], "has no level-3 mask for replicate 0"),
    "more-seeds": (["--seeds", "2"], "has no level-1 mask for replicate 1"),
    "other-roles": (["--roles", "linear,bias"], "masks cover other parameters than this experiment prunes"),
}


@pytest.mark.parametrize("case", sorted(TRANSFER_MISMATCHES))
def test_mismatched_transfer_source_is_refused_before_any_write(case, source, tmp_path, capsys):
    flags, fragment = TRANSFER_MISMATCHES[case]
    out = tmp_path / "out"
    before = _snapshot(source)
    _refused(["run", "--transfer-from", str(source), *flags, *QUICK, "--out", str(out)], out, fragment, capsys)
    assert not out.exists()  # not even the root folder: nothing of the new experiment
    assert _snapshot(source) == before


def test_an_unfinished_transfer_source_is_refused_before_any_write(source, tmp_path, capsys):
    import shutil

    unfinished = tmp_path / source.name
    shutil.copytree(source, unfinished)
    (unfinished / "replicate_0" / "level_02" / "mask.safetensors").unlink()
    out = tmp_path / "out"
    _refused(["run", "--transfer-from", str(unfinished), *QUICK, "--out", str(out)], out,
             "has no level-2 mask for replicate 0", capsys)
    assert not out.exists()
