"""A pruning method and a control arm as a user would add them: one file, named by import path."""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.arms.base import ArmContext, StartPoint
from ticketlab.pruning.base import MaskContext, Need
from ticketlab.arms.ticket import rewound_start
from ticketlab.pruning.magnitude import count_to_prune


class RandomAtInit:
    """Random pruning at initialisation: needs no training, so every level's mask exists at once."""

    name = "random_at_init"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def next_mask(self, ctx: MaskContext) -> Mask:
        generator = torch.Generator().manual_seed(ctx.seed * 1000 + ctx.level)
        out = {}
        for name, keep in ctx.previous.items():
            flat = keep.flatten().clone()
            kept = flat.nonzero().squeeze(1)
            drop = kept[torch.randperm(kept.numel(), generator=generator)[: count_to_prune(0.2, kept.numel())]]
            flat[drop] = False
            out[name] = flat.view_as(keep)
        return Mask(out)


class SignFlip:
    """A control arm: the ticket's mask and initial magnitudes with every sign flipped."""

    name = "sign_flip"

    def mask(self, ticket: Mask, ctx: ArmContext) -> Mask:
        return ticket

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        start = rewound_start(mask, ctx)
        for name in mask:
            start.weights[name] = -start.weights[name]
        return start
