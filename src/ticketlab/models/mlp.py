"""Fully connected networks: LeNet-300-100 (the paper's MNIST network) and mlp_<w1>_<w2>...."""

from __future__ import annotations

import math

from torch import nn


class MLP(nn.Module):
    """Flatten, then Linear+ReLU hidden layers, then a Linear output layer.

    Layers live in one ``nn.Sequential`` named ``layers`` so parameter names are stable
    (``layers.0.weight``, ...): masks and checkpoints are keyed by them.
    """

    def __init__(self, input_size: int, widths: list[int], num_classes: int) -> None:
        super().__init__()
        modules: list[nn.Module] = [nn.Flatten()]
        previous = input_size
        for width in widths:
            modules += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        modules.append(nn.Linear(previous, num_classes))
        self.layers = nn.Sequential(*modules)

    def forward(self, x):
        return self.layers(x)


def mlp_from_name(name: str, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    """``mlp_<w1>_<w2>...``: hidden widths from the name; ``lenet_300_100`` is ``mlp_300_100``."""
    widths = [300, 100] if name == "lenet_300_100" else [int(w) for w in name.split("_")[1:]]
    return MLP(math.prod(input_shape), widths, num_classes)
