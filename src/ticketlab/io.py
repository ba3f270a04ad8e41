"""Atomic, checksummed file writes: temporary file in the same directory, fsync, rename.

A reader (or a resumed run) therefore sees either the old complete file or the new complete
file, never a half-written one, even if the process is killed mid-write. Tensors go through
safetensors, so loading a checkpoint never executes code.

Files of an experiment are written with ``checksum=True``: after the rename, the file's
SHA-256 and size are recorded in ``manifest.json`` in the same directory (itself written
atomically), so a later reader can tell a damaged file from a good one (see ``integrity``).
The checksum is of the bytes this process wrote, never of what is on disk afterwards.

JSON is strict: non-finite floats are written as ``null`` (``NaN`` is not JSON, and strict
parsers reject it), and a file that does not parse is a :class:`StoreError`, never a traceback.
"""

from __future__ import annotations

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


def write_bytes_atomic(path: str | Path, data: bytes, *, checksum: bool = False) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    if checksum:
        update_manifest(path.parent, {path.name: file_entry(data)})


def file_entry(data: bytes) -> dict[str, Any]:
    """What the manifest records of one file."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def read_manifest(directory: str | Path) -> dict[str, dict[str, Any]] | None:
    """The ``files`` table of ``directory``'s manifest; None when there is none or it is damaged."""
    path = Path(directory) / MANIFEST
    try:
        files = json.loads(path.read_bytes())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def update_manifest(directory: str | Path, changes: dict[str, dict[str, Any] | None]) -> None:
    """Set (or, for ``None``, drop) manifest entries. One writer per directory at a time:
    the scheduler gives every directory of an experiment a single writer."""
    files = dict(read_manifest(directory) or {})
    for name, entry in changes.items():
        if entry is None:
            files.pop(name, None)
        else:
            files[name] = entry
    write_bytes_atomic(Path(directory) / MANIFEST, _json_bytes({"format": 1, "files": files}, indent=2))


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


def write_text_atomic(path: str | Path, text: str, *, checksum: bool = False) -> None:
    write_bytes_atomic(path, text.encode(), checksum=checksum)


def write_json_atomic(path: str | Path, data: Any, *, checksum: bool = False) -> None:
    write_bytes_atomic(path, _json_bytes(data, indent=2), checksum=checksum)


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
    """Save tensors as safetensors, atomically."""
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_bytes_atomic(path, save(contiguous, metadata=metadata), checksum=checksum)


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
