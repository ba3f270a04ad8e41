"""The built-in arms by name; any other arm is named by its import path."""

from __future__ import annotations

from ticketlab.arms.base import Arm
from ticketlab.plugins import Registry

ARMS = Registry("control", {
    "ticket": "ticketlab.arms.ticket:TicketArm",
    "reinit": "ticketlab.arms.reinit:ReinitArm",
    "random": "ticketlab.arms.random:RandomMaskArm",
    "weight_shuffle": "ticketlab.arms.weight_shuffle:WeightShuffleArm",
}, protocol=Arm, listed=("reinit", "random", "weight_shuffle"), removed={
    "shuffle": "the shuffle control was removed: a mask permuted within each layer is a random mask with the "
    "same per-layer counts, so it repeated `random`; use weight_shuffle (the ticket's mask with its initial "
    "values permuted) or random",
})


def resolve_arm(name: str) -> Arm:
    """The arm ``name`` (a built-in name or ``"package.module:object"``)."""
    return ARMS.instance(name)
