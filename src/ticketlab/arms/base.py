"""The arm interface: one way to train at a level, given that level's ticket mask.

An arm is the ticket itself or a control that could refute it. It returns the mask it trains with
(``mask``) and where training starts (``start``: weights, optimizer state, iteration). Everything
else (training, checkpoints, storage, statistics) is shared by all arms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from ticketlab.masks import Mask
from ticketlab.pruning.base import Weights
from ticketlab.seeding import derive_seed

if TYPE_CHECKING:
    from ticketlab.config import Config
    from ticketlab.store.layout import Store


@dataclass
class StartPoint:
    """Where a unit's training begins: weights, optimizer state and iteration."""

    weights: Weights
    optimizer_state: Weights = field(default_factory=dict)
    step: int = 0


@dataclass
class ArmContext:
    """What an arm may read: the experiment, the unit, and a fresh initialisation on demand."""

    config: "Config"
    store: "Store"
    replicate: int
    level: int
    fresh_weights: Callable[[int], Weights]  # a new model's weights from a seed (the user's factory)

    def seed(self, purpose: str) -> int:
        """A seed of this arm's own stream: a function of (replicate seed, purpose, level)."""
        return derive_seed(self.config.seed + self.replicate, purpose, self.level)


@runtime_checkable
class Arm(Protocol):
    name: str

    def mask(self, ticket: Mask, ctx: ArmContext) -> Mask: ...

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint: ...


class TicketMaskArm:
    """An arm that trains with the ticket's own mask (the ticket, reinit, weight_shuffle): such
    arms differ only in where training starts, so each defines just ``start``."""

    name: str

    def mask(self, ticket: Mask, ctx: ArmContext) -> Mask:
        return ticket

    def start(self, mask: Mask, ctx: ArmContext) -> StartPoint:
        raise NotImplementedError
