"""ticketlab: find, verify and ship lottery tickets.

>>> import ticketlab
>>> result = ticketlab.run({"levels": 3, "controls": ["reinit", "random"], "seeds": 2})
>>> result.mask(level=3)           # the ticket's mask at level 3

Your own model and data::

    result = ticketlab.run({"levels": 5, "controls": ["reinit", "random"], "seeds": 3},
                           model=make_model, data={"train": (x, y), "val": (xv, yv), "test": (xt, yt)})

Your own training loop: ``ticketlab.run(config, model=..., data=..., train=my_train)`` with
``my_train(model, unit: ticketlab.TrainingUnit)`` (see ``ticketlab.train.user_loop``).

The public names are imported on first use (PEP 562), so a worker process that imports
``ticketlab.experiment.runner`` to train does not pay for the statistics, reporting and CLI stacks
(scipy, matplotlib, rich) that only the parent needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ticketlab.errors import ConfigError, DataError, ExperimentLockedError, StoreError, TicketlabError, UserCodeError

if TYPE_CHECKING:
    from ticketlab.api import Result, run
    from ticketlab.config import Config, DataConfig, PruneConfig, RunOptions, TrainConfig
    from ticketlab.masks import Mask
    from ticketlab.train.task import Task
    from ticketlab.train.user_loop import TrainingUnit

_LAZY = {
    "run": "ticketlab.api", "Result": "ticketlab.api",
    "Config": "ticketlab.config", "DataConfig": "ticketlab.config", "TrainConfig": "ticketlab.config",
    "PruneConfig": "ticketlab.config", "RunOptions": "ticketlab.config",
    "Mask": "ticketlab.masks", "Task": "ticketlab.train.task", "TrainingUnit": "ticketlab.train.user_loop",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "run", "Result", "Config", "DataConfig", "TrainConfig", "PruneConfig", "RunOptions", "Mask", "Task", "TrainingUnit",
    "TicketlabError", "ConfigError", "DataError", "ExperimentLockedError", "StoreError", "UserCodeError",
]
__version__ = "0.1.0"
