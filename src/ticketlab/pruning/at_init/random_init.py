"""Random pruning at initialisation: each level keeps a uniformly random subset of exactly
(1 - rate)^L of all prunable weights (global, so layers keep different counts by chance only in
proportion to their size). The baseline every method must beat."""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import dense_mask, keep_best, keep_counts
from ticketlab.pruning.base import MaskContext, Need
from ticketlab.seeding import derive_seed


class RandomAtInit:
    name = "random_init"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def next_mask(self, ctx: MaskContext) -> Mask:
        generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "random_init", ctx.level))
        dense = dense_mask(ctx)
        scores = {n: torch.rand(m.shape, generator=generator) for n, m in dense.items()}
        return keep_best(scores, dense, keep_counts(ctx))
