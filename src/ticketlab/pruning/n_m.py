"""N:M magnitude pruning: in every group of M consecutive weights of a neuron, keep the N largest
(Zhou et al. 2021; NVIDIA's 2:4 sparse tensor cores run the N=2, M=4 pattern at about twice the
dense speed).

Levels make N:M iterative like IMP: level L keeps N = M - L of every group, chosen by magnitude
among the previous level's survivors in the previous level's *trained* ticket, so masks are
nested and each level is pruned from a trained network. With M = 4 (``prune.nm_group``, the
default) level 1 is 3:4, **level 2 is 2:4** and level 3 is 1:4; an experiment has at most M - 1
levels. Groups run along each neuron's inputs: a Linear weight's row, and for a convolution the
input channels at each kernel position (the channels-last order ``kh x kw x in_channels`` that
sparse convolution kernels reduce over, as NVIDIA's ASP prunes them: a group never mixes kernel
positions). A row whose length is not a multiple of M ends with a shorter group that keeps at
most N. Every prunable weight with two or more dimensions is pruned, the output layer
included; 1-D parameters are left as they are. Ties break by position.
"""

from __future__ import annotations

import torch

from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext, Need


def keep_n_of_m(scores: torch.Tensor, keep: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Per neuron, in groups of ``m`` along its inputs: the ``n`` highest-scoring kept entries.

    A convolution weight ``[out, in, kh, kw]`` is grouped along ``in`` at each kernel position
    (channels last); any other weight along its flattened inputs in memory order."""
    if keep.dim() == 4:  # one row per (output channel, kernel position), along the input channels
        out, channels, kh, kw = keep.shape
        rows = keep_n_of_m(scores.permute(0, 2, 3, 1).reshape(-1, channels),
                           keep.permute(0, 2, 3, 1).reshape(-1, channels), n, m)
        return rows.view(out, kh, kw, channels).permute(0, 3, 1, 2).contiguous()
    rows = keep.flatten(1)
    width = rows.shape[1]
    padded = -(-width // m) * m
    ranked = torch.full((rows.shape[0], padded), -1.0, dtype=torch.float64)
    ranked[:, :width] = torch.where(rows, scores.detach().flatten(1).abs().double(), torch.tensor(-1.0, dtype=torch.float64))
    groups = ranked.view(rows.shape[0], padded // m, m)
    # descending by score, ties by position: sort by position first is implied by a stable sort
    order = torch.sort(groups, dim=2, descending=True, stable=True).indices
    chosen = torch.zeros_like(groups, dtype=torch.bool)
    chosen.scatter_(2, order[:, :, :n], True)
    chosen &= groups >= 0  # never revive a pruned entry or keep padding
    return chosen.view(rows.shape[0], padded)[:, :width].reshape(keep.shape)


class NMPruning:
    name = "nm"

    def needs(self, level: int) -> set[Need]:
        return {Need.PREVIOUS_TRAINED}

    def check(self, config) -> None:
        m = config.prune.nm_group
        if config.levels > m - 1:
            raise ConfigError(f"N:M pruning with M={m} has {m - 1} levels (level L keeps M-L of every M; level 2 "
                              f"is 2:4 when M=4); got levels={config.levels}: use --levels {m - 1} or a larger "
                              "prune.nm_group")

    def next_mask(self, ctx: MaskContext) -> Mask:
        m = ctx.config.prune.nm_group
        n = m - ctx.level
        trained = ctx.trained(ctx.level - 1)
        return Mask({name: keep_n_of_m(trained[name], keep, n, m) if keep.dim() >= 2 else keep.clone()
                     for name, keep in ctx.previous.items()})
