"""Training units: one training of one arm of one replicate at one level.

``run_unit`` is an idempotent function of the files in the store: if the unit's summary
exists it returns it; if a checkpoint exists it resumes from it; otherwise it starts from
the arm's starting point. Executors (in-process, process pool, Ray) only decide *where*
and *when* it runs. What a unit builds its model, data and task from is an
:class:`Environment`: the config's built-in names, or the user's objects carried to this
process by value (``inputs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ticketlab.config import Config, TrainConfig
from ticketlab.data import Dataset
from ticketlab.errors import ConfigError, StoreError
from ticketlab.integrity import DamagedFileError
from ticketlab.inputs import Inputs, builtin_inputs, user_code
from ticketlab.io import (
    remove_checksummed, remove_temporaries, save_tensors, write_json_atomic, write_jsonl_atomic,
)
from ticketlab.loop import Events, TrainState, early_stop, last_finite, run_loop, summarize_history, total_iterations
from ticketlab.masks import Mask
from ticketlab.numerics import numerics_record
from ticketlab.method import ArmContext, MaskContext, resolve_arm, resolve_method
from ticketlab.method.arms.ticket import MODEL_PREFIX, OPTIM_PREFIX, load_training_state, split_prefixed
from ticketlab.optim import learning_rate, load_optimizer_state, make_optimizer, mask_optimizer_state_, optimizer_state_tensors
from ticketlab.roles import ParameterPlan, plan_parameters
from ticketlab.seeding import derive_seed
from ticketlab.store import Store, UnitPaths
from ticketlab.weights import cloned_state, load_state, state_of


@dataclass(frozen=True)
class Unit:
    """Identity of a training unit; everything else is derived from the config and the store."""

    replicate: int
    level: int
    arm: str

    def __str__(self) -> str:
        return f"replicate {self.replicate} level {self.level} {self.arm}"


ProgressFn = Callable[[Unit, int, int], None]


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(device)


def replicate_seed(config: Config, replicate: int) -> int:
    return config.seed + replicate


@dataclass
class Environment:
    """An experiment's inputs in one process: model factory, data on the device, task."""

    config: Config
    inputs: Inputs
    device: torch.device
    data: Dataset
    user: bool = False  # the model, data or task came from the user (their errors are reported as such)

    @property
    def task(self):
        """The task to train and score with. A stored experiment rebuilt from its config alone
        (stability, export) has only the default task, which would train or score a custom-task
        experiment wrongly: asking for it is then a one-line error (its model and data are fine)."""
        if not self.user and self.config.task_fingerprint is not None:
            raise ConfigError(f"this experiment was trained with a custom task ({self.config.task}), which only the "
                              "Python API can pass again: ticketlab.run(..., task=ticketlab.Task(...)) or "
                              "ticketlab.verify.verify(..., task=...)")
        return self.inputs.task

    def build(self, seed: int, device: torch.device | str | None = None) -> nn.Module:
        return self.inputs.build(seed, self.device if device is None else device)

    def fresh_weights(self, seed: int) -> dict[str, torch.Tensor]:
        """A newly initialised model's weights, from ``seed`` (the user's factory for user models)."""
        return cloned_state(self.build(seed, "cpu"))

    def meta_model(self) -> nn.Module:
        """The model with shapes but no storage (``meta``): names and sizes for free. A model that
        cannot be built on ``meta`` (it reads a value while constructing) is built on the CPU."""
        try:
            with torch.device("meta"):
                return self.inputs.build(0, "meta")
        except (NotImplementedError, RuntimeError):
            return self.build(0, "cpu")

    def end(self) -> int:
        return total_iterations(self.config.train, self.data)


@functools.lru_cache(maxsize=4)
def _builtin_environment(config_json: str, device: str) -> Environment:
    config = Config.from_dict(json.loads(config_json), resolve=False)
    inputs = builtin_inputs(config.model, config.data.dataset, config.data.data_dir, config.data.split_seed)
    return Environment(config, inputs, torch.device(device), inputs.data.to(device))


@functools.lru_cache(maxsize=2)
def _unpickled(blob: bytes) -> Inputs:
    """The user's objects a worker received as bytes, unpickled once per worker."""
    import cloudpickle

    return cloudpickle.loads(blob)


