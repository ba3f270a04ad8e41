"""Find a pruning method or an arm by name (built in) or by ``"package.module:object"`` path.

An import path is what makes an extension work everywhere: spawned worker processes, Ray
tasks and ``show``/``report`` import it by name, and the experiment's config records it. The
object may be an instance or a class (instantiated with no arguments).
"""

from __future__ import annotations

import functools
from ticketlab.errors import ConfigError
from ticketlab.pruning.base import PruningMethod
from ticketlab.plugins import resolve_plugin


METHODS = {
    "magnitude": "ticketlab.pruning.magnitude:MagnitudePruning",
    "oneshot": "ticketlab.pruning.oneshot:OneShotMagnitude",  # each level from the dense network in one step
    "structured": "ticketlab.pruning.structured:StructuredPruning",  # whole units/channels by L2 norm
    "nm": "ticketlab.pruning.n_m:NMPruning",  # N:M (level L keeps M-L of every M; 2:4 at level 2)
    "transfer": "ticketlab.pruning.transfer:TransferMasks",  # another experiment's masks (prune.source)
    # pruning at initialisation, to the same sparsity as IMP's level L
    "snip": "ticketlab.pruning.at_init.snip:SNIP",
    "grasp": "ticketlab.pruning.at_init.grasp:GraSP",
    "synflow": "ticketlab.pruning.at_init.synflow:SynFlow",
    "magnitude_init": "ticketlab.pruning.at_init.magnitude_init:MagnitudeAtInit",
    "random_init": "ticketlab.pruning.at_init.random_init:RandomAtInit",
}


@functools.lru_cache(maxsize=None)  # the scheduler asks at every step; methods and arms are stateless
def resolve_method(name: str) -> PruningMethod:
    if name not in METHODS and ":" not in name:
        raise ConfigError(f"unknown pruning method {name!r}; choose one of: {', '.join(METHODS)} or 'package.module:object'")
    return resolve_plugin(name, METHODS, PruningMethod, "pruning method")
