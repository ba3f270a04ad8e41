"""Model registry: a new model family is one module plus one ``register`` line.

Names are either exact (``lenet_300_100``, ``conv2``) or parametric (``mlp_<w1>_<w2>...``,
matched by a pattern). A constructor takes the dataset's input shape and number of classes,
so the same name works on MNIST, MNIST-1D or digits.
"""

from __future__ import annotations

import re
from typing import Callable

from torch import nn

from ticketlab.errors import ConfigError

Constructor = Callable[[str, tuple[int, ...], int], nn.Module]
_EXACT: dict[str, Constructor] = {}
_PATTERNS: list[tuple[re.Pattern[str], str, Constructor]] = []


def register(name: str, constructor: Constructor) -> None:
    """Register an exact model name."""
    _EXACT[name] = constructor


def register_pattern(pattern: str, example: str, constructor: Constructor) -> None:
    """Register a family of names matching the regular expression ``pattern``."""
    _PATTERNS.append((re.compile(pattern), example, constructor))


def _find(name: str) -> Constructor | None:
    _import_families()
    if name in _EXACT:
        return _EXACT[name]
    for pattern, _, constructor in _PATTERNS:
        if pattern.fullmatch(name):
            return constructor
    return None


def is_known_model(name: str) -> bool:
    return _find(name) is not None


def model_names() -> list[str]:
    """Exact names plus one example of each pattern, for error messages and --help."""
    _import_families()
    return sorted(_EXACT) + [example for _, example, _ in _PATTERNS]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Construct model ``name`` with the global torch RNG (seed it first for reproducibility)."""
    constructor = _find(name)
    if constructor is None:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return constructor(name, input_shape, num_classes)


def _import_families() -> None:
    from ticketlab.models import conv, mlp, transformer  # noqa: F401
