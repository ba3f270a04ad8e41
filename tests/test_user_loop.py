"""IMP around the user's own training loop (``ticketlab.run(..., train=fn)``): the same evidence.

Masking is exact whatever the optimizer does, rewinding restores exactly what was captured, the
store reads as any other, and a killed unit restarts from its start point.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
from ticketlab.errors import ConfigError, UserCodeError
from ticketlab.io import load_tensors
from ticketlab.weights import state_of

CONFIG = {"levels": 1, "controls": ["reinit", "random"], "prune": {"rate": 0.5},
          "train": {"iterations": 24, "eval_every": 8, "batch_size": 32}}


def blobs(n: int = 480, seed: int = 0) -> dict:
    """A small 3-class problem: the argmax of a random linear map of 12 Gaussian features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    y = (x @ torch.randn(12, 3, generator=g)).argmax(1)
    third = n // 3
    return {"train": (x[:third * 2], y[:third * 2]), "val": (x[third * 2:third * 2 + third // 2],
            y[third * 2:third * 2 + third // 2]), "test": (x[third * 2 + third // 2:], y[third * 2 + third // 2:])}


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))


class NoisySGD(torch.optim.Optimizer):
    """SGD that also adds noise to every parameter: it would regrow every pruned weight."""

    def __init__(self, params, lr: float = 0.05, noise: float = 0.01):
        super().__init__(params, {"lr": lr, "noise": noise})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
                p.add_(torch.randn_like(p), alpha=group["noise"])


OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "sgd_momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "noisy": lambda params: NoisySGD(params),
}


def plain_loop(make_optimizer, check=None, track=False):
    """A user's loop: its own optimizer, its own shuffling, ticketlab's evaluation on its grid."""

    def train(model, unit):
        optimizer = make_optimizer(model.parameters())
        if track:
            unit.track(optimizer)
        x, y = unit.data.x_train, unit.data.y_train
        order = torch.Generator().manual_seed(unit.seed)
        while not unit.done:
            perm = torch.randperm(x.shape[0], generator=order)
            for start in range(0, x.shape[0] - 31, 32):
                if unit.done:
                    break
                rows = perm[start:start + 32]
                loss = F.cross_entropy(model(x[rows]), y[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                unit.step(loss)
                if check is not None:
                    check(model, unit)
                if unit.eval_due:
                    unit.evaluate()

    return train


def options(tmp_path, **kw):
    return ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=kw.pop("workers", 1), **kw)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_are_exactly_zero_after_every_step_whatever_the_optimizer(tmp_path, name):
    nonzero: list[str] = []
    steps: list[int] = []

    def check(model, unit):
        params = dict(model.named_parameters())
        steps.append(unit.iteration)
        for param_name, mask in unit.masks.items():
            if torch.any(params[param_name].detach()[mask == 0] != 0):
                nonzero.append(f"{param_name} at {unit.iteration}")

    result = ticketlab.run(CONFIG, options(tmp_path), model=make_mlp, data=blobs(),
                           train=plain_loop(OPTIMIZERS[name], check))
    assert not nonzero
    assert len(steps) == 4 * 24  # the dense run and the three level-1 units, every step checked
    for record in result.select(level=1):
        mask = result.mask(1, arm=record["arm"])
        final = load_tensors(result.final_weights_path(1, arm=record["arm"]))
        assert mask and all(torch.all(final[n][~m] == 0) for n, m in mask.items())
        assert record["stepper"] == "user" and record["status"] == "ok"


def test_rewinding_restores_exactly_what_was_captured(tmp_path):
    """k = 0: the ticket starts from the masked initial weights; k = 3: from the dense run's
    weights after its third step on survivors (and zero elsewhere), bit for bit, with the dense
    run's Adam state at k handed to the tracked optimizer (pruned moments zeroed)."""
    starts: dict[str, dict] = {}
    seen: dict[str, dict] = {}

    def check(model, unit):
        if unit.iteration == 3 and not unit.masks:  # the dense run at k
            seen["weights"] = {k: v.clone() for k, v in state_of(model).items()}

    def train(model, unit):
        starts[unit.name] = {k: v.clone() for k, v in state_of(model).items()}
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        unit.track(optimizer)
        if unit.iteration:
            seen["optimizer"] = {n: optimizer.state[p]["exp_avg"].clone() for n, p in model.named_parameters()}
        plain_loop(lambda _: optimizer, check)(model, unit)

    for k in (0, 3):
        config = {**CONFIG, "controls": [], "rewind_iteration": k}
        result = ticketlab.run(config, options(tmp_path / str(k)), model=make_mlp, data=blobs(), train=train)
        store = result.store
        init = load_tensors(store.init_path(0))
        mask = result.mask(1)
        ticket = starts["replicate 0 level 1 ticket"]
        expected = init if k == 0 else seen["weights"]
        for name, value in ticket.items():
            want = expected[name] * mask[name] if name in mask else expected[name]
            assert torch.equal(value, want), name
        stored_start = load_tensors(store.unit(0, 1, "ticket").start)
        assert all(torch.equal(stored_start[n], ticket[n]) for n in ticket)
        if k:
            rewind = load_tensors(store.rewind_path(0))
            assert all(torch.equal(rewind[f"model/{n}"], seen["weights"][n]) for n in seen["weights"])
            for name, moment in seen["optimizer"].items():
                want = rewind[f"optim/exp_avg/{name}"]
                assert torch.equal(moment, want * mask[name] if name in mask else want), name
            assert result.select(level=1)[0]["start_step"] == 3
        starts.clear()


def test_the_store_reads_as_any_other_with_the_users_own_numbers(tmp_path, capsys):
    """Custom (loss, score) numbers are recorded as given; show and verdicts read the store."""
    from ticketlab.cli import main as cli

    def train(model, unit):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = unit.data.x_train, unit.data.y_train
        xv, yv = unit.data.x_val, unit.data.y_val
        for step in range(unit.remaining):
            rows = torch.arange(step * 32, step * 32 + 32) % x.shape[0]
            loss = F.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            unit.step(loss)
            if unit.eval_due:
                with torch.no_grad():
                    logits = model(xv)
                unit.evaluate(val={"loss": F.cross_entropy(logits, yv), "acc": (logits.argmax(1) == yv).float().mean()})

    result = ticketlab.run(CONFIG, options(tmp_path), model=make_mlp, data=blobs(), train=train)
    curve = result.metrics(1)
    assert [r["step"] for r in curve] == [8, 16, 24]
    assert all(r["train_loss"] is not None for r in curve) and curve[-1]["test_acc"] is not None
    assert result.verdicts() is not None and result.config.train_loop.startswith("python:")
    assert cli(["show", str(result.directory)]) in (0, None)
    assert "no verdict" in capsys.readouterr().out


def test_switching_the_source_of_a_split_is_refused(tmp_path):
    def train(model, unit):
        unit.evaluate()
        unit.step()
        unit.evaluate(val=(0.5, 0.9))

    with pytest.raises(ConfigError, match="give it at every evaluation"):
        ticketlab.run(CONFIG, options(tmp_path), model=make_mlp, data=blobs(), train=train)


def test_a_loop_that_stops_short_is_refused_and_user_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="returned after 0 of its 24 steps"):
        ticketlab.run(CONFIG, options(tmp_path), model=make_mlp, data=blobs(), train=lambda model, unit: None)

    def broken(model, unit):
        raise ValueError("my loader broke")

    with pytest.raises(UserCodeError, match="the training function failed in replicate 0 level 0 ticket"):
        ticketlab.run(CONFIG, options(tmp_path / "b"), model=make_mlp, data=blobs(), train=broken)
    with pytest.raises(ConfigError, match="batch > 1"):
        ticketlab.run(CONFIG, options(tmp_path, batch=2), model=make_mlp, data=blobs(), train=broken)
    with pytest.raises(ConfigError, match="your loop decides its precision"):
        ticketlab.run(CONFIG, options(tmp_path, precision="bf16"), model=make_mlp, data=blobs(), train=broken)


def test_a_diverging_unit_stops_and_is_recorded_as_diverged(tmp_path):
    def train(model, unit):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e30)
        plain_loop(lambda _: optimizer)(model, unit)

    result = ticketlab.run({**CONFIG, "levels": 1}, options(tmp_path), model=make_mlp, data=blobs(), train=train)
    assert result.runs[0]["status"] == "diverged"


