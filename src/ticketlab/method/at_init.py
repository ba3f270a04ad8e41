"""What the pruning-at-initialisation methods share: the sparsity of each level, and keeping
the top-scoring weights to reach it.

A method at initialisation prunes the network once, before any training, to a target
sparsity. Here level L's target is the fraction IMP keeps after L rounds, (1 - rate)^L of the
prunable weights, so every method sits at the same sparsities as IMP in one table. Each level's
mask is made from scratch at initialisation (Frankle et al. 2021 compare them this way), not
from the previous level's mask: the masks need not be nested. Scores are ranked *globally*
across layers, as SNIP, GraSP and SynFlow do; ties break by position (a stable sort), so counts
are exact and repeatable.
"""

from __future__ import annotations

import math

import torch

from ticketlab.masks import Mask
from ticketlab.method.base import MaskContext

SCORE_BATCHES = 8  # training batches a data-dependent method scores on (SNIP, GraSP)


def keep_fraction(ctx: MaskContext) -> float:
    """The fraction of prunable weights level ``ctx.level`` keeps: IMP's after that many rounds."""
    return (1.0 - ctx.config.prune.rate) ** ctx.level


def dense_mask(ctx: MaskContext) -> Mask:
    """Every prunable weight kept: where a method at initialisation starts, whatever the level."""
    return Mask({n: torch.ones_like(m) for n, m in ctx.previous.items()})


def keep_top(scores: dict[str, torch.Tensor], like: Mask, fraction: float) -> Mask:
    """A mask keeping the ``fraction`` of all entries of ``like`` with the highest scores."""
    names = list(like)
    flat = torch.cat([scores[n].detach().flatten().double().cpu() for n in names])
    total = flat.numel()
    keep = min(total, max(0, math.floor(fraction * total + 0.5)))
    order = torch.sort(flat, descending=True, stable=True).indices
    kept = torch.zeros(total, dtype=torch.bool)
    kept[order[:keep]] = True
    parts = kept.split([like[n].numel() for n in names])
    return Mask({n: part.view_as(like[n]) for n, part in zip(names, parts)})
