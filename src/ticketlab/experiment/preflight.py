"""Everything a run checks before its first write, so that bad input writes nothing.

Config values are checked when the config is built (``Config.validate``); what needs the
dataset or the machine is checked here: the ``--out`` folder, the prune patterns against the
actual model, the rewind point against the actual training length, and whether the model and
the number of trainings can fit at all. Sizes come from the model built on the ``meta``
device (shapes without storage), so even a model that would never fit costs nothing to measure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ticketlab.config import Config, RunOptions
from ticketlab.errors import ConfigError
from ticketlab.experiment.environment import Environment, parameter_plan
from ticketlab.roles import ParameterPlan

MAX_UNITS = 1_000_000
# fp32 bytes held per parameter while one unit trains: weights, gradient, two optimizer moments,
# float mask, start weights, the copies made to save a checkpoint, and headroom.
TRAINING_BYTES_PER_PARAM = 4 * 8
GIB = 1024**3
MIB = 1024**2
BLOCK = 4096  # a file takes whole filesystem blocks: for small models this, not the tensors, dominates
TENSOR_HEADER = 160  # safetensors header bytes per tensor (name, dtype, shape, offsets), generously
RNG_BYTES = 8 * 1024  # the torch generator state saved with every checkpoint (5,056 bytes on the CPU)
EVALUATION_BYTES = 400  # one evaluation as a metrics.jsonl line (and in a checkpoint's history)
SMALL_FILE = BLOCK  # summary.json, manifest.json, config.json: each under a block


def preflight(env: Environment, options: RunOptions) -> ParameterPlan:
    """Raise ConfigError for anything that would fail after writing; write nothing. Returns the
    parameter plan it traced (what is pruned), which the run records."""
    from ticketlab.experiment.inputs import probe

    config = env.config
    check_out_dir(Path(options.root), experiment_dir(config, options.root).name)
    check_resources(env, options)
    plan = parameter_plan(env)
    probe(env.inputs, config, env.device)
    check_method(env, plan)
    end = env.end()
    if config.rewind_iteration >= end:
        raise ConfigError(
            f"rewind_iteration ({config.rewind_iteration}) must be below the training length ({end} iterations)"
        )
    return plan


def check_method(env: Environment, plan: ParameterPlan) -> None:
    """The pruning method's own checks of this run's inputs (``preflight(env, plan)``, optional):
    what only the built model or another experiment can show, e.g. a transfer source that does
    not fit, refused before the first write instead of at the first level's mask."""
    from ticketlab.pruning.base import Need
    from ticketlab.pruning.registry import resolve_method

    method = resolve_method(env.config.prune.method)
    if any(Need.BATCHES in method.needs(level) for level in range(1, env.config.levels + 1)):
        env.task.check_loss_computable()  # the method scores weights by the loss's gradients on a few batches
    method_preflight = getattr(method, "preflight", None)
    if method_preflight is not None:
        method_preflight(env, plan)


def unit_count(config: Config) -> int:
    """Trainings the config asks for, counted from its level lists, not level by level: this
    check is what refuses ``--levels 100000000``, so it must not itself take a loop that long."""
    pruned = {level for level in config.ticket_levels if 1 <= level <= config.levels} if config.ticket_levels else None
    tickets = len(pruned) if pruned is not None else config.levels
    if config.control_levels:
        controlled = sum(1 for level in set(config.control_levels) if config.has_controls(level) and level <= config.levels)
    else:
        controlled = tickets
    return config.replicates * (1 + tickets + len(config.controls) * controlled)


def check_resources(env: Environment, options: RunOptions) -> None:
    """Refuse a model or a number of trainings that cannot fit in memory or on disk."""
    config, device = env.config, env.device
    units = unit_count(config)
    if units > MAX_UNITS:
        raise ConfigError(
            f"{units:,} trainings ({config.replicates} seeds x {config.levels} levels x {1 + len(config.controls)} arms) "
            f"is more than {MAX_UNITS:,}; use fewer levels, seeds or controls"
        )
    params = sum(p.numel() for p in env.meta_model().parameters())
    parallel = max(options.workers, options.batch, 1) if device.type == "cpu" else max(options.batch, 1)
    needed = params * TRAINING_BYTES_PER_PARAM * parallel
    available = available_memory(device)
    if available is not None and needed > available:
        raise ConfigError(
            f"model {config.model!r} has {params:,} parameters and needs about {size_text(needed)} to train "
            f"({parallel} at a time), but {device.type} has {size_text(available)} available; "
            "use a smaller model" + (" or fewer --workers/--batch" if parallel > 1 else "")
        )
    stored = stored_bytes(env, options)
    needed = stored - _stored_already(experiment_dir(config, options.root))
    free = _free_disk(Path(options.root))
    if free is not None and needed > free:
        raise ConfigError(
            f"the experiment would store about {size_text(needed)} more ({units:,} trainings of {params:,} "
            f"parameters: weights, masks, checkpoints, metrics) but {options.root} has {size_text(free)} free; "
            "use fewer levels, seeds or controls, or another --out"
        )


def size_text(n: float) -> str:
    """Bytes for a person: GiB from 1 GiB up, else MiB (a 10 MB run on an 8 MB disk must not
    read "0.0 GiB ... 0.0 GiB free")."""
    return f"{n / GIB:,.1f} GiB" if n >= GIB else f"{n / MIB:,.1f} MiB"


