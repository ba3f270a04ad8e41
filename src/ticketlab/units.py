"""Training units: one training of one arm of one replicate at one level.

``run_unit`` is an idempotent function of the files in the store: if the unit's summary
exists it returns it; if a checkpoint exists it resumes from it; otherwise it starts from
the arm's starting point. Executors (in-process, process pool, Ray) only decide *where*
and *when* it runs.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ticketlab.arms import ARMS, MODEL_PREFIX, OPTIM_PREFIX, load_training_state, replicate_seed
from ticketlab.config import Config
from ticketlab.data import Dataset, load_dataset
from ticketlab.errors import ConfigError
from ticketlab.io import remove_temporaries, save_tensors, update_manifest, write_json_atomic, write_jsonl_atomic
from ticketlab.masks import Mask
from ticketlab.models import build_model
from ticketlab.optim import load_optimizer_state, make_optimizer, mask_optimizer_state_, optimizer_state_tensors
from ticketlab.pruning import magnitude_prune
from ticketlab.roles import ParameterPlan, plan_parameters
from ticketlab.weights import cloned_state, load_state, state_of
from ticketlab.seeding import derive_seed, torch_seed
from ticketlab.store import Store, UnitPaths
from ticketlab.train import TrainState, last_finite, summarize_history, total_iterations, train


@dataclass(frozen=True)
class Unit:
    """Identity of a training unit; everything else is derived from the config and the store."""

    replicate: int
    level: int
    arm: str

    def __str__(self) -> str:
        return f"replicate {self.replicate} level {self.level} {self.arm}"


ProgressFn = Callable[[Unit, int, int], None]


@functools.lru_cache(maxsize=4)
def cached_dataset(name: str, data_dir: str | None, split_seed: int, device: str) -> Dataset:
    """Load each dataset once per process; units of one experiment share it."""
    return load_dataset(name, data_dir, split_seed, device)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(device)


def experiment_dataset(config: Config, device: torch.device) -> Dataset:
    return cached_dataset(config.data.dataset, config.data.data_dir, config.data.split_seed, str(device))


def fresh_weights(config: Config, data: Dataset, seed: int) -> dict[str, torch.Tensor]:
    """A newly initialised model's state dict, from ``seed``."""
    with torch_seed(seed):
        model = build_model(config.model, data.input_shape, data.num_classes)
    return cloned_state(model)


def ensure_replicate_init(config: Config, store: Store, replicate: int, data: Dataset) -> None:
    """Write the replicate's initial weights once (deterministic, so a race writes equal bytes)."""
    path = store.init_path(replicate)
    if not path.is_file():
        seed = derive_seed(replicate_seed(config, replicate), "init")
        save_tensors(fresh_weights(config, data, seed), path, checksum=True)


def ensure_level_mask(config: Config, store: Store, replicate: int, level: int) -> None:
    """Make level ``level``'s ticket mask by pruning level-1's trained ticket (idempotent).

    Needs only files: the previous mask and the previous ticket's final weights, both
    verified. Level 0's (dense) mask is written by the dense unit; if it was set aside as
    damaged after that unit finished, it is rebuilt here from the model's shapes.
    """
    path = store.level_mask_path(replicate, level)
    if path.is_file():
        return
    if level == 0:
        data = experiment_dataset(config, torch.device("cpu"))
        dense_mask(config, data).save(path)
        return
    ensure_level_mask(config, store, replicate, level - 1)
    previous = store.mask(store.level_mask_path(replicate, level - 1))
    weights = store.tensors(store.unit(replicate, level - 1, "ticket").final)
    plan = store.parameter_plan()
    magnitude_prune(weights, previous, config.prune, plan.output if plan else None).save(path)


def meta_model(config: Config, data: Dataset) -> nn.Module:
    """The model with shapes but no storage (the ``meta`` device): sizes and names, no memory.

    A user's model that cannot be built on ``meta`` (it reads a value while constructing) is
    built on the CPU instead.
    """
    try:
        with torch.device("meta"):
            return build_model(config.model, data.input_shape, data.num_classes)
    except (NotImplementedError, RuntimeError):
        with torch_seed(0):
            return build_model(config.model, data.input_shape, data.num_classes)


