"""The unit's side of the loop's events: evaluations, checkpoints, the rewind capture and the
early-stopping weights, written to the unit's folder atomically as they happen."""

from __future__ import annotations

import json
import time

import torch

from ticketlab.errors import StoreError
from ticketlab.experiment.numerics import numerics_record
from ticketlab.experiment.unit import Unit
from ticketlab.io import (
    save_tensors,
)
from ticketlab.store.checkpoint import MODEL_PREFIX, OPTIM_PREFIX, RNG_PREFIX, rng_state
from ticketlab.store.integrity import DamagedFileError
from ticketlab.store.layout import Store, UnitPaths
from ticketlab.train.events import Events
from ticketlab.train.optim import (
    mask_optimizer_state_,
    optimizer_state_tensors,
)
from ticketlab.train.state import TrainState
from ticketlab.weights import state_of


class CallbackError(BaseException):
    """Carries an exception of the progress callback past ``user_code`` (which would otherwise
    blame the model) up to ``train_prepared``, which re-raises the original."""

    def __init__(self, original: Exception) -> None:
        super().__init__(original)
        self.original = original


# ---------------------------------------------------------------------------- events -> files
class StoreEvents(Events):
    """Loop events of one unit: progress, checkpoints and the rewind point, written to the store."""

    keeps_early_stop_weights = True

    def __init__(self, unit: Unit, paths: UnitPaths, store: Store, model, optimizer, masks, elapsed, progress, end):
        self.unit, self.paths, self.store = unit, paths, store
        self.model, self.optimizer, self.masks = model, optimizer, masks
        self.elapsed, self.started = elapsed, time.perf_counter()
        self.progress, self.end = progress, end
        # what to save as the RNG state: the process's (sequential training draws from it), or a
        # fixed record when the unit draws no random numbers itself (stacked training)
        self.fixed_rng: dict[str, torch.Tensor] | None = None
        self.stacked = False  # trained by the stacked stepper (recorded in the summary)
        self.stepper_info: dict | None = None  # the stepper training it (checkpointed, so a resume keeps it)
        self.numerics: dict = numerics_record()  # the threads and flags it trains under (``unit_numerics``)

    def wall_time(self) -> float:
        return self.elapsed + time.perf_counter() - self.started

    def _training_tensors(self) -> dict[str, torch.Tensor]:
        optim_state = optimizer_state_tensors(self.optimizer, self.model)
        mask_optimizer_state_(optim_state, self.masks)
        tensors = {MODEL_PREFIX + k: v for k, v in state_of(self.model).items()}
        tensors.update({OPTIM_PREFIX + k: v for k, v in optim_state.items()})
        rng = self.fixed_rng if self.fixed_rng is not None else rng_state(self.model)
        tensors.update({RNG_PREFIX + k: v for k, v in rng.items()})
        return tensors

    def on_eval(self, state: TrainState) -> None:
        if self.progress:
            try:
                self.progress(self.unit, state.step, self.end)
            except Exception as exc:  # the caller's callback: not the user's model, re-raised as is
                raise CallbackError(exc) from exc

    def on_checkpoint(self, state: TrainState) -> None:
        meta = {"step": state.step, "history": state.history, "loss_sum": state.loss_sum,
                "loss_count": state.loss_count, "elapsed": self.wall_time(), "eval_seconds": state.eval_seconds,
                "stepper_info": self.stepper_info, "numerics": self.numerics}
        save_tensors(self._training_tensors(), self.paths.checkpoint, metadata={"state": json.dumps(meta)},
                     checksum=True)

    def on_early_stop(self, state: TrainState) -> None:
        """Keep the weights of the new minimum of validation loss (atomically, so a killed run
        keeps the previous ones; a resumed run that re-reaches this evaluation writes the same bytes)."""
        record = json.dumps(state.history[-1], sort_keys=True)
        save_tensors(state_of(self.model), self.paths.early_stop, metadata={"evaluation": record}, checksum=True)

    def early_stop_weights(self, step: int) -> dict[str, torch.Tensor] | None:
        """The weights ``on_early_stop`` saved for the evaluation at ``step`` (checksum verified),
        or None when the file is missing, damaged or holds another evaluation's weights."""
        if not self.paths.early_stop.is_file():
            return None
        try:
            tensors, metadata = self.store.tensors_and_metadata(self.paths.early_stop)
        except (DamagedFileError, StoreError, ValueError):
            return None
        if json.loads(metadata.get("evaluation", "{}")).get("step") != step:
            return None
        own = state_of(self.model)
        if tensors.keys() != own.keys():
            return None
        return {k: v.to(own[k].device) for k, v in tensors.items()}

    def on_capture(self, state: TrainState) -> None:
        path = self.store.rewind_path(self.unit.replicate)
        if not path.is_file():
            save_tensors(self._training_tensors(), path, metadata={"state": json.dumps({"step": state.step})},
                         checksum=True)
