"""The sparse stepper trains a pruned MLP on its survivors with the dense-masked loop's results."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import ticketlab
from ticketlab.train.steppers import probe as sparse_stepper
from ticketlab.train.loop import TrainingBatches, eval_batches
from ticketlab.train.optim import load_optimizer_state, make_optimizer, optimizer_state_tensors
from ticketlab.train.steppers.sparse import SparseStepper
from ticketlab.train.steppers.dense import SingleStepper
from ticketlab.experiment.environment import environment

from conftest import cli, tiny_config


def _masks(model, keep: dict[int, float], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random masks keeping ``keep[i]`` of Linear weight i, with dead inputs and a dead hidden unit."""
    gen = torch.Generator().manual_seed(seed)
    weights = [(n, p) for n, p in model.named_parameters() if n.endswith("weight")]
    masks = {n: (torch.rand(p.shape, generator=gen) < keep[i]).float() for i, (n, p) in enumerate(weights)}
    masks[weights[0][0]][:, :10] = 0  # ten input pixels lose every weight (dropped physically)
    masks[weights[1][0]][:, 5] = 0  # hidden unit 5 has no outgoing weight (dead for the loss)
    return masks


def _pair(train: dict, keep: dict[int, float]):
    config = tiny_config(train=train)
    env = environment(config)
    model = env.build(0)
    masks = _masks(model, keep)
    dense_model, sparse_model = copy.deepcopy(model), copy.deepcopy(model)
    dense_opt = make_optimizer(dense_model.parameters(), config.train, env.device)
    sparse_opt = make_optimizer(sparse_model.parameters(), config.train, env.device)
    dense = SingleStepper(dense_model, dense_opt, env.task, env.data, masks)
    sparse = SparseStepper(sparse_model, sparse_opt, env.task, env.data, masks)
    return env, config, masks, (dense_model, dense_opt, dense), (sparse_model, sparse_opt, sparse)


OPTIMIZERS = {
    "adam": {"optimizer": "adam", "lr": 3e-3},
    "adamw": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05},
    "sgd": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9},
}
DENSITIES = {"51%": {0: 0.5, 1: 0.5, 2: 0.7}, "20%": {0: 0.2, 1: 0.2, 2: 0.5},  # 20%: CSR steps, dense evaluation
             "10%": {0: 0.1, 1: 0.1, 2: 0.5}, "3%": {0: 0.03, 1: 0.04, 2: 0.2}}


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_sparse_equals_dense_masked(optimizer, density):
    env, config, masks, (dm, dopt, dense), (sm, sopt, sparse) = _pair(OPTIMIZERS[optimizer], DENSITIES[density])
    assert sparse.live_inputs.numel() < env.data.x_train[0].numel()  # dead inputs were dropped
    expected = {"51%": [False] * 3, "20%": [True, True, False], "10%": [True, True, False], "3%": [True] * 3}[density]
    assert [layer.sparse for layer in sparse.layers] == expected  # CSR and dense (gradient-masked) layers
    batch_at = TrainingBatches(env.data, 32, [0]).batch_at
    dense_losses, sparse_losses = [], []
    for step in range(50):
        if step == 25:
            dense.set_lr(config.train.lr / 2)
            sparse.set_lr(config.train.lr / 2)
        dense_losses.append(float(dense.step(batch_at(step))))
        sparse_losses.append(float(sparse.step(batch_at(step))))
    torch.testing.assert_close(torch.tensor(sparse_losses), torch.tensor(dense_losses), rtol=1e-4, atol=1e-6)

    dense_eval = [t.item() for t in dense.evaluate(eval_batches(env.data, "val"))]
    sparse_eval = [t.item() for t in sparse.evaluate(eval_batches(env.data, "val"))]
    assert sparse_eval == pytest.approx(dense_eval, rel=1e-4, abs=1e-6)

    sparse.sync(0)
    dense_state, sparse_state = dict(dm.named_parameters()), dict(sm.named_parameters())
    for name, param in dense_state.items():
        torch.testing.assert_close(sparse_state[name], param, rtol=1e-4, atol=1e-6)
        if name in masks:
            assert (sparse_state[name][masks[name] == 0] == 0).all()  # pruned: exactly zero
    saved_dense, saved_sparse = optimizer_state_tensors(dopt, dm), optimizer_state_tensors(sopt, sm)
    assert saved_sparse.keys() == saved_dense.keys()
    for key, value in saved_dense.items():
        name = key.split("/", 1)[1]
        if name in masks and not key.startswith("step"):
            assert (saved_sparse[key][masks[name] == 0] == 0).all()
            value = value * masks[name]  # what a checkpoint holds (ticketlab masks saved state)
        torch.testing.assert_close(saved_sparse[key], value, rtol=1e-4, atol=1e-7)


