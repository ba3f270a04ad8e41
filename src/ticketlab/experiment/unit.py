"""Training units: one training of one arm of one replicate at one level.

``run_unit`` is an idempotent function of the files in the store: if the unit's summary
exists it returns it; if a checkpoint exists it resumes from it; otherwise it starts from
the arm's starting point. Executors (in-process, process pool, Ray) only decide *where*
and *when* it runs. What a unit builds its model, data and task from is an
:class:`Environment`: the config's built-in names, or the user's objects carried to this
process by value (``inputs``).
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
