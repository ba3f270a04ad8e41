"""``torch.nn.utils.prune`` interop: a ticket's mask as ``weight_orig``/``weight_mask``, and back.

``prune.custom_from_mask(module, "weight", mask)`` moves the parameter ``weight`` to
``weight_orig``, adds the buffer ``weight_mask`` and recomputes ``weight = weight_orig * weight_mask``
before each forward. It *snapshots* the parameter at that moment: weights loaded into the
module afterwards with ``load_state_dict`` go to ``weight_orig`` only if the state dict already
uses the ``_orig`` names, and a plain ``weight`` entry is rejected or silently lands on the stale
attribute. So **load the ticket's weights first, then apply the mask** -- ``to_torch_prune`` does
it in that order and documents it here because nothing in PyTorch does.

A second trap: the hook recomputes ``weight`` only when the module's own forward runs.
``nn.MultiheadAttention`` reads ``out_proj.weight`` directly rather than calling ``out_proj``,
and a model may read any parameter through ``F.linear`` or tie it to another module (GPT-2's
``lm_head.weight`` *is* ``wte.weight``). So ``to_torch_prune`` zeroes the pruned weights
before reparametrising: ``weight_orig`` holds ``weight_orig * weight_mask`` already, and any
route to the parameter sees the ticket. (A *loaded* reparametrisation of a module whose forward
never runs stays stale all the same: the torch-prune export stores such weights plainly.)
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.usage import forward_with_hooks

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
    and ``p`` is recomputed as their product before every forward; ``p_orig`` holds the pruned
    weights as zeros (see the module's docstring for why). **Load the weights into the
    model before calling this**: the reparametrisation snapshots the current values into
    ``p_orig``. ``prune.remove(module, "p")`` makes a pruning permanent afterwards.
    """
    checked = _checked(model, mask)
    apply_mask(model, checked)  # weight_orig = weight_orig * mask: right even where no hook runs
    for name, keep in checked.items():
        module, local = _owner(model, name)
        prune.custom_from_mask(module, local, keep)
    return model


def from_torch_prune(model: nn.Module) -> Mask:
    """The mask of a model pruned with ``torch.nn.utils.prune``, keyed by plain parameter names.

    Reads every ``<p>_mask`` buffer that sits beside a ``<p>_orig`` parameter (any pruning
    method, ours or the user's own) and returns it under the name ``<p>`` would have unpruned,
    the name ticketlab's masks and checkpoints use. ConfigError when nothing is pruned.
    """
    tensors = reparametrised_masks(model)
    if not tensors:
        raise ConfigError("the model has no torch.nn.utils.prune masks (no <name>_mask buffer beside a <name>_orig parameter)")
    return Mask(tensors)


def reparametrised_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every ``<p>_mask`` buffer beside a ``<p>_orig`` parameter, as bool, keyed by ``<p>``'s full name."""
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
    return tensors


def hookless(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """The reparametrised parameters whose module's forward does not run, so whose pruning hook
    never refreshes them: every ``out_proj`` of an ``nn.MultiheadAttention``, and, given an
    ``example`` input, any other module that the model's forward on it never calls."""
    names = reparametrised_masks(model)
    owners = {name: name.rpartition(".")[0] for name in names}
    skipped = {f"{n}.out_proj" if n else "out_proj" for n, m in model.named_modules()
               if isinstance(m, nn.MultiheadAttention)}
    if example is not None:
        called: set[str] = set()
        modules = dict(model.named_modules())
        handles = [m.register_forward_pre_hook(lambda mod, args, n=n: called.add(n)) for n, m in modules.items()]
        forward_with_hooks(model, example, handles)
        skipped |= {owner for owner in owners.values() if owner not in called}
    return [name for name, owner in owners.items() if owner in skipped]
