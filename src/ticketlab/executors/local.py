"""Local executors: in the calling process, or a pool of single-purpose worker processes.

Each worker process gets its own torch thread budget (``--threads``). On a 2-core machine two
one-thread workers give close to twice the throughput of one process, because small-model
training is dominated by per-step overhead that threads cannot split.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import torch

from ticketlab.config import Config, RunOptions
from ticketlab.experiment.unit import ProgressFn, Unit
from ticketlab.experiment.runner import run_unit


def set_threads(threads: int) -> None:
    """Give this process ``threads`` intra-op threads (and one inter-op thread)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # can only be set before the first parallel op; harmless if already set
        pass


class InlineExecutor:
    """Runs units one at a time in this process; progress callbacks work per iteration."""

    capacity = 1

    def __init__(self, config: Config, store_dir: str, options: RunOptions, progress: ProgressFn | None,
                 inputs=None) -> None:
        self.config, self.store_dir, self.options, self.progress = config, store_dir, options, progress
        self.inputs = inputs
        self.queue: deque[Unit] = deque()
        set_threads(options.threads)

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def wait(self) -> list[tuple[Unit, dict]]:
        unit = self.queue.popleft()
        options = self.options
        return [(unit, run_unit(self.config, self.store_dir, unit, options.device, self.progress, options.precision,
                                self.inputs, options.stepper))]

    def close(self) -> None:
        self.queue.clear()


class StackedExecutor:
    """Runs up to ``options.batch`` units per call as one stacked computation (see ``ticketlab.experiment.stack``).

    It pays where per-step overhead dominates: tiny models on CPU (an MLP on MNIST-1D), or many
    small models on one GPU. The scheduler fills a batch with whatever units are ready, so the
    K replicates of a level (and its controls) train together.
    """

    def __init__(self, config: Config, store_dir: str, options: RunOptions, inputs=None) -> None:
        self.config, self.store_dir, self.options, self.inputs = config, store_dir, options, inputs
        self.capacity = options.batch
        self.queue: list[Unit] = []
        set_threads(options.threads)

    def submit(self, unit: Unit) -> None:
        self.queue.append(unit)

    def wait(self) -> list[tuple[Unit, dict]]:
        from ticketlab.experiment.stack import run_stack

        units, self.queue = self.queue, []
        return run_stack(self.config, self.store_dir, units, self.options.device, self.inputs)

    def close(self) -> None:
        self.queue.clear()


def worker_context() -> multiprocessing.context.BaseContext:
    """How the pool starts workers: forked from a fork server where available, spawned elsewhere.

    The fork server (Linux) imports torch and the training modules once (``executors.warm``);
    every worker forked from it starts with them imported, instead of each spawned worker
    paying Python start-up, ``import torch`` and torch's lazy compiler import again. The server
    never runs torch kernels, so forking it is safe, and it exits when the run's process does.
    Workers get the parent's ``sys.path`` and working directory at each start, but the
    environment variables the server started with (the first run of a process starts it).
    """
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["ticketlab.executors.warm"])
        return context
    return multiprocessing.get_context("spawn")


def start_worker_server(options: RunOptions) -> None:
    """Start the fork server now, if this run will use worker processes.

    Called first thing in ``ticketlab.run``: the server's imports then overlap the parent's own
    data loading and preflight instead of following them. Best effort: on failure, the pool
    starts it (or spawns) as usual.
    """
    if options.executor != "local" or options.workers <= 1 or options.batch > 1:
        return
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        try:
            forkserver.ensure_running()
        except (OSError, ValueError):
            pass


