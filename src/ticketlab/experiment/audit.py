"""Auditing a whole experiment: what is damaged, and what a re-run recomputes.

One scan serves three callers: ``ticketlab check`` prints its findings; ``run`` sets the
damaged files aside (renamed ``<name>.damaged``, never deleted) before scheduling, so the
ordinary graph recomputes them; ``Result.load`` refuses to read an experiment with findings.

What a re-run does about each kind of damage (everything in a unit is a deterministic
function of the config, so recomputing gives the same bytes):

* ``init.safetensors``: drawn again from the replicate's seed.
* ``rewind.safetensors``: the dense run (level 0) is trained again to capture it.
* ``level_<LL>/mask.safetensors``: pruned again from level L-1's ticket (dense at level 0).
* a checkpoint: set aside; its unit restarts from its start (the last good state).
* a finished unit's files (mask, start, final, metrics, summary, manifest): the unit trains again.
* ``parameters.json`` or the experiment's own ``manifest.json``: traced again from the model
  (the manifest's index of finished trainings is rebuilt from their verified summaries).

Checks go both ways: a file the manifest lists that is missing is damage, and so is a file
present without an entry where ticketlab records one. A unit recorded as finished in the
experiment's index (``units`` of the top-level manifest) whose folder or summary is gone is
damage, and so is a unit folder whose summary names another unit (a folder copied over
another): without these a reader would silently use fewer replicates, or the wrong one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketlab.config import Config
from ticketlab.errors import IntegrityWarning, StoreError
from ticketlab.experiment.schedule import all_units
from ticketlab.io import (
    MANIFEST,
    file_entry,
    parse_json,
    parse_jsonl,
    read_manifest,
    read_manifest_record,
    remove_checksummed,
    remove_temporaries,
    update_manifest,
)
from ticketlab.store.integrity import (
    SUFFIX,
    forget,
    problem_with,
    relative_to_root,
    set_aside,
)
from ticketlab.store.layout import Store, UnitPaths


@dataclass(frozen=True)
class Finding:
    """One damaged file, and what a re-run does about it."""

    path: Path
    problem: str
    remedy: str
    set_aside: tuple[Path, ...]  # what ``run`` renames so that the graph recomputes it

    def line(self, root: Path) -> str:
        return f"{relative_to_root(self.path, root)}: {self.problem}; a re-run {self.remedy}"


def scan(store: Store, config: Config) -> list[Finding]:
    """Every damaged file of the experiment (none can be found in a legacy experiment but
    unparseable JSON). Reads and hashes every file, once."""
    store.warn_if_legacy()
    legacy = store.legacy
    findings: list[Finding] = [] if legacy else _top_findings(store)
    for replicate in range(config.replicates):
        if store.replicate_dir(replicate).is_dir():
            findings += _replicate_findings(store, config, replicate, legacy)
    recorded = {} if legacy else store.finished_index()
    for unit in all_units(config):
        paths = store.unit(unit.replicate, unit.level, unit.arm)
        found = _unit_findings(paths, legacy) if paths.directory.is_dir() else []
        if not legacy and not found:
            found = _identity_findings(store, paths, unit, recorded.get(store.unit_key(paths)))
        findings += found
    return findings


PLAN_REMEDY = "traces it again from the model and rewrites it"


TOP_REMEDY = ("rebuilds it (parameters.json traced again from the model, the index of finished trainings "
              "from their verified summaries)")


def _top_findings(store: Store) -> list[Finding]:
    """The experiment's own folder: its manifest and ``parameters.json`` (config.json is checked
    against the experiment's name by ``Store.read_config``)."""
    manifest, plan = store.directory / MANIFEST, store.plan_path
    record = read_manifest_record(store.directory)
    if record is None:
        if not manifest.exists() and not plan.exists():
            return []  # an experiment from before parameters.json: nothing recorded here
        problem = "missing" if not manifest.exists() else "unreadable (not a manifest)"
        aside = tuple(p for p in (plan, manifest) if p.exists())
        return [Finding(manifest, problem, TOP_REMEDY, aside)]
    if not plan.exists() and plan.name not in record["files"]:
        return []
    problem = problem_with(plan, record=record)
    return [Finding(plan, problem, PLAN_REMEDY, (plan,))] if problem else []


