"""``ticketlab list [ROOT]``: every experiment with its status, read-only, without user code (issue 21)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ticketlab
from ticketlab.report.listing import list_experiments

from conftest import cli, interrupted_level_1_ticket, refused_in_one_line, snapshot, tiny_config
from user_code import models

TINY = {"model": "mlp_32_16", "train": {"iterations": 100, "eval_every": 50, "checkpoint_every": 100}}


def _list(root: Path) -> subprocess.CompletedProcess:
    """`ticketlab list` in a fresh process that can import ticketlab but none of the user's code."""
    source = str(Path(ticketlab.__file__).resolve().parents[1])
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": source, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "ticketlab", "list", str(root)], capture_output=True, text=True,
                          cwd="/", env=env)


def test_list_shows_every_experiment_with_a_status_and_changes_nothing(tmp_path, options, capsys):
    root = Path(options.root)
    done = ticketlab.run(tiny_config(**TINY, levels=1), options).directory
    user = ticketlab.run({"model": "user_code.models:WithDropout", "levels": 0,
                          "train": {"iterations": 40, "eval_every": 20, "batch_size": 32}},
                         options, data=models.classification_data()).directory
    partial = ticketlab.run(tiny_config(**TINY, levels=1, seed=1), options).directory
    (partial / "replicate_0" / "level_01" / "ticket" / "summary.json").unlink()  # as if killed: damage
    damaged = ticketlab.run(tiny_config(**TINY, levels=0, seed=2), options).directory
    (damaged / "replicate_0" / "level_00" / "ticket" / "final.safetensors").write_bytes(b"broken")
    unreadable = root / "digits-mlp_32_16-magnitude-0123456789ab"
    unreadable.mkdir()
    (root / "notes").mkdir()  # not an experiment: not listed

    entries = {e.directory.name: e for e in list_experiments(root)}
    assert set(entries) == {p.name for p in (done, user, partial, damaged, unreadable)}
    first = entries[done.name]
    assert (first.status, first.method, first.dataset, first.model, first.levels, first.seeds, first.units) == (
        "complete", "magnitude", "digits", "mlp_32_16", "1", "1", "2/2")
    assert first.headline.startswith("No verdict")  # as show prints it under its table
    assert entries[user.name].status == "complete" and entries[user.name].model == "user_code.models:WithDropout"
    assert entries[partial.name].status == "damaged"
    assert entries[damaged.name].status == "damaged"
    assert entries[unreadable.name].status == "unreadable"

    before = snapshot(root)
    shown = _list(root)  # user_code is not importable there
    assert shown.returncode == 0, shown.stderr
    for name, status in [(done.name, "complete"), (user.name, "complete"), (damaged.name, "damaged"),
                         (unreadable.name, "unreadable")]:
        line = next(line for line in shown.stdout.splitlines() if name in line)
        assert status in line, shown.stdout
    assert snapshot(root) == before


def test_list_of_a_partial_experiment_and_of_nothing(tmp_path, options, capsys):
    config = tiny_config(**TINY, levels=1)
    interrupted_level_1_ticket(config, options.root, crash_at=50)  # level 0 done, level 1 killed mid-way
    (entry,) = list_experiments(options.root)
    assert (entry.status, entry.levels, entry.units) == ("partial", "1", "1/2")
    code, out, err = cli(["list", options.root], capsys)
    assert code == 0 and "partial" in out and "1/2" in out, out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = cli(["list", str(empty)], capsys)
    assert code == 0 and "no experiments under" in out
    refused_in_one_line(["list", str(tmp_path / "missing")], tmp_path, "is not a folder", capsys)
