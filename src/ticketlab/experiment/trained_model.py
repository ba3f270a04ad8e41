"""A stored unit's trained network as a ready ``nn.Module`` (``Result.model``).

The module is built by the experiment's own model factory (a built-in name, an import path,
or, for a model given to ``ticketlab.run`` as a Python object, the same object passed again),
so it is the very architecture that trained: tied parameters stay tied (one tensor under
several names), and the weights load strictly (a name or shape that does not fit is an error,
never a silent partial load). Pruned weights are set to exactly zero from the unit's mask,
whatever the weight file holds there.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch
from torch import nn

from ticketlab.config import Config
from ticketlab.errors import ConfigError
from ticketlab.experiment.inputs import builtin_factory, import_factory, named_dataset, user_code
from ticketlab.seeding import torch_seed
from ticketlab.store.layout import Store
from ticketlab.weights import load_state

WeightsKind = Literal["early_stop", "final"]


def model_factory(config: Config, model: Any = None) -> Callable[[], nn.Module]:
    """The factory that builds ``config``'s model: ``model`` when given (a callable, an import
    path or a built-in name), else the config's own name. A model that was a Python object
    cannot be rebuilt from its label, so it must be passed again (a one-line ConfigError)."""
    name = config.model if model is None else model
    if callable(name):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"model must be a built-in name, an import path or a callable returning an nn.Module, "
                          f"got {type(name).__name__}")
    if name.startswith("python:"):
        raise ConfigError(f"this experiment's model was given as a Python object ({name}); pass it again: "
                          "Result.load(directory, model=...) or result.model(level, model=...)")
    if ":" in name:
        return import_factory(name)
    if config.data.dataset.startswith("python:"):
        raise ConfigError(f"the built-in model {name!r} takes its shape from the data, which was given as a Python "
                          "object; pass the model factory: result.model(level, model=...)")
    data = named_dataset(config.data.dataset, config.data.data_dir, config.data.split_seed)
    return builtin_factory(name, data.input_shape, data.num_classes)


def build(factory: Callable[[], nn.Module]) -> nn.Module:
    """One model from ``factory`` (seeded, so building is deterministic; the weights are replaced)."""
    with torch_seed(0), user_code("the model factory"):
        model = factory()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
    return model


def masked_model(store: Store, factory: Callable[[], nn.Module], level: int, replicate: int, arm: str,
                 weights: WeightsKind) -> nn.Module:
    """Unit (``replicate``, ``level``, ``arm``)'s ``weights`` in a model from ``factory``, in eval mode."""
    if weights not in ("early_stop", "final"):
        raise ConfigError(f"weights must be 'early_stop' or 'final', got {weights!r}")
    paths = store.unit(replicate, level, arm)
    if not paths.done():
        raise ConfigError(f"{store.directory}: replicate {replicate} level {level} {arm} has not finished")
    path = paths.early_stop if weights == "early_stop" else paths.final
    if not path.is_file():
        raise ConfigError(f"{path} does not exist (a diverged training, or one written by an older ticketlab "
                          "without early-stopping weights); try weights='final'")
    model = build(factory)
    state = store.tensors(path)
    mask = store.mask(paths.mask)
    for name, keep in mask.items():
        state[name] = torch.where(keep.to(torch.bool), state[name], torch.zeros((), dtype=state[name].dtype))
    try:
        load_state(model, state)
    except RuntimeError as exc:  # another architecture: names or shapes differ
        raise ConfigError(f"the model does not fit the weights in {path}: {str(exc).splitlines()[0]}") from None
    return model.eval()
