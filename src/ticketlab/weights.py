"""A model's weights as a flat name -> tensor dict, with tied parameters stored once.

``state_dict()`` lists a tied tensor under each of its names, which safetensors refuses to
save (shared storage) and which would give one tensor two masks. Here every parameter appears
once, under its canonical name (the first ``named_parameters`` yields), followed by the
persistent buffers; loading fills the aliases back in by tying, not by copying.
"""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.roles import tied_aliases


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters (each once) and persistent buffers, detached (not copied)."""
    aliases = tied_aliases(model)
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items() if k not in aliases}


def cloned_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state_of(model).items()}


def load_state(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load ``weights`` (as ``state_of`` gives them); a missing or unexpected name is a bug."""
    aliases = tied_aliases(model)
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if k not in aliases]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"weights do not fit the model: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
