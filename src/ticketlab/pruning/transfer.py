"""Ticket transfer (Morcos et al. 2019): retrain the masks another experiment found, under this
experiment's dataset, optimizer or schedule.

Level L's mask is the source experiment's level-L ticket mask of the same replicate, read and
verified from the source's store (``prune.source``). A ticket is a mask *and* its initial
weights, so the replicate's initial weights must be the ones the source found the mask for:
they are drawn from the same seed by the same model, and this is checked, not assumed. Under
``rewind_iteration`` k > 0 the survivors rewind to iteration k of *this* experiment's dense
run (the source's dense run trained on other data or with another optimizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.pruning.base import MaskContext, Need

if TYPE_CHECKING:
    from ticketlab.config import Config
    from ticketlab.experiment.environment import Environment
    from ticketlab.roles import ParameterPlan
    from ticketlab.store.layout import Store


def source_store(ctx: MaskContext) -> "Store":
    return _source(ctx.config)


def _source(config: "Config") -> "Store":
    """The source experiment's store (``prune.source``); ConfigError if it is not an experiment."""
    from ticketlab.store.layout import Store

    directory = Path(config.prune.source or "")
    if not (directory / "config.json").is_file():
        raise ConfigError(f"transfer source {str(directory)!r} is not an experiment directory (no config.json)")
    return Store(directory)


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[n].shape == b[n].shape and torch.equal(a[n], b[n]) for n in a)


def _init_hint(source: "Config", config: "Config") -> str:
    """Which of the settings that draw the initial weights differ between source and this run."""
    fields = {"model": lambda c: c.model, "seed": lambda c: c.seed, "init_weights": lambda c: c.init_weights,
              "dataset": lambda c: c.data.dataset, "model_fingerprint": lambda c: c.model_fingerprint}
    differ = [f"{name} {get(source)!r} there, {get(config)!r} here" for name, get in fields.items()
              if get(source) != get(config)]
    return "; ".join(differ) or "another model, seed or init_weights"


def check_source(env: "Environment", plan: "ParameterPlan") -> None:
    """Refuse a source whose tickets cannot be this experiment's, before anything is written.

    Every (replicate, level) this run trains needs the source's mask, drawn for the same initial
    weights and covering the parameters this run prunes. Checked once here, a mismatch is one
    line with the new experiment not yet created; ``next_mask`` repeats the per-level checks as
    it reads each mask, which costs nothing extra.
    """
    from ticketlab.experiment.environment import initial_weights

    config = env.config
    source = _source(config)
    needed = [(r, level) for r in range(config.replicates) for level in range(1, config.levels + 1) if config.trains(level)]
    missing = [(r, level) for r, level in needed if not source.level_mask_path(r, level).is_file()]
    if missing:
        have = source.read_config()
        replicate, level = missing[0]
        raise ConfigError(
            f"transfer source {source.directory} has no level-{level} mask for replicate {replicate} (it has "
            f"{have.replicates} seed(s) and {have.levels} level(s)); use --seeds and --levels within the source's, "
            "or finish the source with `ticketlab run` first"
        )
    for replicate in range(config.replicates):
        init = source.init_path(replicate)
        if not init.is_file() or not _same_tensors(source.tensors(init), initial_weights(env, replicate)):
            raise ConfigError(
                f"transfer source {source.directory}: replicate {replicate}'s initial weights differ from this "
                f"experiment's ({_init_hint(source.read_config(), config)}); a ticket transfers with its own "
                "initialisation, so keep the source's model, seed and init_weights"
            )
    if needed:  # one mask shows which parameters the source pruned: the same at every level
        _check_covers(source, source.mask(source.level_mask_path(*needed[0])), plan.pruned, plan.shapes)


def _check_covers(source: "Store", mask: Mask, pruned, shapes) -> None:
    """The source's mask must cover exactly the parameters this run prunes, with their shapes."""
    if set(mask) != set(pruned) or any(tuple(mask[n].shape) != tuple(shapes[n]) for n in mask):
        extra, lacking = sorted(set(mask) - set(pruned)), sorted(set(pruned) - set(mask))
        which = (f"it prunes {extra[0]}, which this run does not" if extra else
                 f"it does not prune {lacking[0]}, which this run does" if lacking else "their shapes differ")
        raise ConfigError(
            f"transfer source {source.directory}: its masks cover other parameters than this experiment prunes "
            f"({which}); use the source's prune.roles/include/exclude"
        )


class TransferMasks:
    name = "transfer"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def preflight(self, env: "Environment", plan: "ParameterPlan") -> None:
        check_source(env, plan)

    def next_mask(self, ctx: MaskContext) -> Mask:
        source = source_store(ctx)
        path = source.level_mask_path(ctx.replicate, ctx.level)
        if not path.is_file():
            raise ConfigError(
                f"transfer source {source.directory} has no level-{ctx.level} mask for replicate {ctx.replicate}; "
                "use --levels and --seeds within the source's (finish it with `ticketlab run` first)"
            )
        if not _same_tensors(source.tensors(source.init_path(ctx.replicate)), ctx.init()):
            raise ConfigError(
                f"transfer source {source.directory}: replicate {ctx.replicate}'s initial weights differ from this "
                f"experiment's ({_init_hint(source.read_config(), ctx.config)}); a ticket transfers with its own "
                "initialisation"
            )
        mask = source.mask(path)
        _check_covers(source, mask, list(ctx.previous), {n: ctx.previous[n].shape for n in ctx.previous})
        return mask


def transfer_config(source: str | Path, overrides: dict) -> dict:
    """The raw config of a transfer run: the source experiment's config (verified), its masks
    named as the method, with ``overrides`` (a config file's tables) on top; CLI flags follow."""
    from ticketlab.store.layout import Store

    directory = Path(source).resolve()
    if not (directory / "config.json").is_file():
        raise ConfigError(f"--transfer-from {str(source)!r} is not an experiment directory (no config.json)")
    raw = Store(directory).read_config().to_dict()
    raw["prune"] = {**raw["prune"], "method": "transfer", "source": str(directory)}
    raw["ticket_levels"] = []
    raw["name"] = None  # the source's label names the source, not this retraining of it
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw
