"""How each level's mask is made: the :class:`PruningMethod` interface, its registry, and the
built-in methods, one file each (IMP's magnitude pruning with its kernel, one-shot, structured,
N:M, transfer; the methods at initialisation under ``at_init/``)."""

from ticketlab.pruning.base import MaskContext, Need, PruningMethod
from ticketlab.pruning.registry import METHODS, resolve_method

__all__ = ["METHODS", "MaskContext", "Need", "PruningMethod", "resolve_method"]
