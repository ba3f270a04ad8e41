"""What an experiment *is*: how each level's mask is made (a pruning method) and what each
unit trains (an arm: the ticket or a control). Each implementation is one file, resolved by
name or by ``"package.module:object"`` import path (see ``registry``)."""

from ticketlab.method.base import Arm, ArmContext, MaskContext, Need, PruningMethod, StartPoint
from ticketlab.method.registry import resolve_arm, resolve_method

__all__ = ["Arm", "ArmContext", "MaskContext", "Need", "PruningMethod", "StartPoint", "resolve_arm", "resolve_method"]
