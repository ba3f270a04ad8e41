"""Iterative magnitude pruning (the paper's method): level L's mask removes the smallest-magnitude
survivors of level L-1's *trained* ticket, ``prune.rate`` per layer (or globally).

The kernel (:func:`magnitude_prune`, with :func:`count_to_prune` and :func:`layer_rates`) lives
here beside the method; one-shot pruning and the methods at initialisation count with it too, so
every method keeps exactly the number of weights IMP keeps at the same level."""

from __future__ import annotations

import math
import re

import torch

from ticketlab.config import PruneConfig
from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext, Need


class MagnitudePruning:
    name = "magnitude"

    def needs(self, level: int) -> set[Need]:
        return {Need.PREVIOUS_TRAINED}

    def next_mask(self, ctx: MaskContext) -> Mask:
        return pruned_by_trained(ctx, ctx.level - 1)


def pruned_by_trained(ctx: MaskContext, level: int) -> Mask:
    """``ctx.previous`` pruned one round further by the magnitudes of level ``level``'s trained
    ticket: IMP with ``level`` one below the mask's, one-shot pruning with the dense level 0."""
    return magnitude_prune(ctx.trained(level), ctx.previous, ctx.config.prune, ctx.output_layer)


def count_to_prune(rate: float, remaining: int) -> int:
    """How many of ``remaining`` weights a round at ``rate`` removes (round half up)."""
    return min(remaining, math.floor(rate * remaining + 0.5))


def layer_rates(names: list[str], prune: PruneConfig, output: str | None = None) -> dict[str, float]:
    """The pruning rate of each prunable parameter under the layerwise strategy.

    ``rate`` for every layer, ``output_rate`` for the output layer ``output`` (the paper's
    LeNet setting; the last name when the output layer is not known, as in experiments older
    than the parameter plan), and the first matching ``layer_rates`` pattern overrides both.
    """
    rates = {name: prune.rate for name in names}
    output = output if output in rates else (names[-1] if names else None)
    if prune.output_rate is not None and output is not None:
        rates[output] = prune.output_rate
    for name in names:
        for pattern, rate in prune.layer_rates.items():
            if re.search(pattern, name):
                rates[name] = rate
                break
    return rates


def _prune_smallest(scores: torch.Tensor, keep: torch.Tensor, count: int) -> torch.Tensor:
    """New keep-mask with the ``count`` smallest-score kept entries removed (flat tensors)."""
    kept_positions = keep.nonzero().squeeze(1)
    order = torch.sort(scores[kept_positions], stable=True).indices
    new_keep = keep.clone()
    new_keep[kept_positions[order[:count]]] = False
    return new_keep


@torch.no_grad()
def magnitude_prune(weights: dict[str, torch.Tensor], mask: Mask, prune: PruneConfig, output: str | None = None) -> Mask:
    """One IMP round: the next mask from trained ``weights`` and the current ``mask``
    (``output``: the output layer's parameter, which gets ``prune.output_rate``)."""
    names = list(mask)
    flat_keep = {n: mask[n].flatten().cpu() for n in names}
    flat_scores = {n: weights[n].detach().flatten().abs().float().cpu() for n in names}

    if prune.strategy == "layerwise":
        rates = layer_rates(names, prune, output)
        new = {
            n: _prune_smallest(flat_scores[n], flat_keep[n], count_to_prune(rates[n], int(flat_keep[n].sum())))
            for n in names
        }
    else:
        ranked = [n for n in names if not any(re.search(p, n) for p in prune.global_exclude)]
        new = dict(flat_keep)
        if ranked:
            scores = torch.cat([flat_scores[n] for n in ranked])
            keep = torch.cat([flat_keep[n] for n in ranked])
            keep = _prune_smallest(scores, keep, count_to_prune(prune.rate, int(keep.sum())))
            for n, part in zip(ranked, keep.split([flat_keep[n].numel() for n in ranked])):
                new[n] = part
    return Mask({n: new[n].view_as(mask[n]).to(mask[n].device) for n in names})
