"""The :class:`Stepper` interface the loop drives, what every stepper does around its
optimizer (set the learning rate, re-mask after a step), and the evaluation loop they share
(:func:`mean_loss_and_score`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import torch
import torch.nn.functional as F
from torch.func import vmap

if TYPE_CHECKING:
    from ticketlab.train.task import Task

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class Stepper:
    """Computes steps and evaluations of ``size`` replicates; the loop never sees a model.

    A base class rather than a protocol so the loop never asks what a stepper can do: the
    optional capability (scoring other weights in place, ``evaluate_weights``) is declared by
    ``scores_other_weights``, and ``sync`` defaults to nothing for steppers whose replicate
    models always hold their own state.
    """

    size: int = 1
    scores_other_weights: bool = False  # True: ``evaluate_weights`` is implemented

    def set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def step(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One optimizer step of every replicate on its own batch, pruned weights re-masked after
        it; returns the [K] mean losses, detached (a 0-d tensor when K = 1). ``batch`` is [K, B]
        example indices into the in-memory training set, or (for streamed data, K = 1) an
        ``(inputs, labels)`` pair."""
        raise NotImplementedError

    def evaluate(self, batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
        """[K] mean loss and [K] mean score over a shared evaluation set (no host sync; steppers
        call :func:`mean_loss_and_score` with their own forward)."""
        raise NotImplementedError

    def finite(self) -> torch.Tensor:
        """[K] float: 1.0 where every parameter of replicate k is finite (no host sync)."""
        raise NotImplementedError

    def sync(self, k: int) -> None:
        """Make replicate k's own model and optimizer hold its current state (before saving)."""

    def evaluate_weights(self, k: int, weights: dict[str, torch.Tensor],
                         batches: Batches) -> tuple[torch.Tensor, torch.Tensor]:
        """Replicate k's [1] loss and score with ``weights`` (as ``weights.state_of`` gives them)
        in place of its own, which are left as they were. With it (and events that keep the
        early-stopping weights) the test split is scored once, at the end, on the saved
        early-stopped weights (see ``loop._record_evals``)."""
        raise NotImplementedError(f"{type(self).__name__} does not score other weights")


class MaskedOptimizer(Stepper):
    """What both steppers do around the optimizer: set the learning rate, re-mask after a step.

    ``masked`` are the pruned parameters (stacked or not) and ``mask_values`` their float masks.
    """

    optimizer: torch.optim.Optimizer
    masked: list[torch.Tensor]
    mask_values: list[torch.Tensor]

    def apply_masks_(self) -> None:
        if self.masked:
            with torch.no_grad():
                torch._foreach_mul_(self.masked, self.mask_values)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def descend(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss``, take one optimizer step, then re-mask: in this order for every
        masked stepper, so a pruned weight is back at exactly zero before anything reads it."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.apply_masks_()


def _summed(pred: torch.Tensor, target: torch.Tensor, task: Task | None,
            fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One model's summed loss and score over a batch: ``pred`` [N, ...], ``target`` [N, ...]."""
    if fast and pred.dim() == 2:
        return F.cross_entropy(pred, target, reduction="sum"), (pred.argmax(1) == target).sum()
    n = target.shape[0]
    return task.loss_of(pred, target) * n, task.score_of(pred, target) * n


def _summed_stacked(pred: torch.Tensor, target: torch.Tensor, task: Task | None,
                    fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """K replicates' [K] summed losses and scores over a shared batch: ``pred`` [K, N, ...]."""
    if fast and pred.dim() == 3:
        k = pred.shape[0]
        losses = F.cross_entropy(pred.transpose(1, 2), target.expand(k, -1), reduction="none").sum(1)
        return losses, (pred.argmax(2) == target).sum(1)
    n = target.shape[0]
    return (vmap(task.loss_of, in_dims=(0, None))(pred, target) * n,
            vmap(task.score_of, in_dims=(0, None))(pred, target) * n)


@torch.no_grad()
def mean_loss_and_score(batches: Batches, forward: Callable[[torch.Tensor], torch.Tensor], task: Task | None,
                        fast: bool, device: torch.device | str | None,
                        replicates: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """[K] mean loss and [K] mean score of ``forward`` over ``batches`` (K = 1 for one model,
    ``replicates`` for a stacked forward whose outputs are [K, N, ...]).

    Every stepper evaluates through this one loop: per-batch sums accumulated on ``device`` in
    float32 and divided once by the example count, without a host sync. Doing it the same way
    everywhere is what makes a stepper's numbers equal another's, and a re-score of stored
    weights equal the loop's. ``fast``: the task is the default cross-entropy classification, so
    2-d logits ([K, N, C] when stacked) take the fused ``F.cross_entropy`` sum and argmax
    accuracy instead of the task's per-batch means times the batch size.
    """
    shape = () if replicates is None else (replicates,)
    summed = _summed if replicates is None else _summed_stacked
    loss_total = torch.zeros(shape, device=device)
    score_total = torch.zeros(shape, device=device)
    count = 0
    for x, target in batches:
        pred = forward(x).float()
        count += target.shape[0]
        loss, score = summed(pred, target, task, fast)
        loss_total += loss
        score_total += score
    n = max(1, count)
    return (loss_total / n).view(-1), (score_total / n).view(-1)
