"""Magnitude at initialisation: keep the largest initial weights, ranked globally. The
simplest baseline of Frankle et al. 2021."""

from __future__ import annotations

from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import dense_mask, keep_best, keep_counts
from ticketlab.pruning.base import MaskContext, Need


class MagnitudeAtInit:
    name = "magnitude_init"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def next_mask(self, ctx: MaskContext) -> Mask:
        init = ctx.init()
        dense = dense_mask(ctx)
        return keep_best({n: init[n].abs() for n in dense}, dense, keep_counts(ctx))
