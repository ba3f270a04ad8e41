"""The :class:`Stepper` interface the loop drives, and what every stepper does around its
optimizer (set the learning rate, re-mask after a step)."""

from __future__ import annotations

from typing import Iterable, Protocol

import torch


class Stepper(Protocol):
    """Computes steps and evaluations of ``size`` replicates; the loop never sees a model."""

    size: int

    def set_lr(self, lr: float) -> None: ...

    def step(self, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One optimizer step of every replicate on its own batch, pruned weights re-masked after
        it; returns the [K] mean losses, detached (a 0-d tensor when K = 1). ``batch`` is [K, B] example indices into the in-memory
        training set, or (for streamed data, K = 1) an ``(inputs, labels)`` pair."""
        ...

    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """[K] mean loss and [K] mean score over a shared evaluation set (no host sync)."""
        ...

    def finite(self) -> torch.Tensor:
        """[K] float: 1.0 where every parameter of replicate k is finite (no host sync)."""
        ...

    def sync(self, k: int) -> None:
        """Make replicate k's own model and optimizer hold its current state (before saving)."""
        ...


class MaskedOptimizer:
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