def environment(config: Config, device: torch.device | str = "cpu", inputs: bytes | Inputs | None = None) -> Environment:
    """This process's environment of ``config`` (its data moved to ``device`` once).

    ``inputs`` are the user's objects, as :class:`Inputs` in the calling process or as
    cloudpickle bytes in a worker; without them the config's built-in names are used.
    """
    device = torch.device(device)
    if inputs is None:
        return _builtin_environment(json.dumps(config.to_dict(), sort_keys=True), str(device))
    if isinstance(inputs, bytes):
        inputs = _unpickled(inputs)
    return Environment(config, inputs, device, inputs.on(device), user=True)


# Summary fields that measure time: they differ between otherwise identical runs.
TIMING_FIELDS = ("wall_time_s", "eval_time_s")


# ---------------------------------------------------------------------------- files a unit needs
def initial_weights(env: Environment, replicate: int) -> dict[str, torch.Tensor]:
    """Replicate ``replicate``'s initial weights: drawn from its seed, or the user's given weights."""
    config = env.config
    if config.init_weights:
        from ticketlab.inputs import load_init_weights

        return load_init_weights(config.init_weights, env.meta_model())
    return env.fresh_weights(derive_seed(replicate_seed(config, replicate), "init"))


def ensure_replicate_init(env: Environment, store: Store, replicate: int) -> None:
    """Write the replicate's initial weights once (deterministic, so a race writes equal bytes)."""
    path = store.init_path(replicate)
    if not path.is_file():
        save_tensors(initial_weights(env, replicate), path, checksum=True)


def parameter_plan(env: Environment) -> ParameterPlan:
    """What the experiment prunes (by role) and its output layer, traced on one example.

    The trace runs on the ``meta`` device (no compute) when the model builds and runs there,
    else on the CPU; a forward pass that fails on the CPU too is the user's error, in one line.
    """
    from ticketlab.task import prediction

    example = env.inputs.data.sample(2)[0]
    model = env.meta_model()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type == "meta":
        try:
            return plan_parameters(model, env.config.prune, trace=lambda m: prediction(m(example.to("meta"))))
        except (NotImplementedError, RuntimeError, TypeError, ValueError, IndexError):
            model = env.build(0, "cpu")
    with user_code("the model's forward pass", active=True):
        return plan_parameters(model.eval(), env.config.prune, trace=lambda m: prediction(m(example)))


def experiment_plan(env: Environment, store: Store) -> ParameterPlan:
    """The plan recorded in the store (``parameters.json``), else traced now."""
    return store.parameter_plan() or parameter_plan(env)


def dense_mask(plan: ParameterPlan) -> Mask:
    """Level 0's mask: every prunable weight kept."""
    return Mask({n: torch.ones(plan.shapes[n], dtype=torch.bool) for n in plan.pruned})


def level_mask_inputs_ready(config: Config, store: Store, replicate: int, level: int,
                            trained: Callable[[int, int], bool]) -> bool:
    """Whether level ``level``'s mask can be made now, from what the pruning method needs.

    ``trained(replicate, level)`` says whether that ticket has *finished* and did not diverge,
    as the scheduler knows it: a summary file that merely exists may still be mid-write by a
    worker (its checksum not yet recorded), so the store is not polled for it.
    """
    from ticketlab.method import Need

    if level == 0 or store.level_mask_path(replicate, level).is_file():
        return True
    if not level_mask_inputs_ready(config, store, replicate, level - 1, trained):
        return False
    needs = resolve_method(config.prune.method).needs(level)
    if Need.DENSE_TRAINED in needs and not trained(replicate, 0):
        return False
    return Need.PREVIOUS_TRAINED not in needs or trained(replicate, level - 1)


