"""The dense stepper: one model, its optimizer and its float masks; the plain PyTorch step
(forward, loss, backward, optimizer step, one fused re-mask).

Pruned weights are kept at exactly zero by one fused ``_foreach_mul_`` after each optimizer step;
because Adam(W) and SGD update each weight from its own gradient and state only, the moments of
pruned weights never reach a surviving weight (and are zeroed whenever state is saved or
restored; see ``optim``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.data.batch import ModelInputs, call, take
from ticketlab.train.steppers.base import MaskedOptimizer, mean_loss_and_score
from ticketlab.train.task import Task, prediction
from ticketlab.weights import cloned_state, load_state


class SingleStepper(MaskedOptimizer):
    """One model trained by one optimizer; ``masks`` maps parameter names to float {0,1} tensors."""

    size = 1
    scores_other_weights = True

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, task: Task, data,
                 masks: dict[str, torch.Tensor] | None, autocast_dtype: torch.dtype | None = None):
        self.model, self.optimizer, self.task = model, optimizer, task
        self.x, self.y = getattr(data, "x_train", None), getattr(data, "y_train", None)  # None: streamed
        params = dict(model.named_parameters())
        self.params = list(params.values())
        self.masked = [params[n] for n in masks] if masks else []
        self.mask_values = list(masks.values()) if masks else []
        self.autocast = autocast_dtype
        self.fast_loss = task.kind == "classification" and task.loss is None
        self.apply_masks_()
        model.train()

    def _loss(self, xb: ModelInputs, yb: torch.Tensor) -> torch.Tensor:
        if self.task.model_loss:  # Task(loss="model"): the labels go in, the model's loss comes out
            return self.task.loss_from(call(self.model, xb, labels=yb), yb)
        pred = prediction(call(self.model, xb))
        if self.fast_loss and pred.dim() == 2:
            return F.cross_entropy(pred, yb)
        return self.task.loss_of(pred, yb)

    def step(self, batch) -> torch.Tensor:
        if isinstance(batch, tuple):
            xb, yb = batch
        else:
            rows = batch[0]
            xb, yb = take(self.x, rows), self.y[rows]
        if self.autocast is None:
            loss = self._loss(xb, yb)
        else:
            with torch.autocast(device_type=yb.device.type, dtype=self.autocast):
                loss = self._loss(xb, yb)
        self.descend(loss)
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        device = next(self.model.parameters()).device
        if self.task.model_loss:
            result = self._own_loss_and_score(batches, device)
        else:
            result = mean_loss_and_score(batches, lambda x: prediction(call(self.model, x)), self.task, self.fast_loss,
                                         device)
        self.model.train()
        return result

    def _own_loss_and_score(self, batches, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean_loss_and_score`` for the model's own loss: each batch's ``output.loss`` (a batch
        mean) weighted by its examples, and its score (``Task.model_score``)."""
        loss_total, score_total, count = torch.zeros((), device=device), torch.zeros((), device=device), 0
        for x, target in batches:
            output = call(self.model, x, labels=target)
            n = target.shape[0]
            count += n
            loss_total += self.task.loss_from(output, target).float() * n
            score_total += self.task.model_score(output, x, target) * n
        n = max(1, count)
        return (loss_total / n).view(-1), (score_total / n).view(-1)

    @torch.no_grad()
    def evaluate_weights(self, k: int, weights: dict[str, torch.Tensor], batches) -> tuple[torch.Tensor, torch.Tensor]:
        """``evaluate`` with ``weights`` loaded into the model, which gets its own back after."""
        own = cloned_state(self.model)
        load_state(self.model, weights)
        try:
            return self.evaluate(batches)
        finally:
            load_state(self.model, own)

    def finite(self) -> torch.Tensor:
        if not self.params:
            return torch.ones(1)
        return torch.stack([torch.isfinite(p.detach()).all() for p in self.params]).all().float().view(1)

    def sync(self, k: int) -> None:  # the model *is* the state
        return None
