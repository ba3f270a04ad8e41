"""The Python API: ``run(config) -> Result``. The CLI calls this and nothing else."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import cloudpickle
from pathlib import Path
from typing import Any, Callable, Literal

from torch import nn

from ticketlab.experiment.audit import repair, scan
from ticketlab.config import Config, RunOptions
from ticketlab.errors import ConfigError, PerformanceNote, StoreError
from ticketlab.executors import make_executor
from ticketlab.executors.local import start_worker_server
from ticketlab.experiment.schedule import all_units, blocked, diverged_levels, run_graph
from ticketlab.masks import Mask
from ticketlab.experiment.preflight import preflight
from ticketlab.experiment.progress import progress_lines
from ticketlab.roles import SelectionNote, selection_note
from ticketlab.store.layout import Store
from ticketlab.experiment.inputs import prepare_inputs
from ticketlab.train.task import Task
from ticketlab.experiment.unit import ProgressFn, Unit
from ticketlab.experiment.level_masks import ensure_level_mask, ensure_replicate_init
from ticketlab.experiment.environment import environment, resolve_device
from ticketlab.io import write_json_atomic
from ticketlab.evidence.verdicts import Criteria, VerdictTable, verdict_table
from ticketlab.experiment.looks import Replay, bind, design_for, finished_runs, run_looks, state_of, stored_design


@dataclass(frozen=True)
class Result:
    """An experiment's results, read from its directory (every file verified on the way)."""

    directory: Path
    config: Config
    runs: list[dict[str, Any]]
    factory: Any = field(default=None, repr=False, compare=False)  # the model, for ``model()``

    @classmethod
    def load(cls, directory: str | Path, require_complete: bool = False, audit: bool = True,
             levels: int | None = None, model: Any = None) -> "Result":
        """Read whatever units of the experiment in ``directory`` have finished.

        With ``audit`` (the default) every file of the experiment is checked against its
        checksum first, and any damage is a StoreError naming the file; ``run`` passes False
        for the result it has just written and audited. Each unit's record has a ``status``:
        ``ok``, or ``diverged`` (its accuracy fields are null). ``levels`` reads levels 0 to
        ``levels`` only (default: every level ever trained; ``levels`` is not part of the
        experiment's identity, so a chain may have been extended). ``model`` is the model
        factory ``model()`` builds with, needed only for a model given as a Python object.
        """
        store = Store(directory)
        config = store.read_config()
        if levels is not None:
            config = dataclasses.replace(config, levels=levels)  # fewer levels than stored: no deletion
        if audit:
            findings = scan(store, config)
            if findings:
                first, more = findings[0], len(findings) - 1
                raise StoreError(
                    f"{first.path} is damaged ({first.problem})" + (f", and {more} more file(s)" if more else "")
                    + f"; `ticketlab check {directory}` lists them, and running the experiment again recomputes them"
                )
        runs = []
        for unit in all_units(config):
            paths = store.unit(unit.replicate, unit.level, unit.arm)
            if paths.done():
                runs.append(store.summary(paths))
        if require_complete and config.is_sequential:
            state = state_of(store, config, runs)
            if state is None or not state.finished:
                raise StoreError(f"{directory}: look {state.look + 1 if state else 1} of its sequential design has not "
                                 "finished; run the experiment again to continue it")
        elif require_complete:
            diverged = diverged_levels(runs)
            done = {(r["replicate"], r["level"], r["arm"]) for r in runs}
            for unit in all_units(config):
                if (unit.replicate, unit.level, unit.arm) not in done and not blocked(unit, diverged):
                    raise StoreError(f"{directory}: {unit} has not finished; run the experiment again to complete it")
        if not runs:
            raise StoreError(f"{directory} has no finished training yet; run the experiment first")
        return cls(Path(directory), config, runs, model)

    @property
    def store(self) -> Store:
        return Store(self.directory)

    def sequential(self) -> Replay | None:
        """Where a sequential experiment (``seeds = "auto"``) stands: each level's decision and
        the look that made it; None for a fixed number of seeds."""
        return state_of(self.store, self.config, self.runs) if self.config.is_sequential else None

    def verdicts(self, criteria: Criteria | None = None) -> VerdictTable | None:
        """Every pruned level judged by ``criteria`` (default rules), or None without a dense run.

        The evaluation interval, the resolution of early-stopping iterations, comes from the
        config, so ties on the evaluation grid are judged as ties. A sequential experiment's
        levels are matching by its stored design's decisions, whose margin and alpha replace
        those of ``criteria`` (they were fixed before the first look).
        """
        if not any(r["level"] == 0 and r["arm"] == "ticket" for r in self.runs):
            return None  # no dense run yet: nothing to judge against
        criteria = criteria or Criteria()
        state = self.sequential()
        design = stored_design(self.store) if state is not None else None  # a state has a design
        if design is not None:
            criteria = dataclasses.replace(criteria, margin=design.margin / 100.0, alpha=design.alpha)
        return verdict_table(self.runs, criteria, eval_every=self.config.train.eval_every,
                             can_win=self.config.retrain == "rewind",
                             decisions=state.decisions if state is not None else None, design=design,
                             claim_levels=self.config.claim_levels)

    def levels(self) -> list[int]:
        return sorted({r["level"] for r in self.runs})

    def diverged(self) -> list[dict[str, Any]]:
        """Records of the units that diverged (each with a one-line ``message``)."""
        return [r for r in self.runs if r.get("status", "ok") != "ok"]

    def mask(self, level: int, replicate: int = 0, arm: str = "ticket") -> Mask:
        """The mask ``arm`` trained with at ``level`` in ``replicate``."""
        return self.store.mask(self.store.unit(replicate, level, arm).mask)

    def metrics(self, level: int, replicate: int = 0, arm: str = "ticket") -> list[dict[str, float]]:
        """The evaluation curve of one unit (losses are null where they were not finite)."""
        return self.store.jsonl(self.store.unit(replicate, level, arm).metrics)

    def final_weights_path(self, level: int, replicate: int = 0, arm: str = "ticket") -> Path:
        """Weights at the end of training (``summary["weights"]["final"]`` says which step)."""
        return self.store.unit(replicate, level, arm).final

    def early_stop_weights_path(self, level: int, replicate: int = 0, arm: str = "ticket") -> Path:
        """Weights at the early-stopping iteration (minimum validation loss): the ones whose
        ``test_acc_at_early_stop`` the tables and verdicts report. Absent for a diverged unit
        and for units trained by a ticketlab older than this file (``summary["weights"]``)."""
        return self.store.unit(replicate, level, arm).early_stop

    def model(self, level: int, replicate: int = 0, arm: str = "ticket",
              weights: Literal["early_stop", "final"] = "early_stop", model: Any = None) -> nn.Module:
        """The trained network of one unit as an ``nn.Module`` (on the CPU, in eval mode).

        It is built by the experiment's model factory, so tied parameters stay tied; the
        weights (``early_stop``: the ones the tables report; or ``final``) load strictly, and
        the unit's pruned weights are exactly zero. A model given to ``run`` as a Python object
        is passed again as ``model`` here or to ``Result.load`` (a one-line error otherwise).
        """
        from ticketlab.experiment.trained_model import masked_model, model_factory

        factory = model_factory(self.config, model if model is not None else self.factory)
        return masked_model(self.store, factory, level, replicate, arm, weights)

    def select(self, arm: str | None = None, level: int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.runs if (arm is None or r["arm"] == arm) and (level is None or r["level"] == level)]


