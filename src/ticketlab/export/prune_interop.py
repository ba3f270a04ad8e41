"""``torch.nn.utils.prune`` interop: a ticket's mask as ``weight_orig``/``weight_mask``, and back.

``prune.custom_from_mask(module, "weight", mask)`` moves the parameter ``weight`` to
``weight_orig``, adds the buffer ``weight_mask`` and recomputes ``weight = weight_orig * weight_mask``
before each forward. It *snapshots* the parameter at that moment: weights loaded into the
module afterwards with ``load_state_dict`` go to ``weight_orig`` only if the state dict already
uses the ``_orig`` names, and a plain ``weight`` entry is rejected or silently lands on the stale
attribute. So **load the ticket's weights first, then apply the mask** -- ``to_torch_prune`` does
it in that order and documents it here because nothing in PyTorch does.

A second trap: ``nn.MultiheadAttention`` reads ``out_proj.weight`` (and ``in_proj_weight``)
directly rather than calling ``out_proj``'s forward, so the pre-forward hook that recomputes
``weight`` never runs for it. The masked value computed when the mask is applied is right, but
training ``weight_orig`` afterwards does not reach the attention. Exported tickets are for
inference, where this is harmless; don't fine-tune through the reparametrisation there.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab.errors import ConfigError
from ticketlab.masks import Mask

_ORIG, _MASK = "_orig", "_mask"


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding parameter ``name`` and the parameter's local name."""
    path, _, local = name.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        raise ConfigError(f"the mask names {name!r}, which this model does not have") from None
    return module, local


def _checked(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mask's entries as bool tensors, after checking each names a parameter of that shape."""
    params = dict(model.named_parameters())
    out = {}
    for name, keep in mask.items():
        if name not in params:
            raise ConfigError(f"the mask names {name!r}, which is not a parameter of this model "
                              f"(is the mask already applied with torch.nn.utils.prune?)")
        if tuple(keep.shape) != tuple(params[name].shape):
            raise ConfigError(f"mask {name!r} has shape {tuple(keep.shape)} but the parameter has "
                              f"{tuple(params[name].shape)}")
        out[name] = keep.to(device=params[name].device, dtype=torch.bool)
    return out


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned weights of ``model`` in place (plain tensors, no hooks); returns ``model``.

    The simplest export: the same architecture, the pruned weights exactly zero. A later
    optimizer step would revive them, which is why training re-masks after every step.
    """
    params = dict(model.named_parameters())
    for name, keep in _checked(model, mask).items():
        params[name].mul_(keep.to(params[name].dtype))
    return model


def to_torch_prune(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """Reparametrise ``model`` in place with ``prune.custom_from_mask``; returns ``model``.

    Each masked parameter ``p`` becomes ``p_orig`` (parameter) and ``p_mask`` (float buffer),
    and ``p`` is recomputed as their product before every forward. **Load the weights into the
    model before calling this**: the reparametrisation snapshots the current values into
    ``p_orig``. ``prune.remove(module, "p")`` makes a pruning permanent afterwards.
    """
    for name, keep in _checked(model, mask).items():
        module, local = _owner(model, name)
        prune.custom_from_mask(module, local, keep)
    return model


def from_torch_prune(model: nn.Module) -> Mask:
    """The mask of a model pruned with ``torch.nn.utils.prune``, keyed by plain parameter names.

    Reads every ``<p>_mask`` buffer that sits beside a ``<p>_orig`` parameter (any pruning
    method, ours or the user's own) and returns it under the name ``<p>`` would have unpruned,
    the name ticketlab's masks and checkpoints use. ConfigError when nothing is pruned.
    """
    tensors: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        local_params = dict(module.named_parameters(recurse=False))
        for buffer_name, buffer in module.named_buffers(recurse=False):
            if not buffer_name.endswith(_MASK):
                continue
            plain = buffer_name[: -len(_MASK)]
            if plain + _ORIG not in local_params:
                continue
            full = f"{module_name}.{plain}" if module_name else plain
            tensors[full] = buffer.detach().to("cpu").bool().clone()
    if not tensors:
        raise ConfigError("the model has no torch.nn.utils.prune masks (no <name>_mask buffer beside a <name>_orig parameter)")
    return Mask(tensors)
