"""Magnitude at initialisation: keep the largest initial weights, ranked globally. The
simplest baseline of Frankle et al. 2021."""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.method.at_init import keep_fraction, keep_top
from ticketlab.method.base import MaskContext, Need


class MagnitudeAtInit:
    name = "magnitude_init"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def next_mask(self, ctx: MaskContext) -> Mask:
        init = ctx.init()
        dense = Mask({n: torch.ones_like(m) for n, m in ctx.previous.items()})
        return keep_top({n: init[n].abs() for n in dense}, dense, keep_fraction(ctx))
