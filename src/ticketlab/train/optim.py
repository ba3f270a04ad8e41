"""Optimizers, the step-based learning-rate schedule, and optimizer state as named tensors.

The schedule is a pure function of the iteration, so "the schedule position at k" is just
k: rewinding and resuming need no scheduler object. Optimizer state is stored keyed by
*parameter name* (``exp_avg/layers.0.weight``), so it can be saved as safetensors, masked,
and restored into a fresh optimizer.
"""

from __future__ import annotations

import bisect
import functools
import inspect
from typing import Iterable

import torch
from torch import nn

from ticketlab.config import TrainConfig


def make_optimizer(params: Iterable[torch.Tensor], train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW (fused where this torch supports it on ``device``), or SGD with momentum.

    ``weight_decay`` is L2 in the gradient for Adam and SGD and decoupled for AdamW.
    """
    params = list(params)
    if train.optimizer in ("adam", "adamw"):
        cls = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
        kwargs: dict = {"lr": train.lr, "weight_decay": train.weight_decay}
        if supports_fused(cls, device):
            kwargs["fused"] = True
        return cls(params, **kwargs)
    kwargs = {"lr": train.lr, "momentum": train.momentum, "weight_decay": train.weight_decay}
    if supports_fused(torch.optim.SGD, device) and train.momentum > 0:
        kwargs["fused"] = True
    return torch.optim.SGD(params, **kwargs)


@functools.lru_cache(maxsize=None)
def supports_fused(cls: type, device: torch.device) -> bool:
    """Whether ``cls(fused=True)`` works on ``device`` in this torch (probed once per process)."""
    if "fused" not in inspect.signature(cls).parameters:
        return False
    try:
        probe = torch.zeros(1, device=device, requires_grad=True)
        cls([probe], lr=0.1, fused=True)
        return True
    except (RuntimeError, ValueError):
        return False


def learning_rate(train: TrainConfig, step: int) -> float:
    """Learning rate at iteration ``step``: linear warmup, then ``gamma`` at each milestone."""
    lr = train.lr * train.gamma ** bisect.bisect_right(train.milestones, step)
    if train.warmup_iterations and step < train.warmup_iterations:
        lr *= (step + 1) / train.warmup_iterations
    return lr


def lr_change_points(train: TrainConfig, start: int, end: int) -> list[int]:
    """Iterations in [start, end) where the learning rate may change, so the loop sets it only there."""
    points = {start}
    points.update(range(start, min(end, train.warmup_iterations + 1)))
    points.update(m for m in train.milestones if start <= m < end)
    return sorted(points)


def optimizer_state_tensors(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as ``{"<state key>/<param name>": tensor}``."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            out[f"{key}/{names[id(param)]}"] = tensor.detach().clone()
    return out


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Restore state saved by :func:`optimizer_state_tensors` into a fresh optimizer."""
    params = dict(model.named_parameters())
    for qualified, value in tensors.items():
        key, name = qualified.split("/", 1)
        param = params[name]
        if key == "step":
            # Adam keeps its step as a tensor; fused/capturable variants want it on the param's device.
            value = value.to(device=param.device if _fused(optimizer) else "cpu", dtype=torch.float32)
        else:
            value = value.to(device=param.device, dtype=param.dtype)
        optimizer.state[param][key] = value.clone()


def _fused(optimizer: torch.optim.Optimizer) -> bool:
    return bool(optimizer.defaults.get("fused")) or bool(optimizer.defaults.get("capturable"))


def mask_optimizer_state_(tensors: dict[str, torch.Tensor], mask: dict[str, torch.Tensor]) -> None:
    """Zero the moments of pruned weights in saved optimizer state, so a rewound ticket starts clean."""
    for qualified, value in tensors.items():
        key, name = qualified.split("/", 1)
        if key != "step" and name in mask:
            value.mul_(mask[name].to(value.dtype))
