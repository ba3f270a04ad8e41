"""ticketlab: find, verify and ship lottery tickets.

>>> import ticketlab
>>> result = ticketlab.run({"levels": 3, "controls": ["reinit", "random"], "seeds": 2})
>>> result.mask(level=3)           # the ticket's mask at level 3

Your own model and data::

    result = ticketlab.run({"levels": 5, "controls": ["reinit", "random"], "seeds": 3},
                           model=make_model, data={"train": (x, y), "val": (xv, yv), "test": (xt, yt)})
"""

from ticketlab.api import Result, run
from ticketlab.config import Config, DataConfig, PruneConfig, RunOptions, TrainConfig
from ticketlab.errors import ConfigError, DataError, ExperimentLockedError, StoreError, TicketlabError, UserCodeError
from ticketlab.masks import Mask
from ticketlab.task import Task

__all__ = [
    "run", "Result", "Config", "DataConfig", "TrainConfig", "PruneConfig", "RunOptions", "Mask", "Task",
    "TicketlabError", "ConfigError", "DataError", "ExperimentLockedError", "StoreError", "UserCodeError",
]
__version__ = "0.1.0"
