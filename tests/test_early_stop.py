"""The early-stopped weights: kept per unit, checksummed, the ones the tables report, and
identical after a kill and resume, in sequential and stacked training."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import interrupted_level_1_ticket, tiny_config

from ticketlab.api import Result, run
from ticketlab.experiment.audit import scan
from ticketlab.errors import IntegrityWarning
from ticketlab.train.evaluation import evaluate_stored_weights
from ticketlab.io import load_tensors, read_manifest
from ticketlab.store.layout import Store
from ticketlab.experiment.unit import Unit
from ticketlab.experiment.runner import run_unit
from ticketlab.experiment.level_masks import ensure_level_mask
from ticketlab.experiment.environment import environment


def _check_early_stop_weights(result: Result, exact: bool = True) -> None:
    """``exact``: sequential training evaluated with the same code; stacked training evaluates
    through batched products, whose losses differ from the single model's in the last bits."""
    env = environment(result.config)
    for record in result.runs:
        path = result.early_stop_weights_path(record["level"], record["replicate"], record["arm"])
        assert path.is_file()
        assert path.name in read_manifest(path.parent)  # checksummed
        assert record["weights"]["early_stop"] == {"file": path.name, "step": record["early_stop_step"]}
        assert record["weights"]["final"] == {"file": "final.safetensors", "step": record["final_step"]}
        scores = evaluate_stored_weights(env, load_tensors(path))
        assert scores["test_acc"] == record["test_acc_at_early_stop"], record
        if exact:
            assert scores["val_loss"] == record["val_loss_at_early_stop"], record
        else:
            assert abs(scores["val_loss"] - record["val_loss_at_early_stop"]) < 1e-5, record


def test_early_stop_weights_score_what_the_summary_reports(options):
    result = run(tiny_config(levels=1, controls=["random"], train={"lr": 0.03}), options)  # overfits: stops early
    _check_early_stop_weights(result)
    assert any(r["early_stop_step"] != r["final_step"] for r in result.runs)  # the two files differ somewhere
    assert not scan(result.store, result.config)  # `ticketlab check` knows the file


def test_stacked_training_keeps_early_stop_weights(options):
    result = run(tiny_config(levels=1, seeds=2), dataclasses.replace(options, batch=2, probe_batch=False))
    _check_early_stop_weights(result, exact=False)
    assert {r["training"] for r in result.runs} == {"stacked"}  # a bundle of it is verified by interval


def test_killed_and_resumed_unit_keeps_the_same_early_stop_weights(tmp_path):
    # with this lr level 1 early-stops well before the end; the kill comes one evaluation after the
    # first checkpoint at or past that step, so the early-stopped weights were saved before the kill
    # and the resumed run must keep them. The step is read from an uninterrupted run, not assumed:
    # where a trajectory early-stops moves with the CPU's kernels and the packages' versions.
    config = tiny_config(levels=1, train={"lr": 0.03, "iterations": 1000})
    clean = Store.for_config(config, tmp_path / "clean")
    clean.write_config(config)
    run_unit(config, str(clean.directory), Unit(0, 0, "ticket"), "cpu")
    ensure_level_mask(environment(config), clean, 0, 1)
    run_unit(config, str(clean.directory), Unit(0, 1, "ticket"), "cpu")
    clean_paths = clean.unit(0, 1, "ticket")
    stopped = clean.summary(clean_paths)["weights"]["early_stop"]["step"]
    every, checkpoint_every = config.train.eval_every, config.train.checkpoint_every
    crash_at = -(-stopped // checkpoint_every) * checkpoint_every + every  # after the checkpoint
    assert crash_at < config.train.iterations, f"level 1 early-stopped at {stopped}: too late to test"
    store, paths = interrupted_level_1_ticket(config, tmp_path / "killed", crash_at=crash_at)
    assert paths.checkpoint.is_file() and paths.early_stop.is_file()
    run_unit(config, str(store.directory), Unit(0, 1, "ticket"), "cpu")
    assert paths.early_stop.read_bytes() == clean_paths.early_stop.read_bytes()
    assert store.summary(paths)["weights"] == clean.summary(clean_paths)["weights"]
    assert store.summary(paths)["weights"]["early_stop"]["step"] == stopped
    assert not scan(store, config)


def test_damaged_early_stop_weights_are_found_and_retrained(options):
    result = run(tiny_config(levels=1), options)
    path = result.early_stop_weights_path(1)
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    findings = scan(result.store, result.config)
    assert [f.path for f in findings] == [path]
    with pytest.warns(IntegrityWarning, match="early_stop.safetensors: checksum mismatch"):
        again = run(tiny_config(levels=1), options)
    _check_early_stop_weights(again)