def _blocks(n: float) -> int:
    return int(-(-n // BLOCK) * BLOCK)


def stored_bytes(env: Environment, options: RunOptions) -> int:
    """Disk the whole experiment takes when finished, plus the checkpoints of the units training
    at the same time: what every unit, replicate and the experiment itself write (see ``store``),
    each file rounded up to whole blocks."""
    config = env.config
    state = env.meta_model().state_dict()
    values = sum(t.numel() for t in state.values())
    weight_bytes = sum(t.numel() * t.element_size() for t in state.values())
    tensors = len(state)
    slots = 2 if config.train.optimizer in ("adam", "adamw") else int(config.train.momentum > 0)
    evaluations = env.end() // max(config.train.eval_every, 1) + 2

    def tensor_file(data: float, count: int, metadata: float = 0) -> int:
        return _blocks(data + TENSOR_HEADER * count + 64 + metadata)

    weights = tensor_file(weight_bytes, tensors)
    training_state = tensor_file(weight_bytes + 4 * values * slots + RNG_BYTES, tensors * (1 + slots) + 2,
                                 EVALUATION_BYTES * evaluations)
    mask = tensor_file(values, tensors)
    unit = (mask + 2 * weights + tensor_file(weight_bytes, tensors, EVALUATION_BYTES)  # mask, start, final, early stop
            + _blocks(EVALUATION_BYTES * evaluations) + 2 * SMALL_FILE)  # metrics; summary, manifest
    replicate = (weights + (training_state if config.rewind_iteration > 0 else 0)
                 + (config.levels + 1) * (mask + SMALL_FILE) + SMALL_FILE)
    units = unit_count(config)
    top = 3 * SMALL_FILE + _blocks(200 * tensors) + _blocks(200 * units)  # config, plan, manifest and its index
    parallel = max(options.workers, options.batch, 1)
    return units * unit + config.replicates * replicate + top + min(parallel, units) * training_state


def experiment_dir(config: Config, root: str) -> Path:
    """Where the run will write: the experiment's existing directory, or its new one."""
    from ticketlab.store.layout import Store

    return Store.for_config(config, root).directory


def _stored_already(directory: Path) -> int:
    """What a resumed experiment has already written (it counts towards the estimate)."""
    try:
        return sum(_blocks(p.stat().st_size) for p in directory.rglob("*") if p.is_file())
    except OSError:
        return 0


def available_memory(device: torch.device) -> int | None:
    """Bytes available for training on ``device`` (None if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_disk(root: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_ancestor(root)).free
    except OSError:
        return None


PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
MEMORY_FILESYSTEMS = (Path("/dev/shm"),)  # under /dev, but an ordinary tmpfs that holds files
NAME_MAX = 255  # bytes in one file name on ext4, xfs, btrfs, tmpfs and APFS alike
# Characters the store adds below the experiment folder at most:
# replicate_<r>/level_<LL>/<arm>/.<file>.safetensors.<random>.tmp, with room for long arm names.
INSIDE_EXPERIMENT = 160


def check_out_dir(root: Path, experiment: str = "") -> None:
    """``--out`` must be (or be creatable as) a writable folder on a real filesystem, whose
    experiment folder (``experiment``, the name the store will create in it) and every file
    the store writes there have names the filesystem accepts."""
    _check_name_lengths(root, experiment)
    _check_links(root)
    existing = _existing_ancestor(root)
    resolved = existing.resolve()
    if _pseudo(resolved):
        raise ConfigError(f"--out {str(root)!r} is under {resolved}, which cannot hold files; choose a normal folder")
    if not existing.is_dir():
        raise ConfigError(f"--out {str(root)!r}: {existing} is a file, not a folder; choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {str(root)!r}: {existing} is not writable; choose a folder you can write to")


def _pseudo(path: Path) -> bool:
    """Whether ``path`` lies on a kernel filesystem (``/proc``, ``/sys``, ``/dev`` but ``/dev/shm``)."""
    def under(base: Path) -> bool:
        return path == base or base in path.parents

    return any(under(p) for p in PSEUDO_FILESYSTEMS) and not any(under(p) for p in MEMORY_FILESYSTEMS)


def _check_name_lengths(root: Path, experiment: str) -> None:
    """Refuse a folder name or a whole path the filesystem would reject (ENAMETOOLONG), which
    otherwise fails as a traceback at the first write, or halfway through the run."""
    full = root.absolute() / experiment if experiment else root.absolute()
    for part in full.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise ConfigError(f"--out {_short(root)}: the name {_short(part)} has {len(os.fsencode(part))} bytes, "
                              f"more than the {NAME_MAX} a file name may have; choose a shorter folder name")
    limit = _path_max(root)
    length = len(os.fsencode(str(full))) + INSIDE_EXPERIMENT
    if length > limit:
        raise ConfigError(f"--out {_short(root)} is too long: the experiment's files would have paths of about "
                          f"{length} bytes, more than the {limit} this system allows; choose a shorter path")


def _path_max(root: Path) -> int:
    """The longest path this system accepts (4096 on Linux, 1024 on macOS)."""
    try:
        return os.pathconf(_existing_ancestor(root), "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return 4096


def _check_links(root: Path) -> None:
    """Refuse a path through a symbolic link that leads nowhere (dangling, or a loop)."""
    path = root.absolute()
    for candidate in (path, *path.parents):
        if os.path.islink(candidate) and not os.path.exists(candidate):
            raise ConfigError(f"--out {_short(root)}: {candidate} is a symbolic link to nothing (dangling, or a "
                              "loop); fix the link or choose another folder")


def _short(text: Path | str, keep: int = 60) -> str:
    """``text`` quoted, its middle elided when long, so the error stays one readable line."""
    text = str(text)
    return repr(text if len(text) <= keep else f"{text[:keep // 2]}...{text[-keep // 2:]}")
