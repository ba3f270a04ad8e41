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
