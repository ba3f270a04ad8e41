"""The one training loop: K replicates (K = 1 for one model) stepped together, with events.

The loop owns what every training shares: the learning-rate schedule, each replicate's data
order, evaluation records, divergence detection, and when to checkpoint and capture the
rewind point. *How* a step is computed belongs to a :class:`Stepper` (one model; K stacked
replicates; later, sparse kernels), and *what happens* at an evaluation, a checkpoint or a
capture belongs to each replicate's :class:`Events` (the unit runner writes files there). A
new behaviour is a new stepper or new events, never a second loop.

Data is a tensor on the device; each epoch draws one random permutation per replicate (a pure
function of its data-order seed and the epoch, so a resumed run sees exactly the batches an
uninterrupted one would) and batches are index slices of it. Data too large for that streams
from the user's loaders (``data.stream``), seeded the same way. Nothing syncs with the host
inside a step: losses accumulate on the device and are read at evaluations. Divergence is
checked where the loop syncs anyway: at every evaluation (the weights' finiteness rides in the
evaluation's single ``tolist``) and before every checkpoint and capture, so no non-finite state
is ever saved; a replicate that diverges stops being recorded at once.
"""

from __future__ import annotations

import math
import time
from typing import Iterator, Sequence

import torch

from ticketlab.config import TrainConfig
from ticketlab.data import Dataset
from ticketlab.data.batch import rows, take
from ticketlab.data.stream import StreamingData
from ticketlab.errors import ConfigError
from ticketlab.seeding import derive_seed
from ticketlab.train.events import Events
from ticketlab.train.optim import learning_rate, lr_change_points
from ticketlab.train.state import TrainState
from ticketlab.train.steppers.base import Stepper

EVAL_CHUNK = 4096


METRICS = ("val_loss", "val_acc", "test_loss", "test_acc")


