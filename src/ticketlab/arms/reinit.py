"""Control "same mask, new lottery": the ticket's mask with fresh weights drawn from the same
initialiser (the user's model factory) under a new seed, trained from iteration 0 with a fresh
optimizer. If it matches the ticket, the initial values did not matter."""

from __future__ import annotations

from ticketlab.arms.base import ArmContext, StartPoint, TicketMaskArm
from ticketlab.masks import Mask


class ReinitArm(TicketMaskArm):
    name = "reinit"

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        return StartPoint(mask.applied_to(ctx.fresh_weights(ctx.seed("reinit"))))
