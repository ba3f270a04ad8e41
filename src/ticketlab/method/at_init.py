"""What the pruning-at-initialisation methods share: the sparsity of each level, and keeping
the top-scoring weights to reach it.

A method at initialisation prunes the network once, before any training, to a target
sparsity. Here level L's target is exactly the number of weights IMP keeps after L rounds under
the experiment's prune settings (``rate``, and ``output_rate`` for the output layer when
layerwise), so every method sits at the same sparsities as IMP in one table. Each level's
mask is made from scratch at initialisation (Frankle et al. 2021 compare them this way), not
from the previous level's mask: the masks need not be nested. Scores are ranked *globally*
across layers, as SNIP, GraSP and SynFlow do; ties break by position (a stable sort), so counts
are exact and repeatable.
"""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.method.base import MaskContext
from ticketlab.pruning import count_to_prune, layer_rates

SCORE_BATCHES = 8  # training batches a data-dependent method scores on (SNIP, GraSP)


def keep_count(ctx: MaskContext) -> int:
    """How many prunable weights level ``ctx.level`` keeps: as many as IMP keeps after that many
    rounds (the same exact counts as ``magnitude_prune``; see ``pruning.magnitude``)."""
    prune, sizes = ctx.config.prune, {n: m.numel() for n, m in ctx.previous.items()}
    if prune.strategy == "global":
        total = sum(sizes.values())
        for _ in range(ctx.level):
            total -= count_to_prune(prune.rate, total)
        return total
    rates = layer_rates(list(sizes), prune, ctx.plan.output if ctx.plan else None)
    remaining = dict(sizes)
    for _ in range(ctx.level):
        remaining = {n: r - count_to_prune(rates[n], r) for n, r in remaining.items()}
    return sum(remaining.values())


def dense_mask(ctx: MaskContext) -> Mask:
    """Every prunable weight kept: where a method at initialisation starts, whatever the level."""
    return Mask({n: torch.ones_like(m) for n, m in ctx.previous.items()})


def keep_top(scores: dict[str, torch.Tensor], like: Mask, count: int) -> Mask:
    """A mask keeping the ``count`` entries of ``like`` with the highest scores (all layers ranked together)."""
    names = list(like)
    flat = torch.cat([scores[n].detach().flatten().double().cpu() for n in names])
    total = flat.numel()
    keep = min(total, max(0, count))
    order = torch.sort(flat, descending=True, stable=True).indices
    kept = torch.zeros(total, dtype=torch.bool)
    kept[order[:keep]] = True
    parts = kept.split([like[n].numel() for n in names])
    return Mask({n: part.view_as(like[n]) for n, part in zip(names, parts)})
