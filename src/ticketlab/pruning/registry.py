"""The built-in pruning methods by name; any other method is named by its import path."""

from __future__ import annotations

from ticketlab.plugins import Registry
from ticketlab.pruning.base import PruningMethod

METHODS = Registry("pruning method", {
    "magnitude": "ticketlab.pruning.magnitude:MagnitudePruning",
    "oneshot": "ticketlab.pruning.oneshot:OneShotMagnitude",  # each level from the dense network in one step
    "structured": "ticketlab.pruning.structured:StructuredPruning",  # whole neurons/channels by L2 norm
    "nm": "ticketlab.pruning.n_m:NMPruning",  # N:M (level L keeps M-L of every M; 2:4 at level 2)
    "transfer": "ticketlab.pruning.transfer:TransferMasks",  # another experiment's masks (prune.source)
    # pruning at initialisation, to the same sparsity as IMP's level L
    "snip": "ticketlab.pruning.at_init.snip:SNIP",
    "grasp": "ticketlab.pruning.at_init.grasp:GraSP",
    "synflow": "ticketlab.pruning.at_init.synflow:SynFlow",
    "magnitude_init": "ticketlab.pruning.at_init.magnitude_init:MagnitudeAtInit",
    "random_init": "ticketlab.pruning.at_init.random_init:RandomAtInit",
}, protocol=PruningMethod, listed=("magnitude", "oneshot", "structured", "nm", "transfer", "snip", "grasp",
                                   "synflow", "magnitude_init", "random_init"))


def resolve_method(name: str) -> PruningMethod:
    """The pruning method ``name`` (a built-in name or ``"package.module:object"``)."""
    return METHODS.instance(name)
