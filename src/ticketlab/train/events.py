"""What happens to one replicate at the loop's events: a base class whose methods do nothing, so
a unit runner (or a test) overrides only the events it cares about and the loop never asks
which ones exist."""

from __future__ import annotations

from typing import Protocol

from ticketlab.train.state import TrainState


class Events(Protocol):
    """What happens to one replicate at the loop's events (the unit runner writes files)."""

    def on_eval(self, state: TrainState) -> None: ...

    def on_checkpoint(self, state: TrainState) -> None: ...

    def on_capture(self, state: TrainState) -> None: ...

    def on_early_stop(self, state: TrainState) -> None:
        """The evaluation just recorded is the new early-stopping point (the minimum validation
        loss so far, as :func:`early_stop` picks it); the replicate's model holds its weights."""
        ...
