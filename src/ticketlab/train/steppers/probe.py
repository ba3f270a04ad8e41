"""Choosing how a unit trains: the dense or the sparse stepper, and how many replicates to stack.

Both choices must never make a run slower. The stepper is a fixed rule (two runs of one config
must train the same way); the stacking width ``--batch K`` is measured by a short probe, since
whether stacking pays depends on the machine, and the user asked for it.
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
    sparse_ineligible,
)
from ticketlab.train.steppers.stacked import StackedStepper

# ---------------------------------------------------------------------------- choosing a stepper
# ``auto`` is a rule, not a timing: a timed probe near its threshold decides differently from one
# run to the next, and the two steppers agree only to floating-point rounding, so two runs of one
# config would differ in the last bits. The hand-written step wins at every density it runs
# (1.09x at 100%, 1.20x at 51% of LeNet's weights kept, 1.4-4.7x from 21% down: bench/sparse_step.py
# and the full-MNIST pilot in docs/results.md), so the rule is simply "wherever it can train".


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


def choose_stepper(prepared, requested: str = "auto", precision: str = "fp32"):
    """The stepper that trains ``prepared`` and what to record of the choice in its summary.

    ``dense``: the dense-masked :class:`SingleStepper`. ``sparse``: :class:`SparseStepper` (a
    one-line ConfigError when the unit cannot train sparsely). ``auto``: a fixed rule, so that
    two runs of one config on one device always train the same way: the sparse stepper for every
    pruned unit it can train (a built-in MLP, the default classification task, data in memory,
    the CPU, fp32), the dense one otherwise and at level 0.
    """
    from ticketlab.train.steppers.dense import SingleStepper

    env = prepared.env
    autocast = torch.bfloat16 if precision == "bf16" else None
    masks = prepared.masks
    check_choice(requested, "stepper", STEPPERS)  # RunOptions checked it; a resumed summary's value is checked here

    def dense(note: str | None = None):
        stepper = SingleStepper(prepared.model, prepared.optimizer, env.task, env.data, masks, autocast_dtype=autocast)
        info = {"stepper": "dense"}
        if note:
            info["stepper_note"] = note
        return stepper, info

    if requested == "dense":
        return dense("requested")
    why = sparse_ineligible(prepared.model, env.task, env.data, masks, env.device, autocast)
    if why == DENSE_UNIT:  # the model could train sparsely; level 0 has nothing pruned
        return dense("level 0 is dense")
    if why:
        if requested == "sparse":
            raise ConfigError(f"--stepper sparse cannot train {prepared.unit}: {why}; use --stepper dense or auto")
        return dense(f"not sparse: {why}")
    return SparseStepper(prepared.model, prepared.optimizer, env.task, env.data, masks), \
        {"stepper": "sparse", "stepper_note": requested if requested == "sparse" else "rule"}


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
