"""What a training unit *is*: one training of one arm of one replicate at one level.

A :class:`Unit` is only an identity (replicate, level, arm); everything it trains from is derived
from the config and the store (see ``runner``). It is also called a *training* in messages, to
keep it apart from a network's units (neurons, channels) that structured pruning removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Unit:
    """Identity of a training unit; everything else is derived from the config and the store."""

    replicate: int
    level: int
    arm: str

    def __str__(self) -> str:
        return f"replicate {self.replicate} level {self.level} {self.arm}"


ProgressFn = Callable[[Unit, int, int], None]