def ensure_level_mask(env: Environment, store: Store, replicate: int, level: int) -> None:
    """Make level ``level``'s ticket mask with the experiment's pruning method (idempotent).

    Level 0's (dense) mask is every prunable weight; a level's mask is the method's answer
    given the previous level's mask and whatever else the method asks for, read from files.
    """
    path = store.level_mask_path(replicate, level)
    if path.is_file():
        return
    plan = experiment_plan(env, store)
    if level == 0:
        dense_mask(plan).save(path)
        return
    ensure_level_mask(env, store, replicate, level - 1)
    ensure_replicate_init(env, store, replicate)
    previous = store.mask(store.level_mask_path(replicate, level - 1))
    context = MaskContext(env.config, store, replicate, level, plan, previous, env)
    method = resolve_method(env.config.prune.method)
    with user_code(f"pruning method {method.name}", f"replicate {replicate} level {level}"):
        mask = method.next_mask(context)
    mask.save(path)


# ---------------------------------------------------------------------------- events -> files
class StoreEvents:
    """Loop events of one unit: progress, checkpoints and the rewind point, written to the store."""

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
                raise _CallbackError(exc) from exc

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


@dataclass
class PreparedUnit:
    """A unit ready to train: model and optimizer at its start (or checkpoint), plus its events."""

    unit: Unit
    paths: UnitPaths
    model: nn.Module
    optimizer: torch.optim.Optimizer
    mask: Mask
    masks: dict[str, torch.Tensor] | None  # float {0,1} per pruned parameter; None for the dense run
    state: TrainState
    events: StoreEvents
    end: int
    data_seed: int
    capture_steps: frozenset[int]
    env: Environment
    rng: dict[str, torch.Tensor]  # the torch RNG to train under (Dropout): a seed, or a checkpoint's state
    train: TrainConfig  # the unit's schedule (``unit_schedule``)
    stepper_info: dict = dataclasses.field(default_factory=dict)  # which stepper trained it (summary)
    resumed_stepper_info: dict | None = None  # the stepper its checkpoint was trained with (kept on resume)


def unit_numerics(resumed: dict | None) -> dict:
    """The numerics a unit trains under: this process's, marked ``mixed`` when its checkpoint
    was trained under others (resumed with other ``--threads``): no one setting re-trains it
    bit for bit then, so ``verify`` checks it by interval."""
    here = numerics_record()
    if resumed is not None and (resumed.get("mixed") or {k: v for k, v in resumed.items() if k != "mixed"} != here):
        return {**here, "mixed": True}
    return here


def unit_schedule(config: Config, unit: Unit, end: int) -> TrainConfig:
    """The training schedule of ``unit``: the experiment's, except that a fine-tuned ticket
    (``retrain="finetune"``) trains at the schedule's final learning rate throughout. A pure
    function of the config and the unit, so a resumed unit continues on the same schedule."""
    train = config.train
    if config.retrain == "finetune" and unit.arm == "ticket" and unit.level > 0:
        return dataclasses.replace(train, lr=learning_rate(train, end - 1), milestones=(), warmup_iterations=0)
    return train


