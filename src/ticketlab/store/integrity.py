"""Checking one stored file against its manifest entry, and setting a damaged one aside.

The per-file half of auditing (``ticketlab.experiment.audit`` scans a whole experiment and
says what a re-run recomputes): :func:`problem_with` says why a file cannot be trusted,
:func:`verified_bytes` reads a file only once it matches its recorded checksum (raising
:class:`DamagedFileError` otherwise), and :func:`set_aside` renames a damaged file to
``<name>.damaged`` (never deleting it) and drops its checksum, so the ordinary run graph
recomputes it. It lives in ``store`` because every reader of a stored file needs it, and the
experiment-wide scan does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ticketlab.errors import StoreError
from ticketlab.io import (
    MANIFEST,
    read_bytes,
    read_manifest,
    read_manifest_record,
    update_manifest,
)

SUFFIX = ".damaged"


def relative_to_root(path: Path, root: Path) -> str:
    """``path`` as a message names it: relative to ``root`` when inside it, else in full."""
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


def forget(path: Path) -> None:
    """Drop the manifest entry of a listed file that is missing, so it is recomputed, not re-reported."""
    if read_manifest(path.parent) is not None:
        update_manifest(path.parent, {path.name: None})


class DamagedFileError(StoreError):
    """A stored file does not match its recorded checksum (or has none where one is required)."""

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        self.path, self.problem, self.remedy = Path(path), problem, remedy
        super().__init__(f"{path} is damaged ({problem}); {remedy}")

    def __reduce__(self):
        """Rebuilt from its three parts: a worker process sends it to the run as a pickle, and the
        default (from the one-message ``args``) would fail there and hide the damage."""
        return (type(self), (self.path, self.problem, self.remedy))


REMEDY = "run `ticketlab check` on the experiment to see what a re-run recomputes, then run it again"


def problem_with(path: Path, data: bytes | None = None, record: dict | None = None) -> str | None:
    """Why ``path`` cannot be trusted, or None when it matches its manifest entry.

    A file that matches its folder's *pending* entry is valid too: its writer recorded the
    entry before renaming the file into place and was killed (or is still running) before
    promoting it (see ``io.write_bytes_atomic``). ``data`` and ``record`` (the whole manifest)
    may be passed when the caller already has them (one read each).
    """
    path = Path(path)
    if record is None:
        record = read_manifest_record(path.parent)
    if record is None:
        return "its folder has no readable manifest.json"
    entry, pending = record["files"].get(path.name), record.get("pending", {}).get(path.name)
    if not isinstance(entry, dict) and not isinstance(pending, dict):
        return "no checksum recorded for it (an interrupted write, or a file ticketlab did not write)"
    if data is None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
    problems = [_mismatch(data, e) for e in (entry, pending) if isinstance(e, dict)]
    return None if None in problems else problems[0]


def _mismatch(data: bytes, entry: dict) -> str | None:
    if len(data) != entry.get("size"):
        return f"size {len(data)} bytes, {entry.get('size')} recorded"
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        return "checksum mismatch"
    return None


def verified_bytes(path: str | Path, legacy: bool, remedy: str = REMEDY) -> bytes:
    """The bytes of ``path``, checked against its manifest unless the experiment is ``legacy``.

    A mismatch is read once more: a live run may have replaced the file and promoted its entry
    between this process reading the bytes and reading the manifest; only damage persists."""
    data = read_bytes(path)
    if legacy or not problem_with(Path(path), data):
        return data
    data = read_bytes(path)
    problem = problem_with(Path(path), data)
    if problem:
        raise DamagedFileError(Path(path), problem, remedy)
    return data
