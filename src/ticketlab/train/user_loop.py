"""One unit of the experiment driven by the user's own training loop.

``ticketlab.run(config, model=..., data=..., train=my_train)`` calls ``my_train(model, unit)``
once per unit (the dense run, each level's ticket, each control) with the model already
masked and rewound to the unit's start. The user's loop brings its own optimizer, data,
augmentation and schedule; it tells ticketlab two things through the :class:`TrainingUnit`:

* ``unit.step()`` after every optimizer step: pruned weights go back to exactly zero (one fused
  ``torch._foreach_mul_``, what ticketlab's own loop pays), so no optimizer (momentum, Adam's
  moments, added noise, anything) can regrow one; the iteration count advances, and at
  ``config.rewind_iteration`` the dense run's rewind point is captured;
* ``unit.evaluate()`` at the loop's evaluation points: ticketlab's task scores the model on the
  run's validation (and, where a reported number comes from, test) split; or
  ``unit.evaluate(val=(loss, score), test=(loss, score))`` records the user's own numbers.

Everything else stays ticketlab's: which units exist and when they run, masks, rewinding,
controls, seeds, early-stopping weights, the store, divergence and verdicts. This is a driver
of the same unit as the built-in loop (``loop.run_loop``): the records, the early-stopping
choice and the divergence checks are the same functions.

No mid-unit checkpoint is written: the user's loop has state ticketlab cannot save (its data
iterator, its scheduler, its epoch), so a killed unit restarts from its start point (its
finished units are kept as always).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence, Union

import torch
from torch import nn

from ticketlab.data import Dataset
from ticketlab.errors import ConfigError
from ticketlab.train.events import Events
from ticketlab.train.loop import METRICS, _save_points, eval_batches, non_finite
from ticketlab.train.optim import load_optimizer_state, optimizer_state_tensors
from ticketlab.train.state import TrainState
from ticketlab.train.steppers.dense import SingleStepper
from ticketlab.train.task import Task

if TYPE_CHECKING:
    from ticketlab.data.stream import StreamingData

Metrics = Union[Sequence[float], Mapping[str, float]]
"""A (loss, score) pair, or a mapping with ``loss`` and ``score`` (or ``acc``/``accuracy``)."""


class TrainingStopped(Exception):
    """Raised by ``unit.step()`` once the unit diverged: the user's loop ends there (ticketlab
    catches it and records the unit as diverged, as its own loop does)."""


def _pair(metrics: Metrics, split: str) -> tuple[float, float]:
    """(loss, score) as floats from the user's ``val``/``test`` argument."""
    if isinstance(metrics, Mapping):
        score_key = next((k for k in ("score", "acc", "accuracy") if k in metrics), None)
        if "loss" not in metrics or score_key is None:
            raise ConfigError(f"{split}= needs 'loss' and 'score' (or 'acc'), got keys {sorted(metrics)}")
        loss, score = metrics["loss"], metrics[score_key]
    else:
        if len(metrics) != 2:
            raise ConfigError(f"{split}= must be a (loss, score) pair, got {len(metrics)} values")
        loss, score = metrics
    return float(loss), float(score)


