"""The config's names resolved where a run starts: dataset, model, pruning method and arms.

``Config.from_dict`` checks values only; looking names up is done here, at the boundary
(``ticketlab.run``, the CLI, ``stability``), as scikit-learn validates in ``fit``. That keeps
the config free of imports from the plugins it names, and reading a stored experiment never
imports a model's, dataset's or method's code.
"""

from __future__ import annotations

from pathlib import Path

from ticketlab.arms.registry import resolve_arm
from ticketlab.config import Config
from ticketlab.data import DATASETS
from ticketlab.errors import ConfigError
from ticketlab.models import MODELS
from ticketlab.pruning.base import Need, pruned_from_level
from ticketlab.pruning.registry import resolve_method


def user_object(name: str) -> bool:
    """An import path (``package.module:object``) or a Python object's label (``python:name``):
    resolved where the object is built, not in a registry."""
    return ":" in name


def resolve_names(config: Config) -> None:
    """Check that the dataset, model, pruning method and control arms exist (ConfigError), and
    the files the config names.

    Built-in names are looked up in their registries; ``package.module:object`` paths are
    imported. A model or dataset given to ``ticketlab.run`` as a Python object is recorded as
    ``python:<name>`` and checked there, against the object.
    """
    if not user_object(config.data.dataset) and config.data.dataset not in DATASETS:
        raise DATASETS.unknown(config.data.dataset, hint="")
    if config.init_weights is not None and not Path(config.init_weights).is_file():
        raise ConfigError(f"init_weights file {config.init_weights!r} does not exist; give a .safetensors or .pt file")
    data_dir = config.data.data_dir
    if data_dir is not None and Path(data_dir).is_file():
        raise ConfigError(f"data directory {data_dir!r} is a file, not a folder; pass --data-dir with "
                          "the folder holding the dataset files")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ConfigError(f"data directory {data_dir!r} does not exist; pass --data-dir with the folder holding "
                          "the dataset files")
    if not user_object(config.model) and config.model not in MODELS:
        raise MODELS.unknown(config.model, hint=" (or mlp_<width>_<width>..., e.g. mlp_300_100, or an import path "
                                                "'package.module:factory')")
    _check_method(config)
    for arm in config.controls:
        if arm == "ticket":
            raise ConfigError("the ticket is always trained; controls name the other arms")
        resolve_arm(arm)


def _check_method(config: Config) -> None:
    """The method exists, accepts the config (its optional ``check``), and fits the retraining
    mode and ``ticket_levels``."""
    method = resolve_method(config.prune.method)
    method_check = getattr(method, "check", None)  # optional: a method's own limits on the config
    if method_check is not None:
        method_check(config)
    levels = range(1, config.levels + 1)
    if config.retrain != "rewind" and any(pruned_from_level(method, level) is None for level in levels):
        raise ConfigError(f"retrain={config.retrain!r} keeps the trained weights a mask was pruned from, but "
                          f"{config.prune.method!r} prunes untrained weights; use retrain='rewind' (the default)")
    if config.ticket_levels and any(Need.PREVIOUS_TRAINED in method.needs(level) for level in range(2, config.levels + 1)):
        raise ConfigError(f"ticket_levels needs a method whose masks do not chain through every level; "
                          f"{config.prune.method!r} prunes each level from the previous level's trained ticket "
                          "(drop ticket_levels)")
