"""Divergence is caught: the unit stops, says where in one line, and nothing is pruned from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import ticketlab
from ticketlab.experiment.stack import train_stack
from ticketlab.config import RunOptions
from ticketlab.store.layout import Store
from ticketlab.experiment.unit import Unit
from ticketlab.experiment.runner import prepare_unit
from ticketlab.experiment.environment import environment

from conftest import cli, tiny_config

DIVERGING = ["--dataset", "digits", "--model", "mlp_16", "--levels", "2", "--controls", "reinit",
             "--lr", "1e4", "--optimizer", "sgd", "--iterations", "60", "--eval-every", "20",
             "--no-progress", "--no-report", "--device", "cpu"]


def _strict_jsonl(path: Path) -> list[dict]:
    def reject(name):
        raise AssertionError(f"{path}: {name} is not JSON")

    return [json.loads(line, parse_constant=reject) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("flags", [["--workers", "1"], ["--batch", "2", "--no-probe-batch", "--seeds", "2"]], ids=["single", "batched"])
def test_divergence_stops_the_unit_and_blocks_later_levels(flags, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = cli(["run", *DIVERGING, *flags, "--out", str(out)], capsys)
    assert code == 3, err
    (experiment,) = out.iterdir()
    result = ticketlab.Result.load(experiment, require_complete=True)  # blocked levels are not "unfinished"
    diverged = result.diverged()
    lines = err.strip().splitlines()
    assert lines == [f"error: {r['message']}" for r in diverged], err  # one line per diverged unit
    tickets = [r for r in diverged if r["arm"] == "ticket"]
    assert tickets, "expected at least one ticket to diverge at lr 1e4"
    for record in diverged:
        unit = f"replicate {record['replicate']} level {record['level']} {record['arm']}"
        message = record["message"]
        assert message.startswith(f"{unit} diverged: non-finite ") and f"by step {record['diverged_step']}" in message
        assert "last finite evaluation: step" in message and "\n" not in message
        folder = experiment / f"replicate_{record['replicate']}" / f"level_{record['level']:02d}" / record["arm"]
        assert record["final_test_acc"] is None and record["early_stop_step"] is None
        assert not (folder / "final.safetensors").exists() and not (folder / "checkpoint.safetensors").exists()
        metrics = _strict_jsonl(folder / "metrics.jsonl")
        assert metrics[0]["train_loss"] is None and metrics[-1]["step"] == record["diverged_step"]
    for ticket in tickets:  # nothing pruned from a diverged ticket; its later levels are not trained
        later = experiment / f"replicate_{ticket['replicate']}" / f"level_{ticket['level'] + 1:02d}"
        assert not later.exists()
        assert not [r for r in result.runs if r["replicate"] == ticket["replicate"] and r["level"] > ticket["level"]]
    code, stdout, _ = cli(["check", str(experiment)], capsys)
    assert code == 0 and f"{len(diverged)} diverged" in stdout, stdout  # diverged is a result, not damage
    code, _, again = cli(["run", *DIVERGING, *flags, "--out", str(out)], capsys)
    assert code == 3 and again == err  # running again changes nothing and says the same
    code, stdout, _ = cli(["show", str(experiment)], capsys)
    assert code == 0 and "diverged" in stdout and "winning" not in stdout  # shown as diverged, never judged
    code, _, _ = cli(["report", str(experiment)], capsys)
    page = (experiment / "report" / "report.html").read_text()
    assert code == 0 and 'class="label-diverged"' in page and "training diverged" in page


def test_divergence_is_caught_before_a_checkpoint_is_saved(tmp_path):
    """A checkpoint before the first evaluation: the state is checked before it is written."""
    config = tiny_config(levels=0, train={"optimizer": "sgd", "lr": 1e4, "iterations": 60, "eval_every": 50,
                                          "checkpoint_every": 5})
    options = RunOptions(root=str(tmp_path), device="cpu", workers=1, progress=False)
    result = ticketlab.run(config, options)
    (summary,) = result.runs
    assert summary["status"] == "diverged" and summary["diverged_step"] < 50
    assert "training loss or weights" in summary["message"]
    assert not list(result.directory.rglob("checkpoint.safetensors"))


def test_one_diverging_replicate_does_not_stop_its_batch(tmp_path):
    """In a batch, a replicate with a NaN weight diverges alone; the others train on, finite."""
    config = tiny_config(levels=0, seeds=3, train={"iterations": 40, "eval_every": 20})
    store = Store.for_config(config, tmp_path)
    store.write_config(config)
    prepared = [prepare_unit(environment(config), str(store.directory), Unit(r, 0, "ticket")) for r in range(3)]
    with torch.no_grad():
        next(prepared[1].model.parameters())[0, 0] = math.nan
    train_stack(prepared)
    assert prepared[1].state.diverged and prepared[1].state.step == 0
    for unit in (prepared[0], prepared[2]):
        assert unit.state.diverged is None and unit.state.step == 40
        assert all(math.isfinite(r["val_loss"]) for r in unit.state.history)