def run(
    config: Config | dict[str, Any] | None = None,
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
    on_done: Callable[[Unit, dict], None] | None = None,
    *,
    model: Any = None,
    data: Any = None,
    task: Task | None = None,
    data_version: str | None = None,
    train: Callable[..., None] | None = None,
    criteria: Criteria | None = None,
) -> Result:
    """Run (or resume) the experiment ``config`` and return its result.

    ``model`` (a callable returning an ``nn.Module``, an import path ``"package.module:factory"``
    or a built-in name), ``data`` (``{"train": (x, y), "val": (x, y), "test": (x, y)}``, each
    split a pair of tensors or a torch ``Dataset``) and ``task`` (``ticketlab.Task``: the loss and
    score; by default classification or regression from the labels' dtype) replace the config's
    built-in names. They reach worker processes and Ray tasks by value (cloudpickle), and their
    fingerprints (``data_version``, or the config's ``data.version``, replaces hashing the data;
    given both, they must agree) name the experiment.

    Everything is validated before anything is written: the config, the run options, the
    device, the data, the output folder, the prune roles and patterns, the rewind point,
    whether the model fits, and one forward and backward pass of the user's model and loss
    (``preflight``). Running the same config again resumes it: finished units are skipped, a
    killed unit continues from its last checkpoint, and any damaged file is set aside and
    recomputed (``audit.repair``). A unit that diverges ends with status ``diverged`` (see
    ``Result.diverged``); its replicate's later levels are not trained.

    With ``seeds = "auto"`` seeds are trained look by look (``ticketlab.experiment.looks``)
    under a design made from the config's ``max_seeds`` and ``sequential`` settings and
    ``criteria``'s margin and alpha (default :class:`Criteria`), stored at the first run.

    Progress: without a ``progress`` callback of its own, the run logs one line per finished
    training with the time left (logger ``ticketlab``, on stderr when logging is not
    configured; see ``experiment.progress``); ``RunOptions(progress=False)`` keeps it quiet.
    """
    options = options or RunOptions()
    options.validate()
    if options.trackers:
        from ticketlab.report.trackers import check_trackers

        check_trackers(options.trackers)
    if train is not None:
        _check_user_loop_options(options)
    requested, options = options, options.resolved()
    start_worker_server(options)
    config, inputs = prepare_inputs(config if config is not None else {}, model, data, task, data_version, train)
    device = resolve_device(options.device)
    env = environment(config, device, inputs)  # missing or malformed data fails here, before any write
    plan = preflight(env, options)
    note = selection_note(plan, config.prune.roles)
    if note:
        warnings.warn(note, SelectionNote, stacklevel=2)
    if options.batch > 1:
        from ticketlab.experiment.stack import check_stackable
        from ticketlab.train.steppers.probe import choose_batch

        check_stackable(env)
        if options.probe_batch:
            width, note = choose_batch(env, options.batch)
            warnings.warn(note, PerformanceNote, stacklevel=2)
            options = dataclasses.replace(requested, batch=width).resolved()  # K=1: the usual parallel workers
    blob = cloudpickle.dumps(inputs) if inputs is not None and _needs_transport(options) else None

    store = Store.for_config(config, options.root)
    with store:
        store.write_config(config)
        findings = repair(store, config)  # first: a damaged parameters.json is set aside, then rewritten
        if not store.plan_path.is_file():
            write_json_atomic(store.plan_path, plan.to_json(), checksum=True)
        if findings:
            for replicate in range(config.replicates):  # inputs no unit left to run would rewrite
                if store.replicate_dir(replicate).is_dir():
                    ensure_replicate_init(env, store, replicate)
                    ensure_level_mask(env, store, replicate, 0)
        transport = blob if blob is not None else inputs
        with progress_lines(config, store, on_done, enabled=options.progress and progress is None) as on_done:

            def run_units(units: list[Unit] | None = None) -> None:
                executor = make_executor(config, str(store.directory), options, progress, transport)
                run_graph(env, store, executor, on_done, units)

            if config.is_sequential:
                _run_sequential(env, store, criteria or Criteria(), run_units)
            else:
                run_units()
    result = Result.load(store.directory, require_complete=True, audit=False, levels=config.levels, model=model)
    if options.trackers:
        from ticketlab.evidence.tables import markdown_table
        from ticketlab.report.trackers import log_to_trackers

        log_to_trackers(result, options.trackers, markdown_table(result.runs, result.verdicts(criteria)))
    return result


