"""Ray executor: the same training units as Ray tasks, for clusters (or a local Ray instance).

Each task runs ``run_unit`` against the experiment directory, which therefore must be on a
filesystem every node sees (NFS, a shared volume). Because a unit is idempotent and
checkpoints itself, Ray's retry of a task whose worker died simply resumes it from its last
checkpoint. The driver keeps the scheduling (and the lock), exactly as with local execution.
"""

from __future__ import annotations

import os
from pathlib import Path

from ticketlab.config import Config, RunOptions
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.experiment.unit import Unit

MAX_RETRIES = 3


def _run_unit_task(config: Config, store_dir: str, unit: Unit, options: RunOptions, inputs: bytes | None) -> dict:
    from ticketlab.executors.local import set_threads
    from ticketlab.experiment.runner import run_unit

    set_threads(options.threads)
    return run_unit(config, store_dir, unit, options.device, None, options.precision, inputs, options.stepper)


class RayExecutor:
    """Submits units as Ray tasks (one CPU each, or one GPU each on CUDA) and waits on them."""

    def __init__(self, config: Config, store_dir: str, options: RunOptions, inputs: bytes | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'ticketlab[ray]'") from None
        self.ray = ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            if options.ray_address:
                ray.init(address=options.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=options.workers, include_dashboard=False, log_to_driver=False)
        resources = {"num_gpus": 1} if options.device.startswith("cuda") else {"num_cpus": options.threads}
        self.task = ray.remote(max_retries=MAX_RETRIES, **resources)(_run_unit_task)
        self.config, self.options = config, options
        self.store_dir = str(Path(store_dir).resolve())
        self.capacity = max(options.workers, int(ray.cluster_resources().get("CPU", 1)) // options.threads)
        self.refs: dict = {}
        # the user's objects go into Ray's object store once; every task reads the same copy
        self.inputs = ray.put(inputs) if inputs is not None else None

    def submit(self, unit: Unit) -> None:
        ref = self.task.remote(self.config, self.store_dir, unit, self.options, self.inputs)
        self.refs[ref] = unit

    def wait(self) -> list[tuple[Unit, dict]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            unit = self.refs.pop(ref)
            try:
                out.append((unit, self.ray.get(ref)))
            except self.ray.exceptions.RayTaskError as exc:
                cause = exc.cause if hasattr(exc, "cause") else None
                if isinstance(cause, TicketlabError):
                    raise cause from None
                raise
        return out

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref)
        self.refs.clear()
