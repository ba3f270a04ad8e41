"""SNIP (Lee et al. 2019): keep the weights whose removal changes the loss most at
initialisation, scored by connection sensitivity |g ⊙ w| (g: the gradient of the training loss).
By default it scores one batch of 100 training examples with the model in eval mode, as
snip-public and Synaptic-Flow do; ``prune.scoring = "training"`` scores 8 of the run's own
training batches in training mode instead."""

from __future__ import annotations

import torch

from ticketlab.data.batch import call
from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import ScoredAtInit, score_inputs
from ticketlab.pruning.base import MaskContext, Need


def snip_scores(model: torch.nn.Module, names: list[str], batches, loss) -> dict[str, torch.Tensor]:
    """|dL/dw ⊙ w| for the parameters ``names``, the loss summed over ``batches``."""
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    for x, y in batches:
        loss(call(model, x), y).backward()
    return {n: (params[n].grad * params[n]).abs().detach() for n in names}


class SNIP(ScoredAtInit):
    name = "snip"
    NEEDS = frozenset({Need.INIT, Need.BATCHES})

    def scores(self, ctx: MaskContext, dense: Mask) -> dict[str, torch.Tensor]:
        model, batches = score_inputs(ctx)
        return snip_scores(model, list(dense), batches, ctx.loss)
