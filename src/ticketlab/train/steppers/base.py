"""The :class:`Stepper` interface the loop drives, and what every stepper does around its
optimizer (set the learning rate, re-mask after a step)."""

from __future__ import annotations

from typing import Iterable

import torch


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

    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """[K] mean loss and [K] mean score over a shared evaluation set (no host sync)."""
        raise NotImplementedError

    def finite(self) -> torch.Tensor:
        """[K] float: 1.0 where every parameter of replicate k is finite (no host sync)."""
        raise NotImplementedError

    def sync(self, k: int) -> None:
        """Make replicate k's own model and optimizer hold its current state (before saving)."""

    def evaluate_weights(self, k: int, weights: dict[str, torch.Tensor],
                         batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
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
