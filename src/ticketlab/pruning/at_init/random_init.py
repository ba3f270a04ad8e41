"""Random pruning at initialisation: each level keeps a uniformly random subset of exactly
(1 - rate)^L of all prunable weights (global, so layers keep different counts by chance only in
proportion to their size). The baseline every method must beat."""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import ScoredAtInit
from ticketlab.pruning.base import MaskContext
from ticketlab.seeding import derive_seed


class RandomAtInit(ScoredAtInit):
    name = "random_init"

    def scores(self, ctx: MaskContext, dense: Mask) -> dict[str, torch.Tensor]:
        """Uniform noise from a generator seeded by replicate and level: the same mask on every rerun."""
        generator = torch.Generator().manual_seed(derive_seed(ctx.seed, "random_init", ctx.level))
        return {n: torch.rand(m.shape, generator=generator) for n, m in dense.items()}
