"""Built-in networks by name: a new model family is one module plus one line in :data:`MODELS`.

Names are either exact (``lenet_300_100``, ``conv2``) or parametric (``mlp_<w1>_<w2>...``,
matched by a pattern). A constructor takes the name, the dataset's input shape and number of
classes, so the same name works on MNIST, MNIST-1D or digits.
"""

from __future__ import annotations

from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.plugins import Pattern, Registry

MODELS = Registry("model", {
    "lenet_300_100": "ticketlab.models.mlp:mlp_from_name",
    "conv2": "ticketlab.models.conv:conv_from_name",
    "conv4": "ticketlab.models.conv:conv_from_name",
    "conv6": "ticketlab.models.conv:conv_from_name",
    "transformer_modadd": "ticketlab.models.transformer:transformer_modadd",
}, patterns=(
    Pattern(r"mlp(_[1-9][0-9]*)+", "mlp_<w1>_<w2>...", "ticketlab.models.mlp:mlp_from_name"),
    Pattern(r"transformer_[1-9][0-9]*_[1-9][0-9]*", "transformer_<d_model>_<layers>",
            "ticketlab.models.transformer:transformer_from_name"),
))


def is_known_model(name: str) -> bool:
    return name in MODELS


def model_names() -> list[str]:
    """Exact names plus one example of each pattern, for error messages and --help."""
    return MODELS.names()


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Construct model ``name`` with the global torch RNG (seed it first for reproducibility)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(model_names())}")
    return MODELS.load(name)(name, input_shape, num_classes)


__all__ = ["MODELS", "build_model", "is_known_model", "model_names"]