def parameter_plan(config: Config, data: Dataset) -> ParameterPlan:
    """What the experiment prunes (by role) and its output layer, traced on one example.

    The trace runs on the ``meta`` device when the model was built there (no compute); a
    ConfigError says when the roles and patterns select nothing.
    """
    model = meta_model(config, data)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = data.x_train[:2].to(device)
    return plan_parameters(model, config.prune, trace=lambda m: m(example))


def dense_mask(config: Config, data: Dataset) -> Mask:
    """Level 0's mask: every prunable weight kept."""
    plan = parameter_plan(config, data)
    return Mask({n: torch.ones(plan.shapes[n], dtype=torch.bool) for n in plan.pruned})


class _StoreHooks:
    """Training-loop callbacks that write checkpoints and the rewind point into the store."""

    def __init__(self, unit: Unit, paths: UnitPaths, store: Store, model, optimizer, masks, elapsed, progress, end):
        self.unit, self.paths, self.store = unit, paths, store
        self.model, self.optimizer, self.masks = model, optimizer, masks
        self.elapsed, self.started = elapsed, time.perf_counter()
        self.progress, self.end = progress, end

    def wall_time(self) -> float:
        return self.elapsed + time.perf_counter() - self.started

    def _training_tensors(self) -> dict[str, torch.Tensor]:
        optim_state = optimizer_state_tensors(self.optimizer, self.model)
        mask_optimizer_state_(optim_state, self.masks)
        tensors = {MODEL_PREFIX + k: v for k, v in state_of(self.model).items()}
        tensors.update({OPTIM_PREFIX + k: v for k, v in optim_state.items()})
        return tensors

    def on_eval(self, state: TrainState) -> None:
        if self.progress:
            self.progress(self.unit, state.step, self.end)

    def on_checkpoint(self, state: TrainState) -> None:
        meta = {"step": state.step, "history": state.history, "loss_sum": state.loss_sum,
                "loss_count": state.loss_count, "elapsed": self.wall_time()}
        save_tensors(self._training_tensors(), self.paths.checkpoint, metadata={"state": json.dumps(meta)},
                     checksum=True)

    def on_capture(self, state: TrainState) -> None:
        path = self.store.rewind_path(self.unit.replicate)
        if not path.is_file():
            save_tensors(self._training_tensors(), path, metadata={"state": json.dumps({"step": state.step})},
                         checksum=True)


@dataclass
class PreparedUnit:
    """A unit ready to train: model and optimizer at its start (or checkpoint), plus its hooks."""

    unit: Unit
    paths: UnitPaths
    model: nn.Module
    optimizer: torch.optim.Optimizer
    mask: Mask
    masks: dict[str, torch.Tensor] | None  # float {0,1} per pruned parameter; None for the dense run
    state: TrainState
    hooks: "_StoreHooks"
    end: int
    data_seed: int
    capture_steps: frozenset[int]
    device: torch.device


def prepare_unit(
    config: Config, store_dir: str, unit: Unit, device: str = "cpu", progress: ProgressFn | None = None
) -> PreparedUnit | dict:
    """Load everything a unit needs; return its stored summary instead if it is already done.

    Every file it reads is verified against its checksum (``Store``); temporary files a killed
    write left in the unit's folder are removed first.
    """
    store = Store(store_dir)
    paths = store.unit(unit.replicate, unit.level, unit.arm)
    if paths.done():
        return store.summary(paths)
    remove_temporaries(paths.directory)
    torch_device = resolve_device(device)
    data = experiment_dataset(config, torch_device)
    ensure_replicate_init(config, store, unit.replicate, data)

    with torch_seed(0):  # weights are loaded below; this only makes construction deterministic
        model = build_model(config.model, data.input_shape, data.num_classes).to(torch_device)
    if unit.level == 0:
        mask = dense_mask(config, data)
        if not store.level_mask_path(unit.replicate, 0).is_file():
            mask.save(store.level_mask_path(unit.replicate, 0))
    else:
        ticket_mask = store.mask(store.level_mask_path(unit.replicate, unit.level))
        mask = ARMS[unit.arm].make_mask(config, unit.replicate, unit.level, ticket_mask)
    if not paths.mask.is_file():
        mask.save(paths.mask)

    end = total_iterations(config.train, data)
    optimizer = make_optimizer(model.parameters(), config.train, torch_device)
    if paths.checkpoint.is_file():
        weights, optim_state, meta = load_training_state(store, paths.checkpoint)
        state = TrainState(meta["step"], meta["history"], meta["loss_sum"], meta["loss_count"])
        elapsed = meta["elapsed"]
    else:
        start = ARMS[unit.arm].make_start(
            config, store, unit.replicate, unit.level, mask, lambda seed: fresh_weights(config, data, seed)
        )
        weights, optim_state = start.weights, start.optimizer_state
        state, elapsed = TrainState(start.step), 0.0
        if not paths.start.is_file():
            save_tensors(weights, paths.start, checksum=True)
    load_state(model, weights)
    if optim_state:
        load_optimizer_state(optimizer, model, optim_state)

    masks = {n: m.to(torch_device, torch.float32) for n, m in mask.items()}
    hooks = _StoreHooks(unit, paths, store, model, optimizer, masks, elapsed, progress, end)
    capture = frozenset({config.rewind_iteration}) if unit.level == 0 and config.rewind_iteration > 0 else frozenset()
    return PreparedUnit(
        unit, paths, model, optimizer, mask, masks if unit.level > 0 else None, state, hooks, end,
        derive_seed(replicate_seed(config, unit.replicate), "data"), capture, torch_device,
    )


