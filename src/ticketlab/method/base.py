"""The extension points' old home (``ticketlab.method.base``), re-exported for user code.

New code imports :mod:`ticketlab.pruning.base` (pruning methods) and :mod:`ticketlab.arms.base`
(arms).
"""

from ticketlab.arms.base import Arm, ArmContext, StartPoint
from ticketlab.pruning.base import (
    MaskContext,
    Need,
    PruningMethod,
    Weights,
    pruned_from_level,
)

__all__ = ["Arm", "ArmContext", "MaskContext", "Need", "PruningMethod", "StartPoint", "Weights", "pruned_from_level"]
