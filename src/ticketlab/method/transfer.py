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

import torch

from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.method.base import MaskContext, Need


def source_store(ctx: MaskContext):
    from ticketlab.store import Store

    directory = Path(ctx.config.prune.source or "")
    if not (directory / "config.json").is_file():
        raise ConfigError(f"transfer source {str(directory)!r} is not an experiment directory (no config.json)")
    return Store(directory)


class TransferMasks:
    name = "transfer"

    def needs(self, level: int) -> set[Need]:
        return {Need.INIT}

    def next_mask(self, ctx: MaskContext) -> Mask:
        source = source_store(ctx)
        path = source.level_mask_path(ctx.replicate, ctx.level)
        if not path.is_file():
            raise ConfigError(
                f"transfer source {source.directory} has no level-{ctx.level} mask for replicate {ctx.replicate}; "
                "use --levels and --seeds within the source's (finish it with `ticketlab run` first)"
            )
        source_init = source.tensors(source.init_path(ctx.replicate))
        own_init = ctx.init()
        if source_init.keys() != own_init.keys() or any(
            source_init[n].shape != own_init[n].shape or not torch.equal(source_init[n], own_init[n]) for n in own_init
        ):
            raise ConfigError(
                f"transfer source {source.directory}: replicate {ctx.replicate}'s initial weights differ from this "
                "experiment's (another model, seed or init_weights); a ticket transfers with its own initialisation"
            )
        mask = source.mask(path)
        if set(mask) != set(ctx.previous) or any(mask[n].shape != ctx.previous[n].shape for n in mask):
            raise ConfigError(
                f"transfer source {source.directory}: its masks cover other parameters than this experiment prunes; "
                "use the source's prune.roles/include/exclude"
            )
        return mask


def transfer_config(source: str | Path, overrides: dict) -> dict:
    """The raw config of a transfer run: the source experiment's config (verified), its masks
    named as the method, with ``overrides`` (a config file's tables) on top; CLI flags follow."""
    from ticketlab.store import Store

    directory = Path(source).resolve()
    if not (directory / "config.json").is_file():
        raise ConfigError(f"--transfer-from {str(source)!r} is not an experiment directory (no config.json)")
    raw = Store(directory).read_config().to_dict()
    raw["prune"] = {**raw["prune"], "method": "transfer", "source": str(directory)}
    raw["ticket_levels"] = []
    for key, value in overrides.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw
