"""Arms: what a unit trains at a level, given that level's ticket mask: the ticket itself, or a
control that could refute it (reinit, random, weight_shuffle). The :class:`Arm` interface and
the registry are here; each built-in arm is one file."""

from ticketlab.arms.base import Arm, ArmContext, StartPoint
from ticketlab.arms.registry import ARMS, resolve_arm

__all__ = ["ARMS", "Arm", "ArmContext", "StartPoint", "resolve_arm"]
