"""Control "same lottery numbers, random structure": a random mask with exactly the ticket's
per-layer counts, from the ticket's starting point. If it matches the ticket, the structure
IMP found did not matter (random pruning at the same sparsity, as in the paper)."""

from __future__ import annotations

import torch

from ticketlab.arms.base import ArmContext, StartPoint
from ticketlab.arms.ticket import rewound_start
from ticketlab.masks import Mask


class RandomMaskArm:
    name = "random"

    def mask(self, ticket: Mask, ctx: ArmContext) -> Mask:
        return random_mask_like(ticket, ctx.seed("random"))

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        return rewound_start(mask, ctx)


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
