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

from ticketlab.errors import ConfigError, require

# The run options with a fixed set of values: each Literal is the one list of them, read by
# RunOptions.validate, the CLI's help and the trainer (``train.steppers.probe``).
Executor = Literal["local", "ray"]
Precision = Literal["fp32", "bf16"]
Stepper = Literal["auto", "dense", "sparse"]
EXECUTORS: tuple[str, ...] = get_args(Executor)
PRECISIONS: tuple[str, ...] = get_args(Precision)
STEPPERS: tuple[str, ...] = get_args(Stepper)
TRACKERS: tuple[str, ...] = ("tensorboard", "mlflow")  # report.trackers: extras tensorboard, mlflow


def setting(default: Any, help: str) -> Any:
    """A user-settable field with its one line of help: the CLI makes its flag, type and help
    from the field (``ticketlab.cli.flags``), so a new field is a new flag with nothing else to edit.
    A callable ``default`` is a factory (for a mutable default such as a dict)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def recorded(what: str) -> Any:
    """A field that ``ticketlab.run`` fills in (fingerprints, descriptions of Python objects);
    the user never sets it, so it gets no CLI flag."""
    return field(default=None, metadata={"recorded": what})


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    """ConfigError unless ``value`` is one of ``choices``: "executor must be local or ray, got 'spark'"."""
    words = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
    require(value in choices, f"{name} must be {words}, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where its files are, and how it is split."""

    dataset: str = setting("mnist", "mnist (full), mnist5k, mnist1d, digits, cifar10, modadd, or package.module:splits.")
    data_dir: str | None = setting(None, "Folder with dataset files (MNIST IDX, CIFAR-10 binary).")
    split_seed: int = setting(0, "Seed of the split into train and validation examples.")
    version: str | None = setting(None, "A name for this version of your data (package.module:splits or Python "
                                  "objects): its fingerprint instead of hashing the data; streamed data needs one.")
    fingerprint: str | None = recorded("content hash (or version) of data given as Python objects")


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

    optimizer: Literal["adam", "adamw", "sgd"] = setting("adam", "The optimizer.")
    lr: float = setting(1.2e-3, "Learning rate.")
    momentum: float = setting(0.9, "SGD momentum.")
    weight_decay: float = setting(0.0, "Weight decay (L2 for adam/sgd, decoupled for adamw).")
    batch_size: int = setting(60, "Minibatch size.")
    iterations: int | None = setting(3000, "Training length in iterations.")
    epochs: int | None = setting(None, "Training length in epochs (instead of iterations).")
    warmup_iterations: int = setting(0, "Linear learning-rate warmup over the first N iterations.")
    milestones: tuple[int, ...] = setting((), "Iterations at which the learning rate is multiplied by gamma.")
    gamma: float = setting(0.1, "Learning-rate factor at each milestone.")
    eval_every: int = setting(100, "Evaluate every N iterations.")
    test_every_eval: bool = setting(False, "Record the test split at every evaluation (default: only at early-stopping "
                                    "candidates and the end; the same reported numbers).")
    checkpoint_every: int = setting(500, "Checkpoint every N iterations (a killed run resumes from the last).")


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
    ``global_exclude``. ``scoring`` and ``grasp_temperature`` make SNIP and GraSP score as their
    references do by default (see ``pruning.at_init.common.score_inputs``).
    """

    method: str = setting("magnitude", "Pruning method: magnitude (IMP), oneshot, snip, grasp, synflow, magnitude_init, "
                          "random_init, nm, transfer, or package.module:Method.")
    strategy: Literal["layerwise", "global"] = setting("layerwise", "layerwise or global magnitude pruning.")
    rate: float = setting(0.2, "Fraction of remaining weights pruned per round.")
    output_rate: float | None = setting(0.1, "Rate for the output layer (layerwise; none: the same as rate).")
    layer_rates: dict[str, float] = setting(dict, "Rates overriding rate and output_rate for parameter names matching "
                                            "a regex: regex=rate pairs, or a JSON object.")
    include: tuple[str, ...] = setting((), "Regexes on parameter names that narrow the prunable selection.")
    exclude: tuple[str, ...] = setting((), "Regexes on parameter names removed from the prunable selection.")
    global_exclude: tuple[str, ...] = setting((), "Regexes on parameter names left out of the global ranking.")
    roles: tuple[str, ...] = setting(("linear", "conv", "attention", "recurrent"), "Prunable roles (also embedding, "
                                     "norm, bias, other).")
    output_layer: str | None = setting(None, "Name of the output layer (default: found by tracing one forward pass).")
    source: str | None = setting(None, "Method transfer: the experiment directory whose ticket masks are retrained "
                                 "(--transfer-from DIR also takes its config as the base).")
    nm_group: int = setting(4, "Method nm: M of the N:M pattern (level L keeps M - L of every M).")
    scoring: Literal["reference", "training"] = setting(
        "reference", "What SNIP and GraSP score on: reference (one batch of 100 training examples, the model in "
        "eval mode, as their reference code and Synaptic-Flow) or training (8 of the run's own training batches, "
        "training mode).")
    grasp_temperature: float = setting(200.0, "Method grasp: the temperature dividing the logits before the loss "
                                       "(200 in GraSP's code and Synaptic-Flow; 1 for none).")


@dataclass(frozen=True)
class SequentialConfig:
    """The group-sequential design of ``seeds = "auto"`` (see ``ticketlab.evidence.sequential``).

    ``looks``: seeds at each look, increasing, the last ``max_seeds`` (empty: 3, the midpoint and
    ``max_seeds``). ``spending``: how the error is spent over the looks. ``futility``: the
    conditional power below which an interim look stops a level as not matching (None: never).
    The margin and alpha are the verdict criteria the first run is given (``--margin``, ``--alpha``).
    """

    looks: tuple[int, ...] = setting((), "Seeds at each look, increasing, the last max_seeds (default: 3, the "
                                     "midpoint and max_seeds).")
    spending: Literal["obrien_fleming", "pocock"] = setting("obrien_fleming", "How the error is spent over the looks.")
    futility: float | None = setting(0.10, "Conditional power below which an interim look stops a level as not "
                                     "matching (none: never).")


@dataclass(frozen=True)
class Config:
    """A whole experiment: ``seeds`` independent IMP chains of ``levels`` pruning rounds each.

    ``seed`` is the base seed; replicate ``r`` derives its initialisation, data-order and
    control seeds from ``(seed + r)``. ``rewind_iteration`` k=0 rewinds survivors to their
    initial values; k>0 rewinds weights to iteration k of the dense run and resumes its schedule
    there, with the optimizer state of iteration k (``rewind_optimizer = "rewound"``, the default:
    Adam's moments are part of the state the ticket is rewound to) or a fresh optimizer
    (``"fresh"``, as OpenLTH does). The reinit control under k>0 trains from iteration k too, so
    it differs from the ticket only in its initial values.
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

    ``seeds = "auto"`` adds seeds look by look, up to ``max_seeds``, under the group-sequential
    design ``sequential`` describes (``ticketlab.experiment.looks``): a fixed number of seeds is
    either too few to decide a level or more than a decided one needs. ``claim_levels``
    pre-registers the levels the headline claims, tested as a Holm family instead of the fixed
    sequence from dense (which needs every level to pass, and loses power fast with many levels).

    ``model`` is a built-in name, an import path ``"package.module:factory"`` (a callable
    returning an ``nn.Module``), or ``python:<name>`` for a factory given to ``ticketlab.run``
    as an object. ``init_weights`` starts every replicate from the given weights (safetensors,
    or a state dict read with ``weights_only=True``) instead of drawing them from its seed.
    ``model_fingerprint`` and ``data.fingerprint`` are filled in by ``ticketlab.run`` for
    user-given models and data (names, shapes, dtypes and initial weights; content hash), so
    changed inputs are a different experiment. ``task`` and ``task_fingerprint`` likewise
    describe and identify a custom ``ticketlab.Task`` (its loss, score, metric: see
    ``Task.identity``); both stay None for the default task, so that built-in experiments keep
    their names. ``train_loop`` names the user's own training function (``ticketlab.run(...,
    train=fn)``) by its label and code fingerprint, so a changed loop is a new experiment; None
    (ticketlab's loop) keeps every other experiment's name.
    """

    model: str = setting("lenet_300_100", "lenet_300_100, mlp_<w1>_<w2>..., conv2, conv4, conv6, transformer_modadd "
                         "(modadd only), or package.module:factory.")
    levels: int = setting(5, "Pruning rounds after the dense run.")
    seed: int = setting(0, "Base seed; replicate r uses seed + r.")
    seeds: int | Literal["auto"] = setting(1, "Independent replicates (IMP chains), or auto: seeds added look by "
                                           "look under the sequential design until every level is decided.")
    max_seeds: int | None = setting(None, "With seeds = auto: the most seeds the design may train.")
    rewind_iteration: int = setting(0, "Rewind survivors to iteration k (0 = initialisation).")
    rewind_optimizer: Literal["rewound", "fresh"] = setting(
        "rewound", "Under rewind_iteration k > 0: the optimizer state of iteration k (rewound) or a fresh "
        "optimizer at the schedule's position k (fresh, as OpenLTH).")
    retrain: Literal["rewind", "lr_rewind", "finetune"] = setting(
        "rewind", "rewind (weight rewinding: the ticket), lr_rewind (Renda et al. 2020) or finetune.")
    controls: tuple[str, ...] = setting((), "Control arms: reinit, random, weight_shuffle (or package.module:Arm).")
    control_levels: tuple[int, ...] = setting((), "Levels where controls train (default: all).")
    ticket_levels: tuple[int, ...] = setting((), "Levels to train (default: all); for methods at initialisation.")
    init_weights: str | None = setting(None, "Start every replicate from these weights (.safetensors, or a state dict "
                                       "read with weights_only).")
    model_fingerprint: str | None = recorded("names, shapes, dtypes and initial weights of a user-given model")
    task: str | None = recorded("a custom training task, in words (None: the default for the labels)")
    task_fingerprint: str | None = recorded("its identity: import paths, code fingerprint or version")
    train_loop: str | None = recorded("the user's training function (run(train=...)): label@fingerprint")
    name: str | None = setting(None, "A label for the experiment's folder (<name>-<hash>); not part of its identity.")
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    sequential: SequentialConfig = field(default_factory=SequentialConfig)
    claim_levels: tuple[int, ...] = setting((), "Pre-registered primary levels, judged as a Holm family instead "
                                            "of the fixed sequence from dense.")

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
        require(self.levels >= 0, f"levels must be >= 0, got {self.levels}")
        self._validate_seeds()
        require(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        require(self.name is None or bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}", self.name)),
               f"name must be 1-60 letters, digits, '_', '.' or '-' (a folder name), starting with a letter "
               f"or digit; got {self.name!r}")
        require(len(set(self.controls)) == len(self.controls), f"controls repeat an arm: {list(self.controls)}")
        # Levels past ``levels`` are allowed: they are part of the identity and ``levels`` is not, so a
        # chain asked for fewer levels than it was (or will be) trained to keeps its level lists.
        require(
            list(self.control_levels) == sorted(set(self.control_levels)) and all(level >= 1 for level in self.control_levels),
            f"control_levels must increase and be >= 1 (those past levels train when the chain reaches them), "
            f"got {list(self.control_levels)}",
        )
        require(
            list(self.ticket_levels) == sorted(set(self.ticket_levels)) and all(level >= 1 for level in self.ticket_levels),
            f"ticket_levels must increase and be >= 1 (those past levels train when the chain reaches them), "
            f"got {list(self.ticket_levels)}",
        )
        require(
            not self.ticket_levels or set(self.control_levels) <= set(self.ticket_levels),
            f"control_levels {list(self.control_levels)} must be among ticket_levels {list(self.ticket_levels)}",
        )
        require(
            not self.ticket_levels or bool(self.control_levels) or not self.controls,
            "with ticket_levels, give control_levels too (controls train only where a ticket does)",
        )

        t = self.train
        require(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
        require(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
        require(
            (t.iterations is None) != (t.epochs is None),
            "set exactly one of train.iterations and train.epochs",
        )
        require(t.iterations is None or t.iterations >= 1, f"train.iterations must be >= 1, got {t.iterations}")
        require(t.epochs is None or t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
        require(t.eval_every >= 1, f"train.eval_every must be >= 1, got {t.eval_every}")
        require(t.checkpoint_every >= 1, f"train.checkpoint_every must be >= 1, got {t.checkpoint_every}")
        require(t.warmup_iterations >= 0, f"train.warmup_iterations must be >= 0, got {t.warmup_iterations}")
        require(0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}")
        require(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
        require(0 < t.gamma <= 1, f"train.gamma must be in (0, 1], got {t.gamma}")
        require(list(t.milestones) == sorted(set(t.milestones)), f"train.milestones must increase, got {list(t.milestones)}")
        require(self.rewind_iteration >= 0, f"rewind_iteration must be >= 0, got {self.rewind_iteration}")
        require(
            self.retrain == "rewind" or self.rewind_iteration == 0,
            f"rewind_iteration applies to retrain='rewind' only (got retrain={self.retrain!r}); drop it",
        )
        require(self.rewind_optimizer == "rewound" or self.rewind_iteration > 0,
               "rewind_optimizer='fresh' applies to late rewinding only (rewind_iteration > 0)")
        require(
            (self.prune.method == "transfer") == (self.prune.source is not None),
            "prune.source (the experiment whose masks are retrained) goes with prune.method='transfer' "
            "(ticketlab run --transfer-from DIR)",
        )
        if t.iterations is not None:
            require(
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
            require(role in ROLES, f"unknown prune.roles entry {role!r}; choose from: {', '.join(ROLES)}")
        require(list(self.claim_levels) == sorted(set(self.claim_levels))
                and all(1 <= level <= self.levels and self.trains(level) for level in self.claim_levels),
                f"claim_levels must increase and be trained levels in 1..levels ({self.levels}), "
                f"got {list(self.claim_levels)}")
        require(p.nm_group >= 2, f"prune.nm_group (M of N:M) must be >= 2, got {p.nm_group}")
        require(math.isfinite(p.grasp_temperature) and p.grasp_temperature > 0,
                f"prune.grasp_temperature must be a positive number, got {p.grasp_temperature}")
        require(bool(p.roles), "prune.roles is empty; nothing would be pruned (default: linear, conv, attention, recurrent)")

    def _validate_seeds(self) -> None:
        """A fixed number of seeds, or ``"auto"``: seeds added look by look up to ``max_seeds``."""
        if not self.is_sequential:
            require(self.seeds >= 1, f"seeds must be >= 1 or 'auto', got {self.seeds}")
            require(self.max_seeds is None and self.sequential == SequentialConfig(),
                   "max_seeds and sequential.* go with seeds = 'auto' (seeds added look by look)")
            return
        require(self.max_seeds is not None, "seeds = 'auto' needs max_seeds, the most seeds the design may train")
        assert self.max_seeds is not None
        require(self.max_seeds >= 2, f"max_seeds must be >= 2 (a bound needs a spread), got {self.max_seeds}")
        looks = self.looks()
        require(looks[0] >= 2 and list(looks) == sorted(set(looks)),
               f"sequential.looks must increase from 2 seeds or more, got {list(looks)}")
        require(looks[-1] == self.max_seeds, f"the last of sequential.looks {list(looks)} must be max_seeds ({self.max_seeds})")
        f = self.sequential.futility
        require(f is None or 0 < f < 1, f"sequential.futility must be in (0, 1) or null, got {f}")
        require(self.levels >= 1, "seeds = 'auto' judges pruned levels; give levels >= 1")

    @property
    def is_sequential(self) -> bool:
        """Whether seeds are added look by look (``seeds = "auto"``) until every level is decided."""
        return self.seeds == "auto"

    @property
    def replicates(self) -> int:
        """The most replicates this experiment may train: ``seeds``, or ``max_seeds`` when sequential."""
        return int(self.max_seeds if self.is_sequential else self.seeds)  # type: ignore[arg-type]

    def looks(self) -> tuple[int, ...]:
        """Seeds at each look of a sequential experiment (``sequential.looks``, or 3, the midpoint
        and ``max_seeds``); a fixed experiment has one look, at ``seeds``."""
        if not self.is_sequential:
            return (self.replicates,)
        if self.sequential.looks:
            return tuple(self.sequential.looks)
        top = self.replicates
        return tuple(sorted({min(3, top), (min(3, top) + top) // 2, top}))

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

    root: str = setting("experiments", "Root folder for experiment directories.")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    threads: int = setting(1, "Torch threads per training process.")
    workers: int = setting(0, "Trainings run in parallel (local processes or Ray tasks); 0 = one per CPU core "
                           "(divided by threads).")
    batch: int = setting(1, "Train up to K ready units as one batched computation (pays for tiny models).")
    precision: Precision = setting("fp32", "fp32, or bf16 autocast for forward passes (for GPUs).")
    executor: Executor = setting("local", "Where trainings run: local processes or tasks on a Ray cluster.")
    ray_address: str | None = setting(None, "Ray cluster address (default: start a local one).")
    progress: bool = setting(True, "Progress: bars on a terminal, elsewhere one log line per finished training.")
    probe_batch: bool = setting(True, "Measure --batch K against sequential first and never train slower.")
    stepper: Stepper = setting("auto", "auto (sparse where a probe measures it faster), dense, or sparse (pruned MLPs "
                               "trained on their survivors; see train.steppers).")
    wide: bool = setting(False, "Print the full verdict table instead of the compact 80-column one.")
    trackers: tuple[str, ...] = setting((), "Also log every training's curves, per-layer sparsity and the verdict "
                                        "table to: tensorboard, mlflow (off by default; extras of the same names).")

    def resolved(self) -> "RunOptions":
        """A copy with ``workers=0`` (auto) replaced by a number: parallel by default, one
        single-thread worker per core; a batched run trains in this one process."""
        if self.workers:
            return self
        auto = 1 if self.batch > 1 else max(1, (os.cpu_count() or 1) // self.threads)
        return dataclasses.replace(self, workers=auto)

    def validate(self) -> None:
        require(bool(str(self.root).strip()), "--out (root) is empty; give the folder that holds experiment directories "
               "(default: experiments)")  # an unset shell variable would otherwise write into the current folder
        require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda, got {self.device!r}")
        check_threads(self.threads, "threads", local=self.executor == "local")
        require(self.workers >= 0, f"workers must be >= 0 (0 = one per CPU core), got {self.workers}")
        require(self.batch >= 1, f"batch must be >= 1, got {self.batch}")
        require(self.batch == 1 or (self.workers in (0, 1) and self.executor == "local"),
               "batch > 1 trains replicates together in this process; use it with --workers 1 and --executor local")
        for name, choices in (("executor", EXECUTORS), ("precision", PRECISIONS), ("stepper", STEPPERS)):
            check_choice(getattr(self, name), name, choices)
        require(self.batch == 1 or self.precision == "fp32", "batch > 1 supports precision fp32 only")
        require(self.batch == 1 or self.stepper != "sparse", "--stepper sparse trains one unit at a time; use --batch 1")
        for tracker in self.trackers:
            check_choice(tracker, "trackers", TRACKERS)


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
    require(1 <= threads <= limit, f"{flag} must be between 1 and {where}, got {threads}")


def _rate(value: float, name: str) -> None:
    require(0 < value < 1, f"{name} must be in (0, 1), got {value}")


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