def test_sync_round_trip_resumes_exactly():
    """Sync to the dense model + torch optimizer, rebuild from them (a resume): same as never stopping."""
    env, config, masks, _, (sm, sopt, sparse) = _pair(OPTIMIZERS["adam"], DENSITIES["10%"])
    reference = SparseStepper(copy.deepcopy(sm), make_optimizer(sm.parameters(), config.train, env.device),
                              env.task, env.data, masks)
    batch_at = TrainingBatches(env.data, 32, [0]).batch_at
    for step in range(20):
        sparse.step(batch_at(step))
        reference.step(batch_at(step))
    sparse.sync(0)
    resumed_model = env.build(0)
    resumed_model.load_state_dict(sm.state_dict())
    resumed_opt = make_optimizer(resumed_model.parameters(), config.train, env.device)
    load_optimizer_state(resumed_opt, resumed_model, optimizer_state_tensors(sopt, sm))
    resumed = SparseStepper(resumed_model, resumed_opt, env.task, env.data, masks)
    for step in range(20, 40):
        assert torch.equal(resumed.step(batch_at(step)), reference.step(batch_at(step)))
    reference.sync(0)
    resumed.sync(0)
    for a, b in zip(resumed_model.parameters(), reference.model.parameters()):
        assert torch.equal(a, b)


def test_sparse_on_a_conv_model_is_a_one_line_config_error(tmp_path, capsys):
    code, out, err = cli(["run", "--dataset", "digits", "--model", "conv2", "--levels", "1", "--iterations", "10",
                          "--stepper", "sparse", "--workers", "1", "--out", str(tmp_path), "--no-progress",
                          "--no-report"], capsys)
    assert code != 0
    message = [line for line in err.strip().splitlines() if line]
    assert len(message) == 1 and "--stepper sparse" in message[0] and "ConvNet" in message[0], err


SHORT = {"iterations": 200, "eval_every": 50, "checkpoint_every": 100, "batch_size": 32}


def test_sparse_run_gives_the_dense_runs_results(options):
    config = tiny_config(levels=2, train=SHORT, prune={"rate": 0.8, "output_rate": 0.5})
    dense = ticketlab.run(config, dataclasses.replace(options, root=options.root + "/dense", stepper="dense"))
    sparse = ticketlab.run(config, dataclasses.replace(options, root=options.root + "/sparse", stepper="sparse"))
    by_level = {(r["level"], r["arm"]): r for r in dense.runs}
    assert len(sparse.runs) == len(dense.runs) == 3
    for run in sparse.runs:
        other = by_level[(run["level"], run["arm"])]
        assert run["stepper"] == ("dense" if run["level"] == 0 else "sparse")
        assert other["stepper"] == "dense"
        for key in ("final_test_acc", "test_acc_at_early_stop", "final_val_acc"):
            assert run[key] == pytest.approx(other[key], abs=2.5 / run["test_examples"]), key


def test_auto_is_a_rule_dense_at_level_0_and_sparse_at_every_pruned_level(options):
    """No timing decides: level 1 keeps 80% (where a probe's margin would flip between runs),
    and two runs of one config choose the same path for every unit, so they agree bit for bit."""
    config = tiny_config(levels=2, train=SHORT)
    first = ticketlab.run(config, dataclasses.replace(options, stepper="auto"))
    again = ticketlab.run(config, dataclasses.replace(options, stepper="auto", root=options.root + "-again"))
    for result in (first, again):
        by_level = {r["level"]: r for r in result.runs}
        assert by_level[0]["stepper"] == "dense" and by_level[0]["stepper_note"] == "level 0 is dense"
        assert by_level[1]["stepper"] == by_level[2]["stepper"] == "sparse"
        assert all(r["stepper_note"] == "rule" for r in result.runs if r["level"] > 0)
        assert all("stepper_speedup" not in r for r in result.runs)
    key = ("final_test_acc", "test_acc_at_early_stop", "final_val_acc", "early_stop_step")
    assert [[r[k] for k in key] for r in first.runs] == [[r[k] for k in key] for r in again.runs]


