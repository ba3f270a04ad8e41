"""What the pruning-at-initialisation methods share: the sparsity of each level, and keeping
the top-scoring weights to reach it.

A method at initialisation prunes the network once, before any training, to a target
sparsity. Level L keeps exactly the number of weights IMP keeps after L rounds under the
experiment's prune settings, counted as IMP counts them (:func:`keep_counts`):

* ``global``: the layers matching ``prune.global_exclude`` are never pruned, as IMP never
  prunes them; the other layers keep IMP's global count, ranked together;
* ``layerwise``: a layer that a ``prune.layer_rates`` pattern names keeps exactly IMP's count
  for that layer at its rate (ranked within the layer); the other layers keep, together, the
  sum of IMP's counts for them (``rate``, and ``output_rate`` for the output layer).

So every method sits at the same sparsities as IMP in one table, and a layer the user pinned
(excluded, or given its own rate) is pinned for every method. Where the settings do not pin
a layer, scores are ranked *globally* across layers, as SNIP, GraSP and SynFlow do: choosing
how many weights each layer keeps is part of what these methods are (Frankle et al. 2021),
and ranking within layers would replace it with IMP's choice. Each level's mask is made from
scratch at initialisation (Frankle et al. 2021 compare them this way), not from the previous
level's mask: the masks need not be nested. Ties break by position (a stable sort), so counts
are exact and repeatable.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext, Need
from ticketlab.pruning.magnitude import count_to_prune, layer_rates

SCORE_BATCHES = 8  # prune.scoring = "training": the run's own first training batches, training mode
REFERENCE_EXAMPLES = 100  # prune.scoring = "reference": one batch of this many examples, eval mode


@dataclass(frozen=True)
class KeepCounts:
    """How many weights one level keeps, split the way IMP's settings split them.

    ``fixed``: layers whose count the settings decide on their own (excluded from global
    pruning: every weight; a ``layer_rates`` override: IMP's count at that rate) -> the count.
    ``ranked``: the other layers, ranked together to keep ``ranked_keep`` weights in all.
    """

    sizes: dict[str, int]
    fixed: dict[str, int]
    ranked: tuple[str, ...]
    ranked_keep: int

    @property
    def total(self) -> int:
        return sum(self.fixed.values()) + self.ranked_keep

    def part_of_the_way(self, progress: float) -> "KeepCounts":
        """The counts a fraction ``progress`` (0..1) of the way from dense, on an exponential
        schedule per group (SynFlow's iterative pruning); exactly these counts at 1."""
        def step(size: int, keep: int) -> int:
            return keep if progress >= 1 or size == 0 else round(size * (keep / size) ** progress)

        ranked_size = sum(self.sizes[n] for n in self.ranked)
        return KeepCounts(self.sizes, {n: step(self.sizes[n], k) for n, k in self.fixed.items()},
                          self.ranked, step(ranked_size, self.ranked_keep))


def _imp_rounds(size: int, rate: float, level: int) -> int:
    """What IMP keeps of ``size`` weights after ``level`` rounds at ``rate`` (its exact counts)."""
    for _ in range(level):
        size -= count_to_prune(rate, size)
    return size


def keep_counts(ctx: MaskContext) -> KeepCounts:
    """How level ``ctx.level`` keeps its weights: as many as IMP keeps after that many rounds,
    per pinned layer and in total over the rest (the same exact counts as ``magnitude_prune``;
    see ``pruning.magnitude`` and the module docstring)."""
    prune, sizes = ctx.config.prune, {n: m.numel() for n, m in ctx.previous.items()}
    if prune.strategy == "global":
        fixed = {n: s for n, s in sizes.items() if any(re.search(p, n) for p in prune.global_exclude)}
        ranked = tuple(n for n in sizes if n not in fixed)
        return KeepCounts(sizes, fixed, ranked, _imp_rounds(sum(sizes[n] for n in ranked), prune.rate, ctx.level))
    rates = layer_rates(list(sizes), prune, ctx.output_layer)
    pinned = [n for n in sizes if any(re.search(p, n) for p in prune.layer_rates)]
    fixed = {n: _imp_rounds(sizes[n], rates[n], ctx.level) for n in pinned}
    ranked = tuple(n for n in sizes if n not in fixed)
    return KeepCounts(sizes, fixed, ranked, sum(_imp_rounds(sizes[n], rates[n], ctx.level) for n in ranked))


def keep_count(ctx: MaskContext) -> int:
    """How many prunable weights level ``ctx.level`` keeps in all (see :func:`keep_counts`)."""
    return keep_counts(ctx).total


def all_kept(ctx: MaskContext) -> Mask:
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


def keep_best(scores: dict[str, torch.Tensor], like: Mask, counts: KeepCounts) -> Mask:
    """A mask keeping the highest scores of ``like`` as ``counts`` splits them: each fixed layer
    its own count (ranked within the layer), the other layers ranked together."""
    kept: dict[str, torch.Tensor] = {}
    for name, count in counts.fixed.items():
        kept |= keep_top({name: scores[name]}, Mask({name: like[name]}), count).tensors
    if counts.ranked:
        ranked = Mask({n: like[n] for n in counts.ranked})
        kept |= keep_top({n: scores[n] for n in counts.ranked}, ranked, counts.ranked_keep).tensors
    return Mask({n: kept[n] for n in like})


def score_inputs(ctx: MaskContext) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The model and batches a data-dependent method (SNIP, GraSP) scores, as ``prune.scoring`` says.

    ``reference`` (the default) is what snip-public, GraSP's code and Synaptic-Flow do: one batch
    of :data:`REFERENCE_EXAMPLES` examples (the first of this replicate's data order) with the
    model in eval mode, so dropout and batch-norm statistics do not enter the scores.
    ``training`` scores :data:`SCORE_BATCHES` of the run's own training batches in training
    mode (ticketlab's choice before it followed the references).
    """
    if ctx.config.prune.scoring == "training":
        return ctx.model(), ctx.batches(SCORE_BATCHES)
    return ctx.model().eval(), ctx.batches(1, batch_size=REFERENCE_EXAMPLES)


class ScoredAtInit(ABC):
    """A one-shot method at initialisation: score every prunable weight, keep the best.

    Subclasses say only what they read (``needs``) and how they score (:meth:`scores`); the
    rest, starting dense and keeping IMP's counts as :func:`keep_best` splits them, is the
    same for each, so it lives here once.
    """

    name: str
    NEEDS: frozenset[Need] = frozenset({Need.INIT})

    def needs(self, level: int) -> set[Need]:
        return set(self.NEEDS)

    @abstractmethod
    def scores(self, ctx: MaskContext, dense: Mask) -> dict[str, torch.Tensor]:
        """A score for every entry of ``dense`` (higher: kept first)."""

    def next_mask(self, ctx: MaskContext) -> Mask:
        dense = all_kept(ctx)
        return keep_best(self.scores(ctx, dense), dense, keep_counts(ctx))

