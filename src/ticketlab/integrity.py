"""Is a stored file the one ticketlab wrote? Checked against its folder's ``manifest.json``.

Every file of an experiment is recorded, when written, with its SHA-256 and size in the
manifest of its folder (see ``io``). A file whose bytes no longer match, or that has no
entry, is *damaged*: a truncated write from outside ticketlab, a flipped bit, a hand edit.
Readers go through :func:`verified_bytes`, which reads a file once, checks it, and hands the
same bytes to the parser, so what is checked is exactly what is used.

Experiments written before checksums existed (store format 1, no ``format`` in config.json)
have no manifests: they are read unverified (``legacy=True``), with a warning from the store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ticketlab.errors import StoreError
from ticketlab.io import read_bytes, read_manifest_record


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
