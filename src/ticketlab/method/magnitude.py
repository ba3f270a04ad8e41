"""Iterative magnitude pruning (the paper's method): level L's mask removes the smallest-magnitude
survivors of level L-1's *trained* ticket, ``prune.rate`` per layer (or globally)."""

from __future__ import annotations

from ticketlab.masks import Mask
from ticketlab.method.base import MaskContext, Need
from ticketlab.pruning import magnitude_prune


class MagnitudePruning:
    name = "magnitude"

    def needs(self, level: int) -> set[Need]:
        return {Need.PREVIOUS_TRAINED}

    def next_mask(self, ctx: MaskContext) -> Mask:
        output = ctx.plan.output if ctx.plan else None
        return magnitude_prune(ctx.trained(ctx.level - 1), ctx.previous, ctx.config.prune, output)
