"""The experiment directory: where every unit's inputs and outputs live.

Layout (``r`` = replicate, ``L`` = level)::

    <root>/<dataset>-<model>-<method>-<hash>/   (or <name>-<hash>; older: <dataset>-<model>-<hash>)
        config.json                      canonical config (what the hash is of) + full config
                                         (whose ``levels`` is the most ever trained)
        replicate_<r>/
            init.safetensors             the replicate's initial weights (before any training)
            rewind.safetensors           weights + optimizer state at iteration k (late rewinding)
            level_<LL>/
                mask.safetensors         the ticket's mask at this level
                <arm>/                   ticket (dense at level 0), reinit, random, weight_shuffle, ...
                    mask.safetensors     the mask this arm trained with
                    start.safetensors    the weights it started from
                    checkpoint.safetensors  while training; removed when done
                    early_stop.safetensors  weights at the early-stopping iteration (minimum
                                         validation loss): the ones the accuracy tables report
                    final.safetensors    trained weights at the last iteration
                    metrics.jsonl        one evaluation per line
                    summary.json         its presence means "done"; status "ok" or "diverged"
                    manifest.json        SHA-256 and size of each file above (pending before
                                         each rename, promoted after it)
            (replicate_<r>/ and level_<LL>/ have a manifest.json of their own files too)
        parameters.json                  each parameter's role and shape (checksummed)
        manifest.json                    parameters.json's checksum, and ``units``: every finished
                                         unit's summary checksum, so a deleted unit is damage
        stability/                       the stability analysis, every folder with its manifest

Every write is atomic (see ``io``), so a killed run leaves only complete files, and the
run is resumed by simply running it again. Every file is checksummed when written and
verified when read (see ``integrity``); config.json is checked against the experiment's
name, which is the hash of its canonical part.

Store format: ``FORMAT`` is recorded in config.json *outside* the canonical (hashed) part,
so it never renames an experiment. A config.json without it was written by ticketlab before
checksums existed (format 1): such an experiment is read unverified, with one warning.
"""

from __future__ import annotations

import fcntl
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ticketlab.config import Config, upgrade_stored_config
from ticketlab.errors import (
    ConfigError,
    ExperimentLockedError,
    IntegrityWarning,
    StoreError,
)
from ticketlab.io import (
    metadata_from_bytes,
    parse_json,
    parse_jsonl,
    read_json,
    read_manifest_record,
    tensors_from_bytes,
    update_manifest_section,
    write_json_atomic,
)
from ticketlab.masks import Mask
from ticketlab.store.integrity import DamagedFileError, verified_bytes
from ticketlab.store.lookup import identity_of, names_itself

if TYPE_CHECKING:
    from ticketlab.roles import ParameterPlan

FORMAT = 2
UNITS = "units"  # the top-level manifest's index of finished trainings: unit folder -> its summary's entry
_NAME = re.compile(r"^.+-[0-9a-f]{12}$")  # <prefix>-<hash>, as experiment_name() makes it
_WARNED_LEGACY: set[Path] = set()  # the "no checksums" warning is given once per directory


def reset_warnings() -> None:
    """Forget which legacy experiments were warned about (each CLI command warns once)."""
    _WARNED_LEGACY.clear()


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
    def early_stop(self) -> Path:
        """Weights at the evaluation with minimum validation loss (``loop.early_stop``), written
        whenever a new minimum is seen during training, so that it survives a resume."""
        return self.directory / "early_stop.safetensors"

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

    def outputs(self) -> list[Path]:
        """Every file the unit may write, inputs first."""
        return [self.mask, self.start, self.checkpoint, self.early_stop, self.final, self.metrics, self.summary]


