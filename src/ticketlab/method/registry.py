"""Find a pruning method or an arm by name (built in) or by ``"package.module:object"`` path.

An import path is what makes an extension work everywhere: spawned worker processes, Ray
tasks and ``show``/``report`` import it by name, and the experiment's config records it. The
object may be an instance or a class (instantiated with no arguments).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from ticketlab.errors import ConfigError
from ticketlab.method.base import Arm, PruningMethod

METHODS = {
    "magnitude": "ticketlab.method.magnitude:MagnitudePruning",
    "oneshot": "ticketlab.method.oneshot:OneShotMagnitude",  # each level from the dense network in one step
    "structured": "ticketlab.method.structured:StructuredPruning",  # whole units/channels by L2 norm
    "nm": "ticketlab.method.n_m:NMPruning",  # N:M (level L keeps M-L of every M; 2:4 at level 2)
    "transfer": "ticketlab.method.transfer:TransferMasks",  # another experiment's masks (prune.source)
    # pruning at initialisation, to the same sparsity as IMP's level L
    "snip": "ticketlab.method.snip:SNIP",
    "grasp": "ticketlab.method.grasp:GraSP",
    "synflow": "ticketlab.method.synflow:SynFlow",
    "magnitude_init": "ticketlab.method.magnitude_init:MagnitudeAtInit",
    "random_init": "ticketlab.method.random_init:RandomAtInit",
}
ARMS = {
    "ticket": "ticketlab.method.arms.ticket:TicketArm",
    "reinit": "ticketlab.method.arms.reinit:ReinitArm",
    "random": "ticketlab.method.arms.random:RandomMaskArm",
    "weight_shuffle": "ticketlab.method.arms.weight_shuffle:WeightShuffleArm",
}
REMOVED_ARMS = {
    "shuffle": "the shuffle control was removed: a mask permuted within each layer is a random mask with the "
    "same per-layer counts, so it repeated `random`; use weight_shuffle (the ticket's mask with its initial "
    "values permuted) or random",
}


def import_object(path: str, what: str) -> Any:
    """``"package.module:attribute.path"`` -> the object; ConfigError saying what failed."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{what} {path!r} is neither a known name nor an import path 'package.module:object'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module may fail in any way
        raise ConfigError(f"{what} {path!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {path!r}: {module_name} has no attribute {attribute}") from None
    return obj


def _resolve(name: str, builtin: dict[str, str], protocol: type, what: str) -> Any:
    obj = import_object(builtin.get(name, name), what)
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, protocol):
        raise ConfigError(f"{what} {name!r} does not implement {protocol.__name__} (see ticketlab.method.base)")
    return obj


@functools.lru_cache(maxsize=None)  # the scheduler asks at every step; methods and arms are stateless
def resolve_method(name: str) -> PruningMethod:
    if name not in METHODS and ":" not in name:
        raise ConfigError(f"unknown pruning method {name!r}; choose one of: {', '.join(METHODS)} or 'package.module:object'")
    return _resolve(name, METHODS, PruningMethod, "pruning method")


@functools.lru_cache(maxsize=None)
def resolve_arm(name: str) -> Arm:
    if name in REMOVED_ARMS:
        raise ConfigError(REMOVED_ARMS[name])
    if name not in ARMS and ":" not in name:
        controls = [a for a in ARMS if a != "ticket"]
        raise ConfigError(f"unknown control {name!r}; choose from: {', '.join(controls)} or 'package.module:object'")
    return _resolve(name, ARMS, Arm, "control")
