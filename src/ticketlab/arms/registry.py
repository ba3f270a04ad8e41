"""Find a pruning method or an arm by name (built in) or by ``"package.module:object"`` path.

An import path is what makes an extension work everywhere: spawned worker processes, Ray
tasks and ``show``/``report`` import it by name, and the experiment's config records it. The
object may be an instance or a class (instantiated with no arguments).
"""

from __future__ import annotations

import functools
from ticketlab.errors import ConfigError
from ticketlab.arms.base import Arm
from ticketlab.plugins import resolve_plugin


ARMS = {
    "ticket": "ticketlab.arms.ticket:TicketArm",
    "reinit": "ticketlab.arms.reinit:ReinitArm",
    "random": "ticketlab.arms.random:RandomMaskArm",
    "weight_shuffle": "ticketlab.arms.weight_shuffle:WeightShuffleArm",
}


REMOVED_ARMS = {
    "shuffle": "the shuffle control was removed: a mask permuted within each layer is a random mask with the "
    "same per-layer counts, so it repeated `random`; use weight_shuffle (the ticket's mask with its initial "
    "values permuted) or random",
}


@functools.lru_cache(maxsize=None)
def resolve_arm(name: str) -> Arm:
    if name in REMOVED_ARMS:
        raise ConfigError(REMOVED_ARMS[name])
    if name not in ARMS and ":" not in name:
        controls = [a for a in ARMS if a != "ticket"]
        raise ConfigError(f"unknown control {name!r}; choose from: {', '.join(controls)} or 'package.module:object'")
    return resolve_plugin(name, ARMS, Arm, "control")
