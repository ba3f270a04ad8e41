"""IMP engine invariants: rewinding, masking, determinism, controls, resume and locking."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ticketlab.experiment.runner import TIMING_FIELDS
import ticketlab
from ticketlab.store.checkpoint import load_training_state
from ticketlab.config import TrainConfig
from ticketlab.errors import ExperimentLockedError
from ticketlab.io import load_tensors, read_jsonl
from ticketlab.masks import Mask
from ticketlab.train.optim import learning_rate
from ticketlab.store.layout import Store
from ticketlab.train.loop import summarize_history

from conftest import interrupted_level_1_ticket, tiny_config, wait_until_gone

VOLATILE = TIMING_FIELDS


def stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def test_pruned_weights_stay_exactly_zero(options):
    result = ticketlab.run(tiny_config(levels=3), options)
    for level in (1, 2, 3):
        mask = result.mask(level)
        final = load_tensors(result.final_weights_path(level))
        for name, keep in mask.items():
            assert torch.all(final[name][~keep] == 0), f"level {level} {name} has nonzero pruned weights"
            assert torch.any(final[name][keep] != 0)


def test_masks_are_nested_and_follow_the_schedule(options):
    result = ticketlab.run(tiny_config(levels=3), options)
    masks = [result.mask(level) for level in range(4)]
    for earlier, later in zip(masks, masks[1:]):
        assert later.is_nested_in(earlier) and not later.equals(earlier)
    # layerwise: 20% of each hidden layer, 10% of the output layer, every round, exactly
    sizes = masks[0].sizes()
    assert masks[1].remaining() == {"layers.1.weight": sizes["layers.1.weight"] - round(0.2 * 64 * 64),
                                     "layers.3.weight": sizes["layers.3.weight"] - round(0.2 * 64 * 32),
                                     "layers.5.weight": sizes["layers.5.weight"] - round(0.1 * 32 * 10)}


def test_rewind_to_init_is_bit_exact(options):
    result = ticketlab.run(tiny_config(levels=2), options)
    store = result.store
    init = load_tensors(store.init_path(0))
    for level in (1, 2):
        start = load_tensors(store.unit(0, level, "ticket").start)
        mask = result.mask(level)
        for name, value in init.items():
            if name in mask:
                keep = mask[name]
                assert torch.equal(start[name][keep], value[keep])  # survivors: the saved values, bit for bit
                assert torch.all(start[name][~keep] == 0)
            else:
                assert torch.equal(start[name], value)  # biases are rewound, never pruned


def test_late_rewinding_restores_weights_optimizer_state_and_schedule(options):
    k = 100
    result = ticketlab.run(tiny_config(levels=1, rewind_iteration=k), options)
    store = result.store
    weights, optim_state, meta = load_training_state(store, store.rewind_path(0))
    assert meta["step"] == k
    assert all(float(v) == k for key, v in optim_state.items() if key.startswith("step/"))
    # the dense run's weights at k differ from init: it really is a later point
    init = load_tensors(store.init_path(0))
    assert not torch.equal(weights["layers.1.weight"], init["layers.1.weight"])

    mask = result.mask(1)
    start = load_tensors(store.unit(0, 1, "ticket").start)
    for name, keep in mask.items():
        assert torch.equal(start[name][keep], weights[name][keep])
        assert torch.all(start[name][~keep] == 0)
    curve = result.metrics(1)
    assert curve[0]["step"] == k  # training resumes the schedule at k, not at 0
    assert result.select("ticket", 1)[0]["start_step"] == k


def test_late_rewinding_with_a_fresh_optimizer_and_reinit_from_k(options):
    """``rewind_optimizer = "fresh"`` (OpenLTH): the ticket starts at iteration k with the
    rewound weights and no optimizer state; the reinit control trains over the same iterations
    k..end (only its initial values differ), under either choice."""
    k = 100
    result = ticketlab.run(tiny_config(levels=1, rewind_iteration=k, rewind_optimizer="fresh", controls=["reinit"]),
                           options)
    from ticketlab.arms.base import ArmContext
    from ticketlab.arms.ticket import rewound_start

    store = result.store
    weights, rewound_state, _ = load_training_state(store, store.rewind_path(0))
    assert rewound_state  # the dense run recorded its optimizer state at k...
    mask = result.mask(1)
    fresh = rewound_start(mask, ArmContext(result.config, store, 0, 1, fresh_weights=None))
    assert fresh.optimizer_state == {} and fresh.step == k  # ...which a fresh optimizer does not take
    ticket_start = load_tensors(store.unit(0, 1, "ticket").start)
    for name, keep in mask.items():
        assert torch.equal(ticket_start[name][keep], weights[name][keep])
    for arm in ("ticket", "reinit"):
        assert result.select(arm, 1)[0]["start_step"] == k, arm
        assert result.metrics(1, 0, arm)[0]["step"] == k
    rewound = ticketlab.run(tiny_config(levels=1, rewind_iteration=k, controls=["reinit"]), options)
    assert rewound.directory != result.directory  # the choice is part of the experiment's identity
    assert rewound.select("reinit", 1)[0]["start_step"] == k
    with pytest.raises(ticketlab.ConfigError, match="late rewinding only"):
        tiny_config(levels=1, rewind_optimizer="fresh")


def test_checkpoints_hold_masked_weights_and_optimizer_state(options, tmp_path):
    config = tiny_config(levels=1)
    store, paths = interrupted_level_1_ticket(config, options.root, crash_at=150)  # a checkpoint was written at 100
    assert paths.checkpoint.is_file() and not paths.done()
    weights, optim_state, meta = load_training_state(store, paths.checkpoint)
    assert meta["step"] == 100
    mask = Mask.load(store.level_mask_path(0, 1))
    for name, keep in mask.items():
        assert torch.all(weights[name][~keep] == 0)
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.all(optim_state[f"{moment}/{name}"][~keep] == 0)
            assert torch.any(optim_state[f"{moment}/{name}"][keep] != 0)


def test_same_seed_same_results_different_seed_different_masks(tmp_path):
    runs = []
    for root, seed in (("a", 0), ("b", 0), ("c", 1)):
        opts = ticketlab.RunOptions(root=str(tmp_path / root), device="cpu", progress=False)
        runs.append(ticketlab.run(tiny_config(seed=seed), opts))
    a, b, c = runs
    for level in (1, 2):
        assert a.mask(level).equals(b.mask(level))
        assert a.metrics(level) == b.metrics(level)
        assert not a.mask(level).equals(c.mask(level))
    assert [stable(r) for r in a.runs] == [stable(r) for r in b.runs]


def test_control_arms_masks_and_starting_weights(options):
    result = ticketlab.run(tiny_config(levels=2, controls=["reinit", "random", "weight_shuffle"]), options)
    store = result.store
    init = load_tensors(store.init_path(0))
    for level in (1, 2):
        ticket_mask = result.mask(level)
        ticket_start = load_tensors(store.unit(0, level, "ticket").start)
        # reinit: same mask, different weights
        assert result.mask(level, arm="reinit").equals(ticket_mask)
        reinit_start = load_tensors(store.unit(0, level, "reinit").start)
        assert not torch.equal(reinit_start["layers.1.weight"], ticket_start["layers.1.weight"])
        control = result.mask(level, arm="random")
        assert control.remaining() == ticket_mask.remaining()  # same per-layer sparsity, exactly
        assert not control.equals(ticket_mask)
        start = load_tensors(store.unit(0, level, "random").start)
        for name, keep in control.items():  # same initial weights, its own mask
            assert torch.equal(start[name][keep], init[name][keep])
            assert torch.all(start[name][~keep] == 0)
        # weight_shuffle: the ticket's mask; the ticket's surviving initial values, permuted per layer
        assert result.mask(level, arm="weight_shuffle").equals(ticket_mask)
        shuffled = load_tensors(store.unit(0, level, "weight_shuffle").start)
        for name, keep in ticket_mask.items():
            assert torch.equal(shuffled[name][keep].sort().values, ticket_start[name][keep].sort().values)
            assert not torch.equal(shuffled[name][keep], ticket_start[name][keep])
            assert torch.all(shuffled[name][~keep] == 0)
        assert torch.equal(shuffled["layers.1.bias"], ticket_start["layers.1.bias"])  # unpruned: untouched
    assert {r["arm"] for r in result.runs} == {"ticket", "reinit", "random", "weight_shuffle"}


def test_any_module_conv_network(options):
    config = tiny_config(model="conv2", levels=1, train={"iterations": 40, "eval_every": 20})
    result = ticketlab.run(config, options)
    mask = result.mask(1)
    assert set(mask) == {"features.0.weight", "features.2.weight", "classifier.1.weight",
                         "classifier.3.weight", "classifier.5.weight"}
    assert result.select("ticket", 1)[0]["percent_remaining"] < 100


def test_lock_refuses_a_second_concurrent_run(options):
    config = tiny_config(levels=1)
    store = Store.for_config(config, options.root)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from ticketlab.store.layout import Store; s = Store(sys.argv[1]); s.lock(); "
         "print('locked', flush=True); time.sleep(60)", str(store.directory)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExperimentLockedError, match="already being run by pid"):
            ticketlab.run(config, options)
    finally:
        holder.kill()
        holder.wait()
    ticketlab.run(config, options)  # the kernel released the dead holder's lock


def test_learning_rate_schedule():
    train = TrainConfig(lr=1.0, warmup_iterations=4, milestones=(10, 20), gamma=0.5)
    assert [learning_rate(train, s) for s in (0, 1, 3, 4, 9, 10, 19, 20, 99)] == [
        0.25, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_early_stopping_iteration_is_minimum_validation_loss():
    history = [
        {"step": 0, "val_loss": 2.0, "val_acc": 0.1, "test_acc": 0.1},
        {"step": 100, "val_loss": 0.5, "val_acc": 0.8, "test_acc": 0.79},
        {"step": 200, "val_loss": 0.4, "val_acc": 0.85, "test_acc": 0.84},
        {"step": 300, "val_loss": 0.4, "val_acc": 0.86, "test_acc": 0.9},  # tie: the earlier one counts
        {"step": 400, "val_loss": 0.6, "val_acc": 0.84, "test_acc": 0.83},
    ]
    summary = summarize_history(history)
    assert summary["early_stop_step"] == 200
    assert summary["test_acc_at_early_stop"] == 0.84
    assert summary["final_test_acc"] == 0.83


def test_epoch_based_training_length(options):
    config = tiny_config(levels=0, train={"iterations": None, "epochs": 2, "eval_every": 10})
    result = ticketlab.run(config, options)
    assert result.metrics(0)[-1]["step"] == 2 * (1257 // 32)


def _experiment_files(directory: Path) -> dict[str, object]:
    """Everything a finished experiment stores, minus wall-clock times."""
    out: dict[str, object] = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        if path.suffix == ".safetensors":
            out[rel] = {k: v.tolist() for k, v in load_tensors(path).items()}
        elif path.name == "metrics.jsonl":
            out[rel] = read_jsonl(path)
        elif path.name == "summary.json":
            out[rel] = stable(__import__("json").loads(path.read_text()))
    return out


@pytest.mark.readme
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, run_processes):
    args = ["--dataset", "digits", "--model", "mlp_64_32", "--levels", "2", "--controls", "reinit",
            "--iterations", "3000", "--eval-every", "100", "--no-progress", "--device", "cpu"]
    env = run_processes.env
    cmd = [sys.executable, "-m", "ticketlab", "run", *args]

    subprocess.run(cmd + ["--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True)

    # Kill the second run with SIGKILL as soon as level 1's ticket has written a checkpoint.
    out = tmp_path / "killed"
    victim = subprocess.Popen(cmd + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        if list(out.glob("*/replicate_0/level_01/ticket/checkpoint.safetensors")):
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    # Its workers went down with it: none may write into the directory the resumed run uses.
    assert not wait_until_gone(run_processes.alive, 5.0), "the killed run's workers outlived it"
    (experiment,) = out.iterdir()
    assert not (experiment / "replicate_0/level_01/ticket/summary.json").exists()

    resumed = subprocess.run(cmd + ["--out", str(out)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    (clean,) = (tmp_path / "clean").iterdir()
    clean_files, resumed_files = _experiment_files(clean), _experiment_files(experiment)
    assert clean_files.keys() == resumed_files.keys()
    for key in clean_files:
        assert clean_files[key] == resumed_files[key], f"{key} differs after resume"
    assert not list(experiment.rglob("checkpoint.safetensors"))
    assert not list(experiment.rglob("*.tmp"))


def test_rerun_skips_finished_units(options):
    config = tiny_config(levels=1)
    first = ticketlab.run(config, options)
    stamp = {p: p.stat().st_mtime_ns for p in first.directory.rglob("*.safetensors")}
    second = ticketlab.run(config, options)
    assert {p: p.stat().st_mtime_ns for p in second.directory.rglob("*.safetensors")} == stamp
    assert first.runs == second.runs


def test_store_refuses_a_directory_of_another_experiment(options, tmp_path):
    config = tiny_config(levels=1)
    result = ticketlab.run(config, options)
    other = dataclasses.replace(config, seed=3)  # (levels is not the identity: more levels extend the chain)
    with pytest.raises(ticketlab.StoreError, match="different experiment"):
        Store(result.directory).write_config(other)
