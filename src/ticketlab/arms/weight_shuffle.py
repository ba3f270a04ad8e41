"""Control "right places, wrong values": the ticket's own mask, with the surviving initial
values permuted among the surviving positions of each layer (Frankle et al. 2021's
"shuffled weights"). The structure and each layer's distribution of initial values are the
ticket's; only which survivor starts with which value is random. If it matches the ticket, the
ticket needs its structure but not its particular initial values.

Under late rewinding each survivor's optimizer moments move with its value, so every weight
keeps a consistent (value, moments) pair.
"""

from __future__ import annotations

import torch

from ticketlab.arms.base import ArmContext, StartPoint, TicketMaskArm
from ticketlab.arms.ticket import rewound_start
from ticketlab.masks import Mask


def permute_survivors(tensor: torch.Tensor, keep: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``tensor`` with its kept entries reordered by ``order`` (a permutation of their count)."""
    flat = tensor.flatten().clone()
    positions = keep.flatten().nonzero().squeeze(1).to(flat.device)
    flat[positions] = flat[positions[order.to(flat.device)]]
    return flat.view_as(tensor)


class WeightShuffleArm(TicketMaskArm):
    name = "weight_shuffle"

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        start = rewound_start(mask, ctx)
        generator = torch.Generator().manual_seed(ctx.seed("weight_shuffle"))
        for name, keep in mask.items():
            order = torch.randperm(int(keep.sum()), generator=generator)
            start.weights[name] = permute_survivors(start.weights[name], keep, order)
            for key, value in start.optimizer_state.items():  # the moments, not Adam's scalar step
                if key.split("/", 1)[1:] == [name] and value.shape == keep.shape:
                    start.optimizer_state[key] = permute_survivors(value, keep, order)
        return start
