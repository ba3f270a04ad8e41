"""A full disk: the estimate counts what a run writes, and running out is one line, exit 2."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

import ticketlab
from ticketlab.config import RunOptions
from ticketlab.experiment.preflight import BLOCK, stored_bytes
from ticketlab.experiment.environment import environment

from conftest import cli, tiny_config

CONFIG = dict(model="mlp_16", levels=2, controls=["reinit"], rewind_iteration=10,
              train={"iterations": 40, "eval_every": 10, "checkpoint_every": 10, "batch_size": 32})
RUN_ARGS = ["--dataset", "digits", "--model", "mlp_16", "--levels", "2", "--controls", "reinit",
            "--rewind-iteration", "10", "--iterations", "40", "--eval-every", "10",
            "--batch-size", "32", "--no-progress", "--no-report", "--device", "cpu", "--workers", "1"]


def _options(root: Path) -> RunOptions:
    return RunOptions(root=str(root), device="cpu", threads=1, workers=1, progress=False)


def _on_disk(directory: Path) -> int:
    """Bytes the experiment takes, in whole blocks as the filesystem allocates them."""
    return sum(-(-p.stat().st_size // BLOCK) * BLOCK for p in directory.rglob("*") if p.is_file())


def test_the_estimate_covers_what_a_run_writes(tmp_path):
    config = tiny_config(**CONFIG)
    result = ticketlab.run(config, _options(tmp_path))
    written = _on_disk(result.directory)
    estimate = stored_bytes(environment(config), _options(tmp_path))
    assert written <= estimate <= 3 * written, (written, estimate)


def test_a_run_that_does_not_fit_is_refused_in_mib_before_writing(tmp_path, monkeypatch, capsys):
    import ticketlab.experiment.preflight as preflight

    config = tiny_config(**CONFIG)
    needed = stored_bytes(environment(config), _options(tmp_path / "out"))
    monkeypatch.setattr(preflight, "_free_disk", lambda root: needed * 8 // 10)
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(tmp_path / "out")], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "MiB" in lines[0], err
    assert not re.search(r"(?<![\d.])0\.0 (GiB|MiB)", lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


class _FullDisk:
    """``os.fsync`` that finds the disk full from its ``after``-th call on."""

    def __init__(self, after: int) -> None:
        self.calls, self.after, self.real = 0, after, os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls >= self.after:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(fd)


@pytest.mark.parametrize("after", [1, 25])
def test_a_full_disk_during_run_is_one_line(tmp_path, monkeypatch, capsys, after):
    monkeypatch.setattr(os, "fsync", _FullDisk(after))
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(tmp_path / "out")], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no space left" in lines[0], err
    monkeypatch.undo()
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(tmp_path / "out")], capsys)  # space freed: it resumes
    assert code == 0, err
    directory = next((tmp_path / "out").iterdir())
    code, out, err = cli(["check", str(directory)], capsys)
    assert code == 0 and "0 damaged" in out, out + err


def test_a_full_disk_during_report_is_one_line(tmp_path, monkeypatch, capsys):
    directory = ticketlab.run(tiny_config(**CONFIG), _options(tmp_path)).directory
    monkeypatch.setattr(os, "fsync", _FullDisk(1))
    code, out, err = cli(["report", str(directory)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no space left" in lines[0], err
