"""The inputs a level needs before its units can train: the replicate's initial weights and the
level's ticket mask, made by the pruning method from what it declared it needs."""

from __future__ import annotations

from typing import Callable

import torch

from ticketlab.config import Config
from ticketlab.experiment.environment import (
    Environment,
    initial_weights,
    parameter_plan,
)
from ticketlab.experiment.inputs import user_code
from ticketlab.io import (
    save_tensors,
)
from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext
from ticketlab.pruning.registry import resolve_method
from ticketlab.roles import ParameterPlan
from ticketlab.store.layout import Store


def ensure_replicate_init(env: Environment, store: Store, replicate: int) -> None:
    """Write the replicate's initial weights once (deterministic, so a race writes equal bytes)."""
    path = store.init_path(replicate)
    if not path.is_file():
        save_tensors(initial_weights(env, replicate), path, checksum=True)


def experiment_plan(env: Environment, store: Store) -> ParameterPlan:
    """The plan recorded in the store (``parameters.json``), else traced now."""
    return store.parameter_plan() or parameter_plan(env)


def dense_mask(plan: ParameterPlan) -> Mask:
    """Level 0's mask: every prunable weight kept."""
    return Mask({n: torch.ones(plan.shapes[n], dtype=torch.bool) for n in plan.pruned})


def level_mask_inputs_ready(config: Config, store: Store, replicate: int, level: int,
                            trained: Callable[[int, int], bool]) -> bool:
    """Whether level ``level``'s mask can be made now, from what the pruning method needs.

    ``trained(replicate, level)`` says whether that ticket has *finished* and did not diverge,
    as the scheduler knows it: a summary file that merely exists may still be mid-write by a
    worker (its checksum not yet recorded), so the store is not polled for it.
    """
    from ticketlab.pruning.base import Need

    if level == 0 or store.level_mask_path(replicate, level).is_file():
        return True
    if not level_mask_inputs_ready(config, store, replicate, level - 1, trained):
        return False
    needs = resolve_method(config.prune.method).needs(level)
    if Need.DENSE_TRAINED in needs and not trained(replicate, 0):
        return False
    return Need.PREVIOUS_TRAINED not in needs or trained(replicate, level - 1)


def ensure_level_mask(env: Environment, store: Store, replicate: int, level: int) -> None:
    """Make level ``level``'s ticket mask with the experiment's pruning method (idempotent).

    Level 0's (dense) mask is every prunable weight; a level's mask is the method's answer
    given the previous level's mask and whatever else the method asks for, read from files.
    """
    path = store.level_mask_path(replicate, level)
    if path.is_file():
        return
    plan = experiment_plan(env, store)
    if level == 0:
        dense_mask(plan).save(path)
        return
    ensure_level_mask(env, store, replicate, level - 1)
    ensure_replicate_init(env, store, replicate)
    previous = store.mask(store.level_mask_path(replicate, level - 1))
    context = MaskContext(env.config, store, replicate, level, plan, previous, env)
    method = resolve_method(env.config.prune.method)
    with user_code(f"pruning method {method.name}", f"replicate {replicate} level {level}"):
        mask = method.next_mask(context)
    mask.save(path)
