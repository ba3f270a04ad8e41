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


def shuffled_mask(mask: Mask, seed: int) -> Mask:
    """The ticket's mask with its entries permuted within each layer (same counts, new positions).

    The same draw as :func:`random_mask_like`; the two arms differ in their seed stream and in
    what they claim in the report (structure destroyed vs random pruning at equal sparsity).
    """
    return random_mask_like(mask, seed)


def random_mask_like(mask: Mask, seed: int) -> Mask:
    """A uniformly random mask with exactly the same number of kept weights per layer.

    Drawn fresh from ``seed`` (not nested with earlier levels): random pruning at each level's
    sparsity, as in the paper's random-pruning baseline. For a single mask a uniform random
    permutation of the kept positions is the same distribution as a shuffle; the arms differ in
    which seed stream they draw from and in their meaning in the report.
    """
    generator = torch.Generator().manual_seed(seed)
    return Mask(_permuted(mask, generator))
