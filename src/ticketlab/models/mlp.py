"""Fully connected networks: LeNet-300-100 (the paper's MNIST network) and mlp_<w1>_<w2>...."""

from __future__ import annotations

import math

from torch import nn

from ticketlab.models import register, register_pattern


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


def _mlp(name: str, input_shape: tuple[int, ...], num_classes: int) -> MLP:
    widths = [int(w) for w in name.split("_")[1:]]
    return MLP(math.prod(input_shape), widths, num_classes)


register("lenet_300_100", lambda name, shape, k: MLP(math.prod(shape), [300, 100], k))
register_pattern(r"mlp(_[1-9][0-9]*)+", "mlp_<w1>_<w2>...", _mlp)
