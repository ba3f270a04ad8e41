"""The per-process environment a unit trains in: model factory, data and task, on a device.

An :class:`Environment` is built from the config's built-in names, or from the user's objects
carried to this process by value (``inputs``), and cached per process, so a worker that trains
many units loads its data once. Verify, bundle, compare, export and stability build one too.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import torch
from torch import nn

from ticketlab.config import Config
from ticketlab.data import Dataset
from ticketlab.data.batch import call, moved
from ticketlab.errors import ConfigError
from ticketlab.experiment.inputs import Inputs, builtin_inputs, user_code
from ticketlab.roles import ParameterPlan, plan_parameters
from ticketlab.seeding import derive_seed
from ticketlab.train.loop import total_iterations
from ticketlab.weights import cloned_state


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device cuda was requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(device)


def replicate_seed(config: Config, replicate: int) -> int:
    return config.seed + replicate


@dataclass
class Environment:
    """An experiment's inputs in one process: model factory, data on the device, task."""

    config: Config
    inputs: Inputs
    device: torch.device
    data: Dataset
    user: bool = False  # the model, data or task came from the user (their errors are reported as such)

    @property
    def task(self):
        """The task to train and score with. A stored experiment rebuilt from its config alone
        (stability, export) has only the default task, which would train or score a custom-task
        experiment wrongly: asking for it is then a one-line error (its model and data are fine)."""
        if not self.user and self.config.task_fingerprint is not None:
            raise ConfigError(f"this experiment was trained with a custom task ({self.config.task}), which only the "
                              "Python API can pass again: ticketlab.run(..., task=ticketlab.Task(...)) or "
                              "ticketlab.bundle.verify(..., task=...)")
        return self.inputs.task

    def build(self, seed: int, device: torch.device | str | None = None) -> nn.Module:
        return self.inputs.build(seed, self.device if device is None else device)

    def fresh_weights(self, seed: int) -> dict[str, torch.Tensor]:
        """A newly initialised model's weights, from ``seed`` (the user's factory for user models)."""
        return cloned_state(self.build(seed, "cpu"))

    def meta_model(self) -> nn.Module:
        """The model with shapes but no storage (``meta``): names and sizes for free. A model that
        cannot be built on ``meta`` (it reads a value while constructing) is built on the CPU."""
        try:
            with torch.device("meta"):
                return self.inputs.build(0, "meta")
        except (NotImplementedError, RuntimeError):
            return self.build(0, "cpu")

    def end(self) -> int:
        return total_iterations(self.config.train, self.data)


@functools.lru_cache(maxsize=4)
def _builtin_environment(config_json: str, device: str) -> Environment:
    config = Config.from_dict(json.loads(config_json))
    inputs = builtin_inputs(config.model, config.data.dataset, config.data.data_dir, config.data.split_seed)
    return Environment(config, inputs, torch.device(device), inputs.data.to(device))


@functools.lru_cache(maxsize=2)
def _unpickled(blob: bytes) -> Inputs:
    """The user's objects a worker received as bytes, unpickled once per worker."""
    import cloudpickle

    return cloudpickle.loads(blob)


def environment(config: Config, device: torch.device | str = "cpu", inputs: bytes | Inputs | None = None) -> Environment:
    """This process's environment of ``config`` (its data moved to ``device`` once).

    ``inputs`` are the user's objects, as :class:`Inputs` in the calling process or as
    cloudpickle bytes in a worker; without them the config's built-in names are used.
    """
    device = torch.device(device)
    if inputs is None:
        return _builtin_environment(json.dumps(config.to_dict(), sort_keys=True), str(device))
    if isinstance(inputs, bytes):
        inputs = _unpickled(inputs)
    return Environment(config, inputs, device, inputs.on(device), user=True)


# ---------------------------------------------------------------------------- files a unit needs
def initial_weights(env: Environment, replicate: int) -> dict[str, torch.Tensor]:
    """Replicate ``replicate``'s initial weights: drawn from its seed, or the user's given weights."""
    config = env.config
    if config.init_weights:
        from ticketlab.experiment.inputs import load_init_weights

        return load_init_weights(config.init_weights, env.meta_model())
    return env.fresh_weights(derive_seed(replicate_seed(config, replicate), "init"))


def parameter_plan(env: Environment) -> ParameterPlan:
    """What the experiment prunes (by role) and its output layer, traced on one example.

    The trace runs on the ``meta`` device (no compute) when the model builds and runs there,
    else on the CPU; a forward pass that fails on the CPU too is the user's error, in one line.
    """
    from ticketlab.train.task import prediction

    example = env.inputs.data.sample(2)[0]
    model = env.meta_model()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type == "meta":
        try:
            on_meta = moved(example, "meta")
            return plan_parameters(model, env.config.prune, trace=lambda m: prediction(call(m, on_meta)))
        except (NotImplementedError, RuntimeError, TypeError, ValueError, IndexError):
            model = env.build(0, "cpu")
    with user_code("the model's forward pass", active=True):
        return plan_parameters(model.eval(), env.config.prune, trace=lambda m: prediction(call(m, example)))
