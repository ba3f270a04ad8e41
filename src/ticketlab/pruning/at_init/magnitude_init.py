"""Magnitude at initialisation: keep the largest initial weights, ranked globally. The
simplest baseline of Frankle et al. 2021."""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import ScoredAtInit
from ticketlab.pruning.base import MaskContext


class MagnitudeAtInit(ScoredAtInit):
    name = "magnitude_init"

    def scores(self, ctx: MaskContext, dense: Mask) -> dict[str, torch.Tensor]:
        init = ctx.init()
        return {n: init[n].abs() for n in dense}
