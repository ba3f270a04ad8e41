"""The experiment directory: where every unit's inputs and outputs live.

Layout (``r`` = replicate, ``L`` = level)::

    <root>/<dataset>-<model>-<hash>/
        config.json                      canonical config (what the hash is of) + full config
        replicate_<r>/
            init.safetensors             the replicate's initial weights (before any training)
            rewind.safetensors           weights + optimizer state at iteration k (late rewinding)
            level_<LL>/
                mask.safetensors         the ticket's mask at this level
                <arm>/                   ticket (dense at level 0), reinit, random, shuffle
                    mask.safetensors     the mask this arm trained with
                    start.safetensors    the weights it started from
                    checkpoint.safetensors  while training; removed when done
                    final.safetensors    trained weights
                    metrics.jsonl        one evaluation per line
                    summary.json         written last: its presence means "done"

Every write is atomic (see ``io``), so a killed run leaves only complete files, and the
run is resumed by simply running it again.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketlab.config import Config
from ticketlab.errors import ExperimentLockedError, StoreError
from ticketlab.io import read_json, write_json_atomic


@dataclass(frozen=True)
class UnitPaths:
    """Files of one training unit (one arm of one replicate at one level)."""

    directory: Path

    @property
    def mask(self) -> Path:
        return self.directory / "mask.safetensors"

    @property
    def start(self) -> Path:
        return self.directory / "start.safetensors"

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoint.safetensors"

    @property
    def final(self) -> Path:
        return self.directory / "final.safetensors"

    @property
    def metrics(self) -> Path:
        return self.directory / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.directory / "summary.json"

    def done(self) -> bool:
        return self.summary.is_file()


class Store:
    """Paths and bookkeeping of one experiment directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock_handle: Any = None

    @classmethod
    def for_config(cls, config: Config, root: str | Path) -> "Store":
        return cls(Path(root) / config.experiment_name())

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.directory / "config.json"

    def replicate_dir(self, replicate: int) -> Path:
        return self.directory / f"replicate_{replicate}"

    def init_path(self, replicate: int) -> Path:
        return self.replicate_dir(replicate) / "init.safetensors"

    def rewind_path(self, replicate: int) -> Path:
        return self.replicate_dir(replicate) / "rewind.safetensors"

    def level_dir(self, replicate: int, level: int) -> Path:
        return self.replicate_dir(replicate) / f"level_{level:02d}"

    def level_mask_path(self, replicate: int, level: int) -> Path:
        return self.level_dir(replicate, level) / "mask.safetensors"

    def unit(self, replicate: int, level: int, arm: str) -> UnitPaths:
        return UnitPaths(self.level_dir(replicate, level) / arm)

    # ------------------------------------------------------------------ config
    def write_config(self, config: Config) -> None:
        """Record the config, or check that the directory already holds this same experiment."""
        record = {"canonical": config.canonical_dict(), "name": config.experiment_name(), "config": config.to_dict()}
        if self.config_path.is_file():
            existing = read_json(self.config_path)
            if existing.get("canonical") != record["canonical"]:
                raise StoreError(
                    f"{self.directory} holds a different experiment; choose another --out directory"
                )
            return
        write_json_atomic(self.config_path, record)

    def read_config(self) -> Config:
        if not self.config_path.is_file():
            raise StoreError(f"{self.directory} is not a ticketlab experiment (no config.json)")
        return Config.from_dict(read_json(self.config_path)["config"])

    # ------------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take an exclusive lock on the directory; refuse if another process holds it.

        An OS file lock (flock) is released by the kernel when its holder dies, so a killed
        run never leaves a stale lock behind.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / ".lock", "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ExperimentLockedError(
                f"experiment {self.directory} is already being run by {holder}; wait for it to finish or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_handle = handle

    def unlock(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> "Store":
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()