def test_a_killed_unit_restarts_from_its_start_and_trains_the_same_bits(tmp_path):
    """The level-1 ticket is interrupted mid-training; running again keeps the dense run and
    retrains the ticket from its start, to the bits of an uninterrupted run."""

    def train(model, unit):
        def kill(model, unit):
            if unit.iteration == 10 and unit.masks and os.environ.get("TICKETLAB_TEST_KILL") == "1":
                raise KeyboardInterrupt

        plain_loop(OPTIMIZERS["sgd_momentum"], kill)(model, unit)

    config = {**CONFIG, "controls": []}
    os.environ["TICKETLAB_TEST_KILL"] = "1"
    try:
        with pytest.raises(KeyboardInterrupt):
            ticketlab.run(config, options(tmp_path / "a"), model=make_mlp, data=blobs(), train=train)
    finally:
        del os.environ["TICKETLAB_TEST_KILL"]
    resumed = ticketlab.run(config, options(tmp_path / "a"), model=make_mlp, data=blobs(), train=train)
    fresh = ticketlab.run(config, options(tmp_path / "b"), model=make_mlp, data=blobs(), train=train)
    assert resumed.metrics(1) == fresh.metrics(1)
    a, b = load_tensors(resumed.final_weights_path(1)), load_tensors(fresh.final_weights_path(1))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_function_reaches_worker_processes_by_value(tmp_path):
    lr = 1e-2  # a closure: cloudpickle carries it by value

    def train(model, unit):
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        plain_loop(lambda _: optimizer)(model, unit)

    result = ticketlab.run(CONFIG, options(tmp_path, workers=2), model=make_mlp, data=blobs(), train=train)
    assert len(result.runs) == 4 and all(r["stepper"] == "user" for r in result.runs)


