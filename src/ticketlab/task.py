"""The training step's task: how a model's output becomes a loss and a score.

Models return logits tensors, dicts, tuples or Hugging Face ``ModelOutput``s; ``prediction``
takes the ``logits`` entry (or the first tensor) of any of them. The default tasks are
classification (cross-entropy, accuracy) and regression (mean squared error, and as score
R² = 1 - MSE / variance of the training targets); ``Task(loss=..., score=...)`` takes the
user's own. ``check`` compares labels with the model's output before anything is trained, so
regression targets with cross-entropy are an error, not a silent 0.0.

Scores are "higher is better" and are what the verdict tables compare (they are stored under
the ``*_acc`` fields for every task, with the task's ``metric`` name in each summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F

from ticketlab.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def prediction(output: Any) -> torch.Tensor:
    """The prediction tensor in a model's output: a tensor, ``.logits``/``["logits"]``, or the first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise ConfigError(f"the model returned {type(output).__name__}, which holds no tensor; return logits or a dict with 'logits'")


def _accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.argmax(-1) == target).float().mean()


@dataclass
class Task:
    """Loss and score of one training step; ``kind`` picks the defaults, ``loss``/``score`` replace them."""

    kind: Literal["classification", "regression", "auto"] = "auto"
    loss: LossFn | None = None
    score: LossFn | None = None
    metric: str | None = None  # the score's name in tables (default: accuracy or r2)
    target_variance: float = field(default=1.0, repr=False)

    def bind(self, y_train: torch.Tensor) -> "Task":
        """This task with ``auto`` decided by the labels' dtype and R²'s variance measured."""
        kind = self.kind
        if kind == "auto":
            kind = "classification" if not torch.is_floating_point(y_train) else "regression"
        variance = float(y_train.float().var()) if kind == "regression" and y_train.numel() > 1 else 1.0
        return Task(kind, self.loss, self.score, self.metric, variance if variance > 0 else 1.0)

    @property
    def metric_name(self) -> str:
        return self.metric or ("accuracy" if self.kind == "classification" else "r2")

    def loss_of(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch (a scalar)."""
        if self.loss is not None:
            return self.loss(pred, target)
        if self.kind == "classification":
            return F.cross_entropy(pred.float().flatten(0, -2), target.flatten())
        return F.mse_loss(pred.float().reshape(target.shape), target.float())

    def score_of(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean score over the batch (a scalar; higher is better)."""
        if self.score is not None:
            return self.score(pred, target)
        if self.kind == "classification":
            return _accuracy(pred.flatten(0, -2), target.flatten())
        error = (pred.float().reshape(target.shape) - target.float()).pow(2).mean()
        return 1.0 - error / self.target_variance

    def check(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """ConfigError when the model's output and the labels cannot be a loss of this task."""
        if self.loss is not None:
            return
        if self.kind == "classification":
            if torch.is_floating_point(target):
                raise ConfigError("the labels are floating point (regression) but the task is classification "
                                  "(cross-entropy); use task='regression' or integer class labels")
            if pred.dim() < 2 or pred.shape[:-1].numel() != target.numel():
                raise ConfigError(f"classification needs outputs [batch, classes] for labels {list(target.shape)}, "
                                  f"got {list(pred.shape)}")
            if int(target.max()) >= pred.shape[-1] or int(target.min()) < 0:
                raise ConfigError(f"labels go up to {int(target.max())} but the model outputs {pred.shape[-1]} classes")
        elif pred.numel() != target.numel():
            raise ConfigError(f"regression needs one output per target: outputs {list(pred.shape)}, "
                              f"targets {list(target.shape)}")
