"""The training step's task: how a model's output becomes a loss and a score.

Models return logits tensors, dicts, tuples or Hugging Face ``ModelOutput``s; ``prediction``
takes the ``logits`` entry (or the first tensor) of any of them. The default tasks are
classification (cross-entropy, accuracy) and regression (mean squared error, and as score
R² = 1 - MSE / variance of the training targets); ``Task(loss=..., score=...)`` takes the
user's own. ``check`` compares labels with the model's output before anything is trained, so
regression targets with cross-entropy are an error, not a silent 0.0.

``Task(loss="model")`` trains on the model's own loss: the labels go to its forward as
``labels=`` (as Hugging Face models take them) and its output's ``loss`` (a ``ModelOutput``
attribute or a dict entry) is the loss; a causal LM given ``labels = input_ids`` shifts them
itself, and its default score is then the next-token accuracy (``logits[:, :-1]`` against
``labels[:, 1:]``, positions labelled -100 left out). Only the dense stepper trains it.

Scores are "higher is better" and are what the verdict tables compare (they are stored under
the ``*_acc`` fields for every task, with the task's ``metric`` name in each summary).
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
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
    loss: LossFn | Literal["model"] | None = None  # "model": the model's own output.loss
    score: LossFn | None = None
    metric: str | None = None  # the score's name in tables (default: accuracy or r2)
    target_variance: float = field(default=1.0, repr=False)
    #: the user's name for this version of the loss and score: replaces fingerprinting their code
    version: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.loss, str) and self.loss != "model":
            raise ConfigError(f"Task(loss=...) takes a function loss(output, labels) or 'model' (the model's own "
                              f"loss), got {self.loss!r}")

    @property
    def model_loss(self) -> bool:
        """Whether the loss is the model's own (``Task(loss="model")``)."""
        return isinstance(self.loss, str) and self.loss == "model"

    def output_of(self, model: Any, x: Any, y: torch.Tensor) -> Any:
        """The model's output on ``x`` (one tensor, a tuple or a dict: ``data.batch.call``); the
        labels go in as ``labels=`` for the model's own loss."""
        from ticketlab.data.batch import call

        return call(model, x, labels=y) if self.model_loss else call(model, x)

    def loss_from(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        """The batch's mean loss from the model's output: its own ``loss``, or the task's."""
        if not self.model_loss:
            return self.loss_of(prediction(output), target)
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if not isinstance(loss, torch.Tensor):
            raise ConfigError(f"Task(loss='model') needs the model to return a loss (a dict or ModelOutput with "
                              f"'loss' when called with labels=), got {type(output).__name__} without one")
        return loss

    def model_score(self, output: Any, x: Any, target: torch.Tensor) -> torch.Tensor:
        """The score under the model's own loss: with labels equal to the inputs (the causal-LM
        convention: the model shifted them) the next-token accuracy, else ``score_of``."""
        from ticketlab.data.batch import token_ids

        pred = prediction(output).float()
        x = token_ids(x)
        if (self.score is None and x.shape == target.shape and target.dim() >= 2
                and pred.dim() == target.dim() + 1 and torch.equal(x, target)):
            return _next_token_accuracy(pred, target)
        return self.score_of(pred, target)

    def bind(self, y_train: torch.Tensor) -> "Task":
        """This task with ``auto`` decided by the labels' dtype and R²'s variance measured."""
        kind = self.kind
        if kind == "auto":
            kind = _auto_kind(y_train)
        variance = float(y_train.float().var()) if kind == "regression" and y_train.numel() > 1 else 1.0
        return Task(kind, self.loss, self.score, self.metric, variance if variance > 0 else 1.0, self.version)

    def identity(self, y_train: torch.Tensor) -> tuple[str, str] | None:
        """``(description, fingerprint)`` of this task when it is not the default for these
        labels, else None: what names an experiment trained with it, so that a changed loss or
        score is a new experiment rather than the old one's results.

        A loss or score with an import path is identified by it (name a ``version`` when its code
        changes); one without (a lambda, a function in ``__main__`` or a notebook) by a
        fingerprint of its code and of the values it reads. ``version`` replaces fingerprints.
        """
        parts = {"loss": None if self.model_loss else self.loss, "score": self.score}
        described = {k: _label(v) for k, v in parts.items() if v is not None}
        if self.model_loss:
            described["loss"] = "model"
        if self.metric is not None:
            described["metric"] = self.metric
        if self.kind != "auto" and self.kind != _auto_kind(y_train):
            described["kind"] = self.kind
        if self.version is not None:
            described["version"] = self.version
        if not described:
            return None
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
        if self.version is None:
            for name in sorted(k for k, v in parts.items() if v is not None):
                digest.update(name.encode())
                _digest_value(digest, parts[name], depth=0)
        return ", ".join(f"{k}={v}" for k, v in sorted(described.items())), digest.hexdigest()[:16]

    @property
    def metric_name(self) -> str:
        return self.metric or ("accuracy" if self.kind == "classification" else "r2")

    def check_loss_computable(self) -> None:
        """ConfigError unless the loss can be computed from a prediction and labels alone, as
        pruning methods that score weights by the loss's gradients (SNIP, GraSP) compute it."""
        if self.model_loss:
            raise ConfigError("Task(loss='model') is the model's own loss, which only the dense stepper computes; "
                              "pruning methods that compute a loss themselves (snip, grasp) need Task(loss=fn)")

    def loss_of(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch (a scalar)."""
        self.check_loss_computable()
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


def _next_token_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Accuracy of position t's prediction against label t + 1, labels -100 left out."""
    labels = target[:, 1:]
    kept = labels != -100
    right = (pred[:, :-1].argmax(-1) == labels) & kept
    return right.sum().float() / kept.sum().clamp(min=1)


def _auto_kind(y_train: torch.Tensor) -> str:
    return "classification" if not torch.is_floating_point(y_train) else "regression"


def _label(obj: Any) -> str:
    """An import path for ``obj`` (or its class, for a loss object), else ``python:<name>``."""
    from ticketlab.plugins import object_label

    if isinstance(obj, functools.partial):
        return f"partial({_label(obj.func)})"
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        return object_label(obj)
    return object_label(type(obj)) + "()"


_MAX_DEPTH = 4  # how far into closures and helper functions a code fingerprint follows


def _digest_value(digest: "hashlib._Hash", value: Any, depth: int) -> None:
    """Add what ``value`` computes with to ``digest``: plain values and tensors by content, a
    function without an import path by its code, defaults, closure and the globals it reads, an
    importable function or class by its import path, a loss object by its class and settings."""
    if depth > _MAX_DEPTH:
        digest.update(f"<{type(value).__name__}>".encode())
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        digest.update(repr(value).encode())
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}[".encode())
        for item in value:
            _digest_value(digest, item, depth + 1)
    elif isinstance(value, dict):
        digest.update(b"dict{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _digest_value(digest, value[key], depth + 1)
    elif isinstance(value, types.ModuleType):
        digest.update(f"module:{value.__name__}".encode())
    elif isinstance(value, functools.partial):
        digest.update(b"partial")
        for item in (value.func, value.args, value.keywords):
            _digest_value(digest, item, depth + 1)
    elif isinstance(value, types.MethodType):
        _digest_value(digest, value.__func__, depth + 1)
        _digest_value(digest, value.__self__, depth + 1)
    elif isinstance(value, types.FunctionType):
        _digest_function(digest, value, depth)
    elif isinstance(value, (types.BuiltinFunctionType, type)):
        digest.update(_label(value).encode())
    else:  # a callable object (a torch loss module): its class and its settings and buffers
        digest.update(_label(value).encode())
        state = value.state_dict() if isinstance(value, torch.nn.Module) else {}
        settings = {k: v for k, v in vars(value).items() if not k.startswith("_")} if hasattr(value, "__dict__") else {}
        _digest_value(digest, {**settings, **state}, depth + 1)


def _digest_function(digest: "hashlib._Hash", fn: types.FunctionType, depth: int) -> None:
    label = _label(fn)
    digest.update(label.encode())
    if not label.startswith("python:"):
        return  # its import path names it (and its version, where the user gives one)
    _digest_code(digest, fn.__code__)
    _digest_value(digest, (fn.__defaults__, fn.__kwdefaults__), depth + 1)
    cells = [cell.cell_contents for cell in fn.__closure__ or () if _filled(cell)]
    _digest_value(digest, cells, depth + 1)
    read = {name: fn.__globals__[name] for name in _global_names(fn.__code__) if name in fn.__globals__}
    _digest_value(digest, read, depth + 1)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a variable not yet assigned)
        return False
    return True


def _digest_code(digest: "hashlib._Hash", code: types.CodeType) -> None:
    """The bytecode, constants and names of ``code`` (nested functions included), not its file
    or line numbers: moving a function in its file does not rename the experiment."""
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _digest_code(digest, const)
        else:
            digest.update(repr(const).encode())


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_global_names(const))
    return sorted(set(names))


def code_identity(fn: Any) -> str:
    """``label@fingerprint`` of a user's function (the training loop ``run(train=...)`` takes):
    its import path or ``python:<name>``, and a fingerprint of its code, closure and the globals
    it reads, as a custom loss is identified, so a changed function names a new experiment."""
    digest = hashlib.sha256()
    _digest_value(digest, fn, depth=0)
    return f"{_label(fn)}@{digest.hexdigest()[:16]}"