def prepare_unit(
    env: Environment, store_dir: str, unit: Unit, progress: ProgressFn | None = None
) -> PreparedUnit | dict:
    """Load everything a unit needs; return its stored summary instead if it is already done.

    Every file it reads is verified against its checksum (``Store``); temporary files a killed
    write left in the unit's folder are removed first.
    """
    config = env.config
    store = Store(store_dir)
    paths = store.unit(unit.replicate, unit.level, unit.arm)
    if paths.done():
        return store.summary(paths)
    remove_temporaries(paths.directory)
    ensure_replicate_init(env, store, unit.replicate)
    model = env.build(0)  # weights are loaded below; the seed only makes construction deterministic
    context = ArmContext(config, store, unit.replicate, unit.level, env.fresh_weights)
    arm = resolve_arm(unit.arm)
    if unit.level == 0:
        ensure_level_mask(env, store, unit.replicate, 0)
    ticket_mask = store.mask(store.level_mask_path(unit.replicate, unit.level))
    with user_code(f"control {unit.arm}", unit):
        mask = arm.mask(ticket_mask, context) if unit.level > 0 else ticket_mask
    if not paths.mask.is_file():
        mask.save(paths.mask)

    end = env.end()
    optimizer = make_optimizer(model.parameters(), config.train, env.device)
    if paths.checkpoint.is_file():
        weights, optim_state, meta = load_training_state(store, paths.checkpoint)
        state = TrainState(meta["step"], meta["history"], meta["loss_sum"], meta["loss_count"],
                           eval_seconds=meta.get("eval_seconds", 0.0))
        elapsed = meta["elapsed"]
        rng = split_prefixed(store.tensors(paths.checkpoint), RNG_PREFIX) or None
        resumed_stepper = meta.get("stepper_info")
        resumed_numerics = meta.get("numerics")
    else:
        with user_code(f"control {unit.arm}", unit):
            start = arm.start(mask, context)
        weights, optim_state = start.weights, start.optimizer_state
        state, elapsed, rng, resumed_stepper = TrainState(start.step), 0.0, None, None
        resumed_numerics = None
        if not paths.start.is_file():
            save_tensors(weights, paths.start, checksum=True)
    load_state(model, weights)
    if optim_state:
        load_optimizer_state(optimizer, model, optim_state)

    masks = {n: m.to(env.device, torch.float32) for n, m in mask.items()}
    events = StoreEvents(unit, paths, store, model, optimizer, masks, elapsed, progress, end)
    events.numerics = unit_numerics(resumed_numerics)
    capture = frozenset({config.rewind_iteration}) if unit.level == 0 and config.rewind_iteration > 0 else frozenset()
    seed = replicate_seed(config, unit.replicate)
    return PreparedUnit(
        unit, paths, model, optimizer, mask, masks if unit.level > 0 else None, state, events, end,
        derive_seed(seed, "data"), capture, env, rng or {"seed": torch.tensor(derive_seed(seed, "rng", unit.level, unit.arm))},
        unit_schedule(config, unit, end), resumed_stepper_info=resumed_stepper,
    )


def finish_unit(prepared: PreparedUnit, precision: str = "fp32") -> dict:
    """Write a trained unit's final weights, metrics and (last, as the done marker) its summary.

    A diverged unit gets no final weights (they are not finite): its metrics up to the
    divergence and a summary with ``status: diverged``, the step and its last finite evaluation.
    """
    paths, state, unit, env = prepared.paths, prepared.state, prepared.unit, prepared.env
    if not state.diverged:
        save_tensors(state_of(prepared.model), paths.final, checksum=True)
    weights = stored_weights(prepared)
    write_jsonl_atomic(paths.metrics, state.history, checksum=True)
    summary = {
        "replicate": unit.replicate,
        "level": unit.level,
        "arm": unit.arm,
        "seed": replicate_seed(env.config, unit.replicate),
        "percent_remaining": 100.0 * prepared.mask.fraction_remaining(),
        "layer_percent_remaining": {n: 100.0 * f for n, f in prepared.mask.layer_fractions().items()},
        "start_step": state.history[0]["step"],
        "wall_time_s": prepared.events.wall_time(),
        "eval_time_s": state.eval_seconds,  # of which: evaluating (validation, and test where reported)
        "device": str(env.device),
        "precision": precision,
        # stacked (--batch) and sequential training differ in the last bits: a re-run is exact only in kind
        "training": "stacked" if prepared.events.stacked else "sequential",
        "metric": env.task.metric_name,
        # threads and determinism flags move the last bits: verify re-trains under these
        "numerics": prepared.events.numerics,
        # the score's resolution (one example) that the verdicts' zero-variance floor uses
        "test_examples": env.data.test_examples(),
        **prepared.stepper_info,
        **(diverged_summary(unit, state) if state.diverged else {"status": "ok", **summarize_history(state.history)}),
        "weights": weights,
    }
    entry = write_json_atomic(paths.summary, summary, checksum=True)
    prepared.events.store.record_finished({prepared.events.store.unit_key(paths): entry})
    remove_checksummed(paths.checkpoint)
    return summary


def stored_weights(prepared: PreparedUnit) -> dict[str, dict | None]:
    """Which weight file holds which iteration, for the summary; drops early-stop weights that
    are not the summary's early-stopping point (a diverged unit, a checkpoint resumed from an
    older ticketlab that did not keep them, a damaged file), so that a file present is always
    the one reported."""
    paths, state = prepared.paths, prepared.state
    if state.diverged:
        _remove(paths, paths.early_stop)
        return {"early_stop": None, "final": None}
    step = int(early_stop(state.history)["step"])
    final = {"file": paths.final.name, "step": int(state.history[-1]["step"])}
    if prepared.events.early_stop_weights(step) is not None:
        return {"early_stop": {"file": paths.early_stop.name, "step": step}, "final": final}
    _remove(paths, paths.early_stop)
    return {"early_stop": None, "final": final}


