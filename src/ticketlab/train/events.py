"""What happens to one replicate at the loop's events: a base class whose methods do nothing, so
a unit runner (or a test) overrides only the events it cares about and the loop never asks
which ones exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketlab.train.state import TrainState


class Events:
    """What happens to one replicate at the loop's events; every method does nothing by default.

    ``keeps_early_stop_weights`` declares that ``early_stop_weights`` returns what
    ``on_early_stop`` saved, so the loop can score the test split once, at the end, on them.
    """

    keeps_early_stop_weights: bool = False

    def on_eval(self, state: TrainState) -> None:
        """An evaluation was just appended to ``state.history``."""

    def on_checkpoint(self, state: TrainState) -> None:
        """Time to save a checkpoint; the replicate's model and optimizer hold its state."""

    def on_capture(self, state: TrainState) -> None:
        """The rewind point (iteration k) is reached; the replicate's model holds its weights."""

    def on_early_stop(self, state: TrainState) -> None:
        """The evaluation just recorded is the new early-stopping point (the minimum validation
        loss so far, as :func:`ticketlab.train.loop.early_stop` picks it); the replicate's model
        holds its weights."""

    def early_stop_weights(self, step: int) -> dict | None:
        """The weights ``on_early_stop`` saved for the evaluation at ``step`` (None when they are
        not at hand)."""
        return None