def steps_per_epoch(dataset: "Dataset | StreamingData", batch_size: int) -> int | None:
    """Full batches per epoch (the last partial batch is dropped so every step has equal size);
    for streamed data, the batches its training loader yields (None: it has no length)."""
    if isinstance(dataset, StreamingData):
        return dataset.batches_per_epoch
    return max(1, rows(dataset.x_train) // batch_size)


def eval_batches(data: "Dataset | StreamingData", split: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The ``val`` or ``test`` split in evaluation chunks (tensor slices, or the streamed batches)."""
    if isinstance(data, StreamingData):
        yield from data.split(split)
        return
    x, y = (data.x_val, data.y_val) if split == "val" else (data.x_test, data.y_test)
    for start in range(0, rows(x), EVAL_CHUNK):
        yield take(x, slice(start, start + EVAL_CHUNK)), y[start : start + EVAL_CHUNK]


class TrainingBatches:
    """Each step's batch: [K, B] indices into in-memory data, or the next streamed batch."""

    def __init__(self, data: "Dataset | StreamingData", batch_size: int, data_seeds: Sequence[int]) -> None:
        self.data, self.seeds = data, list(data_seeds)
        self.streamed = isinstance(data, StreamingData)
        if not self.streamed:
            self.n = rows(data.x_train)
            self.batch = min(batch_size, self.n)
            self.device = data.y_train.device
        self.per_epoch = steps_per_epoch(data, batch_size if self.streamed else self.batch)
        self.epoch, self.order, self.stream, self.next_step = -1, None, None, None
        self.batch_at = self._streamed if self.streamed else self._in_memory  # chosen once, not per step

    def _in_memory(self, step: int) -> torch.Tensor:
        epoch, offset = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.order = torch.stack([epoch_permutation(seed, epoch, self.n, self.device) for seed in self.seeds])
        return self.order[:, offset * self.batch : (offset + 1) * self.batch]

    def _streamed(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.per_epoch is None:  # no length: one stream, replayed to ``step`` on a resume
            if step != self.next_step:
                self.stream = self.data.stream(self.seeds[0], skip=step)
            self.next_step = step + 1
            return next(self.stream)
        epoch, offset = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.stream = self.data.epoch(self.seeds[0], epoch, skip=offset)
        batch = next(self.stream, None)
        if batch is None:
            raise ConfigError(f"the train loader ended after {offset} of the {self.per_epoch} batches it "
                              "yielded in the first epoch; every epoch must yield the same number of batches")
        return batch


def total_iterations(train: TrainConfig, dataset: Dataset) -> int:
    """Training length in iterations; epochs are converted with the dataset's batches per epoch."""
    if train.iterations is not None:
        return train.iterations
    per_epoch = steps_per_epoch(dataset, train.batch_size)
    if per_epoch is None:
        raise ConfigError("train.epochs needs a train loader with a length, and this one has no len() "
                          "(an IterableDataset without __len__); give train.iterations instead")
    return train.epochs * per_epoch


def epoch_permutation(data_seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """The example order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "epoch", epoch))
    return torch.randperm(n, generator=generator).to(device, non_blocking=True)


def non_finite(record: dict[str, float | None], weights_finite: bool = True) -> str | None:
    """What in an evaluation record (and the weights) is not finite, or None."""
    words = {"train_loss": "training loss", "val_loss": "validation loss", "test_loss": "test loss"}
    bad = [word for k, word in words.items() if record.get(k) is not None and not math.isfinite(record[k])]
    if not weights_finite:
        bad.append("weights")
    return ", ".join(bad) or None


def _record_evals(stepper: Stepper, data: Dataset, states: Sequence[TrainState], events: Sequence[Events],
                  step: int, train_losses: list[float] | None, test_every_eval: bool = True,
                  final: bool = False, test_saved_later: bool = False) -> None:
    """Append an evaluation to each live replicate's history; mark the ones that went non-finite.

    The validation split is evaluated every time (it decides early stopping). The test split is
    evaluated only where a number the run reports comes from: the end, and the early-stopping
    point. With ``test_saved_later`` the early-stopping point's test fields stay null here and
    :func:`_score_early_stop` fills them at the end from the saved early-stopped weights (early
    in training nearly every evaluation is a new candidate, so scoring each one would cost
    almost the whole test curve); otherwise each candidate (a validation loss below every
    earlier one) is scored when it happens. ``test_every_eval`` records the whole test curve.
    The reported test accuracies are the same in every mode; on the full MNIST the test split
    is two thirds of what an evaluation scores.
    """
    started = time.perf_counter()
    val_loss, val_acc = stepper.evaluate(eval_batches(data, "val"))
    finite = stepper.finite().to(val_loss.device)
    head = torch.stack([val_loss, val_acc, finite]).T.tolist()  # one host sync
    candidate = [not state.diverged and values[0] < min((r["val_loss"] for r in state.history), default=math.inf)
                 for state, values in zip(states, head)]
    if test_every_eval or final or (any(candidate) and not test_saved_later):
        test_loss, test_acc = stepper.evaluate(eval_batches(data, "test"))
        tests = torch.stack([test_loss, test_acc]).T.tolist()
    else:
        tests = [[None, None]] * len(states)
    spent = time.perf_counter() - started
    for k, (state, values) in enumerate(zip(states, head)):
        if state.diverged:
            continue
        state.eval_seconds += spent
        record: dict[str, float | None] = dict(zip(METRICS, [values[0], values[1], *tests[k]]))
        record["step"] = step
        record["train_loss"] = train_losses[k] if train_losses is not None else None  # null before training
        state.step = step
        state.history.append(record)
        state.diverged = non_finite(record, values[2] == 1.0)
        events[k].on_eval(state)
        if not state.diverged and candidate[k]:
            stepper.sync(k)
            events[k].on_early_stop(state)


def _score_early_stop(stepper: Stepper, data: Dataset, states: Sequence[TrainState],
                      events: Sequence[Events]) -> None:
    """Fill in the test fields of each live replicate's early-stopping evaluation, scored on the
    weights saved there (``Events.early_stop_weights``). A replicate whose saved weights are
    not at hand (a damaged file set aside) keeps null test fields there."""
    for k, state in enumerate(states):
        if state.diverged or not state.history:
            continue
        best = early_stop(state.history)
        if best.get("test_acc") is not None:
            continue
        weights = events[k].early_stop_weights(int(best["step"]))
        if weights is None:
            continue
        started = time.perf_counter()
        loss, score = stepper.evaluate_weights(k, weights, eval_batches(data, "test"))
        best["test_loss"], best["test_acc"] = torch.stack([loss, score]).view(2).tolist()
        state.eval_seconds += time.perf_counter() - started


def _save_points(stepper: Stepper, states: Sequence[TrainState], events: Sequence[Events], loss_acc: torch.Tensor,
                 loss_count: int, done: int, capture: bool, checkpoint: bool) -> None:
    """Capture the rewind point and checkpoint the live replicates whose state is finite."""
    sums, finite = torch.stack([loss_acc, stepper.finite().to(loss_acc.device)]).tolist()
    for k, state in enumerate(states):
        if state.diverged:
            continue
        if not math.isfinite(sums[k]) or finite[k] != 1.0:
            state.diverged = "training loss or weights"
            continue
        stepper.sync(k)
        state.loss_sum, state.loss_count = sums[k], loss_count
        if capture:
            events[k].on_capture(state)
        if checkpoint:
            events[k].on_checkpoint(state)


def run_loop(
    stepper: Stepper,
    data: Dataset,
    train: TrainConfig,
    states: Sequence[TrainState],
    events: Sequence[Events],
    end: int,
    data_seeds: Sequence[int],
    capture_steps: frozenset[int] = frozenset(),
) -> None:
    """Train every replicate from their shared ``states[k].step`` to ``end``.

    An evaluation is recorded at the first step of a fresh run, at every multiple of
    ``eval_every`` and at ``end``; checkpoints every ``checkpoint_every`` steps; the rewind point
    is captured at ``capture_steps``. Afterwards each live replicate's model holds its weights.
    """
    start = states[0].step
    if any(s.step != start for s in states):
        raise ValueError("replicates stepped together must share their start step")
    if isinstance(data, StreamingData) and len(states) > 1:
        raise ValueError("streamed data trains one replicate at a time")
    device = data.device if isinstance(data, StreamingData) else data.y_train.device
    test_saved_later = (not train.test_every_eval and stepper.scores_other_weights
                        and all(e.keeps_early_stop_weights for e in events))
    if not states[0].history:
        _record_evals(stepper, data, states, events, start, None, train.test_every_eval, start == end,
                      test_saved_later)

    batch_at = TrainingBatches(data, train.batch_size, data_seeds).batch_at
    lr_points = set(lr_change_points(train, start, end))
    loss_acc = torch.tensor([s.loss_sum for s in states], device=device)
    loss_count = states[0].loss_count
    every, checkpoint_every = train.eval_every, train.checkpoint_every

    for step in range(start, end):
        if step in lr_points:
            stepper.set_lr(learning_rate(train, step))
        loss_acc += stepper.step(batch_at(step))
        loss_count += 1

        done = step + 1
        if done % every == 0 or done == end:
            train_losses = [total / loss_count for total in loss_acc.tolist()]  # mean in float64
            loss_acc.zero_()
            loss_count = 0
            _record_evals(stepper, data, states, events, done, train_losses, train.test_every_eval, done == end,
                          test_saved_later)
        for state in states:
            if not state.diverged:
                state.step = done
        capture = done in capture_steps
        checkpoint = done % checkpoint_every == 0 and done < end
        if capture or checkpoint:
            _save_points(stepper, states, events, loss_acc, loss_count, done, capture, checkpoint)
        if all(state.diverged for state in states):
            break
    for k, state in enumerate(states):
        if not state.diverged:
            stepper.sync(k)
        state.loss_sum, state.loss_count = 0.0, 0
    if test_saved_later and all(s.diverged or s.step == end for s in states):
        _score_early_stop(stepper, data, states, events)


def last_finite(history: list[dict[str, float | None]]) -> dict[str, float | None] | None:
    """The last evaluation with finite losses (what a diverged unit reached before diverging)."""
    return next((r for r in reversed(history) if not non_finite(r)), None)


def early_stop(history: list[dict[str, float]]) -> dict[str, float]:
    """The evaluation with minimum validation loss (earliest on ties): the paper's early-stopping point."""
    return min(history, key=lambda r: (r["val_loss"], r["step"]))


def summarize_history(history: list[dict[str, float]]) -> dict[str, float]:
    """Early-stopping iteration and the scores there and at the end of training."""
    best, last = early_stop(history), history[-1]
    return {
        "early_stop_step": int(best["step"]),
        "test_acc_at_early_stop": best["test_acc"],
        "val_acc_at_early_stop": best["val_acc"],
        "val_loss_at_early_stop": best["val_loss"],
        "final_test_acc": last["test_acc"],
        "final_val_acc": last["val_acc"],
        "final_step": int(last["step"]),
    }
