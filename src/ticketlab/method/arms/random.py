"""Control "same lottery numbers, random structure": a random mask with exactly the ticket's
per-layer counts, from the ticket's starting point. If it matches the ticket, the structure
IMP found did not matter (random pruning at the same sparsity, as in the paper)."""

from __future__ import annotations

from ticketlab.masks import Mask
from ticketlab.method.arms.ticket import rewound_start
from ticketlab.method.base import ArmContext, StartPoint
from ticketlab.pruning import random_mask_like


class RandomMaskArm:
    name = "random"

    def mask(self, ticket: Mask, ctx: ArmContext) -> Mask:
        return random_mask_like(ticket, ctx.seed("random"))

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        return rewound_start(mask, ctx)