def test_a_bundle_of_a_user_loop_ticket_verifies_bit_for_bit_with_the_function(tmp_path):
    from ticketlab.bundle.pack import make_bundle
    from ticketlab.bundle.verification import verify

    train = plain_loop(OPTIMIZERS["adam"], track=True)
    config = {**CONFIG, "controls": [], "rewind_iteration": 2}
    result = ticketlab.run(config, options(tmp_path), model=make_mlp, data=blobs(), train=train)
    path = make_bundle(result.directory, 1, tmp_path / "ticket.safetensors")
    with pytest.raises(ConfigError, match="verify\\(bundle, train=...\\)"):
        verify(path, model=make_mlp, data=blobs())
    outcome = verify(path, model=make_mlp, data=blobs(), train=train)
    assert outcome.mode == "exact" and outcome.passed, outcome


def test_the_users_own_numbers_must_end_at_the_last_step_and_steps_stop_at_the_end(tmp_path):
    def early_numbers(model, unit):
        unit.step()
        unit.evaluate(val=(1.0, 0.5), test=(1.0, 0.5))
        for _ in range(unit.remaining):
            unit.step()

    with pytest.raises(ConfigError, match="its last unit.evaluate\\(val=...\\) was at iteration 1 and it stopped at 24"):
        ticketlab.run(CONFIG, options(tmp_path), model=make_mlp, data=blobs(), train=early_numbers)

    def too_long(model, unit):
        for _ in range(unit.remaining + 1):
            unit.step()

    with pytest.raises(ConfigError, match="unit.step\\(\\) past its end \\(24 iterations\\)"):
        ticketlab.run(CONFIG, options(tmp_path / "b"), model=make_mlp, data=blobs(), train=too_long)
