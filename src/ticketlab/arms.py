"""Arms: how each training unit gets its mask and its starting point.

An arm is the *only* thing that differs between the ticket and its controls; training,
checkpointing and storage are shared. Each arm is a small function of the level's ticket
mask and the replicate's saved weights:

* ``ticket``  the level's mask, survivors rewound to their initial values (k=0) or to the
              dense run's weights *and optimizer state* at iteration k. At level 0 the mask
              is all ones: the dense network.
* ``reinit``  the level's mask with fresh weights from the same initialiser (a new seed),
              trained from iteration 0 with a fresh optimizer ("same mask, new lottery").
* ``random``  a random mask with exactly the ticket's per-layer counts, from the ticket's
              starting point ("same lottery numbers, random structure").
* ``shuffle`` the ticket's mask permuted within each layer, from the ticket's starting point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import torch

from ticketlab.config import Config
from ticketlab.masks import Mask
from ticketlab.optim import mask_optimizer_state_
from ticketlab.pruning import random_mask_like, shuffled_mask
from ticketlab.seeding import derive_seed
from ticketlab.store import Store

MODEL_PREFIX = "model/"
OPTIM_PREFIX = "optim/"


@dataclass
class StartPoint:
    """Where a unit's training begins: weights, optimizer state and iteration."""

    weights: dict[str, torch.Tensor]
    optimizer_state: dict[str, torch.Tensor] = field(default_factory=dict)
    step: int = 0


def replicate_seed(config: Config, replicate: int) -> int:
    return config.seed + replicate


def split_prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_training_state(store: Store, path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(weights, optimizer state, metadata) from a checkpoint or rewind file, verified."""
    tensors, metadata = store.tensors_and_metadata(path)
    meta = json.loads(metadata.get("state", "{}"))
    return split_prefixed(tensors, MODEL_PREFIX), split_prefixed(tensors, OPTIM_PREFIX), meta


def rewound_start(config: Config, store: Store, replicate: int, mask: Mask) -> StartPoint:
    """The ticket's starting point: init (k=0) or the dense run at iteration k, masked."""
    if config.rewind_iteration == 0:
        weights = store.tensors(store.init_path(replicate))
        optimizer_state: dict[str, torch.Tensor] = {}
        step = 0
    else:
        weights, optimizer_state, meta = load_training_state(store, store.rewind_path(replicate))
        step = int(meta["step"])
        mask_optimizer_state_(optimizer_state, mask.tensors)
    return StartPoint(mask.applied_to(weights), optimizer_state, step)


MaskFn = Callable[[Config, int, int, Mask], Mask]
StartFn = Callable[[Config, Store, int, int, Mask, Callable[[int], dict[str, torch.Tensor]]], StartPoint]


def _ticket_mask(config: Config, replicate: int, level: int, ticket_mask: Mask) -> Mask:
    return ticket_mask


def _random_mask(config: Config, replicate: int, level: int, ticket_mask: Mask) -> Mask:
    return random_mask_like(ticket_mask, derive_seed(replicate_seed(config, replicate), "random", level))


def _shuffle_mask(config: Config, replicate: int, level: int, ticket_mask: Mask) -> Mask:
    return shuffled_mask(ticket_mask, derive_seed(replicate_seed(config, replicate), "shuffle", level))


def _rewound(config, store, replicate, level, mask, fresh_init) -> StartPoint:
    if level == 0:  # the dense run always starts from initialisation; it *produces* the rewind point
        return StartPoint(store.tensors(store.init_path(replicate)))
    return rewound_start(config, store, replicate, mask)


def _reinit(config, store, replicate, level, mask, fresh_init) -> StartPoint:
    weights = fresh_init(derive_seed(replicate_seed(config, replicate), "reinit", level))
    return StartPoint(mask.applied_to(weights))


@dataclass(frozen=True)
class Arm:
    name: str
    make_mask: MaskFn
    make_start: StartFn


ARMS: dict[str, Arm] = {
    "ticket": Arm("ticket", _ticket_mask, _rewound),
    "reinit": Arm("reinit", _ticket_mask, _reinit),
    "random": Arm("random", _random_mask, _rewound),
    "shuffle": Arm("shuffle", _shuffle_mask, _rewound),
}
