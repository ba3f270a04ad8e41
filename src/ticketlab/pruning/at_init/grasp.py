"""GraSP (Wang et al. 2020): keep the weights that preserve the gradient flow at
initialisation. The score of removing a weight is -w ⊙ (H g), with g the loss gradient and
H g a Hessian-gradient product (by double backpropagation); GraSP removes the highest scores,
so it keeps the highest w ⊙ (H g). As in GraSP's code and Synaptic-Flow, the logits are divided
by a temperature (``prune.grasp_temperature``, T = 200) before the loss, which keeps the
softmax from saturating so the Hessian term is not dominated by a few examples; the batches
and the model's mode follow ``prune.scoring`` (one batch of 100 in eval mode by default)."""

from __future__ import annotations

import torch

from ticketlab.data.batch import call
from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import ScoredAtInit, score_inputs
from ticketlab.pruning.base import MaskContext, Need
from ticketlab.train.task import prediction


def hessian_gradient(model: torch.nn.Module, names: list[str], batches, loss) -> dict[str, torch.Tensor]:
    """H g for the parameters ``names``: g summed over ``batches`` (held fixed), then the
    gradient of g_fixed · g(w) gives H g, batch by batch."""
    params = dict(model.named_parameters())
    weights = [params[n] for n in names]
    fixed = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        grads = torch.autograd.grad(loss(call(model, x), y), weights)
        fixed = [f + g.detach() for f, g in zip(fixed, grads)]
    product = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        grads = torch.autograd.grad(loss(call(model, x), y), weights, create_graph=True)
        dot = sum((g * f).sum() for g, f in zip(grads, fixed))
        product = [p + h.detach() for p, h in zip(product, torch.autograd.grad(dot, weights))]
    return dict(zip(names, product))


class GraSP(ScoredAtInit):
    name = "grasp"
    NEEDS = frozenset({Need.INIT, Need.BATCHES})

    def scores(self, ctx: MaskContext, dense: Mask) -> dict[str, torch.Tensor]:
        """w ⊙ (H g): the weights whose removal would most reduce the gradient flow score highest."""
        model, batches = score_inputs(ctx)
        params = dict(model.named_parameters())
        temperature = ctx.config.prune.grasp_temperature

        def loss(output, target):  # the logits divided by T before the loss, as GraSP's code does
            return ctx.loss(prediction(output) / temperature, target)

        hg = hessian_gradient(model, list(dense), batches, loss)
        return {n: (params[n].detach() * hg[n]) for n in dense}
