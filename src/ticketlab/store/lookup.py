"""Which directory under a root holds a config's experiment.

A directory's name ends with the hash of the experiment's identity (``Config.canonical_dict``),
and its readable prefix is only a label: ``<dataset>-<model>-<method>``, or the user's
``name``. So an experiment is found by its hash whatever its prefix, and one written before
``levels`` left the identity (``<dataset>-<model>-<legacy hash>``, where the hash covered
``levels``) is found by reading the canonical part its config.json recorded: resuming it, with
any ``levels``, continues it in place instead of starting a new directory.

Lookup only reads config.json files (never imports user code) and skips what it cannot read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ticketlab.config import Config, canonical_digest
from ticketlab.io import read_json

_HASH = re.compile(r"-([0-9a-f]{12})$")


def identity_of(canonical: Any) -> dict[str, Any] | None:
    """A recorded canonical part without ``levels`` (which legacy records hashed), or None if
    it is not a table."""
    if not isinstance(canonical, dict):
        return None
    return {k: v for k, v in canonical.items() if k != "levels"}


def names_itself(name: str, canonical: Any) -> bool:
    """Whether directory name ``name`` ends with the hash of the recorded ``canonical`` part."""
    match = _HASH.search(name)
    return isinstance(canonical, dict) and match is not None and match.group(1) == canonical_digest(canonical)


def recorded_canonical(directory: Path) -> Any:
    """The canonical part of ``directory``'s config.json, or None when it is absent or unreadable."""
    try:
        record = read_json(directory / "config.json")
    except Exception:  # noqa: BLE001 - any unreadable config: not a candidate
        return None
    return record.get("canonical") if isinstance(record, dict) else None


def find_experiment(config: Config, root: str | Path) -> Path | None:
    """The existing directory under ``root`` holding ``config``'s experiment, or None.

    Tried in order: directories ending with the config's hash (any prefix, so a ``name``
    given later still finds it); the legacy name; any legacy-named directory of the same
    dataset and model whose recorded identity, ``levels`` aside, is this config's.
    """
    try:
        return _find(config, Path(root))
    except OSError:  # an unusable root (too long a name, a link loop): nothing there; preflight says why
        return None


def _find(config: Config, root: Path) -> Path | None:
    if not root.is_dir():
        return None
    wanted = config.canonical_dict()
    for candidate in sorted(root.glob(f"*-{config.digest()}")):
        if candidate.is_dir() and identity_of(recorded_canonical(candidate)) == wanted:
            return candidate
    legacy = root / config.legacy_experiment_name()
    if legacy.is_dir():
        return legacy
    prefix = config.legacy_experiment_name()[:-12]
    for candidate in sorted(root.glob(f"{glob_escape(prefix)}*")):
        canonical = recorded_canonical(candidate)
        if (candidate.is_dir() and _HASH.search(candidate.name) and len(candidate.name) == len(prefix) + 12
                and identity_of(canonical) == wanted and names_itself(candidate.name, canonical)):
            return candidate
    return None


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters taken literally."""
    return re.sub(r"([*?\[])", r"[\1]", text)
