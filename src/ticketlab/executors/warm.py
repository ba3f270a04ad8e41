"""What every worker process needs before its first step, paid once in the fork server.

On Linux the local pool forks its workers from a ``multiprocessing`` fork server that imported
this module first, so a worker starts with torch and the training modules imported and
torch's lazy ``torch._dynamo`` import (triggered by the first fused optimizer) already done:
about 2-3 s less per worker than a spawned process (docs/performance.md, section 2). Nothing
here runs a parallel kernel, so the server stays safe to fork.
"""

import torch

import ticketlab.executors.local  # noqa: F401  (the worker entry points)
import ticketlab.sparse_stepper  # noqa: F401
import ticketlab.steppers  # noqa: F401
import ticketlab.units  # noqa: F401
from ticketlab.optim import _supports_fused

for _cls in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
    _supports_fused(_cls, torch.device("cpu"))
