"""Control "same mask, new lottery": the ticket's mask with fresh weights drawn from the same
initialiser (the user's model factory) under a new seed, with a fresh optimizer. If it matches the
ticket, the initial values did not matter.

It trains over the ticket's own schedule: from iteration 0, or under late rewinding from
iteration k (as Frankle et al. 2020 compare them), so the two differ only in their starting
values, not in how many iterations or which learning rates they get."""

from __future__ import annotations

from ticketlab.arms.base import ArmContext, StartPoint, TicketMaskArm
from ticketlab.masks import Mask


class ReinitArm(TicketMaskArm):
    name = "reinit"

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        step = ctx.config.rewind_iteration if ctx.level > 0 else 0
        return StartPoint(mask.applied_to(ctx.fresh_weights(ctx.seed("reinit"))), step=step)
