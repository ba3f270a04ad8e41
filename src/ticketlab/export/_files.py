"""The container every ticketlab export file shares: safetensors plus one JSON metadata record.

Loading reads tensors and JSON only -- never pickle, never code from the file -- and a file
of another kind, or from a newer format version, is a one-line error rather than a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ticketlab.errors import StoreError
from ticketlab.io import metadata_from_bytes, read_bytes, save_tensors, tensors_from_bytes

KEY = "ticketlab.export"
VERSION = 1


def write_export(path: str | Path, tensors: dict[str, torch.Tensor], kind: str, record: dict[str, Any]) -> None:
    """Write ``tensors`` and ``record`` (JSON, tagged with ``kind`` and the version) atomically."""
    header = {"format": kind, "version": VERSION, **record}
    save_tensors(tensors, path, metadata={KEY: json.dumps(header, sort_keys=True)})


def read_export(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and record of an export file of ``kind``; StoreError for anything else."""
    data = read_bytes(path)
    metadata = metadata_from_bytes(data, path)
    try:
        record = json.loads(metadata[KEY])
    except (KeyError, ValueError):
        raise StoreError(f"{path} is not a ticketlab export (no {KEY!r} metadata)") from None
    if record.get("format") != kind:
        raise StoreError(f"{path} is a {record.get('format')!r} export, not {kind!r}")
    if not isinstance(record.get("version"), int) or record["version"] > VERSION:
        raise StoreError(f"{path} has export format version {record.get('version')!r}; this ticketlab reads "
                         f"version {VERSION} or older (upgrade ticketlab)")
    return tensors_from_bytes(data, path), record