def _check_user_loop_options(options: RunOptions) -> None:
    """ConfigError for run options a user's training function cannot honour: it trains one
    model its own way, so replicates cannot be stacked (``batch``), stepped sparsely or autocast by ticketlab."""
    if options.batch > 1:
        raise ConfigError("batch > 1 stacks replicates in ticketlab's own loop; with train=... use batch=1 "
                          "(workers=N runs units of your loop in parallel processes)")
    if options.stepper == "sparse":
        raise ConfigError("stepper='sparse' is ticketlab's own hand-written step; with train=... use stepper='auto'")
    if options.precision != "fp32":
        raise ConfigError("precision='bf16' is ticketlab's own loop's autocast; with train=... your loop decides "
                          "its precision (use torch.autocast there) and the run keeps precision='fp32'")


def _run_sequential(env: Any, store: Store, criteria: Criteria, run_units: Callable[[list[Unit]], None]) -> None:
    """Seeds look by look under the design stored at the first run (a changed one is refused)."""
    config = env.config
    requested = design_for(config, 100.0 * criteria.margin, criteria.alpha, env.data.test_examples(),
                           criteria.min_seeds)
    design = bind(store, requested)
    run_looks(config, design, store, lambda: finished_runs(store, config), run_units)


def _needs_transport(options: RunOptions) -> bool:
    """Whether units run in other processes, which get the user's objects as bytes."""
    return options.executor == "ray" or (options.workers > 1 and options.batch == 1)
