"""Train K independent units together: the one loop with the stacked stepper.

For tiny models (an MLP on MNIST-1D) a training step is a handful of small kernels and the
time goes to per-step overhead; stacking K replicates (``steppers.StackedStepper``) turns K
small products into one batched product. Units in a batch must start at the same iteration
and train for the same length (grouped here); they can be of any arm and level. Checkpoints,
rewind points and final files are written per unit, through the same events as sequential
training, after copying each replicate's slice back into its own model and optimizer.

A model that draws random numbers in training (Dropout) cannot be stacked without changing
what each replicate sees, so it is refused before anything trains (``check_batchable``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ticketlab.config import Config
from ticketlab.data import Dataset
from ticketlab.errors import ConfigError
from ticketlab.inputs import Inputs, user_code
from ticketlab.loop import run_loop
from ticketlab.steppers import StackedStepper, randomness_in
from ticketlab.units import Environment, PreparedUnit, Unit, environment, finish_unit, prepare_unit, resolve_device


def check_batchable(env: Environment) -> None:
    """ConfigError (one line) when ``--batch K`` cannot train this model's replicates together."""
    if not isinstance(env.data, Dataset):
        raise ConfigError("--batch needs the data in memory (tensors or a torch Dataset), not streamed loaders; "
                          "use --batch 1")
    where = randomness_in(env.meta_model())
    if where:
        raise ConfigError(
            f"--batch cannot train replicates of this model together: {where} draws random numbers in training, "
            "which stacked replicates would share; use --batch 1 (sequential, or --workers for parallel processes)"
        )


def train_batched(units: Sequence[PreparedUnit]) -> None:
    """Train ``units`` (same start step and end) together; their states end up as if trained alone."""
    first = units[0]
    if any(u.state.step != first.state.step or u.end != first.end or u.train != first.train for u in units):
        raise ValueError("batched units must share their start step, training length and schedule")
    env = first.env
    for unit in units:  # stacked replicates draw no random numbers (Dropout is refused): nothing to save
        unit.events.fixed_rng = unit.rng
        unit.events.stacked = True
    stepper = StackedStepper([u.model for u in units], [u.optimizer for u in units], [u.masks for u in units],
                             env.task, env.data.x_train, env.data.y_train, env.config.train, env.device)
    with user_code("training (the model's forward/backward or the loss)", first.unit, active=env.user):
        run_loop(stepper, env.data, first.train, [u.state for u in units], [u.events for u in units],
                 first.end, [u.data_seed for u in units], first.capture_steps)


def run_units_batched(config: Config, store_dir: str, units: Sequence[Unit], device: str = "cpu",
                      inputs: bytes | Inputs | None = None) -> list[tuple[Unit, dict]]:
    """Run ``units``: those sharing (start step, length, schedule) train together; return their summaries.

    ``device`` is the run's option as given (``auto`` included), resolved here exactly as
    ``run_unit`` resolves it for one unit, so ``--batch K`` accepts every ``--device`` value.
    """
    env = environment(config, resolve_device(device), inputs)
    results: list[tuple[Unit, dict]] = []
    groups: dict[tuple, list[PreparedUnit]] = defaultdict(list)
    for unit in units:
        prepared = prepare_unit(env, store_dir, unit)
        if isinstance(prepared, dict):
            results.append((unit, prepared))
        else:
            key = (prepared.state.step, prepared.end, prepared.capture_steps, prepared.masks is None, prepared.train)
            groups[key].append(prepared)
    for group in groups.values():
        train_batched(group)
        results.extend((p.unit, finish_unit(p)) for p in group)
    return results


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
    import time

    import torch

    from ticketlab.optim import make_optimizer
    from ticketlab.steppers import SingleStepper

    data, train = env.data, env.config.train
    batch = min(train.batch_size, data.x_train.shape[0])
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, data.x_train.shape[0], (k, batch), generator=generator).to(env.device)
    models = [env.build(seed) for seed in range(k)]
    optimizers = [make_optimizer(m.parameters(), train, env.device) for m in models]
    single = SingleStepper(models[0], optimizers[0], env.task, data, None)
    stacked = StackedStepper(models, optimizers, [None] * k, env.task, data.x_train, data.y_train, train, env.device)

    def rate(step, width: int) -> float:
        for _ in range(warmup):
            step()
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        return width * steps / (time.perf_counter() - start)

    sequential = rate(lambda: single.step(index[:1]), 1)
    together = rate(lambda: stacked.step(index), k)
    return sequential, together


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
