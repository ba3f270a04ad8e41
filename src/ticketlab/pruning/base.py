"""The pruning method interface: what a method needs to make level L's mask, and the context
it reads it from.

A **pruning method** declares what it needs (``needs``) and returns the mask (``next_mask``). The
scheduler reads the declaration: IMP needs the previous level's trained ticket, so its levels form
a chain; a method that prunes at initialisation needs only the initial weights (and a few
batches), so every level's mask can be made at once and all levels train in parallel. Neither the
scheduler nor the units know which method runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from ticketlab.data.batch import take
from ticketlab.masks import Mask
from ticketlab.seeding import derive_seed

if TYPE_CHECKING:
    from ticketlab.config import Config
    from ticketlab.roles import ParameterPlan
    from ticketlab.store.layout import Store


class Need(enum.Enum):
    """Inputs a pruning method can ask for when making level L's mask."""

    PREVIOUS_TRAINED = "the previous level's trained ticket"
    DENSE_TRAINED = "the trained dense network (level 0)"
    INIT = "the replicate's initial weights"
    BATCHES = "the model and a few training batches"


Weights = dict[str, torch.Tensor]


def pruned_from_level(method: "PruningMethod", level: int) -> int | None:
    """The level whose *trained* ticket ``method`` prunes to make ``level``'s mask (None: it
    prunes untrained weights). Learning-rate rewinding and fine-tuning retrain from there."""
    needs = method.needs(level)
    if Need.PREVIOUS_TRAINED in needs:
        return level - 1
    if Need.DENSE_TRAINED in needs:
        return 0
    return None


@dataclass
class MaskContext:
    """Everything a pruning method may read to make ``level``'s mask of ``replicate``.

    Inputs are loaded lazily (and verified) only when the method asks for them, so IMP never
    builds the model and a method at initialisation never reads trained weights.
    """

    config: "Config"
    store: "Store"
    replicate: int
    level: int
    plan: "ParameterPlan | None"
    previous: Mask  # the mask of level - 1 (all ones at level 1)
    environment: Any = None  # the units' Environment: model factory, data and task (Need.BATCHES)

    @property
    def seed(self) -> int:
        """The replicate's base seed (``config.seed + replicate``)."""
        return self.config.seed + self.replicate

    @property
    def output_layer(self) -> str | None:
        """The output layer's weight name (pruned at ``output_rate`` when layerwise), or None
        when the parameter plan is not known (experiments older than the plan)."""
        return self.plan.output if self.plan else None

    def trained(self, level: int) -> Weights:
        """The final weights of the ticket trained at ``level``."""
        return self.store.tensors(self.store.unit(self.replicate, level, "ticket").final)

    def init(self) -> Weights:
        return self.store.tensors(self.store.init_path(self.replicate))

    def model(self, weights: Weights | None = None) -> nn.Module:
        """The user's model on the CPU, holding ``weights`` (default: this replicate's initial
        weights), in training mode: what a method at initialisation scores."""
        from ticketlab.weights import load_state

        model = self.environment.build(0, "cpu")
        load_state(model, self.init() if weights is None else weights)
        return model.train()

    def batches(self, count: int, batch_size: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``count`` training batches of this replicate in the loop's own batch order
        (CPU tensors): exactly as its training sees them, or of ``batch_size`` examples each."""
        from ticketlab.train.loop import TrainingBatches

        data = self.environment.inputs.data
        size = batch_size or self.config.train.batch_size
        batch_at = TrainingBatches(data, size, [derive_seed(self.seed, "data")]).batch_at
        out = []
        for step in range(count):
            batch = batch_at(step)
            out.append(batch if isinstance(batch, tuple) else (take(data.x_train, batch[0]), data.y_train[batch[0]]))
        return out

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        """The experiment's training loss of a model output (the task's, as training uses it)."""
        from ticketlab.train.task import prediction

        return self.environment.task.loss_of(prediction(output), target)


@runtime_checkable
class PruningMethod(Protocol):
    """``needs`` and ``next_mask`` are required. A method may also define ``check(config)``,
    raising ``ConfigError`` for settings it cannot serve; it runs when the config is validated,
    before anything is written. ``preflight(env, plan)`` (the units' Environment and the traced
    ParameterPlan), also optional, checks what needs the built model or files elsewhere; it runs
    in ``ticketlab.experiment.preflight``, also before anything is written."""

    name: str

    def needs(self, level: int) -> set[Need]: ...

    def next_mask(self, ctx: MaskContext) -> Mask: ...
