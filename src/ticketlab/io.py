"""Atomic, checksummed file writes: temporary file in the same directory, fsync, rename.

A reader (or a resumed run) therefore sees either the old complete file or the new complete
file, never a half-written one, even if the process is killed mid-write. Tensors go through
safetensors, so loading a checkpoint never executes code.

Files of an experiment are written with ``checksum=True``: the file's SHA-256 and size are
recorded in ``manifest.json`` in the same directory (itself written atomically, under a lock
on the folder), first as a *pending* entry before the rename, then as the file's entry after
it, so a later reader can tell a damaged file from a good one (see ``integrity``) even when
the writer was killed between the rename and the manifest update. The checksum is of the
bytes this process wrote, never of what is on disk afterwards.

JSON is strict: non-finite floats are written as ``null`` (``NaN`` is not JSON, and strict
parsers reject it), and a file that does not parse is a :class:`StoreError`, never a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import load, save

from ticketlab.errors import StoreError

MANIFEST = "manifest.json"
# mkstemp names: ".<name>.<random>.tmp"; a killed write can leave one behind.
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_bytes_atomic(path: str | Path, data: bytes, *, checksum: bool = False) -> dict[str, Any] | None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new file, never a part.

    With ``checksum`` the file and its manifest entry become visible together: the entry is
    recorded as *pending* before the rename and promoted after it, so a kill between the two
    leaves a file that matches its pending entry (valid, see ``integrity``), never an
    unrecorded one. Returns the manifest entry (None without ``checksum``).
    A full disk is a :class:`StoreError` (one line), not a traceback.
    """
    path = Path(path)
    entry = file_entry(data) if checksum else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry is not None:
            _change_manifest(path.parent, {}, {path.name: entry})
        _replace_with(path, data)
        if entry is not None:
            _change_manifest(path.parent, {path.name: entry}, {path.name: None})
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise StoreError(f"no space left on the device writing {path}; free some space (or choose another "
                             "--out) and run the same command again to resume") from None
        raise
    return entry


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _replace_with(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename: the atomic step itself."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_entry(data: bytes) -> dict[str, Any]:
    """What the manifest records of one file."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def read_manifest_record(directory: str | Path) -> dict[str, Any] | None:
    """The whole manifest of ``directory`` (``files``, ``pending``, ...); None when there is
    none or it is damaged (not JSON, or ``files`` is not a table)."""
    path = Path(directory) / MANIFEST
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return None
    if not isinstance(record.get("pending", {}), dict):
        return None
    return record


def read_manifest(directory: str | Path) -> dict[str, dict[str, Any]] | None:
    """The ``files`` table of ``directory``'s manifest; None when there is none or it is damaged."""
    record = read_manifest_record(directory)
    return None if record is None else record["files"]


def read_pending(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Entries recorded before their file's rename and not yet promoted (a write in progress,
    or one killed between the rename and the manifest update)."""
    record = read_manifest_record(directory)
    return {} if record is None else record.get("pending", {})


def update_manifest(directory: str | Path, changes: dict[str, dict[str, Any] | None]) -> None:
    """Set (or, for ``None``, drop) manifest entries, and drop their pending entries."""
    _change_manifest(directory, changes, dict.fromkeys(changes))


def update_manifest_section(directory: str | Path, section: str, changes: dict[str, Any]) -> None:
    """Set (or, for ``None``, drop) keys of another table of the manifest (e.g. the top-level
    ``units`` index of finished trainings), under the same lock as the files."""
    with _locked(Path(directory)):
        record = read_manifest_record(directory) or {"files": {}}
        table = record.get(section) if isinstance(record.get(section), dict) else {}
        record[section] = _with_changes(table, changes)
        _replace_with(Path(directory) / MANIFEST, _json_bytes({"format": 1, **record}, indent=2))


def _change_manifest(directory: str | Path, files: dict[str, Any], pending: dict[str, Any]) -> None:
    """Read-modify-write the manifest under an OS lock on its folder, so that units writing
    into a shared folder (a level's, the experiment's) never lose each other's entries."""
    directory = Path(directory)
    with _locked(directory):
        record = read_manifest_record(directory) or {"files": {}}
        for table, changes in (("files", files), ("pending", pending)):
            record[table] = _with_changes(record.get(table) or {}, changes)
        if not record["pending"]:
            record.pop("pending")
        _replace_with(directory / MANIFEST, _json_bytes({**record, "format": 1}, indent=2))


def _with_changes(table: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``table`` with each of ``changes`` set, or dropped where its value is None:
    how every manifest table is updated, so "None drops" means the same in each."""
    table = dict(table)
    for name, value in changes.items():
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value
    return table


class _locked:
    """An exclusive flock on a folder (released by the kernel if the holder dies)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = -1

    def __enter__(self) -> "_locked":
        self.fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def remove_checksummed(path: str | Path) -> None:
    """Delete a recorded file: its entry first, then the file, so a kill in between leaves an
    unrecorded leftover (which ``audit.repair`` removes) rather than a recorded file that is
    missing (which is damage)."""
    path = Path(path)
    if path.is_file():
        update_manifest(path.parent, {path.name: None})
        path.unlink(missing_ok=True)


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Delete temporary files a killed atomic write left in ``directory`` (not below it)."""
    removed = []
    directory = Path(directory)
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if TEMPORARY.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so it is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def _json_bytes(data: Any, indent: int | None = None) -> bytes:
    return (json.dumps(strict(data), indent=indent, sort_keys=True, allow_nan=False) + "\n").encode()


def write_text_atomic(path: str | Path, text: str, *, checksum: bool = False) -> dict[str, Any] | None:
    return write_bytes_atomic(path, text.encode(), checksum=checksum)


def write_json_atomic(path: str | Path, data: Any, *, checksum: bool = False) -> dict[str, Any] | None:
    return write_bytes_atomic(path, _json_bytes(data, indent=2), checksum=checksum)


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]], *, checksum: bool = False) -> None:
    write_bytes_atomic(path, b"".join(_json_bytes(r) for r in records), checksum=checksum)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _null_constant(name: str) -> Any:
    return None


def parse_json(data: bytes, path: str | Path, legacy: bool = False) -> Any:
    """Strict JSON (no NaN/Infinity) from ``data``; StoreError naming ``path`` if it does not parse.

    ``legacy``: the file was written by an older ticketlab, which wrote ``NaN`` for the step-0
    training loss; those constants are read as ``None`` (null) instead of marking the file damaged.
    """
    try:
        return json.loads(data.decode(), parse_constant=_null_constant if legacy else _reject_constant)
    except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
        raise StoreError(f"{path} is damaged (not valid JSON: {exc})") from None


def read_json(path: str | Path) -> Any:
    return parse_json(read_bytes(path), path)


def parse_jsonl(data: bytes, path: str | Path, legacy: bool = False) -> list[dict[str, Any]]:
    records = [parse_json(line, path, legacy) for line in data.splitlines() if line.strip()]
    if not all(isinstance(r, dict) for r in records):
        raise StoreError(f"{path} is damaged (a line is not a JSON object)")
    return records


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return parse_jsonl(read_bytes(path), path)


def save_tensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None, *, checksum: bool = False
) -> None:
    """Save tensors as safetensors, atomically, with zeros canonical (see :func:`canonical`)."""
    write_bytes_atomic(path, save({k: canonical(v) for k, v in tensors.items()}, metadata=metadata),
                       checksum=checksum)


def canonical(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the CPU, contiguous, with every zero stored as +0.0.

    A pruned weight is zero, but ``w * mask`` of a negative ``w`` is -0.0, and whether a path
    multiplies or overwrites decides the sign: a resumed unit would write other bytes than an
    uninterrupted one. ``x + 0.0`` turns -0.0 into +0.0 and changes no other value."""
    tensor = tensor.detach()
    if tensor.is_floating_point() or tensor.is_complex():
        tensor = tensor + 0.0
    return tensor.contiguous().cpu()


def tensors_from_bytes(data: bytes, path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file already read into memory (so it is read, checked and parsed once)."""
    try:
        tensors = dict(sorted(load(data).items()))  # by name, as ``load_file`` orders them
    except Exception as exc:  # safetensors raises its own error types
        raise StoreError(f"{path} is damaged (not a safetensors file: {exc})") from None
    return {k: v.to(device) for k, v in tensors.items()} if str(device) != "cpu" else tensors


def metadata_from_bytes(data: bytes, path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file: an 8-byte little-endian length, then a JSON header."""
    try:
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + length])
        metadata = header.get("__metadata__") or {}
    except (ValueError, AttributeError) as exc:
        raise StoreError(f"{path} is damaged (unreadable safetensors header: {exc})") from None
    return metadata


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return tensors_from_bytes(read_bytes(path), path, device)