def _remove(paths: UnitPaths, path) -> None:
    remove_checksummed(path)


def diverged_summary(unit: Unit, state: TrainState) -> dict:
    """The summary fields of a diverged unit: where, what, and the last finite evaluation.

    The score fields are present and null, so statistics leave the unit out of their
    intervals (and the verdict code can show the level as diverged from ``status``).
    """
    last = last_finite(state.history)
    reached = (f"last finite evaluation: step {last['step']}, validation score {last['val_acc']:.3f}"
               if last else "no finite evaluation")
    message = (f"{unit} diverged: non-finite {state.diverged} by step {state.step} ({reached}); "
               "lower the learning rate (--lr) or add warmup; with streamed data (checked on its first batch only) "
               "or a custom loss, also look there for NaN or infinite values")
    return {
        "status": "diverged",
        "diverged_step": state.step,
        "message": message,
        "last_finite_step": last["step"] if last else None,
        "early_stop_step": None, "test_acc_at_early_stop": None, "val_acc_at_early_stop": None,
        "val_loss_at_early_stop": None, "final_test_acc": None, "final_val_acc": None, "final_step": state.step,
    }


RNG_PREFIX = "rng/"


class _CallbackError(BaseException):
    """Carries an exception of the progress callback past ``user_code`` (which would otherwise
    blame the model) up to ``train_prepared``, which re-raises the original."""

    def __init__(self, original: Exception) -> None:
        super().__init__(original)
        self.original = original


def rng_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The torch RNG state that random layers (Dropout) draw from, saved with each checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


@contextlib.contextmanager
def seeded_rng(rng: dict[str, torch.Tensor], device: torch.device):
    """Train under the unit's own torch RNG: seeded per unit, or restored from its checkpoint, so a
    model with Dropout trains reproducibly and resumes exactly. The caller's RNG is untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if "seed" in rng:
            torch.manual_seed(int(rng["seed"]))
        else:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and devices:
                torch.cuda.set_rng_state(rng["cuda"], device)
        yield


def train_prepared(prepared: PreparedUnit, precision: str = "fp32", stepper: str = "auto") -> None:
    """Train one prepared unit to its end with one model: the dense-masked or the sparse stepper
    (``stepper``: auto, dense or sparse; see ``sparse_stepper.choose_stepper``)."""
    from ticketlab.sparse_stepper import choose_stepper

    env = prepared.env
    resumed = prepared.resumed_stepper_info
    if stepper == "auto" and resumed:  # a resumed unit continues on the path it started on (same bits)
        stepper_object, _ = choose_stepper(prepared, resumed["stepper"], precision)
        prepared.stepper_info = resumed
    else:
        stepper_object, prepared.stepper_info = choose_stepper(prepared, stepper, precision)
    stepper = stepper_object
    prepared.events.stepper_info = prepared.stepper_info
    try:
        with user_code("training (the model's forward/backward or the loss)", prepared.unit, active=env.user), \
                seeded_rng(prepared.rng, env.device):
            run_loop(stepper, env.data, prepared.train, [prepared.state], [prepared.events], prepared.end,
                     [prepared.data_seed], prepared.capture_steps)
    except _CallbackError as wrapped:
        raise wrapped.original from None


def run_unit(
    config: Config,
    store_dir: str,
    unit: Unit,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    precision: str = "fp32",
    inputs: bytes | Inputs | None = None,
    stepper: str = "auto",
) -> dict:
    """Run (or resume, or skip) one unit and return its summary record."""
    env = environment(config, resolve_device(device), inputs)
    prepared = prepare_unit(env, store_dir, unit, progress)
    if isinstance(prepared, dict):
        return prepared
    train_prepared(prepared, precision, stepper)
    return finish_unit(prepared, precision)


# Events is the protocol StoreEvents implements (re-exported for extensions).
__all__ = ["Events", "Environment", "PreparedUnit", "Unit", "environment", "run_unit", "prepare_unit", "finish_unit"]