def _replicate_findings(store: Store, config: Config, replicate: int, legacy: bool) -> list[Finding]:
    if legacy:
        return []
    found = []
    listed = read_manifest(store.replicate_dir(replicate)) or {}
    init = store.init_path(replicate)
    if (init.exists() or init.name in listed) and (problem := problem_with(init)):
        found.append(Finding(init, problem, "draws it again from the replicate's seed", (init,)))
    rewind = store.rewind_path(replicate)
    dense = store.unit(replicate, 0, "ticket")
    problem = problem_with(rewind) if rewind.exists() or rewind.name in listed else None
    if config.rewind_iteration > 0 and not rewind.exists() and dense.done():
        problem = "missing"
    if problem:
        aside = (rewind, *(p for p in (dense.checkpoint, dense.summary) if p.exists()))
        found.append(Finding(rewind, problem, "trains the dense run (level 0) again to capture it", aside))
    for level in range(config.levels + 1):
        mask = store.level_mask_path(replicate, level)
        level_listed = read_manifest(mask.parent) or {} if mask.parent.is_dir() else {}
        if (mask.exists() or mask.name in level_listed) and (problem := problem_with(mask)):
            source = "rebuilds it (dense)" if level == 0 else f"prunes it again from level {level - 1}'s ticket"
            found.append(Finding(mask, problem, source, (mask,)))
    return found


def _unit_findings(paths: UnitPaths, legacy: bool) -> list[Finding]:
    """Damage in one unit's folder: a finished unit trains again, an unfinished one recomputes
    its damaged inputs or restarts from its start. A file the manifest lists but that is
    missing is damage (files are dropped from the manifest before they are deleted)."""
    if legacy:
        return _legacy_unit_findings(paths)
    record = read_manifest_record(paths.directory)
    done = paths.done()
    manifest = paths.directory / MANIFEST
    if record is None:
        present = tuple(p for p in [*paths.outputs(), manifest] if p.exists())
        if not present:
            return []
        remedy = "trains this unit again" if done else "starts this unit again"
        return [Finding(manifest, "missing or unreadable", remedy, present)]
    listed = record["files"]  # a pending entry alone promises nothing: its write may have been killed before the rename
    if not done and paths.summary.name in listed:
        aside = (paths.summary, *(p for p in (paths.checkpoint,) if p.exists()))
        return [Finding(paths.summary, "missing (the unit's manifest records it)", "trains this unit again", aside)]
    found = []
    for path in paths.outputs():
        if not path.exists() and path.name not in listed:
            continue
        if done and path == paths.checkpoint:
            continue  # a finished unit's leftover checkpoint is never read; ``repair`` removes it
        if not done and path in (paths.final, paths.metrics):
            continue  # an unfinished unit rewrites these
        problem = problem_with(path, record=record)
        if not problem:
            continue
        if done:
            aside = (path, *(p for p in (paths.summary,) if p.exists() and p != path))
            found.append(Finding(path, problem, "trains this unit again", aside))
        elif path in (paths.checkpoint, paths.early_stop):
            # the early-stop weights may be from before the checkpoint: both are recomputed
            aside = tuple(p for p in (paths.checkpoint, paths.early_stop) if p.exists() or p == path)
            found.append(Finding(path, problem, "restarts this unit from its start", aside))
        else:
            found.append(Finding(path, problem, "recomputes it", (path,)))
    return found


