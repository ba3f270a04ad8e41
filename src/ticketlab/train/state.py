"""The training state the loop evolves for each replicate, apart from weights and optimizer."""

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
