"""Schedulers over the same graph of units: in-process, local process pool, Ray."""

from __future__ import annotations

from ticketlab.config import Config, RunOptions
from ticketlab.executors.local import StackedExecutor, InlineExecutor, ProcessPoolUnitExecutor
from ticketlab.experiment.schedule import Executor
from ticketlab.experiment.inputs import Inputs
from ticketlab.experiment.unit import ProgressFn


def make_executor(config: Config, store_dir: str, options: RunOptions, progress: ProgressFn | None,
                  inputs: "bytes | Inputs | None" = None) -> Executor:
    """The executor ``options`` asks for. One local worker runs in-process (with live progress).

    ``inputs`` are the user's objects: as they are for in-process execution, as cloudpickle
    bytes for worker processes and Ray tasks (sent once per worker, not once per unit).
    """
    if options.executor == "ray":
        from ticketlab.executors.ray import RayExecutor

        return RayExecutor(config, store_dir, options, inputs)
    if options.batch > 1:
        return StackedExecutor(config, store_dir, options, inputs)
    if options.workers == 1:
        return InlineExecutor(config, store_dir, options, progress, inputs)
    return ProcessPoolUnitExecutor(config, store_dir, options, inputs)


__all__ = ["make_executor", "StackedExecutor", "InlineExecutor", "ProcessPoolUnitExecutor"]