def _die_with_parent(run_pid: int) -> None:
    """Make sure this worker ends when the run's process ends, however it ends (SIGKILL, OOM).

    Without it, a killed run would leave workers training on and writing into the experiment
    directory while a resumed run works on the same units. Three independent links, so none
    depends on another: the kernel SIGKILLs the worker when its parent dies (``PR_SET_PDEATHSIG``;
    the parent is the run for a spawned worker, the fork server for a forked one); the fork
    server exits when the run does, once this worker no longer holds it open
    (``_release_fork_server``); and a watcher thread exits the worker when the run's process is
    gone (``_watch_run``). If the parent or the run died while this worker was starting, exit now.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    _release_fork_server()
    _watch_run(run_pid, parent)
    if os.getppid() != parent or not _alive(run_pid):
        os._exit(1)


def _release_fork_server() -> None:
    """Close this worker's copy of the write end of the fork server's "alive" pipe.

    The server exits when every holder of that pipe is gone, and it gives a copy to each process
    it forks. So while a worker lived, the server never saw the run die, and the worker's
    parent-death signal (fired by the server's exit) never came: each waited for the other, and
    a killed run's workers trained to the end. The run's process alone must keep the server
    alive. (A worker that needs a fork server itself starts its own, as ``ensure_running`` does
    for a process that has none.)
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is None:  # spawned, or a Python whose fork server keeps no such pipe
        return
    try:
        os.close(fd)
    except OSError:
        pass
    server._forkserver_alive_fd = None


def _watch_run(run_pid: int, parent: int) -> None:
    """Exit this worker as soon as the run's process ends, on a daemon thread.

    It needs no help from the fork server or the parent-death signal, so a worker still goes
    down with the run if those links change (another Python, another platform).
    """
    threading.Thread(target=_exit_when_run_ends, args=(run_pid, parent), name="ticketlab-watch-run",
                     daemon=True).start()


def _exit_when_run_ends(run_pid: int, parent: int) -> None:
    """Block until ``run_pid`` has exited, then end this process at once (as SIGKILL would).

    A pidfd (Linux 5.3+) becomes readable when the process exits, zombie or not, and cannot be
    confused with a later process that reuses the number; elsewhere poll the parent and the pid.
    """
    try:
        handle = os.pidfd_open(run_pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here
        while os.getppid() == parent and _alive(run_pid):
            time.sleep(0.2)
    else:
        select.select([handle], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: an existence check
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        pass
    return True


PR_SET_PDEATHSIG = 1


_WORKER_INPUTS: bytes | None = None


def _worker_init(threads: int, parent_pid: int, inputs: bytes | None) -> None:
    global _WORKER_INPUTS
    _die_with_parent(parent_pid)
    set_threads(threads)
    _WORKER_INPUTS = inputs


def _run_in_worker(config: Config, store_dir: str, unit: Unit, device: str, precision: str,
                   stepper: str = "auto") -> dict:
    """``run_unit`` with the user's objects this worker received once, at start."""
    return run_unit(config, store_dir, unit, device, None, precision, _WORKER_INPUTS, stepper)


class _MainHidden:
    """Hide ``__main__`` from spawned workers while the pool lives.

    A spawned worker normally re-runs the parent's main script, which fails for a script read
    from standard input (``'<stdin>'`` is no file) and re-executes any unguarded top-level code
    of the user's script. Workers never need it: the user's objects reach them by value.
    """

    def __enter__(self) -> None:
        main = sys.modules["__main__"]
        self.saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
        main.__dict__["__spec__"] = None
        main.__dict__.pop("__file__", None)

    def __exit__(self, *exc: object) -> None:
        main = sys.modules["__main__"]
        main.__dict__.update(self.saved)
        if "__spec__" not in self.saved:
            main.__dict__.pop("__spec__", None)


class ProcessPoolUnitExecutor:
    """Runs up to ``workers`` units at once in worker processes (see ``worker_context``)."""

    def __init__(self, config: Config, store_dir: str, options: RunOptions, inputs: bytes | None = None) -> None:
        self.config, self.store_dir, self.options = config, store_dir, options
        self.capacity = options.workers
        self.main_hidden = _MainHidden()
        self.main_hidden.__enter__()
        self.pool = ProcessPoolExecutor(
            max_workers=options.workers,
            mp_context=worker_context(),
            initializer=_worker_init,
            initargs=(options.threads, os.getpid(), inputs),
        )
        self.futures: dict[Future, Unit] = {}

    def submit(self, unit: Unit) -> None:
        options = self.options
        future = self.pool.submit(_run_in_worker, self.config, self.store_dir, unit, options.device, options.precision,
                                  options.stepper)
        self.futures[future] = unit

    def wait(self) -> list[tuple[Unit, dict]]:
        done, _ = wait(self.futures, return_when=FIRST_COMPLETED)
        return [(self.futures.pop(f), f.result()) for f in done]

    def close(self) -> None:
        """End the pool. Units still running mean the run is being abandoned (an error, Ctrl-C,
        SIGTERM): kill their workers first, or shutting down would wait for them to finish
        training and write their results after the run has stopped."""
        if any(not future.done() for future in self.futures):
            _kill_workers(self.pool)
        for future in self.futures:
            future.cancel()
        try:
            self.pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self.main_hidden.__exit__()


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL every worker of ``pool`` now (``kill_workers`` where Python has it, 3.14+)."""
    kill = getattr(pool, "kill_workers", None)
    if kill is not None:
        kill()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):  # already gone or never started
            pass