class TrainingUnit:
    """One unit (a training of one arm of one replicate at one level) as the user's loop sees it.

    ``model`` is masked and rewound; ``start`` is the iteration it starts at (k for a ticket
    rewound to iteration k, else 0) and ``end`` the experiment's training length, so the loop
    trains ``remaining`` optimizer steps. ``seed`` is this unit's data-order seed (a function of
    the replicate's seed), for the user's DataLoader; the loop already runs under the unit's own
    torch RNG. ``data`` is the run's data (tensors on ``device``).
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor] | None, optimizer: torch.optim.Optimizer,
                 state: TrainState, events: Events, data: "Dataset | StreamingData", task: Task, end: int, eval_every: int,
                 capture_steps: frozenset[int], seed: int, test_every_eval: bool = False, name: str = "") -> None:
        self.model, self.data, self.end, self.seed, self.name = model, data, end, seed, name
        self.eval_every, self.test_every_eval = eval_every, test_every_eval
        self.state, self.events, self.capture_steps = state, events, capture_steps
        self.start = state.step
        self._masks = masks or {}
        # ticketlab's own evaluation and re-mask; its optimizer holds the unit's start state (rewound)
        self._stepper = SingleStepper(model, optimizer, task, data, masks)
        self._remask = self._stepper.apply_masks_
        self._start_optimizer = optimizer
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._loss_sum = torch.zeros(1, device=self.device)
        self._loss_count = 0
        self._given: dict[str, bool] = {}  # split -> whether the user gives its numbers (fixed by the first call)

    # ------------------------------------------------------------------ what the loop reads
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The unit's float {0,1} masks by parameter name (empty for the dense run); read only."""
        return dict(self._masks)

    @property
    def iteration(self) -> int:
        """Optimizer steps taken so far, counted from 0 at initialisation (``start`` at the start)."""
        return self.state.step

    @property
    def remaining(self) -> int:
        """Optimizer steps left to ``end``."""
        return max(0, self.end - self.state.step)

    @property
    def done(self) -> bool:
        """The unit reached its end or diverged: the loop should stop."""
        return self.state.step >= self.end or self.diverged

    @property
    def diverged(self) -> bool:
        return self.state.diverged is not None

    @property
    def eval_due(self) -> bool:
        """Whether ticketlab's loop would evaluate now (every ``eval_every`` steps and at the end)."""
        return self.state.step > self.start and (self.state.step % self.eval_every == 0 or self.state.step >= self.end)

    # ------------------------------------------------------------------ what the loop calls
    def track(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Hand ticketlab the loop's optimizer: its state is saved with the rewind point, and a
        ticket rewound to iteration k gets the dense run's optimizer state at k back (pruned
        weights' moments zeroed), as ticketlab's own loop does. Optional; returns ``optimizer``."""
        start = optimizer_state_tensors(self._start_optimizer, self.model)
        if start:
            load_optimizer_state(optimizer, self.model, start)
        self.events.optimizer = optimizer
        return optimizer

    def step(self, loss: torch.Tensor | None = None) -> None:
        """Call after every optimizer step: re-mask, count the iteration, capture the rewind point.

        ``loss`` (the step's mean training loss, optional) is accumulated on the device and
        recorded as ``train_loss`` at the next evaluation; no host sync happens here.
        """
        if self.diverged:
            raise TrainingStopped(f"{self.name} diverged (non-finite {self.state.diverged}); stop training it")
        if self.state.step >= self.end:
            raise ConfigError(f"{self.name}: unit.step() past its end ({self.end} iterations); train "
                              "unit.remaining steps (or stop when unit.done)")
        self._remask()
        if loss is not None:
            self._loss_sum += loss.detach()
            self._loss_count += 1
        self.state.step += 1
        if self.state.step in self.capture_steps:
            self._capture()

    def evaluate(self, val: Metrics | None = None, test: Metrics | None = None) -> dict:
        """Record an evaluation at the current iteration and return it.

        Without ``val``/``test`` ticketlab's task scores the model on the run's split (the test
        split only where a reported number comes from: a new minimum of validation loss, the
        end, or every evaluation under ``test_every_eval``). Each split's numbers come from one
        source for the whole unit: the first call decides, so early stopping never compares
        losses of two different definitions.
        """
        if self.diverged:
            raise TrainingStopped(f"{self.name} diverged (non-finite {self.state.diverged}); stop training it")
        if self.state.history and self.state.history[-1]["step"] == self.state.step:
            return self.state.history[-1]  # evaluated here already (a callback and the loop both asked)
        return self._record(val, test, final=False)

    # ------------------------------------------------------------------ ticketlab's side
    def _source(self, split: str, given: object) -> bool:
        """Whether ``split``'s numbers are the user's; refuse a unit that switches source."""
        mine = given is not None
        if self._given.setdefault(split, mine) != mine:
            first = "gave" if self._given[split] else "did not give"
            raise ConfigError(f"{self.name}: the first unit.evaluate() {first} {split}=...; give it at every "
                              "evaluation of a unit or at none (early stopping compares the numbers)")
        return mine

    def _ours(self, split: str) -> tuple[float, float]:
        """ticketlab's (loss, score) of the model on the run's ``split``, in the model's own mode after."""
        training = self.model.training
        try:
            loss, score = self._stepper.evaluate(eval_batches(self.data, split))
        finally:
            self.model.train(training)
        return float(loss), float(score)

    def _record(self, val: Metrics | None, test: Metrics | None, final: bool) -> dict:
        state = self.state
        val_pair = _pair(val, "val") if self._source("val", val) else self._ours("val")
        candidate = val_pair[0] < min((r["val_loss"] for r in state.history), default=math.inf)
        if self._source("test", test):
            test_pair: tuple[float | None, float | None] = _pair(test, "test")
        elif candidate or final or self.test_every_eval:
            test_pair = self._ours("test")
        else:
            test_pair = (None, None)
        record: dict = dict(zip(METRICS, [*val_pair, *test_pair]))
        record["step"] = state.step
        record["train_loss"] = self._train_loss()
        state.history.append(record)
        state.diverged = non_finite(record, bool(self._stepper.finite()))
        self.events.on_eval(state)
        if not state.diverged and candidate:
            self.events.on_early_stop(state)
        return record

    def _train_loss(self) -> float | None:
        """The mean of the losses ``step`` was given since the last evaluation (None if none)."""
        if not self._loss_count:
            return None
        mean = float(self._loss_sum) / self._loss_count
        self._loss_sum.zero_()
        self._loss_count = 0
        return mean

    def _capture(self) -> None:
        """The rewind point, saved when the weights (and any loss given) are finite."""
        _save_points(self._stepper, [self.state], [self.events], self._loss_sum, self._loss_count, self.state.step,
                     capture=True, checkpoint=False)

    def finish(self) -> None:
        """After the user's loop: the last evaluation is at the last iteration, with test numbers.

        ticketlab adds (or completes) it with its task where the unit's numbers are its own; a
        unit whose validation numbers are the user's must have been evaluated after its last step.
        """
        state = self.state
        if state.diverged:
            return
        if state.step < self.end:
            raise ConfigError(f"{self.name}: the training function returned after {state.step - self.start} of its "
                              f"{self.end - self.start} steps (unit.step() calls); train unit.remaining steps, "
                              "as every unit must for the comparison to hold")
        last = state.history[-1] if state.history else None
        if last is not None and last["step"] == state.step:
            if last["test_acc"] is None:  # not a new minimum of validation loss: test not scored yet
                last["test_loss"], last["test_acc"] = self._ours("test")
            return
        if self._given.get("val"):
            raise ConfigError(f"{self.name}: the training function gave its own validation numbers, but its last "
                              f"unit.evaluate(val=...) was at iteration {last['step'] if last else 'none'} and it "
                              f"stopped at {state.step}; evaluate after the last step (with Lightning: validate every "
                              "unit.eval_every steps, val_check_interval=unit.eval_every, check_val_every_n_epoch=None)")
        self._record(None, None, final=True)
