"""The ticket: the level's mask, survivors rewound to their initial values (k = 0) or to the
dense run's weights *and optimizer state* at iteration k (late rewinding). At level 0 the
mask is all ones and training starts from initialisation: the dense run, which *produces*
the rewind point.

Under ``retrain`` = ``lr_rewind`` or ``finetune`` the survivors are *not* rewound: training
starts from the trained weights the mask was pruned from (level L-1's ticket for IMP, the
dense network for one-shot), with a fresh optimizer; the two differ in the learning-rate
schedule (``units.unit_schedule``)."""

from __future__ import annotations

from ticketlab.arms.base import ArmContext, StartPoint, TicketMaskArm
from ticketlab.masks import Mask
from ticketlab.pruning.base import pruned_from_level
from ticketlab.store.checkpoint import load_training_state
from ticketlab.train.optim import mask_optimizer_state_


def rewound_start(mask: Mask, ctx: ArmContext) -> StartPoint:
    """Initial weights (k = 0, and always at level 0) or the dense run at iteration k, masked,
    with its optimizer state (``rewind_optimizer = "rewound"``) or none (``"fresh"``)."""
    store = ctx.store
    if ctx.level == 0 or ctx.config.rewind_iteration == 0:
        return StartPoint(mask.applied_to(store.tensors(store.init_path(ctx.replicate))))
    weights, optimizer_state, meta = load_training_state(store, store.rewind_path(ctx.replicate))
    if ctx.config.rewind_optimizer == "fresh":
        return StartPoint(mask.applied_to(weights), {}, int(meta["step"]))
    mask_optimizer_state_(optimizer_state, mask.tensors)
    return StartPoint(mask.applied_to(weights), optimizer_state, int(meta["step"]))


def retrained_start(mask: Mask, ctx: ArmContext) -> StartPoint:
    """The pruned network's own trained weights, masked (learning-rate rewinding, fine-tuning)."""
    from ticketlab.pruning.registry import resolve_method

    source = pruned_from_level(resolve_method(ctx.config.prune.method), ctx.level)
    if source is None:  # resolve_names refuses this combination; a plugin may change its needs
        raise ValueError(f"retrain={ctx.config.retrain!r} needs a method that prunes trained weights")
    trained = ctx.store.tensors(ctx.store.unit(ctx.replicate, source, "ticket").final)
    return StartPoint(mask.applied_to(trained))


class TicketArm(TicketMaskArm):
    name = "ticket"

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        if ctx.level > 0 and ctx.config.retrain != "rewind":
            return retrained_start(mask, ctx)
        return rewound_start(mask, ctx)
