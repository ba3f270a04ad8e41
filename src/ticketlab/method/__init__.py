"""Where the extension points lived before the re-layout; kept so user code that imports
``ticketlab.method`` (and ``ticketlab.method.base``) keeps working.

Pruning methods are now in :mod:`ticketlab.pruning`, arms in :mod:`ticketlab.arms`.
"""

from ticketlab.arms.base import Arm, ArmContext, StartPoint
from ticketlab.arms.registry import resolve_arm
from ticketlab.pruning.base import MaskContext, Need, PruningMethod
from ticketlab.pruning.registry import resolve_method

__all__ = ["Arm", "ArmContext", "MaskContext", "Need", "PruningMethod", "StartPoint", "resolve_arm", "resolve_method"]
