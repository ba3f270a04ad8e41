"""Train a *stack* of K independent units together: the one loop with the stacked stepper.

("Stack" is K trainings run as one computation, ``--batch K``; a "batch" elsewhere is a
minibatch of examples.) For tiny models (an MLP on MNIST-1D) a training step is a handful of
small kernels and the time goes to per-step overhead; stacking K replicates
(``train.steppers.stacked.StackedStepper``) turns K small products into one batched product.
Units in a stack must start at the same iteration
and train for the same length (grouped here); they can be of any arm and level. Checkpoints,
rewind points and final files are written per unit, through the same events as sequential
training, after copying each replicate's slice back into its own model and optimizer.

A model that draws random numbers in training (Dropout) cannot be stacked without changing
what each replicate sees, so it is refused before anything trains (``check_stackable``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from ticketlab.config import Config
from ticketlab.data import Dataset
from ticketlab.errors import ConfigError
from ticketlab.experiment.environment import Environment, environment, resolve_device
from ticketlab.data.batch import is_single
from ticketlab.experiment.inputs import Inputs, user_code
from ticketlab.experiment.runner import PreparedUnit, finish_unit, prepare_unit
from ticketlab.experiment.unit import Unit
from ticketlab.train.loop import run_loop
from ticketlab.train.steppers.stacked import StackedStepper, randomness_in


def check_stackable(env: Environment) -> None:
    """ConfigError (one line) when ``--batch K`` cannot train this model's replicates together."""
    if not isinstance(env.data, Dataset):
        raise ConfigError("--batch needs the data in memory (tensors or a torch Dataset), not streamed loaders; "
                          "use --batch 1")
    if not is_single(env.data.x_train):
        raise ConfigError("--batch stacks replicates on one input tensor, and this data has several inputs (a tuple "
                          "or dict); use --batch 1 (sequential, or --workers for parallel processes)")
    if env.task.model_loss:
        raise ConfigError("--batch cannot train Task(loss='model') (the model's own loss), which only the dense "
                          "stepper computes; use --batch 1")
    where = randomness_in(env.meta_model())
    if where:
        raise ConfigError(
            f"--batch cannot train replicates of this model together: {where} draws random numbers in training, "
            "which stacked replicates would share; use --batch 1 (sequential, or --workers for parallel processes)"
        )


def optimizer_age(optimizer) -> float | None:
    """The optimizer's step count (Adam's bias correction depends on it), None before its first
    step: one stacked optimizer holds one count, so only units of the same age stack."""
    for state in optimizer.state.values():
        if "step" in state:
            return float(state["step"])
    return None


def train_stack(units: Sequence[PreparedUnit]) -> None:
    """Train ``units`` (same start step and end) together; their states end up as if trained alone."""
    first = units[0]
    if any(u.state.step != first.state.step or u.end != first.end or u.train != first.train
           or optimizer_age(u.optimizer) != optimizer_age(first.optimizer) for u in units):
        raise ValueError("stacked units must share their start step, training length, schedule and optimizer age")
    env = first.env
    for unit in units:  # stacked replicates draw no random numbers (Dropout is refused): nothing to save
        unit.events.fixed_rng = unit.rng
        unit.events.stacked = True
    stepper = StackedStepper([u.model for u in units], [u.optimizer for u in units], [u.masks for u in units],
                             env.task, env.data.x_train, env.data.y_train, env.config.train, env.device)
    with user_code("training (the model's forward/backward or the loss)", first.unit, active=env.user):
        run_loop(stepper, env.data, first.train, [u.state for u in units], [u.events for u in units],
                 first.end, [u.data_seed for u in units], first.capture_steps)


def run_stack(config: Config, store_dir: str, units: Sequence[Unit], device: str = "cpu",
                      inputs: bytes | Inputs | None = None) -> list[tuple[Unit, dict]]:
    """Run ``units``: those sharing (start step, length, schedule, optimizer age) train together;
    return their summaries.

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
            key = (prepared.state.step, prepared.end, prepared.capture_steps, prepared.masks is None, prepared.train,
                   optimizer_age(prepared.optimizer))  # a reinit from k (fresh optimizer) beside a ticket rewound to k
            groups[key].append(prepared)
    for group in groups.values():
        train_stack(group)
        results.extend((p.unit, finish_unit(p)) for p in group)
    return results