class Store:
    """Paths and bookkeeping of one experiment directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock_handle: Any = None
        self._legacy: bool | None = None

    @classmethod
    def for_config(cls, config: Config, root: str | Path) -> "Store":
        """The store of ``config``'s experiment under ``root``: the existing directory when
        there is one (found by its hash, or under its legacy name: ``store.lookup``), else a
        new one named ``config.experiment_name()``."""
        from ticketlab.store.lookup import find_experiment

        return cls(find_experiment(config, root) or Path(root) / config.experiment_name())

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.directory / "config.json"

    @property
    def plan_path(self) -> Path:
        """``parameters.json``: every parameter's role and shape, what is pruned, the output layer."""
        return self.directory / "parameters.json"

    def parameter_plan(self) -> "ParameterPlan | None":
        """The recorded parameter plan (verified), or None for experiments older than it."""
        from ticketlab.roles import ParameterPlan

        if not self.plan_path.is_file():
            return None
        try:
            return ParameterPlan.from_json(self.json(self.plan_path))
        except (KeyError, TypeError, AttributeError) as exc:
            raise DamagedFileError(self.plan_path, f"not a parameter plan ({exc})",
                                   "run the experiment again to rewrite it") from None

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
        """Record the config, or check that the directory already holds this same experiment.

        A damaged config.json (unparseable, edited, not matching the name) is set aside and
        rewritten from ``config`` when the directory is this config's own: the name says so.
        """
        if self.config_path.is_file():
            try:
                existing = self.read_config()
            except StoreError:
                if not self._named_for(config):
                    raise
                from ticketlab.store.integrity import set_aside

                target = set_aside(self.config_path)
                warnings.warn(f"{self.config_path} was damaged; set aside as {target.name} and rewritten "
                              "from this run's config", IntegrityWarning, stacklevel=2)
            else:
                if existing.canonical_dict() != config.canonical_dict():
                    raise StoreError(
                        f"{self.directory} holds a different experiment; choose another --out directory"
                    )
                self._record_extent(existing, config)
                return
        legacy_name = self.directory.name == config.legacy_experiment_name() != config.experiment_name()
        canonical = config.legacy_canonical_dict() if legacy_name else config.canonical_dict()
        name = self.directory.name if names_itself(self.directory.name, canonical) else config.experiment_name()
        record: dict[str, Any] = {"canonical": canonical, "name": name, "config": config.to_dict()}
        if not self._has_legacy_results():
            record["format"] = FORMAT
        write_json_atomic(self.config_path, record)
        self._legacy = "format" not in record

    def _named_for(self, config: Config) -> bool:
        """Whether this directory's name says it is ``config``'s (its hash, or its legacy name)."""
        name = self.directory.name
        return name.endswith(f"-{config.digest()}") or name == config.legacy_experiment_name()

    def _record_extent(self, existing: Config, config: Config) -> None:
        """Keep config.json's full part covering every level ever trained (``levels`` is not part
        of the identity, so a run may extend the chain). The canonical part, the directory's
        name, the ``name`` it was created with and the format stay as written: a later run
        under another name resumes this directory, which keeps its name."""
        merged = existing.to_dict()
        merged["levels"] = max(existing.levels, config.levels)
        if merged == existing.to_dict():
            return
        record = read_json(self.config_path)
        record["config"] = merged
        write_json_atomic(self.config_path, record)

    def _has_legacy_results(self) -> bool:
        """Results without any manifest were written by the old format: keep them legacy."""
        if not self.directory.is_dir():
            return False
        has_files = any(self.directory.rglob("*.safetensors"))
        return has_files and not any(self.directory.rglob("manifest.json"))

    def read_config(self) -> Config:
        """The experiment's config, checked against its canonical part and the experiment's name."""
        if not self.config_path.is_file():
            raise StoreError(f"{self.directory} is not a ticketlab experiment (no config.json)")
        path = self.config_path
        record = read_json(path)
        if not isinstance(record, dict) or not all(k in record for k in ("config", "canonical", "name")):
            raise StoreError(f"{path} is damaged (it lacks the config, canonical and name keys); "
                             "restore it, or run the experiment from its original config to rewrite it")
        try:
            config = upgrade_stored_config(Config.from_dict(record["config"]), record["canonical"])
        except ConfigError as exc:
            raise StoreError(f"{path} is damaged ({exc}); restore it, or run the experiment "
                             "from its original config to rewrite it") from None
        if (identity_of(record["canonical"]) != config.canonical_dict()
                or not isinstance(record["name"], str) or not names_itself(record["name"], record["canonical"])
                or (_NAME.match(self.directory.name) and self.directory.name != record["name"])):
            raise StoreError(
                f"{path} is damaged or edited (its config does not hash to the experiment's name "
                f"{self.directory.name}); restore it, or run the experiment from its original config to rewrite it"
            )
        self._legacy = "format" not in record
        return config

    @property
    def legacy(self) -> bool:
        """True for an experiment written before checksums (format 1): its files are read unverified."""
        if self._legacy is None:
            record = read_json(self.config_path) if self.config_path.is_file() else {}
            self._legacy = isinstance(record, dict) and "format" not in record
        return self._legacy

    def warn_if_legacy(self) -> None:
        """Say once per directory (per command) that a legacy experiment cannot be verified.

        Called where a whole experiment is audited (run, show, report, check), never in workers.
        """
        if self.legacy and self.directory.resolve() not in _WARNED_LEGACY:
            _WARNED_LEGACY.add(self.directory.resolve())
            warnings.warn(f"{self.directory} was written by an older ticketlab and carries no checksums; "
                          "its files are read unverified", IntegrityWarning, stacklevel=2)

    # ------------------------------------------------------------------ index of finished units
    def unit_key(self, paths: UnitPaths) -> str:
        """A unit's name in the index: its folder relative to the experiment."""
        return paths.directory.relative_to(self.directory).as_posix()

    def finished_index(self) -> dict[str, Any]:
        """Units recorded as finished (folder -> the summary's SHA-256 and size). A summary is
        the unit's own done marker; this index, kept where the unit cannot delete it, is what
        tells a deleted unit folder or summary from one that never finished."""
        record = read_manifest_record(self.directory)
        index = record.get(UNITS) if record is not None else None
        return dict(index) if isinstance(index, dict) else {}

    def record_finished(self, changes: dict[str, dict[str, Any] | None]) -> None:
        """Record (or, for None, forget) finished units in the index."""
        update_manifest_section(self.directory, UNITS, changes)

    # ------------------------------------------------------------------ verified reading
    def read_bytes(self, path: Path) -> bytes:
        """``path``'s bytes, verified against its manifest (see ``integrity``)."""
        return verified_bytes(path, self.legacy)

    def tensors(self, path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        return tensors_from_bytes(self.read_bytes(path), path, device)

    def tensors_and_metadata(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        data = self.read_bytes(path)
        return tensors_from_bytes(data, path), metadata_from_bytes(data, path)

    def mask(self, path: Path) -> Mask:
        return Mask.from_stored(self.tensors(path))

    def json(self, path: Path) -> Any:
        return parse_json(self.read_bytes(path), path, self.legacy)

    def jsonl(self, path: Path) -> list[dict[str, Any]]:
        return parse_jsonl(self.read_bytes(path), path, self.legacy)

    def summary(self, paths: UnitPaths) -> dict[str, Any]:
        """A finished unit's summary; its status is "ok" unless it says otherwise (older stores)."""
        record = self.json(paths.summary)
        if not isinstance(record, dict) or not {"replicate", "level", "arm"} <= record.keys():
            raise DamagedFileError(paths.summary, "not a unit summary", "run the experiment again to recompute it")
        record.setdefault("status", "ok")
        return record

    # ------------------------------------------------------------------ lock
    def lock(self) -> None:
        """Take an exclusive lock on the directory; refuse if another process holds it.

        An OS file lock (flock) is released by the kernel when its holder dies, so a killed
        run never leaves a stale lock behind.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.directory / ".lock", "a+")
        except OSError as exc:
            raise StoreError(f"cannot write into {self.directory}: {exc.strerror or exc}; choose another --out") from None
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
