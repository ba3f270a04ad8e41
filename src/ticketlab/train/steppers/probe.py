"""Choosing how a unit trains: the dense or the sparse stepper, and how many replicates to stack.

Both choices must never make a run slower, and the first must not make two runs of one config
differ needlessly, so each is a fixed rule first and a short measured probe only where the rule
cannot decide.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from ticketlab.config import STEPPERS, check_choice
from ticketlab.errors import ConfigError
from ticketlab.experiment.environment import Environment
from ticketlab.train.steppers.sparse import (
    DENSE_UNIT,
    SparseStepper,
    same_optimizer,
    sparse_ineligible,
)
from ticketlab.train.steppers.stacked import StackedStepper

# ---------------------------------------------------------------------------- choosing a stepper
# Above this fraction of weights kept, "auto" stays dense without probing. The hand-written step
# also wins there (its layers are dense matmuls without autograd or a re-mask of every weight:
# 1.09x at 100%, 1.20x at 51% of LeNet's weights kept in bench/sparse_step.py), but by margins
# so close to PROBE_MIN_SPEEDUP that a timed probe would flip between runs, and each flip makes
# two runs of one config differ in the last float bits. ``--stepper sparse`` takes it anyway.
AUTO_MAX_DENSITY = 0.3


PROBE_MIN_STEPS = 1000  # "auto" probes only units with at least this many steps left to train


PROBE_ROUNDS, PROBE_STEPS = 3, 8  # interleaved rounds of steps per side (after 3 warm-up steps each)


PROBE_MIN_SPEEDUP = 1.1


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_sides(sides: Sequence[Callable[[int], object]], steps: int, warmup: int, rounds: int,
                device: torch.device) -> list[float]:
    """Seconds each of ``sides`` took over ``rounds`` rounds of ``steps`` calls ``side(i)``
    (``i``: the step within the round), after ``warmup`` untimed calls each.

    The one timing harness both probes use: rounds alternate which side runs first, so neither
    always runs on a machine the other warmed (or throttled), and a CUDA device is synchronized
    around every timed stretch, so queued kernels are counted on the side that launched them.
    """
    for side in sides:
        for i in range(warmup):
            side(i)
    times = [0.0] * len(sides)
    for r in range(rounds):
        order = range(len(sides)) if r % 2 == 0 else reversed(range(len(sides)))
        for s in order:
            _synchronize(device)
            start = time.perf_counter()
            for i in range(steps):
                sides[s](i)
            _synchronize(device)
            times[s] += time.perf_counter() - start
    return times


def _probe_speedup(prepared, masks, batch_size: int) -> tuple[float, torch.Tensor]:
    """Steps/s of the sparse stepper over the dense-masked one on this unit's own data, measured
    in interleaved rounds on copies (the unit's model and optimizer are left untouched)."""
    import copy

    from ticketlab.train.optim import load_optimizer_state, optimizer_state_tensors
    from ticketlab.train.steppers.dense import SingleStepper

    env = prepared.env
    model = copy.deepcopy(prepared.model)
    optimizer = same_optimizer(prepared.optimizer, model.parameters())
    load_optimizer_state(optimizer, model, optimizer_state_tensors(prepared.optimizer, prepared.model))
    sides = [SingleStepper(model, optimizer, env.task, env.data, masks),
             SparseStepper(prepared.model, prepared.optimizer, env.task, env.data, masks)]
    generator = torch.Generator().manual_seed(0)
    n = env.data.x_train.shape[0]
    batches = [torch.randint(0, n, (1, min(batch_size, n)), generator=generator).to(env.device)
               for _ in range(PROBE_STEPS)]

    def timed(stepper):  # one host sync per step, on both sides alike
        return lambda i: float(stepper.step(batches[i]))

    times = timed_sides([timed(side) for side in sides], PROBE_STEPS, 3, PROBE_ROUNDS, env.device)
    return times[0] / max(times[1], 1e-9), sides[1].x


def choose_stepper(prepared, requested: str = "auto", precision: str = "fp32"):
    """The stepper that trains ``prepared`` and what to record of the choice in its summary.

    ``dense``: the dense-masked :class:`SingleStepper`. ``sparse``: :class:`SparseStepper` (a
    one-line ConfigError when the unit cannot train sparsely). ``auto``: sparse only for an
    eligible pruned unit at most :data:`AUTO_MAX_DENSITY` dense with at least
    :data:`PROBE_MIN_STEPS` steps to go, and only when a short probe on its own data measures it
    at least :data:`PROBE_MIN_SPEEDUP` times faster; dense otherwise (level 0 always).
    """
    from ticketlab.train.steppers.dense import SingleStepper

    env = prepared.env
    autocast = torch.bfloat16 if precision == "bf16" else None
    masks = prepared.masks
    check_choice(requested, "stepper", STEPPERS)  # RunOptions checked it; a resumed summary's value is checked here

    def dense(note: str | None = None, speedup: float | None = None):
        stepper = SingleStepper(prepared.model, prepared.optimizer, env.task, env.data, masks, autocast_dtype=autocast)
        info = {"stepper": "dense", "stepper_speedup": speedup}
        if note:
            info["stepper_note"] = note
        return stepper, info

    if requested == "dense":
        return dense("requested")
    why = sparse_ineligible(prepared.model, env.task, env.data, masks, env.device, autocast)
    if requested == "sparse":
        if why == DENSE_UNIT:  # the model could train sparsely; level 0 has nothing pruned
            return dense("level 0 is dense")
        if why:
            raise ConfigError(f"--stepper sparse cannot train {prepared.unit}: {why}; use --stepper dense or auto")
        return SparseStepper(prepared.model, prepared.optimizer, env.task, env.data, masks), \
            {"stepper": "sparse", "stepper_speedup": None, "stepper_note": "requested"}
    if why:
        return dense(f"not sparse: {why}")
    density = prepared.mask.fraction_remaining()
    if density > AUTO_MAX_DENSITY:
        return dense(f"not probed: {100 * density:.1f}% of weights kept (> {100 * AUTO_MAX_DENSITY:.0f}%)")
    left = prepared.end - prepared.state.step
    if left < PROBE_MIN_STEPS:
        return dense(f"not probed: {left} steps to train (< {PROBE_MIN_STEPS})")
    speedup, live_x = _probe_speedup(prepared, masks, prepared.train.batch_size)
    speedup = round(speedup, 2)
    if speedup < PROBE_MIN_SPEEDUP:
        return dense(f"probe: sparse {speedup}x dense (< {PROBE_MIN_SPEEDUP}x)", speedup)
    return SparseStepper(prepared.model, prepared.optimizer, env.task, env.data, masks, live_x=live_x), \
        {"stepper": "sparse", "stepper_speedup": speedup, "stepper_note": "probe"}


def measure_speedup(env: Environment, k: int, steps: int = 20, warmup: int = 3) -> float:
    """Replicate-steps per second stacked K-wide over sequential, measured on this machine now.

    Both sides train real replicates of the experiment's model on its data with its optimizer
    (dense, fresh weights: masks cost the same on both sides) for ``steps`` steps after
    ``warmup``; the probe takes well under a second for small models.
    """
    sequential, together = measure_rates(env, k, steps, warmup)
    return together / sequential


def measure_rates(env: Environment, k: int, steps: int = 20, warmup: int = 3) -> tuple[float, float]:
    """(sequential, stacked K-wide) replicate-steps per second: the two sides of ``measure_speedup``,
    absolute, for benchmarks that report steps/s (``bench/gpu.py``)."""
    from ticketlab.train.optim import make_optimizer
    from ticketlab.train.steppers.dense import SingleStepper

    data, train = env.data, env.config.train
    batch = min(train.batch_size, data.x_train.shape[0])
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, data.x_train.shape[0], (k, batch), generator=generator).to(env.device)
    models = [env.build(seed) for seed in range(k)]
    optimizers = [make_optimizer(m.parameters(), train, env.device) for m in models]
    single = SingleStepper(models[0], optimizers[0], env.task, data, None)
    stacked = StackedStepper(models, optimizers, [None] * k, env.task, data.x_train, data.y_train, train, env.device)

    sequential, together = timed_sides([lambda i: single.step(index[:1]), lambda i: stacked.step(index)],
                                       steps, warmup, 1, env.device)
    return steps / sequential, k * steps / together


def choose_batch(env: Environment, requested: int) -> tuple[int, str]:
    """The widest K <= ``requested`` (halving) that beats sequential training here, and a note.

    ``--batch`` must never make a run slower: on a CPU, where a step is compute-bound, stacking
    can lose to sequential steps (K=16 LeNet-300-100 replicates ran at 0.64x on a 2-core
    laptop CPU), so the width comes from a short measured probe, and 1 (sequential) when no
    width wins.
    """
    k, tried = requested, []
    while k > 1:
        speedup = measure_speedup(env, k)
        tried.append(f"K={k}: {speedup:.2f}x")
        if speedup > 1.05:
            return k, f"--batch {requested}: probe measured {', '.join(tried)} of sequential speed; using K={k}"
        k //= 2
    return 1, (f"--batch {requested}: probe measured {', '.join(tried)} of sequential speed on this machine, "
               "so replicates train sequentially instead")
