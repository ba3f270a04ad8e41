"""Lean evaluation: the test split is evaluated only where a reported number comes from (the end,
and the early-stopping point's saved weights), and the reported numbers are exactly those of
evaluating it every time."""

from __future__ import annotations

import ticketlab
from ticketlab.train.loop import early_stop

from conftest import tiny_config


def test_lean_evaluation_reports_the_same_numbers_as_the_full_test_curve(tmp_path):
    train = {"iterations": 1200, "eval_every": 50, "lr": 5e-3}  # long enough to overfit: the validation loss turns
    options = ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1)
    lean = ticketlab.run(tiny_config(levels=1, controls=["random"], train=train), options)
    full = ticketlab.run(tiny_config(levels=1, controls=["random"], train={**train, "test_every_eval": True}), options)
    keys = ("early_stop_step", "test_acc_at_early_stop", "final_test_acc", "val_acc_at_early_stop", "final_step")
    assert len(lean.runs) == len(full.runs) == 3
    for a, b in zip(lean.runs, full.runs):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
        assert 0 < a["eval_time_s"] < a["wall_time_s"]
    skipped = 0
    for level, arm in ((0, "ticket"), (1, "ticket"), (1, "random")):
        history = lean.metrics(level, arm=arm)
        with_test = [r for r in history if r["test_acc"] is not None]
        # the test split is scored exactly at the early-stopping point (from its saved weights,
        # at the end) and at the end
        best = early_stop(history)
        assert [r["step"] for r in with_test] == sorted({best["step"], history[-1]["step"]})
        skipped += len(history) - len(with_test)
        curve = full.metrics(level, arm=arm)
        assert all(r["test_acc"] is not None for r in curve)
        assert [r["val_loss"] for r in curve] == [r["val_loss"] for r in history]
        # scoring the saved weights later gives the very numbers scoring them at the time did
        at_best = next(r for r in curve if r["step"] == best["step"])
        assert (best["test_loss"], best["test_acc"]) == (at_best["test_loss"], at_best["test_acc"])
    assert skipped > 0  # the test split was skipped somewhere: the saving is real
