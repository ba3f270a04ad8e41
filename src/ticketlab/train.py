"""The training loop: short, linear and fast.

Data is already a tensor on the device; each epoch draws one random permutation (a pure
function of the data-order seed and the epoch number, so a resumed run sees exactly the
batches an uninterrupted one would) and batches are index slices of it. The loop never
syncs with the host inside a step: the training loss accumulates on the device and is read
only at evaluation points. Pruned weights are kept at exactly zero by one fused
``_foreach_mul_`` after each optimizer step; because Adam(W) and SGD update each weight from its
own gradient and state only, the moments of pruned weights can never reach a surviving
weight, and they are zeroed whenever state is saved or restored (see ``optim``).

Divergence is caught without a host sync per step. The loss and the weights are checked
for non-finite values where the loop syncs anyway: at every evaluation (the weights' flag
rides in the evaluation's single ``tolist``), and before every checkpoint and rewind capture
(which copy the state to the host regardless). The last step is always an evaluation, so no
non-finite state is ever saved, and nothing is pruned from it; a NaN is detected at most
``eval_every`` steps late, and the loop stops there with ``state.diverged`` set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.config import TrainConfig
from ticketlab.data import Dataset
from ticketlab.optim import learning_rate, lr_change_points
from ticketlab.seeding import derive_seed

EVAL_CHUNK = 4096


@dataclass
class TrainState:
    """Everything that evolves during training, apart from the model and optimizer themselves."""

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    loss_sum: float = 0.0
    loss_count: int = 0
    diverged: str | None = None  # what went non-finite, when training stopped on divergence


class Hooks(Protocol):
    """Callbacks the loop fires; the unit runner uses them to checkpoint and capture rewind points."""

    def on_eval(self, state: TrainState) -> None: ...

    def on_checkpoint(self, state: TrainState) -> None: ...

    def on_capture(self, state: TrainState) -> None: ...


def total_iterations(train: TrainConfig, dataset: Dataset) -> int:
    """Training length in iterations; epochs are converted with the dataset's batches per epoch."""
    if train.iterations is not None:
        return train.iterations
    return train.epochs * steps_per_epoch(dataset, train.batch_size)


def steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped so every step has equal size)."""
    return max(1, dataset.x_train.shape[0] // batch_size)


def epoch_permutation(data_seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """The example order of one epoch, a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(derive_seed(data_seed, "epoch", epoch))
    return torch.randperm(n, generator=generator).to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy) as 0-d tensors on the device (no host sync here)."""
    was_training = model.training
    model.eval()
    loss_total = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, x.shape[0], EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        target = y[start : start + EVAL_CHUNK]
        loss_total += F.cross_entropy(logits.float(), target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    n = max(1, x.shape[0])
    return loss_total / n, correct.float() / n


def finite_flag(tensors: list[torch.Tensor]) -> torch.Tensor:
    """1.0 when every entry of ``tensors`` is finite, else 0.0, as a 0-d tensor (no host sync)."""
    if not tensors:
        return torch.ones(())
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all().float()


def non_finite(record: dict[str, float | None], weights_finite: bool = True) -> str | None:
    """What in an evaluation record (and the weights) is not finite, or None."""
    words = {"train_loss": "training loss", "val_loss": "validation loss", "test_loss": "test loss"}
    bad = [word for k, word in words.items() if record.get(k) is not None and not math.isfinite(record[k])]
    if not weights_finite:
        bad.append("weights")
    return ", ".join(bad) or None


def eval_record(model: nn.Module, data: Dataset, state: TrainState, train_loss: float | None) -> dict[str, float | None]:
    """An evaluation at ``state.step``; ``state.diverged`` is set if the loss or weights are non-finite."""
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    weights_ok = finite_flag([p.detach() for p in model.parameters()]).to(val_loss.device)
    *values, finite = torch.stack([val_loss, val_acc, test_loss, test_acc, weights_ok]).tolist()  # one host sync
    record: dict[str, float | None] = dict(zip(("val_loss", "val_acc", "test_loss", "test_acc"), values))
    record["step"] = state.step
    record["train_loss"] = train_loss  # None at the first evaluation: no training yet (strict JSON: null)
    state.diverged = non_finite(record, finite == 1.0)
    return record


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    train_config: TrainConfig,
    state: TrainState,
    end: int,
    data_seed: int,
    masks: dict[str, torch.Tensor] | None = None,
    hooks: Hooks | None = None,
    capture_steps: frozenset[int] = frozenset(),
    autocast_dtype: torch.dtype | None = None,
) -> TrainState:
    """Train from ``state.step`` to ``end``, evaluating every ``eval_every`` iterations.

    ``masks`` maps parameter names to float {0,1} tensors; those parameters are re-masked after
    every step. An evaluation is recorded at the first step of a fresh run and at every
    multiple of ``eval_every`` and at ``end``.
    """
    device = data.x_train.device
    params = dict(model.named_parameters())
    masked_params = [params[n] for n in masks] if masks else []
    mask_values = [masks[n] for n in masks] if masks else []
    if masks:
        with torch.no_grad():
            torch._foreach_mul_(masked_params, mask_values)

    model.train()
    if not state.history:
        state.history.append(eval_record(model, data, state, None))
        if hooks:
            hooks.on_eval(state)

    n = data.x_train.shape[0]
    batch = min(train_config.batch_size, n)
    per_epoch = steps_per_epoch(data, batch)
    lr_points = set(lr_change_points(train_config, state.step, end))
    loss_acc = torch.tensor(state.loss_sum, device=device)
    loss_count = state.loss_count
    epoch = -1
    order = None
    x_all, y_all = data.x_train, data.y_train

    for step in range(state.step, end):
        if step in lr_points:
            lr = learning_rate(train_config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
        step_epoch, offset = divmod(step, per_epoch)
        if step_epoch != epoch:
            epoch = step_epoch
            order = epoch_permutation(data_seed, epoch, n, device)
        index = order[offset * batch : (offset + 1) * batch]
        xb, yb = x_all[index], y_all[index]

        if autocast_dtype is None:
            loss = F.cross_entropy(model(xb), yb)
        else:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if masked_params:
            with torch.no_grad():
                torch._foreach_mul_(masked_params, mask_values)
        loss_acc += loss.detach()
        loss_count += 1

        done = step + 1
        state.step = done
        if done % train_config.eval_every == 0 or done == end:
            train_loss = loss_acc.item() / loss_count
            loss_acc.zero_()
            loss_count = 0
            state.history.append(eval_record(model, data, state, train_loss))
            if hooks:
                hooks.on_eval(state)
            if state.diverged:
                break
        if hooks and (done in capture_steps or (done % train_config.checkpoint_every == 0 and done < end)):
            # the state is copied to the host anyway: check it first, never save NaN
            loss_sum, finite = torch.stack([loss_acc, finite_flag(list(params.values())).to(device)]).tolist()
            if not math.isfinite(loss_sum) or finite != 1.0:
                state.diverged = "training loss or weights"
                break
            if done in capture_steps:
                hooks.on_capture(state)
            if done % train_config.checkpoint_every == 0 and done < end:
                state.loss_sum, state.loss_count = loss_sum, loss_count
                hooks.on_checkpoint(state)

    state.loss_sum, state.loss_count = 0.0, 0
    return state


def last_finite(history: list[dict[str, float | None]]) -> dict[str, float | None] | None:
    """The last evaluation with finite losses (what a diverged unit reached before diverging)."""
    return next((r for r in reversed(history) if not non_finite(r)), None)


def early_stop(history: list[dict[str, float]]) -> dict[str, float]:
    """The evaluation with minimum validation loss (earliest on ties): the paper's early-stopping point."""
    best = min(history, key=lambda r: (r["val_loss"], r["step"]))
    return best


def summarize_history(history: list[dict[str, float]]) -> dict[str, float]:
    """Early-stopping iteration and the accuracies there and at the end of training."""
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


