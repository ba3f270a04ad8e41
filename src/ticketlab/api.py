"""The Python API: ``run(config) -> Result``. The CLI calls this and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ticketlab.audit import repair, scan
from ticketlab.config import Config, RunOptions
from ticketlab.errors import StoreError
from ticketlab.executors import make_executor
from ticketlab.graph import all_units, blocked, diverged_levels, run_graph
from ticketlab.masks import Mask
from ticketlab.preflight import preflight
from ticketlab.store import Store
from ticketlab.units import (
    ProgressFn, Unit, ensure_level_mask, ensure_replicate_init, experiment_dataset, parameter_plan, resolve_device,
)
from ticketlab.io import write_json_atomic
from ticketlab.verdicts import Criteria, VerdictTable, verdict_table


@dataclass(frozen=True)
class Result:
    """An experiment's results, read from its directory (every file verified on the way)."""

    directory: Path
    config: Config
    runs: list[dict[str, Any]]

    @classmethod
    def load(cls, directory: str | Path, require_complete: bool = False, audit: bool = True) -> "Result":
        """Read whatever units of the experiment in ``directory`` have finished.

        With ``audit`` (the default) every file of the experiment is checked against its
        checksum first, and any damage is a StoreError naming the file; ``run`` passes False
        for the result it has just written and audited. Each unit's record has a ``status``:
        ``ok``, or ``diverged`` (its accuracy fields are null).
        """
        store = Store(directory)
        config = store.read_config()
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
        if require_complete:
            diverged = diverged_levels(runs)
            done = {(r["replicate"], r["level"], r["arm"]) for r in runs}
            for unit in all_units(config):
                if (unit.replicate, unit.level, unit.arm) not in done and not blocked(unit, diverged):
                    raise StoreError(f"{directory}: {unit} has not finished; run the experiment again to complete it")
        if not runs:
            raise StoreError(f"{directory} has no finished training yet; run the experiment first")
        return cls(Path(directory), config, runs)

    @property
    def store(self) -> Store:
        return Store(self.directory)

    def verdicts(self, criteria: Criteria | None = None) -> VerdictTable | None:
        """Every pruned level judged by ``criteria`` (default rules), or None without a dense run.

        The evaluation interval, the resolution of early-stopping iterations, comes from the
        config, so ties on the evaluation grid are judged as ties.
        """
        if not any(r["level"] == 0 and r["arm"] == "ticket" for r in self.runs):
            return None  # no dense run yet: nothing to judge against
        return verdict_table(self.runs, criteria, eval_every=self.config.train.eval_every)

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
        return self.store.unit(replicate, level, arm).final

    def select(self, arm: str | None = None, level: int | None = None) -> list[dict[str, Any]]:
        return [r for r in self.runs if (arm is None or r["arm"] == arm) and (level is None or r["level"] == level)]


def run(
    config: Config | dict[str, Any],
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
    on_done: Callable[[Unit, dict], None] | None = None,
) -> Result:
    """Run (or resume) the experiment ``config`` and return its result.

    Everything is validated before anything is written: the config, the run options, the
    device, the dataset files, the output folder, the prune patterns, the rewind point and
    whether the model fits (``preflight``). Running the same config again resumes it:
    finished units are skipped, a killed unit continues from its last checkpoint, and any
    damaged file is set aside and recomputed (``audit.repair``). A unit that diverges ends
    with status ``diverged`` (see ``Result.diverged``); its replicate's later levels are not trained.
    """
    if not isinstance(config, Config):
        config = Config.from_dict(config)
    options = options or RunOptions()
    options.validate()
    options = options.resolved()
    device = resolve_device(options.device)
    data = experiment_dataset(config, device)  # missing or malformed data fails here, before any write
    preflight(config, data, options, device)

    store = Store.for_config(config, options.root)
    with store:
        store.write_config(config)
        if not store.plan_path.is_file():
            write_json_atomic(store.plan_path, parameter_plan(config, data).to_json(), checksum=True)
        if repair(store, config):
            for replicate in range(config.seeds):  # inputs no unit left to run would rewrite
                if store.replicate_dir(replicate).is_dir():
                    ensure_replicate_init(config, store, replicate, data)
                    ensure_level_mask(config, store, replicate, 0)
        executor = make_executor(config, str(store.directory), options, progress)
        run_graph(config, store, executor, on_done)
    return Result.load(store.directory, require_complete=True, audit=False)