def _identity_findings(store: Store, paths: UnitPaths, unit, recorded: dict[str, Any] | None) -> list[Finding]:
    """A finished unit must be the unit of its folder, and one the experiment recorded as
    finished must still be there, as recorded."""
    if not paths.summary.exists():
        if recorded is None:
            return []
        where = paths.directory if not paths.directory.is_dir() else paths.summary
        return [Finding(where, "missing (the experiment recorded this training as finished)",
                        "trains this unit again", (paths.summary,))]
    data = paths.summary.read_bytes()
    try:
        summary = parse_json(data, paths.summary)
        claimed = (summary.get("replicate"), summary.get("level"), summary.get("arm"))
    except (StoreError, AttributeError):
        return []  # a damaged summary is reported by its checksum
    everything = (*(p for p in paths.outputs() if p.exists()), paths.directory / MANIFEST)
    if claimed != (unit.replicate, unit.level, unit.arm):
        problem = (f"holds replicate {claimed[0]} level {claimed[1]} {claimed[2]}, not this folder's unit "
                   "(a folder copied over another)")
        return [Finding(paths.summary, problem, "trains this unit again", everything)]
    if recorded is not None and recorded != file_entry(data):
        return [Finding(paths.summary, "not the summary recorded as finished in the experiment's manifest.json",
                        "trains this unit again", everything)]
    return []


def _legacy_unit_findings(paths) -> list[Finding]:
    """Without checksums only unparseable JSON can be told apart."""
    if not paths.done():
        return []
    for path, parse in ((paths.summary, parse_json), (paths.metrics, parse_jsonl)):
        try:
            parse(path.read_bytes(), path, legacy=True)
        except (OSError, StoreError) as exc:
            problem = "missing" if isinstance(exc, FileNotFoundError) else "not valid JSON"
            aside = tuple(p for p in (path, paths.summary) if p.exists())
            return [Finding(path, problem, "trains this unit again", aside)]
    return []


def repair(store: Store, config: Config) -> list[Finding]:
    """Before a run: remove temporary files of killed writes, set aside every damaged file
    so that the graph recomputes it, and bring the index of finished trainings up to date.
    Returns the findings (each already warned about)."""
    for directory in [store.directory, *sorted(p for p in store.directory.rglob("*") if p.is_dir())]:
        remove_temporaries(directory)
    findings = scan(store, config)
    for finding in findings:
        where = relative_to_root(finding.path, store.directory)
        warnings.warn(f"{where}: {finding.problem}; set aside as *{SUFFIX}, and this run {finding.remedy}",
                      IntegrityWarning, stacklevel=2)
        for path in finding.set_aside:
            if path.exists():
                set_aside(path)
            elif path.parent.is_dir():
                forget(path)
    if not store.legacy:
        for directory in [store.directory, *sorted(p for p in store.directory.rglob("*") if p.is_dir())]:
            settle_pending(directory)
        _settle_units(store, config)
    return findings


def settle_pending(directory: Path) -> None:
    """Resolve the pending entries that killed writes left: promoted where the file is the one
    pending (killed after its rename), dropped where it is not (killed before it)."""
    record = read_manifest_record(directory)
    if record is None or not record.get("pending"):
        return
    changes: dict[str, Any] = {}
    for name, entry in record["pending"].items():
        path = directory / name
        matches = path.is_file() and isinstance(entry, dict) and file_entry(path.read_bytes()) == entry
        changes[name] = entry if matches else record["files"].get(name)
    update_manifest(directory, changes)


def _settle_units(store: Store, config: Config) -> None:
    """Finished units' leftovers removed, and the experiment's index of finished trainings made
    to say exactly which units are finished now (after damage was set aside)."""
    if not store.directory.is_dir():
        return
    changes: dict[str, Any] = {}
    recorded = store.finished_index()
    for unit in all_units(config):
        paths = store.unit(unit.replicate, unit.level, unit.arm)
        key = store.unit_key(paths)
        if paths.done():
            remove_checksummed(paths.checkpoint)
            entry = file_entry(paths.summary.read_bytes())
            if recorded.get(key) != entry:
                changes[key] = entry
        elif key in recorded:
            changes[key] = None
    if changes:
        store.record_finished(changes)
