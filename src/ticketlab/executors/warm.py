"""What every worker process needs before its first step, paid once in the fork server.

On Linux the local pool forks its workers from a ``multiprocessing`` fork server that imported
this module first, so a worker starts with torch and the training modules imported and
torch's lazy ``torch._dynamo`` import (triggered by the first fused optimizer) already done:
about 2-3 s less per worker than a spawned process (docs/performance.md, section 2). Nothing
here runs a parallel kernel, so the server stays safe to fork.

The server exits as soon as the run's process is gone (its "alive" pipe closes). It then skips
the interpreter's clean-up of torch and the training modules, which it never used: that
clean-up took seconds on a loaded machine, and a killed run's processes should be gone at once.
"""

import atexit
import os
import sys

import torch

import ticketlab.executors.local  # noqa: F401  (the worker entry points)
import ticketlab.train.steppers.sparse  # noqa: F401
import ticketlab.train.steppers.dense  # noqa: F401
import ticketlab.train.steppers.stacked  # noqa: F401
import ticketlab.experiment.runner  # noqa: F401
from ticketlab.train.optim import supports_fused

for _cls in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
    supports_fused(_cls, torch.device("cpu"))


def _imported_by_fork_server() -> bool:
    """Whether this import is the fork server's preload (``forkserver.main`` is on the stack),
    not an import in a run's or a user's process, whose exit must stay a normal one."""
    from multiprocessing import forkserver

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _imported_by_fork_server():
    # Registered last, so it runs first at exit. Forked workers inherit it but never run it:
    # multiprocessing ends them with os._exit.
    atexit.register(os._exit, 0)
