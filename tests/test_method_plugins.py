"""Pruning methods and arms are plugins: one file each, by import path; the scheduler reads `needs`."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.experiment.names import resolve_names
from ticketlab.config import Config
from ticketlab.errors import ConfigError
from ticketlab.io import load_tensors
from ticketlab.arms.registry import resolve_arm
from ticketlab.pruning.registry import resolve_method

from conftest import tiny_config


def test_method_that_needs_no_training_makes_every_mask_before_any_ticket_trains(tmp_path):
    order = []
    options = ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1)
    config = tiny_config(levels=3, controls=["user_code.methods:SignFlip"],
                         prune={"method": "user_code.methods:RandomAtInit"})
    store_dir = []

    def on_done(unit, summary):
        order.append((unit.level, unit.arm))
        if not store_dir:
            from ticketlab.store.layout import Store

            store_dir.append(Store.for_config(config, tmp_path))
            # after the *first* unit (the dense run) every level's mask already exists
            for level in (1, 2, 3):
                assert store_dir[0].level_mask_path(0, level).is_file()

    result = ticketlab.run(config, options, on_done=on_done)
    masks = [result.mask(level) for level in range(4)]
    assert [round(100 * m.fraction_remaining(), 1) for m in masks] == [100.0, 80.0, 64.0, 51.2]
    assert all(b.is_nested_in(a) for a, b in zip(masks, masks[1:]))
    init = load_tensors(result.store.init_path(0))
    flipped = load_tensors(result.store.unit(0, 2, "user_code.methods:SignFlip").start)
    keep = masks[2]["layers.1.weight"]
    assert torch.equal(flipped["layers.1.weight"][keep], -init["layers.1.weight"][keep])
    assert result.config.prune.method == "user_code.methods:RandomAtInit"


def test_unknown_and_removed_plugins_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown pruning method 'snipp'"):
        resolve_method("snipp")
    with pytest.raises(ConfigError, match="cannot import no_such_module"):
        resolve_arm("no_such_module:Arm")
    with pytest.raises(ConfigError, match="does not implement Arm"):
        resolve_arm("user_code.methods:RandomAtInit")
    with pytest.raises(ConfigError, match="shuffle control was removed.*weight_shuffle"):
        resolve_names(Config.from_dict({"controls": ["shuffle"]}))
    # stored experiments with the old arm still read (names are not resolved when reading)
    assert Config.from_dict({"controls": ["shuffle"]}).controls == ("shuffle",)


def test_scheduler_never_reads_a_summary_a_worker_is_still_writing(tmp_path):
    """A worker writes summary.json before recording its checksum; until the executor reports
    the unit finished, the scheduler must not read it (it once did, and saw a 'damaged' file)."""
    from ticketlab.experiment.schedule import run_graph
    from ticketlab.store.layout import Store
    from ticketlab.experiment.environment import environment
    from ticketlab.experiment.runner import run_unit

    config = tiny_config(levels=1, seeds=2, train={"iterations": 20, "eval_every": 10})
    store = Store.for_config(config, tmp_path)

    class MidWriteExecutor:
        """Two units 'in flight'; each has a summary file on disk without its checksum until it finishes."""

        capacity = 2

        def __init__(self) -> None:
            self.queue = []

        def submit(self, unit) -> None:
            paths = store.unit(unit.replicate, unit.level, unit.arm)
            paths.directory.mkdir(parents=True, exist_ok=True)
            paths.summary.write_text('{"half": "written"}')
            self.queue.append(unit)

        def wait(self):
            unit = self.queue.pop(0)
            store.unit(unit.replicate, unit.level, unit.arm).summary.unlink()
            return [(unit, run_unit(config, str(store.directory), unit, "cpu"))]

        def close(self) -> None:
            pass

    with store:
        store.write_config(config)
        summaries = run_graph(environment(config), store, MidWriteExecutor())
    assert len(summaries) == 4 and all(s["status"] == "ok" for s in summaries)
