"""ticketlab: find, verify and ship lottery tickets.

>>> import ticketlab
>>> result = ticketlab.run({"levels": 3, "controls": ["reinit", "random"], "seeds": 2})
>>> result.mask(level=3)           # the ticket's mask at level 3
"""

from ticketlab.api import Result, run
from ticketlab.config import Config, DataConfig, PruneConfig, RunOptions, TrainConfig
from ticketlab.errors import ConfigError, DataError, ExperimentLockedError, StoreError, TicketlabError
from ticketlab.masks import Mask

__all__ = [
    "run", "Result", "Config", "DataConfig", "TrainConfig", "PruneConfig", "RunOptions", "Mask",
    "TicketlabError", "ConfigError", "DataError", "ExperimentLockedError", "StoreError",
]
__version__ = "0.1.0"
