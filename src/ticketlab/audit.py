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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ticketlab.config import Config
from ticketlab.errors import IntegrityWarning, StoreError
from ticketlab.graph import all_units
from ticketlab.integrity import problem_with
from ticketlab.io import MANIFEST, parse_json, parse_jsonl, read_manifest, remove_temporaries, update_manifest
from ticketlab.store import Store

SUFFIX = ".damaged"


@dataclass(frozen=True)
class Finding:
    """One damaged file, and what a re-run does about it."""

    path: Path
    problem: str
    remedy: str
    set_aside: tuple[Path, ...]  # what ``run`` renames so that the graph recomputes it

    def line(self, root: Path) -> str:
        return f"{_relative(self.path, root)}: {self.problem}; a re-run {self.remedy}"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.damaged`` (numbered if taken) and drop its checksum."""
    target = path.with_name(path.name + SUFFIX)
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{SUFFIX}.{n}")
    path.rename(target)
    if path.name != MANIFEST and read_manifest(path.parent) is not None:
        update_manifest(path.parent, {path.name: None})
    return target


def scan(store: Store, config: Config) -> list[Finding]:
    """Every damaged file of the experiment (none can be found in a legacy experiment but
    unparseable JSON). Reads and hashes every file, once."""
    store.warn_if_legacy()
    legacy = store.legacy
    findings: list[Finding] = []
    for replicate in range(config.seeds):
        if store.replicate_dir(replicate).is_dir():
            findings += _replicate_findings(store, config, replicate, legacy)
    for unit in all_units(config):
        paths = store.unit(unit.replicate, unit.level, unit.arm)
        if paths.directory.is_dir():
            findings += _unit_findings(paths, legacy)
    return findings


def _replicate_findings(store: Store, config: Config, replicate: int, legacy: bool) -> list[Finding]:
    if legacy:
        return []
    found = []
    init = store.init_path(replicate)
    if init.exists() and (problem := problem_with(init)):
        found.append(Finding(init, problem, "draws it again from the replicate's seed", (init,)))
    rewind = store.rewind_path(replicate)
    dense = store.unit(replicate, 0, "ticket")
    problem = problem_with(rewind) if rewind.exists() else None
    if config.rewind_iteration > 0 and not rewind.exists() and dense.done():
        problem = "missing"
    if problem:
        aside = tuple(p for p in (rewind, dense.checkpoint, dense.summary) if p.exists())
        found.append(Finding(rewind, problem, "trains the dense run (level 0) again to capture it", aside))
    for level in range(config.levels + 1):
        mask = store.level_mask_path(replicate, level)
        if mask.exists() and (problem := problem_with(mask)):
            source = "rebuilds it (dense)" if level == 0 else f"prunes it again from level {level - 1}'s ticket"
            found.append(Finding(mask, problem, source, (mask,)))
    return found


def _unit_findings(paths, legacy: bool) -> list[Finding]:
    """Damage in one unit's folder: a finished unit trains again, an unfinished one recomputes
    its damaged inputs or restarts from its start."""
    if legacy:
        return _legacy_unit_findings(paths)
    entries = read_manifest(paths.directory)
    done = paths.done()
    manifest = paths.directory / MANIFEST
    if entries is None:
        present = tuple(p for p in [*paths.outputs(), manifest] if p.exists())
        if not present:
            return []
        remedy = "trains this unit again" if done else "starts this unit again"
        return [Finding(manifest, "missing or unreadable", remedy, present)]
    found = []
    for path in paths.outputs():
        if not path.exists() and not (done and path.name in entries):  # a recorded file that vanished
            continue
        if not done and path in (paths.final, paths.metrics, paths.summary):
            continue  # an unfinished unit rewrites these
        problem = problem_with(path, entries=entries)
        if not problem:
            continue
        if done:
            aside = tuple(p for p in (path, paths.summary) if p.exists())
            found.append(Finding(path, problem, "trains this unit again", aside))
        elif path in (paths.checkpoint, paths.early_stop):
            # the early-stop weights may be from before the checkpoint: both are recomputed
            aside = tuple(p for p in (paths.checkpoint, paths.early_stop) if p.exists())
            found.append(Finding(path, problem, "restarts this unit from its start", aside))
        else:
            found.append(Finding(path, problem, "recomputes it", (path,)))
    return found


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
    so that the graph recomputes it. Returns the findings (each already warned about)."""
    for directory in [store.directory, *sorted(p for p in store.directory.rglob("*") if p.is_dir())]:
        remove_temporaries(directory)
    findings = scan(store, config)
    for finding in findings:
        where = _relative(finding.path, store.directory)
        warnings.warn(f"{where}: {finding.problem}; set aside as *{SUFFIX}, and this run {finding.remedy}",
                      IntegrityWarning, stacklevel=2)
        for path in finding.set_aside:
            if path.exists():
                set_aside(path)
    return findings
