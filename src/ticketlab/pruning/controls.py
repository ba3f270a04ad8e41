"""Masks for the control arms, which must match the ticket's per-layer sparsity exactly.

If a control with the same number of weights per layer trains as well as the ticket, the
ticket's *structure* was not special; these masks make that comparison fair.
"""

from __future__ import annotations

import torch

from ticketlab.masks import Mask


def _permuted(mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, keep in mask.items():
        flat = keep.flatten().cpu()
        out[name] = flat[torch.randperm(flat.numel(), generator=generator)].view_as(keep).to(keep.device)
    return out


def random_mask_like(mask: Mask, seed: int) -> Mask:
    """A uniformly random mask with exactly the same number of kept weights per layer.

    Drawn fresh from ``seed`` (not nested with earlier levels): random pruning at each level's
    sparsity, as in the paper's random-pruning baseline. (Permuting the ticket's mask within a
    layer draws from exactly this distribution, which is why there is no "shuffled mask" arm.)
    """
    generator = torch.Generator().manual_seed(seed)
    return Mask(_permuted(mask, generator))
