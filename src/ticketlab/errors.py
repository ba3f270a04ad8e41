"""Errors a user can cause.

Everything a user can get wrong (a config value, a missing file, a directory in use)
raises a subclass of :class:`TicketlabError`. The CLI prints its message as one line and
exits with code 2; anything else is a bug and keeps its traceback.
"""


class TicketlabError(Exception):
    """Base class of errors caused by user input; the message is one line saying how to fix it."""


class ConfigError(TicketlabError):
    """A configuration value, dataset or model name is invalid."""


def require(condition: bool, message: str) -> None:
    """Raise ConfigError(``message``) unless ``condition``: the one-line check every settings
    validator (``Config``, a sequential ``Design``) is written in."""
    if not condition:
        raise ConfigError(message)


class DataError(TicketlabError):
    """A dataset file is missing, truncated or in the wrong format."""


class ExperimentLockedError(TicketlabError):
    """Another process is already running the experiment in this directory."""


class UserCodeError(TicketlabError):
    """The user's model factory, forward pass, loss or data raised; the message names which."""


class StoreError(TicketlabError):
    """An experiment directory is not usable (wrong config, missing results)."""


class IntegrityWarning(UserWarning):
    """Something in the store was not as written (set aside and recomputed) or cannot be verified."""


class PerformanceNote(UserWarning):
    """A run option was changed for speed, with the measurement that decided it (e.g. --batch)."""
