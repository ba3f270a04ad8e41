"""Every experiment under a root folder, one line each (``ticketlab list``).

Listing only reads: config.json, the units' summaries and (to tell damage) every file's
checksum, exactly as ``show`` and ``check`` read them; it never imports the user's code (a
stored config names its model and data, it does not need them), so experiments of any model
list anywhere. A folder it cannot fully read is still listed, with a one-word status saying
why, so one damaged experiment never hides the others.

Statuses: ``complete`` (every training that can run has finished), ``partial`` (some left),
``empty`` (none finished yet), ``damaged`` (some file fails its checksum: ``ticketlab check``
names it), ``unreadable`` (config.json itself is missing or damaged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ticketlab.api import Result
from ticketlab.config import Config
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.evidence.verdicts import Criteria
from ticketlab.experiment.audit import scan
from ticketlab.experiment.schedule import all_units, blocked, diverged_levels
from ticketlab.store.layout import Store

_EXPERIMENT_NAME = re.compile(r"-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Listing:
    """One experiment's line: what it is, how far it got, and its headline verdict."""

    directory: Path
    status: str
    method: str = "-"
    dataset: str = "-"
    model: str = "-"
    levels: str = "-"
    seeds: str = "-"
    done: int = 0
    total: int = 0
    headline: str = "-"

    @property
    def units(self) -> str:
        return f"{self.done}/{self.total}" if self.total else "-"


def experiment_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` that are (or are named like) experiments, by name."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the folder that holds experiment directories "
                          "(default: experiments)")
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and ((p / "config.json").is_file() or _EXPERIMENT_NAME.search(p.name)))


def list_experiments(root: str | Path, criteria: Criteria | None = None) -> list[Listing]:
    """Every experiment under ``root`` (see the module docstring for the statuses)."""
    return [describe(directory, criteria) for directory in experiment_dirs(Path(root))]


def describe(directory: Path, criteria: Criteria | None = None) -> Listing:
    """``directory``'s line; whatever cannot be read becomes its status, never an error."""
    store = Store(directory)
    try:
        config = store.read_config()
    except TicketlabError:
        return Listing(directory, "unreadable")
    base = _identity(directory, config)
    units = all_units(config)
    try:
        damaged = bool(scan(store, config))
        records = [store.summary(p) for u in units if (p := store.unit(u.replicate, u.level, u.arm)).done()]
    except TicketlabError:
        damaged, records = True, []
    stuck = sum(blocked(u, diverged_levels(records)) for u in units)
    counts = {"done": len(records), "total": len(units) - stuck}
    if damaged:
        return Listing(**base, status="damaged", **counts)
    if not records:
        return Listing(**base, status="empty", **counts)
    status = "complete" if counts["done"] >= counts["total"] else "partial"
    return Listing(**base, status=status, **counts, headline=_headline(directory, criteria))


def _identity(directory: Path, config: Config) -> dict:
    method = config.prune.method + (f" ({config.retrain})" if config.retrain != "rewind" else "")
    return {"directory": directory, "method": method, "dataset": config.data.dataset, "model": config.model,
            "levels": str(config.levels), "seeds": str(config.seeds)}


def _headline(directory: Path, criteria: Criteria | None) -> str:
    """The headline ``show`` prints under its table (already audited: not read twice)."""
    try:
        verdicts = Result.load(directory, audit=False).verdicts(criteria)
    except TicketlabError:
        return "-"
    return verdicts.headline() if verdicts is not None else "no dense run yet"