def test_auto_stays_dense_where_the_sparse_step_cannot_train(options):
    config = tiny_config(levels=1, train=SHORT)
    result = ticketlab.run(config, dataclasses.replace(options, stepper="auto", precision="bf16"))
    assert all(r["stepper"] == "dense" for r in result.runs)
    assert {r["stepper_note"] for r in result.runs if r["level"] == 1} == {"not sparse: bf16 autocast is on"}


@pytest.mark.parametrize("collapsed", [0, 1, 2])
def test_a_layer_pruned_away_entirely_trains_as_dense_masked(collapsed):
    keep = {0: 0.1, 1: 0.1, 2: 0.2}
    keep[collapsed] = 0.0
    env, config, masks, (dm, _, dense), (sm, _, sparse) = _pair(OPTIMIZERS["adam"], keep)
    batch_at = TrainingBatches(env.data, 32, [0]).batch_at
    for step in range(10):
        torch.testing.assert_close(sparse.step(batch_at(step)), dense.step(batch_at(step)), rtol=1e-4, atol=1e-6)
    sparse.sync(0)
    for a, b in zip(sm.parameters(), dm.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_sparse_unit_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    """Checkpoints written from the sparse stepper's sync resume (sparsely) to exactly the
    weights of an uninterrupted sparse run, and hold masked weights and optimizer state."""
    from conftest import interrupted_level_1_ticket
    from ticketlab.io import load_tensors
    from ticketlab.store.checkpoint import load_training_state
    from ticketlab.store.layout import Store
    from ticketlab.experiment.unit import Unit
    from ticketlab.experiment.runner import run_unit
    from ticketlab.experiment.level_masks import ensure_level_mask

    config = tiny_config(levels=1, train=SHORT, prune={"rate": 0.8, "output_rate": 0.5})
    unit = Unit(0, 1, "ticket")
    clean = Store.for_config(config, tmp_path / "clean")
    clean.write_config(config)
    run_unit(config, str(clean.directory), Unit(0, 0, "ticket"), "cpu")
    ensure_level_mask(environment(config), clean, 0, 1)
    run_unit(config, str(clean.directory), unit, "cpu", stepper="sparse")

    killed, paths = interrupted_level_1_ticket(config, tmp_path / "killed", crash_at=150, stepper="sparse")
    weights, optim_state, meta = load_training_state(killed, paths.checkpoint)
    assert meta["step"] == 100
    mask = killed.mask(killed.level_mask_path(0, 1))
    for param, keep in mask.items():
        assert torch.all(weights[param][~keep] == 0)
        assert torch.all(optim_state[f"exp_avg/{param}"][~keep] == 0)
        assert torch.any(optim_state[f"exp_avg_sq/{param}"][keep] != 0)
    # resumed under `auto`, the unit continues on the path its checkpoint was trained on (a new
    # probe could choose differently and change the last bits)
    summary = run_unit(config, str(killed.directory), unit, "cpu", stepper="auto")
    assert summary["stepper"] == "sparse"
    finals = [load_tensors(store.unit(0, 1, "ticket").final) for store in (clean, killed)]
    for param, value in finals[0].items():
        assert torch.equal(finals[1][param], value), param


@pytest.mark.parametrize("density", ["20%", "3%"])
def test_evaluate_weights_scores_other_weights_and_restores_its_own(density):
    """What lean evaluation relies on: both steppers score saved (earlier) weights as the dense
    model would, and then train on exactly as if they had not."""
    from ticketlab.weights import cloned_state

    env, config, masks, (dm, _, dense), (sm, _, sparse) = _pair(OPTIMIZERS["adam"], DENSITIES[density])
    batch_at = TrainingBatches(env.data, 32, [0]).batch_at
    for step in range(5):
        dense.step(batch_at(step)), sparse.step(batch_at(step))
    sparse.sync(0)
    saved = cloned_state(sm)  # the weights an early-stopping point would have saved
    for step in range(5, 15):
        dense.step(batch_at(step)), sparse.step(batch_at(step))
    for stepper in (dense, sparse):
        scored = [t.item() for t in stepper.evaluate_weights(0, saved, eval_batches(env.data, "test"))]
        probe = copy.deepcopy(dm)
        probe.load_state_dict(saved)
        expected = [t.item() for t in SingleStepper(probe, make_optimizer(probe.parameters(), config.train, env.device),
                                                    env.task, env.data, None).evaluate(eval_batches(env.data, "test"))]
        assert scored == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # after the detour both still train to the same losses as each other (their own weights came back)
    for step in range(15, 20):
        torch.testing.assert_close(sparse.step(batch_at(step)), dense.step(batch_at(step)), rtol=1e-4, atol=1e-6)