def finish_unit(config: Config, prepared: PreparedUnit, precision: str = "fp32") -> dict:
    """Write a trained unit's final weights, metrics and (last, as the done marker) its summary.

    A diverged unit gets no final weights (they are not finite): its metrics up to the
    divergence and a summary with ``status: diverged``, the step and its last finite evaluation.
    """
    paths, state, unit = prepared.paths, prepared.state, prepared.unit
    if not state.diverged:
        save_tensors(state_of(prepared.model), paths.final, checksum=True)
    write_jsonl_atomic(paths.metrics, state.history, checksum=True)
    summary = {
        "replicate": unit.replicate,
        "level": unit.level,
        "arm": unit.arm,
        "seed": replicate_seed(config, unit.replicate),
        "percent_remaining": 100.0 * prepared.mask.fraction_remaining(),
        "layer_percent_remaining": {n: 100.0 * f for n, f in prepared.mask.layer_fractions().items()},
        "start_step": state.history[0]["step"],
        "wall_time_s": prepared.hooks.wall_time(),
        "device": str(prepared.device),
        "precision": precision,
        # the accuracy resolution (one example) that the verdicts' zero-variance floor uses
        "test_examples": int(experiment_dataset(config, prepared.device).y_test.numel()),
        **(diverged_summary(unit, state) if state.diverged else {"status": "ok", **summarize_history(state.history)}),
    }
    write_json_atomic(paths.summary, summary, checksum=True)
    if paths.checkpoint.is_file():
        paths.checkpoint.unlink()
        update_manifest(paths.directory, {paths.checkpoint.name: None})
    return summary


def diverged_summary(unit: Unit, state: TrainState) -> dict:
    """The summary fields of a diverged unit: where, what, and the last finite evaluation.

    The accuracy fields are present and null, so statistics leave the unit out of their
    intervals (and the verdict code can show the level as diverged from ``status``).
    """
    last = last_finite(state.history)
    reached = (f"last finite evaluation: step {last['step']}, validation accuracy {last['val_acc']:.3f}"
               if last else "no finite evaluation")
    message = (f"{unit} diverged: non-finite {state.diverged} by step {state.step} ({reached}); "
               "lower the learning rate (--lr) or add warmup")
    return {
        "status": "diverged",
        "diverged_step": state.step,
        "message": message,
        "last_finite_step": last["step"] if last else None,
        "early_stop_step": None, "test_acc_at_early_stop": None, "val_acc_at_early_stop": None,
        "val_loss_at_early_stop": None, "final_test_acc": None, "final_val_acc": None, "final_step": state.step,
    }


def run_unit(
    config: Config,
    store_dir: str,
    unit: Unit,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    precision: str = "fp32",
) -> dict:
    """Run (or resume, or skip) one unit and return its summary record."""
    prepared = prepare_unit(config, store_dir, unit, device, progress)
    if isinstance(prepared, dict):
        return prepared
    data = experiment_dataset(config, prepared.device)
    prepared.state = train(
        prepared.model, prepared.optimizer, data, config.train, prepared.state, prepared.end,
        data_seed=prepared.data_seed, masks=prepared.masks, hooks=prepared.hooks,
        capture_steps=prepared.capture_steps, autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
    )
    return finish_unit(config, prepared, precision)
