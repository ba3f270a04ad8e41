"""The stability analysis' files under ``<experiment>/stability/``: checksummed, verified, recomputed.

Every file the analysis writes (the dense weights replayed to k, each copy's final weights,
each cell's ``result.json``, ``stability.json`` and the plot) is recorded in its folder's
``manifest.json`` like the experiment's own files (``io.write_bytes_atomic(checksum=True)``).
A file that does not match its entry, or a ``result.json`` that is not a result of its own
(replicate, level, k) with the requested number of points, is set aside (``<name>.damaged``)
with a warning and recomputed, never used: the analysis is a deterministic function of the
experiment, so the recomputed file is the one that was lost. ``ticketlab check`` reports the
same damage (:func:`stability_findings`) without changing anything.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from ticketlab.errors import IntegrityWarning, StoreError
from ticketlab.io import (
    MANIFEST,
    TEMPORARY,
    parse_json,
    read_bytes,
    read_manifest_record,
    remove_temporaries,
    tensors_from_bytes,
)
from ticketlab.store.integrity import problem_with, relative_to_root
from ticketlab.store.layout import Store

FOLDER = "stability"
RESULT = "result.json"
REMEDY = "`ticketlab stability` recomputes it"
_INT_FIELDS = ("replicate", "level", "k")
_NUMBER_FIELDS = ("percent_remaining", "barrier")


def root_of(store: Store) -> Path:
    return store.directory / FOLDER


def result_problem(record: Any, replicate: int | None = None, level: int | None = None, k: int | None = None,
                   points: int | None = None) -> str | None:
    """Why ``record`` is not a usable interpolation result (None when it is). ``replicate``,
    ``level``, ``k`` and ``points``, when given, must be the record's own: a result copied from
    another cell, or one with fewer points, is not this cell's."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name in (*_INT_FIELDS, "errors", "alphas", "endpoint_test_acc", *_NUMBER_FIELDS):
        if name not in record:
            return f"it lacks {name!r}"
    if not all(isinstance(record[n], int) and not isinstance(record[n], bool) for n in _INT_FIELDS):
        return "replicate, level and k must be integers"
    if not all(_number(record[n]) for n in _NUMBER_FIELDS):
        return "percent_remaining and barrier must be numbers"
    errors, alphas, accuracy = record["errors"], record["alphas"], record["endpoint_test_acc"]
    if not (isinstance(errors, list) and len(errors) >= 3 and all(_number(e) for e in errors)):
        return "errors must be a list of at least 3 numbers"
    if not (isinstance(alphas, list) and len(alphas) == len(errors) and all(_number(a) for a in alphas)):
        return "alphas must be numbers, one per error"
    if not (isinstance(accuracy, list) and len(accuracy) == 2 and all(_number(a) for a in accuracy)):
        return "endpoint_test_acc must be two numbers"
    for name, expected in zip(_INT_FIELDS, (replicate, level, k)):
        if expected is not None and record[name] != expected:
            return f"its {name} is {record[name]}, not this folder's {expected}"
    if points is not None and len(errors) != points:
        return f"{len(errors)} points, {points} requested"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell_of(path: Path) -> tuple[int, int, int] | None:
    """(replicate, level, k) from ``.../replicate_<r>/level_<LL>/k_<k>/result.json``."""
    try:
        k_dir, level_dir, replicate_dir = path.parent, path.parent.parent, path.parent.parent.parent
        return (int(replicate_dir.name.removeprefix("replicate_")), int(level_dir.name.removeprefix("level_")),
                int(k_dir.name.removeprefix("k_")))
    except ValueError:
        return None


def verified_problem(path: Path) -> tuple[bytes | None, str | None]:
    """``path``'s bytes and why they cannot be used (None when they can)."""
    try:
        data = read_bytes(path)
    except StoreError as exc:
        return None, str(exc)
    problem = problem_with(path, data)
    if problem is None and path.name == RESULT:
        try:
            problem = result_problem(parse_json(data, path), *(_cell_of(path) or (None, None, None)))
        except StoreError:
            problem = "not valid JSON"
    return data, problem


def set_aside_damaged(path: Path, problem: str, root: Path) -> None:
    """Warn, then rename ``path`` to ``<name>.damaged`` so that it is recomputed."""
    from ticketlab.store.integrity import set_aside

    where = relative_to_root(path, root.parent)  # the study folder's own name shown first
    warnings.warn(f"{where}: {problem}; set aside as *.damaged, and the analysis recomputes it",
                  IntegrityWarning, stacklevel=3)
    set_aside(path)


def load_tensors_verified(path: Path, root: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of ``path`` if it is present and matches its manifest; a damaged file is
    set aside (None: recompute it)."""
    if not path.is_file():
        return None
    data, problem = verified_problem(path)
    if problem is None and data is not None:
        try:
            return tensors_from_bytes(data, path)
        except StoreError as exc:
            problem = str(exc)
    set_aside_damaged(path, problem or "unreadable", root)
    return None


def load_result_verified(path: Path, root: Path, replicate: int, level: int, k: int,
                         points: int) -> dict[str, Any] | None:
    """A cell's result if it is present, intact and has ``points`` points; a damaged one is set
    aside; one with another number of points is left in place (recomputed and replaced)."""
    if not path.is_file():
        return None
    data, problem = verified_problem(path)
    if problem is None and data is not None:
        record = parse_json(data, path)
        if len(record["errors"]) == points:
            return record
        return None
    set_aside_damaged(path, problem or "unreadable", root)
    return None


def recorded_results(root: Path) -> list[dict[str, Any]]:
    """Every intact cell result under ``root`` (a damaged one is set aside with a warning)."""
    records = []
    for path in sorted(root.glob("replicate_*/level_*/k_*/" + RESULT)):
        data, problem = verified_problem(path)
        if problem is None and data is not None:
            records.append(parse_json(data, path))
        else:
            set_aside_damaged(path, problem or "unreadable", root)
    return records


def remove_stale_temporaries(root: Path) -> None:
    """Temporary files of writes a killed analysis left behind (the caller holds the lock)."""
    if root.is_dir():
        for directory in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
            remove_temporaries(directory)


def stability_findings(store: Store) -> list:
    """Damage under ``<experiment>/stability/`` for ``ticketlab check``: files that do not
    match their folder's manifest, listed files that are missing, results that are not results."""
    from ticketlab.experiment.audit import Finding

    root = root_of(store)
    if not root.is_dir():
        return []
    found = []
    for directory in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        files = sorted(p for p in directory.iterdir() if p.is_file() and _is_output(p))
        record = read_manifest_record(directory)
        if record is None:
            if files:
                problem = "missing" if not (directory / MANIFEST).exists() else "unreadable (not a manifest)"
                found.append(Finding(directory / MANIFEST, problem, "`ticketlab stability` recomputes its folder",
                                     tuple(files)))
            continue
        listed = set(record["files"])  # a pending entry alone may be a write killed before its rename
        for path in files + [directory / name for name in sorted(listed) if not (directory / name).exists()]:
            _, problem = verified_problem(path) if path.exists() else (None, "missing")
            if problem:
                found.append(Finding(path, problem, REMEDY, (path,)))
    return found


def _is_output(path: Path) -> bool:
    return path.name not in (MANIFEST, ".lock") and not TEMPORARY.match(path.name) and ".damaged" not in path.name
