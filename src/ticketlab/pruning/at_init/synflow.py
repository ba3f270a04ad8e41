"""SynFlow (Tanaka et al. 2020): data-free and iterative. With every weight replaced by its
absolute value and an all-ones input, R = sum of the network's output is a path norm; a
weight's score is |dR/dw ⊙ w|, its share of the synaptic flow. Pruning in ITERATIONS rounds on
an exponential schedule, rescoring after each, avoids layer collapse. Its scores are conserved
(the scores into a hidden neuron sum to the scores out of it), which the tests check."""

from __future__ import annotations

import torch

from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import all_kept, keep_best, keep_counts
from ticketlab.pruning.base import MaskContext, Need

ITERATIONS = 100


@torch.no_grad()
def _linearize(model: torch.nn.Module) -> None:
    for param in model.parameters():
        param.abs_()


def synflow_scores(model: torch.nn.Module, names: list[str], example: torch.Tensor,
                   keep: Mask | None = None) -> dict[str, torch.Tensor]:
    """|dR/dw ⊙ w| on the linearised model (double precision, eval mode), the pruned weights
    of ``keep`` held at zero."""
    model = model.double().eval()
    _linearize(model)
    params = dict(model.named_parameters())
    if keep is not None:
        with torch.no_grad():
            for n in names:
                params[n].mul_(keep[n].to(params[n].dtype))
    ones = torch.ones((1, *example.shape[1:]), dtype=torch.float64 if example.is_floating_point() else example.dtype)
    model.zero_grad(set_to_none=True)
    output = model(ones)
    output = output.logits if hasattr(output, "logits") else output
    output.sum().backward()
    return {n: (params[n].grad * params[n]).abs().detach() for n in names}


class SynFlow:
    name = "synflow"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def next_mask(self, ctx: MaskContext) -> Mask:
        names = list(ctx.previous)
        mask = all_kept(ctx)
        target = keep_counts(ctx)
        example = ctx.batches(1)[0][0]
        for round_ in range(1, ITERATIONS + 1):  # exponential schedule: size * (target/size)^(r/n), per group
            scores = synflow_scores(ctx.model(), names, example, mask)
            scores = {n: torch.where(mask[n], scores[n], torch.full_like(scores[n], -1.0)) for n in names}
            mask = keep_best(scores, mask, target.part_of_the_way(round_ / ITERATIONS))
        return mask
