"""The Python API: ``run(config) -> Result``. The CLI calls this and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ticketlab.config import Config, RunOptions
from ticketlab.errors import StoreError
from ticketlab.executors import make_executor
from ticketlab.graph import all_units, run_graph
from ticketlab.io import read_json, read_jsonl
from ticketlab.masks import Mask
from ticketlab.store import Store
from ticketlab.units import ProgressFn, Unit, experiment_dataset, resolve_device
from ticketlab.verdicts import Criteria, VerdictTable, verdict_table


@dataclass(frozen=True)
class Result:
    """An experiment's results, read from its directory."""

    directory: Path
    config: Config
    runs: list[dict[str, Any]]

    @classmethod
    def load(cls, directory: str | Path, require_complete: bool = False) -> "Result":
        """Read whatever units of the experiment in ``directory`` have finished."""
        store = Store(directory)
        config = store.read_config()
        runs = []
        for unit in all_units(config):
            paths = store.unit(unit.replicate, unit.level, unit.arm)
            if paths.done():
                runs.append(read_json(paths.summary))
            elif require_complete:
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

    def mask(self, level: int, replicate: int = 0, arm: str = "ticket") -> Mask:
        """The mask ``arm`` trained with at ``level`` in ``replicate``."""
        return Mask.load(self.store.unit(replicate, level, arm).mask)

    def metrics(self, level: int, replicate: int = 0, arm: str = "ticket") -> list[dict[str, float]]:
        """The evaluation curve of one unit."""
        return read_jsonl(self.store.unit(replicate, level, arm).metrics)

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
    device and the dataset files. Running the same config again resumes it: finished units
    are skipped and a killed unit continues from its last checkpoint.
    """
    if not isinstance(config, Config):
        config = Config.from_dict(config)
    options = options or RunOptions()
    options.validate()
    options = options.resolved()
    device = resolve_device(options.device)
    experiment_dataset(config, device)  # missing or malformed data fails here, before any write

    store = Store.for_config(config, options.root)
    with store:
        store.write_config(config)
        executor = make_executor(config, str(store.directory), options, progress)
        run_graph(config, store, executor, on_done)
    return Result.load(store.directory, require_complete=True)
