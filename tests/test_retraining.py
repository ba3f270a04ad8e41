"""Retraining modes, one-shot pruning and ticket transfer: each checked against what it means."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.io import load_tensors
from ticketlab.train.optim import learning_rate
from ticketlab.pruning.magnitude import magnitude_prune
from ticketlab.store.layout import Store
from ticketlab.experiment.unit import Unit
from ticketlab.experiment.runner import prepare_unit, train_prepared, unit_schedule
from ticketlab.experiment.level_masks import ensure_level_mask
from ticketlab.experiment.environment import environment

from conftest import cli, tiny_config

FAST = {"iterations": 60, "eval_every": 20, "checkpoint_every": 20}


def run(config, root):
    return ticketlab.run(config, ticketlab.RunOptions(root=str(root), device="cpu", progress=False, workers=1))


@pytest.mark.parametrize("retrain", ["lr_rewind", "finetune"])
def test_lr_rewinding_and_finetuning_start_from_the_pruned_trained_weights(tmp_path, retrain):
    result = run(tiny_config(levels=2, retrain=retrain, train=FAST), tmp_path)
    store = result.store
    for level in (1, 2):
        start = load_tensors(store.unit(0, level, "ticket").start)
        trained = load_tensors(store.unit(0, level - 1, "ticket").final)
        mask = result.mask(level)
        for name, tensor in trained.items():
            expected = tensor * mask[name] if name in mask else tensor
            torch.testing.assert_close(start[name], expected, rtol=0, atol=0)
    # weight rewinding (the default) starts from the initial weights instead
    rewound = run(tiny_config(levels=1, train=FAST), tmp_path / "rewind")
    init = load_tensors(rewound.store.init_path(0))
    start = load_tensors(rewound.store.unit(0, 1, "ticket").start)
    assert all(torch.equal(start[n], init[n] * rewound.mask(1)[n]) for n in rewound.mask(1))


def test_finetuning_trains_at_the_final_learning_rate_and_lr_rewinding_replays_the_schedule():
    config = tiny_config(retrain="finetune", train={"iterations": 100, "milestones": [50, 80], "gamma": 0.1})
    end = 100
    fine = unit_schedule(config, Unit(0, 1, "ticket"), end)
    assert fine.milestones == () and fine.lr == pytest.approx(config.train.lr * 0.01)
    assert all(learning_rate(fine, step) == pytest.approx(config.train.lr * 0.01) for step in (0, 50, 99))
    # the dense run and the controls keep the experiment's schedule; lr rewinding replays it
    assert unit_schedule(config, Unit(0, 0, "ticket"), end) == config.train
    assert unit_schedule(config, Unit(0, 1, "random"), end) == config.train
    assert unit_schedule(config.replace(retrain="lr_rewind"), Unit(0, 1, "ticket"), end) == config.train


def test_finetuned_units_resume_on_their_own_schedule(tmp_path):
    """A fine-tuned ticket killed midway continues at the final learning rate: the resumed
    run equals an uninterrupted one bit for bit."""
    config = tiny_config(levels=1, retrain="finetune",
                         train={"iterations": 80, "eval_every": 20, "checkpoint_every": 20, "milestones": [60]})
    whole = run(config, tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_dense(unit, summary):
        if unit.level == 0:
            raise Stop

    root = tmp_path / "killed"
    options = ticketlab.RunOptions(root=str(root), device="cpu", progress=False, workers=1)
    with pytest.raises(Stop):
        ticketlab.run(config, options, on_done=stop_after_dense)
    store_dir = root / config.experiment_name()
    env = environment(config)
    ensure_level_mask(env, Store(store_dir), 0, 1)
    prepared = prepare_unit(env, str(store_dir), Unit(0, 1, "ticket"))
    prepared.end = 40  # "killed" at the checkpoint at 40, before the milestone at 60
    train_prepared(prepared)
    assert prepared.paths.checkpoint.is_file() and not prepared.paths.summary.exists()
    resumed = run(config, root)
    assert resumed.metrics(1) == whole.metrics(1)


def test_oneshot_keeps_the_top_dense_weights_at_imps_counts(tmp_path):
    result = run(tiny_config(levels=3, prune={"method": "oneshot"}, train=FAST), tmp_path)
    dense = load_tensors(result.store.unit(0, 0, "ticket").final)
    imp_counts = {}
    mask = result.mask(0)
    for level in range(1, 4):
        # IMP's per-layer counts after `level` rounds, from any weights
        mask = magnitude_prune({n: torch.randn(m.shape) for n, m in mask.items()}, mask, result.config.prune,
                               result.store.parameter_plan().output)
        imp_counts[level] = {n: int(m.sum()) for n, m in mask.items()}
    for level in range(1, 4):
        oneshot = result.mask(level)
        assert {n: int(m.sum()) for n, m in oneshot.items()} == imp_counts[level]
        for name, keep in oneshot.items():  # within each layer, every kept weight outweighs every pruned one
            magnitude = dense[name].abs()
            if (~keep).any():
                assert magnitude[keep].min() >= magnitude[~keep].max()


def test_retrain_modes_are_refused_where_they_mean_nothing():
    from ticketlab.experiment.names import resolve_names

    with pytest.raises(ticketlab.ConfigError, match="untrained"):
        resolve_names(tiny_config(retrain="lr_rewind", prune={"method": "snip"}))
    with pytest.raises(ticketlab.ConfigError, match="rewind_iteration"):
        resolve_names(tiny_config(retrain="finetune", rewind_iteration=10))
    with pytest.raises(ticketlab.ConfigError, match="transfer"):
        resolve_names(tiny_config(prune={"method": "transfer"}))


def test_transfer_retrains_the_source_masks_under_another_optimizer(tmp_path, capsys):
    source = run(tiny_config(levels=2, seeds=2, train=FAST), tmp_path / "src")
    code, out, err = cli(["run", "--transfer-from", str(source.directory), "--optimizer", "sgd", "--lr", "0.05",
                          "--controls", "random", "--out", str(tmp_path / "dst"), "--no-progress", "--workers", "1",
                          "--no-report"], capsys)
    assert code == 0, err
    (target_dir,) = (tmp_path / "dst").iterdir()
    target = ticketlab.Result.load(target_dir)
    assert target.config.train.optimizer == "sgd" and target.config.prune.source == str(source.directory)
    for replicate in range(2):
        for level in (1, 2):
            source_mask, target_mask = source.mask(level, replicate), target.mask(level, replicate)
            assert all(torch.equal(source_mask[n], target_mask[n]) for n in source_mask)
    assert {(r["level"], r["arm"]) for r in target.runs} >= {(2, "ticket"), (2, "random")}


def test_transfer_refuses_a_ticket_whose_initialisation_differs(tmp_path, capsys):
    source = run(tiny_config(levels=1, train=FAST), tmp_path / "src")
    code, out, err = cli(["run", "--transfer-from", str(source.directory), "--seed", "7", "--out",
                          str(tmp_path / "dst"), "--no-progress", "--workers", "1", "--no-report"], capsys)
    assert code == 2 and "initial weights differ" in err and len(err.strip().splitlines()) == 1


def test_learning_rate_rewinding_is_never_called_winning(tmp_path):
    """A network retrained from trained weights early-stops early by construction: its verdict
    is judged on accuracy only."""
    from ticketlab.evidence.verdicts import verdict_table

    def record(level, seed, acc, stop):
        return {"level": level, "arm": "ticket", "seed": seed, "replicate": seed, "percent_remaining": 100 - 20 * level,
                "test_acc_at_early_stop": acc, "final_test_acc": acc, "early_stop_step": stop, "final_step": 200,
                "test_examples": 1000, "status": "ok"}

    runs = [record(0, s, 0.950 + 0.001 * s, 100) for s in range(3)] + [record(1, s, 0.960 + 0.001 * s, 0) for s in range(3)]
    assert verdict_table(runs, eval_every=20).row(1).label == "winning"
    row = verdict_table(runs, eval_every=20, can_win=False).row(1)
    assert row.label == "matching" and "not judged for winning" in row.reason
    result = run(tiny_config(levels=1, seeds=3, retrain="lr_rewind", train={"iterations": 200, "eval_every": 20}),
                 tmp_path)
    assert result.verdicts().row(1).label != "winning"
