"""Typed, validated experiment configuration.

A :class:`Config` is everything that determines an experiment's *results*. It is validated
once, at the boundary (``Config.from_dict``), so the engine never re-checks values. Its
canonical JSON, with fields left at their default omitted, is hashed to name the experiment
directory: adding a new option later with a default does not rename old experiments.

How an experiment is *executed* (device, threads, workers, executor) is not part of the
config: it does not change the results, so it lives in :class:`RunOptions` and never
enters the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where its files are, and how it is split."""

    dataset: str = "mnist"
    data_dir: str | None = None
    split_seed: int = 0
    fingerprint: str | None = None  # content hash (or version) of data given as Python objects


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's LeNet-300-100 setting (Adam 1.2e-3, batch 60).

    ``weight_decay`` is an L2 term in the gradient for ``adam`` and ``sgd``, and decoupled
    (shrinking weights directly, Loshchilov & Hutter) for ``adamw``.

    The length is in iterations (``iterations``) or epochs (``epochs``), not both.

    Every ``eval_every`` iterations the validation split is evaluated (it decides early
    stopping); the test split only where a reported number comes from (each new early-stopping
    candidate, and the end), unless ``test_every_eval`` records the whole test curve.
    """

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1.2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 60
    iterations: int | None = 3000
    epochs: int | None = None
    warmup_iterations: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    eval_every: int = 100
    test_every_eval: bool = False
    checkpoint_every: int = 500


@dataclass(frozen=True)
class PruneConfig:
    """How each IMP level's mask is made from the previous level's trained weights.

    ``method`` names the pruning method (built in, or ``"package.module:object"``; see
    ``ticketlab.pruning.registry``). ``roles`` chooses what is prunable by what each parameter does (see ``ticketlab.roles``):
    Linear, Conv, attention and recurrent (RNN/LSTM/GRU) weights by default; ``embedding``, ``norm``, ``bias`` and
    ``other`` on request. ``include`` patterns narrow that selection by name, ``exclude``
    patterns remove names. ``layerwise`` prunes ``rate`` of each layer's remaining weights
    (``output_rate`` for the output layer: the one producing the model's output, found by
    tracing one forward pass, or named by ``output_layer``; the paper's 10% for LeNet);
    ``layer_rates`` maps a regular expression on parameter names to a rate that overrides
    both. ``global`` ranks all prunable weights together, except those matching
    ``global_exclude``.
    """

    method: str = "magnitude"
    strategy: Literal["layerwise", "global"] = "layerwise"
    rate: float = 0.2
    output_rate: float | None = 0.1
    layer_rates: dict[str, float] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    global_exclude: tuple[str, ...] = ()
    roles: tuple[str, ...] = ("linear", "conv", "attention", "recurrent")
    output_layer: str | None = None
    source: str | None = None  # method "transfer": the experiment directory whose ticket masks are retrained
    nm_group: int = 4  # method "nm": M of the N:M pattern (level L keeps M - L of every M)


@dataclass(frozen=True)
class Config:
    """A whole experiment: ``seeds`` independent IMP chains of ``levels`` pruning rounds each.

    ``seed`` is the base seed; replicate ``r`` derives its initialisation, data-order and
    control seeds from ``(seed + r)``. ``rewind_iteration`` k=0 rewinds survivors to their
    initial values; k>0 rewinds weights *and* optimizer state to iteration k of the dense run.
    ``retrain`` says how a pruned ticket trains again: ``rewind`` (weight rewinding, above: the
    lottery ticket), ``lr_rewind`` (Renda et al. 2020: keep the pruned network's trained weights
    and train the whole learning-rate schedule again) or ``finetune`` (keep the trained weights
    and train as long again at the schedule's final learning rate). The last two need a method
    that prunes trained weights (IMP, one-shot); controls always train from scratch.
    ``control_levels`` trains the controls at those levels only (empty: every level), for long
    studies where a control at every level costs more than the comparison needs; levels of
    ``control_levels`` or ``ticket_levels`` past ``levels`` train once the chain reaches them.

    ``levels`` and ``name`` are *not* part of the experiment's identity (``IDENTITY_FREE``):
    ``levels`` says how far the chain is trained, so ``--levels 2`` then ``--levels 4`` is one
    experiment whose levels 3 and 4 are trained on top of the stored 0..2 (as OpenLTH does),
    and a smaller ``levels`` shows fewer levels without deleting any. ``name`` is a label the
    user chooses for the experiment's directory (``<name>-<hash>``); it is a config field
    rather than a run option because it belongs to the experiment (recorded in config.json,
    shown by ``ticketlab list``), but like ``levels`` it never changes the hash, so the same
    settings under another name resume the same experiment.

    ``model`` is a built-in name, an import path ``"package.module:factory"`` (a callable
    returning an ``nn.Module``), or ``python:<name>`` for a factory given to ``ticketlab.run``
    as an object. ``init_weights`` starts every replicate from the given weights (safetensors,
    or a state dict read with ``weights_only=True``) instead of drawing them from its seed.
    ``model_fingerprint`` and ``data.fingerprint`` are filled in by ``ticketlab.run`` for
    user-given models and data (names, shapes, dtypes and initial weights; content hash), so
    changed inputs are a different experiment. ``task`` and ``task_fingerprint`` likewise
    describe and identify a custom ``ticketlab.Task`` (its loss, score, metric: see
    ``Task.identity``); both stay None for the default task, so that built-in experiments keep
    their names.
    """

    model: str = "lenet_300_100"
    levels: int = 5
    seed: int = 0
    seeds: int = 1
    rewind_iteration: int = 0
    retrain: Literal["rewind", "lr_rewind", "finetune"] = "rewind"
    controls: tuple[str, ...] = ()
    control_levels: tuple[int, ...] = ()
    ticket_levels: tuple[int, ...] = ()
    init_weights: str | None = None
    model_fingerprint: str | None = None
    task: str | None = None  # a custom training task, in words (None: the default for the labels)
    task_fingerprint: str | None = None  # its identity: import paths, code fingerprint or version
    name: str | None = None  # a label for the directory; not part of the identity (see above)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Config":
        """Build and validate a Config from plain data (TOML/JSON/CLI); raises ConfigError.

        A training length given only as ``train.epochs`` replaces the default length in
        iterations (it would otherwise clash with it); giving both is still an error.
        Values only: the model, dataset, method and arms are looked up where a run starts
        (``experiment.names.resolve_names``), so reading a stored experiment never needs (or
        imports) their code, and this module imports no plugin.
        """
        train = raw.get("train") if isinstance(raw, dict) else None
        if isinstance(train, dict) and train.get("epochs") is not None and "iterations" not in train:
            raw = {**raw, "train": {**train, "iterations": None}}
        config = _build(cls, raw, path="")
        config.validate()
        return config

    def replace(self, **changes: Any) -> "Config":
        """A validated copy with top-level fields (or ``data``/``train``/``prune`` dicts) changed."""
        raw = self.to_dict()
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return Config.from_dict(raw)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check value ranges and cross-field rules; raise ConfigError naming the bad value."""
        _check(self.levels >= 0, f"levels must be >= 0, got {self.levels}")
        _check(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.name is None or bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}", self.name)),
               f"name must be 1-60 letters, digits, '_', '.' or '-' (a folder name), starting with a letter "
               f"or digit; got {self.name!r}")
        _check(len(set(self.controls)) == len(self.controls), f"controls repeat an arm: {list(self.controls)}")
        # Levels past ``levels`` are allowed: they are part of the identity and ``levels`` is not, so a
        # chain asked for fewer levels than it was (or will be) trained to keeps its level lists.
        _check(
            list(self.control_levels) == sorted(set(self.control_levels)) and all(level >= 1 for level in self.control_levels),
            f"control_levels must increase and be >= 1 (those past levels train when the chain reaches them), "
            f"got {list(self.control_levels)}",
        )
        _check(
            list(self.ticket_levels) == sorted(set(self.ticket_levels)) and all(level >= 1 for level in self.ticket_levels),
            f"ticket_levels must increase and be >= 1 (those past levels train when the chain reaches them), "
            f"got {list(self.ticket_levels)}",
        )
        _check(
            not self.ticket_levels or set(self.control_levels) <= set(self.ticket_levels),
            f"control_levels {list(self.control_levels)} must be among ticket_levels {list(self.ticket_levels)}",
        )
        _check(
            not self.ticket_levels or bool(self.control_levels) or not self.controls,
            "with ticket_levels, give control_levels too (controls train only where a ticket does)",
        )

        t = self.train
        _check(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
        _check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
        _check(
            (t.iterations is None) != (t.epochs is None),
            "set exactly one of train.iterations and train.epochs",
        )
        _check(t.iterations is None or t.iterations >= 1, f"train.iterations must be >= 1, got {t.iterations}")
        _check(t.epochs is None or t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
        _check(t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}")
        _check(t.checkpoint_every >= 1, f"train.checkpoint_every must be >= 1, got {t.checkpoint_every}")
        _check(t.warmup_iterations >= 0, f"train.warmup_iterations must be >= 0, got {t.warmup_iterations}")
        _check(0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}")
        _check(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
        _check(0 < t.gamma <= 1, f"train.gamma must be in (0, 1], got {t.gamma}")
        _check(list(t.milestones) == sorted(set(t.milestones)), f"train.milestones must increase, got {list(t.milestones)}")
        _check(self.rewind_iteration >= 0, f"rewind_iteration must be >= 0, got {self.rewind_iteration}")
        _check(
            self.retrain == "rewind" or self.rewind_iteration == 0,
            f"rewind_iteration applies to retrain='rewind' only (got retrain={self.retrain!r}); drop it",
        )
        _check(
            (self.prune.method == "transfer") == (self.prune.source is not None),
            "prune.source (the experiment whose masks are retrained) goes with prune.method='transfer' "
            "(ticketlab run --transfer-from DIR)",
        )
        if t.iterations is not None:
            _check(
                self.rewind_iteration < t.iterations,
                f"rewind_iteration ({self.rewind_iteration}) must be below train.iterations ({t.iterations})",
            )

        p = self.prune
        _rate(p.rate, "prune.rate")
        if p.output_rate is not None:
            _rate(p.output_rate, "prune.output_rate")
        for pattern, rate in p.layer_rates.items():
            _regex(pattern, "prune.layer_rates")
            _rate(rate, f"prune.layer_rates[{pattern!r}]")
        for name in ("include", "exclude", "global_exclude"):
            for pattern in getattr(p, name):
                _regex(pattern, f"prune.{name}")
        from ticketlab.roles import ROLES

        for role in p.roles:
            _check(role in ROLES, f"unknown prune.roles entry {role!r}; choose from: {', '.join(ROLES)}")
        _check(p.nm_group >= 2, f"prune.nm_group (M of N:M) must be >= 2, got {p.nm_group}")
        _check(bool(p.roles), "prune.roles is empty; nothing would be pruned (default: linear, conv, attention, recurrent)")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON-able data."""
        return _plain(dataclasses.asdict(self))

    def canonical_dict(self) -> dict[str, Any]:
        """Only the fields that differ from their defaults, less ``IDENTITY_FREE``: what
        identifies the experiment (and is hashed into its directory's name)."""
        return {k: v for k, v in _non_default(self, type(self)()).items() if k not in IDENTITY_FREE}

    def legacy_canonical_dict(self) -> dict[str, Any]:
        """The canonical part as ticketlab wrote it before ``levels`` left the identity
        (``levels`` included when not the default); it names directories written then."""
        return {k: v for k, v in _non_default(self, type(self)()).items() if k != "name"}

    def canonical_json(self) -> str:
        return canonical_json(self.canonical_dict())

    def digest(self) -> str:
        """Short stable hash of the canonical JSON."""
        return canonical_digest(self.canonical_dict())

    def legacy_experiment_name(self) -> str:
        """The directory name ticketlab gave this experiment before the method and the user's
        name were part of it, and ``levels`` was hashed: ``<dataset>-<model>-<legacy hash>``."""
        return f"{_readable(self.data.dataset)}-{_readable(self.model)}-{canonical_digest(self.legacy_canonical_dict())}"

    def has_controls(self, level: int) -> bool:
        """Whether the control arms train at ``level`` (never at the dense level 0)."""
        return self.trains(level) and level >= 1 and (not self.control_levels or level in self.control_levels)

    def trains(self, level: int) -> bool:
        """Whether ``level``'s ticket trains (the dense level 0 always does)."""
        return level == 0 or not self.ticket_levels or level in self.ticket_levels

    def experiment_name(self) -> str:
        """Directory name: ``<dataset>-<model>-<method>-<hash>``, or ``<name>-<hash>`` with a
        user-chosen ``name``. Import paths and Python objects contribute their last name
        (``mypkg.nets:make_net`` -> ``make_net``), so the name stays a portable file name; the
        hash is what identifies the experiment (the store also finds directories written under
        the legacy name, see ``Store.for_config``)."""
        if self.name:
            return f"{self.name}-{self.digest()}"  # validated: already a portable folder name
        prefix = "-".join(_readable(part) for part in (self.data.dataset, self.model, self.prune.method))
        return f"{prefix}-{self.digest()}"


@dataclass(frozen=True)
class RunOptions:
    """How to execute an experiment; none of it is hashed into the experiment's name.

    ``precision="bf16"`` runs forward passes under bf16 autocast (weights, gradients and
    optimizer state stay fp32). It is the one option that changes numbers slightly, so it is
    recorded in every unit's summary.
    """

    root: str = "experiments"
    device: str = "auto"
    threads: int = 1
    workers: int = 0  # 0: one local worker process per CPU core (divided by threads)
    batch: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    progress: bool = True  # the CLI's bars on a terminal; elsewhere one log line per finished training
    probe_batch: bool = True  # measure --batch K against sequential first; never train slower
    stepper: Literal["auto", "dense", "sparse"] = "auto"  # sparse: pruned MLPs on survivors (sparse_stepper)

    def resolved(self) -> "RunOptions":
        """A copy with ``workers=0`` (auto) replaced by a number: parallel by default, one
        single-thread worker per core; a batched run trains in this one process."""
        if self.workers:
            return self
        auto = 1 if self.batch > 1 else max(1, (os.cpu_count() or 1) // self.threads)
        return dataclasses.replace(self, workers=auto)

    def validate(self) -> None:
        _check(bool(str(self.root).strip()), "--out (root) is empty; give the folder that holds experiment directories "
               "(default: experiments)")  # an unset shell variable would otherwise write into the current folder
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda, got {self.device!r}")
        check_threads(self.threads, "threads", local=self.executor == "local")
        _check(self.workers >= 0, f"workers must be >= 0 (0 = one per CPU core), got {self.workers}")
        _check(self.batch >= 1, f"batch must be >= 1, got {self.batch}")
        _check(self.batch == 1 or (self.workers in (0, 1) and self.executor == "local"),
               "batch > 1 trains replicates together in this process; use it with --workers 1 and --executor local")
        _check(self.executor in ("local", "ray"), f"executor must be local or ray, got {self.executor!r}")
        _check(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")
        _check(self.batch == 1 or self.precision == "fp32", "batch > 1 supports precision fp32 only")
        _check(self.stepper in ("auto", "dense", "sparse"), f"stepper must be auto, dense or sparse, got {self.stepper!r}")
        _check(self.batch == 1 or self.stepper != "sparse", "--stepper sparse trains one unit at a time; use --batch 1")


# ---------------------------------------------------------------------------- helpers
#: Top-level fields outside the experiment's identity (see ``Config``): how far the chain is
#: trained, and the directory's label.
IDENTITY_FREE = ("levels", "name")


def canonical_json(canonical: dict[str, Any]) -> str:
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"))


def canonical_digest(canonical: dict[str, Any]) -> str:
    """The 12-hex-digit hash of a canonical part, which ends an experiment's directory name."""
    return hashlib.sha256(canonical_json(canonical).encode()).hexdigest()[:12]


def _readable(name: str) -> str:
    """``name``'s last component, with only letters, digits, ``_`` and ``.`` (at most 40)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name.rsplit(":", 1)[-1])[:40] or "user"


# Torch crashes (a segfault, after the run has written its first files) when asked for tens of
# thousands of threads; no machine has this many cores, so more is always a typo.
MAX_THREADS = 1024


def check_threads(threads: int, flag: str = "threads", local: bool = True) -> None:
    """Refuse a torch thread count that cannot help: below 1 is an error in torch, and more threads
    than this machine has cores only compete for them (``local``; a Ray cluster's machines may have
    more cores than this one, so there only an absurd count is refused)."""
    cores = os.cpu_count() or 1
    limit = cores if local else MAX_THREADS
    where = f"this machine's {cores} CPU core(s)" if local else f"{MAX_THREADS}"
    _check(1 <= threads <= limit, f"{flag} must be between 1 and {where}, got {threads}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _rate(value: float, name: str) -> None:
    _check(0 < value < 1, f"{name} must be in (0, 1), got {value}")


def _regex(pattern: str, name: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{name}: {pattern!r} is not a valid regular expression ({exc})") from None


def _build(cls: type, raw: Any, path: str) -> Any:
    """Recursively construct dataclass ``cls`` from ``raw``, rejecting unknown keys and wrong types."""
    where = path or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table/object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"unknown key {path + '.' if path else ''}{unknown[0]}; known keys here: {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in raw.items():
        key = f"{path}.{name}" if path else name
        values[name] = _coerce(hints[name], value, key)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; convert lists to tuples. Raises ConfigError."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key} may not be null")
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__} {value!r}")
        (item,) = get_args(hint)[:1]
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table/object, got {type(value).__name__}")
        _, item = get_args(hint)
        return {str(k): _coerce(item, v, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {type(value).__name__} {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {type(value).__name__} {value!r}")
        if abs(value) >= 2**63:  # seeds and counts end up in 64-bit integers
            raise ConfigError(f"{key} must be below 2**63 in size, got {value}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    raise TypeError(f"config field {key} has unsupported type {hint}")  # a bug, not user input


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: ``prune.roles``' default before recurrent weights were a role of their own. A config written
#: then with roles at their default records this tuple in its full part but not in its canonical
#: (hashed) part; see :func:`upgrade_stored_config`.
LEGACY_DEFAULT_ROLES = ("linear", "conv", "attention")


def upgrade_stored_config(config: Config, canonical: dict[str, Any]) -> Config:
    """A stored config read back as the defaults it was written under meant.

    Its canonical part says which fields were left at their default: ``prune.roles`` absent
    there but equal to the old default tuple in the full part means "the default roles", now
    including ``recurrent``; without this, every experiment written before that change would
    read as edited (its config no longer hashing to its name). What such an experiment pruned
    is recorded in its ``parameters.json``, which resuming reads, so its masks do not change."""
    prune = canonical.get("prune") if isinstance(canonical, dict) else None
    if tuple(config.prune.roles) == LEGACY_DEFAULT_ROLES and "roles" not in (prune or {}):
        return dataclasses.replace(config, prune=dataclasses.replace(config.prune, roles=PruneConfig().roles))
    return config


def _non_default(obj: Any, default: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        value, base = getattr(obj, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            nested = _non_default(value, base)
            if nested:
                out[f.name] = nested
        elif value != base:
            out[f.name] = _plain(value)
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into plain data; ConfigError if unreadable."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid {kind}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table/object of settings, got {type(raw).__name__}")
    return raw
