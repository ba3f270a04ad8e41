"""The one training loop: K replicates (K = 1 for one model) stepped together, with events.

The loop owns what every training shares: the learning-rate schedule, each replicate's data
order, evaluation records, divergence detection, and when to checkpoint and capture the
rewind point. *How* a step is computed belongs to a :class:`Stepper` (one model; K stacked
replicates; later, sparse kernels), and *what happens* at an evaluation, a checkpoint or a
capture belongs to each replicate's :class:`Events` (the unit runner writes files there). A
new behaviour is a new stepper or new events, never a second loop.

Data is a tensor on the device; each epoch draws one random permutation per replicate (a pure
function of its data-order seed and the epoch, so a resumed run sees exactly the batches an
uninterrupted one would) and batches are index slices of it. Data too large for that streams
from the user's loaders (``data.stream``), seeded the same way. Nothing syncs with the host
inside a step: losses accumulate on the device and are read at evaluations. Divergence is
checked where the loop syncs anyway: at every evaluation (the weights' finiteness rides in the
evaluation's single ``tolist``) and before every checkpoint and capture, so no non-finite state
is ever saved; a replicate that diverges stops being recorded at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainState:
    """Everything that evolves during one replicate's training, apart from weights and optimizer."""

    step: int
    history: list[dict[str, float | None]] = field(default_factory=list)
    loss_sum: float = 0.0
    loss_count: int = 0
    diverged: str | None = None  # what went non-finite, when training stopped on divergence
    eval_seconds: float = 0.0  # wall time spent evaluating (the report states its share of the run)
