"""Running one training unit: prepare it from the store, train it, write what it produced.

``run_unit`` is an idempotent function of the files in the store: if the unit's summary exists it
returns it; if a checkpoint exists it resumes from it; otherwise it starts from the arm's starting
point. Executors (in-process, process pool, Ray) only decide *where* and *when* it runs.
``prepare_unit`` and ``finish_unit`` are the two halves a stack of units shares (``stack``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ticketlab.arms.base import ArmContext
from ticketlab.arms.registry import resolve_arm
from ticketlab.config import Config, TrainConfig
from ticketlab.experiment.environment import (
    Environment,
    environment,
    replicate_seed,
    resolve_device,
)
from ticketlab.experiment.inputs import Inputs, user_code
from ticketlab.experiment.level_masks import ensure_level_mask, ensure_replicate_init
from ticketlab.experiment.numerics import numerics_record
from ticketlab.experiment.store_events import CallbackError, StoreEvents
from ticketlab.experiment.unit import ProgressFn, Unit
from ticketlab.io import (
    remove_checksummed,
    remove_temporaries,
    save_tensors,
    write_json_atomic,
    write_jsonl_atomic,
)
from ticketlab.masks import Mask
from ticketlab.seeding import derive_seed
from ticketlab.store.checkpoint import (
    RNG_PREFIX,
    load_training_state,
    seeded_rng,
    split_prefixed,
)
from ticketlab.store.layout import Store, UnitPaths
from ticketlab.train.events import Events
from ticketlab.train.loop import early_stop, last_finite, run_loop, summarize_history
from ticketlab.train.optim import (
    learning_rate,
    load_optimizer_state,
    make_optimizer,
)
from ticketlab.train.state import TrainState
from ticketlab.weights import load_state, state_of

# Summary fields that measure time: they differ between otherwise identical runs.
TIMING_FIELDS = ("wall_time_s", "eval_time_s")


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
    start_step: int | None = None  # where training started, when its first evaluation is not there (user loops)


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
        "start_step": prepared.start_step if prepared.start_step is not None else state.history[0]["step"],
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


def train_prepared(prepared: PreparedUnit, precision: str = "fp32", stepper: str = "auto") -> None:
    """Train one prepared unit to its end with one model: the dense-masked or the sparse stepper
    (``stepper``: auto, dense or sparse; see ``sparse_stepper.choose_stepper``), or the user's own
    training function when the run was given one (``user_training``)."""
    from ticketlab.train.steppers.probe import choose_stepper

    env = prepared.env
    if env.inputs.train_fn is not None:
        from ticketlab.experiment.user_training import train_user_loop

        return train_user_loop(prepared)
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
    except CallbackError as wrapped:
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
