"""The training-state file format: weights (``model/``), optimizer state (``optim/``) and the RNG
state (``rng/``) in one safetensors file, as checkpoints and rewind points store them."""

from __future__ import annotations

import contextlib
import json

import torch
from torch import nn

RNG_PREFIX = "rng/"


def rng_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The torch RNG state that random layers (Dropout) draw from, saved with each checkpoint."""
    state = {"cpu": torch.get_rng_state()}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


@contextlib.contextmanager
def seeded_rng(rng: dict[str, torch.Tensor], device: torch.device):
    """Train under the unit's own torch RNG: seeded per unit, or restored from its checkpoint, so a
    model with Dropout trains reproducibly and resumes exactly. The caller's RNG is untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if "seed" in rng:
            torch.manual_seed(int(rng["seed"]))
        else:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and devices:
                torch.cuda.set_rng_state(rng["cuda"], device)
        yield


MODEL_PREFIX = "model/"


OPTIM_PREFIX = "optim/"


def split_prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_training_state(store, path) -> tuple[dict, dict, dict]:
    """(weights, optimizer state, metadata) from a checkpoint or rewind file, verified."""
    tensors, metadata = store.tensors_and_metadata(path)
    meta = json.loads(metadata.get("state", "{}"))
    return split_prefixed(tensors, MODEL_PREFIX), split_prefixed(tensors, OPTIM_PREFIX), meta
