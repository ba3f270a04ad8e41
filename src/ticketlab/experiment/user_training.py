"""A unit trained by the user's own loop: ``ticketlab.run(..., train=fn)`` calls ``fn(model, unit)``.

The unit is prepared and finished exactly as any other (``runner.prepare_unit`` /
``finish_unit``: masks, the rewound start, early-stopping weights, the summary); only the
training in between is the user's, driven through :class:`ticketlab.train.user_loop.TrainingUnit`.
The function travels to worker processes and Ray tasks with the model factory and data
(cloudpickle, ``inputs.Inputs.train_fn``), so ``--workers`` and Ray run user loops too.
A killed unit restarts from its start point: no mid-unit checkpoint is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticketlab.experiment.inputs import user_code
from ticketlab.experiment.store_events import CallbackError
from ticketlab.store.checkpoint import seeded_rng
from ticketlab.train.user_loop import TrainingStopped, TrainingUnit

if TYPE_CHECKING:
    from ticketlab.experiment.runner import PreparedUnit


def training_unit(prepared: "PreparedUnit") -> TrainingUnit:
    """The handle the user's function gets for ``prepared`` (its model, masks, start, events)."""
    env, train = prepared.env, prepared.train
    return TrainingUnit(prepared.model, prepared.masks, prepared.optimizer, prepared.state, prepared.events,
                        env.data, env.task, prepared.end, train.eval_every, prepared.capture_steps,
                        prepared.data_seed, train.test_every_eval, name=str(prepared.unit))


def train_user_loop(prepared: "PreparedUnit") -> None:
    """Run the user's function on ``prepared`` under the unit's own torch RNG, then complete its
    last evaluation. A unit that diverged stops at the next ``unit.step()`` (``TrainingStopped``)."""
    env = prepared.env
    unit = training_unit(prepared)
    prepared.start_step = unit.start
    prepared.stepper_info = {"stepper": "user", "train_loop": env.config.train_loop}
    prepared.events.stepper_info = prepared.stepper_info
    try:
        with seeded_rng(prepared.rng, env.device):
            with user_code("the training function", prepared.unit):
                try:
                    env.inputs.train_fn(prepared.model, unit)
                except TrainingStopped:
                    pass
            unit.finish()
    except CallbackError as wrapped:
        raise wrapped.original from None
