"""The container every ticketlab export file shares: safetensors plus one JSON metadata record.

Loading reads tensors and JSON only -- never pickle, never code from the file -- and a file
of another kind, or from a newer format version, is a one-line error rather than a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ticketlab.errors import ConfigError, StoreError
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


def filled(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """``model`` holding ``tensors``, in eval mode: how each loader finishes. Tensors that do not
    fit (a file written for another architecture) are a one-line StoreError naming ``path``."""
    from ticketlab.weights import load_state

    try:
        load_state(model, tensors)
    except RuntimeError as exc:
        raise StoreError(f"{path}: tensors do not fit the model ({exc})") from None
    return model.eval()


def recorded_model(spec: dict[str, Any], model: nn.Module | None) -> nn.Module:
    """The model an export of a non-chain architecture loads into: ``model`` when the caller
    built one, else ticketlab's registry model named in the record. A user's model (an import
    path) is never imported from a file's record: loading runs no code the file names."""
    if model is not None:
        return model
    if ":" in spec["name"]:
        raise ConfigError(f"this export is of the user model {spec['name']!r}; build it and pass it as model=")
    from ticketlab.models import build_model

    return build_model(spec["name"], tuple(spec["input_shape"]), spec["num_classes"])
