"""Small convolutional networks from the paper's Conv-2/4/6 family, for image datasets."""

from __future__ import annotations

import torch
from torch import nn

from ticketlab.errors import ConfigError


class ConvNet(nn.Module):
    """``blocks`` blocks of two 3x3 convolutions and a 2x2 max-pool, then 256-256 FC layers.

    Conv-2 has 64-channel convs; each further block doubles the channels, as in the paper.
    """

    def __init__(self, blocks: int, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"conv models need image inputs (channels, height, width); this dataset gives {input_shape}"
            )
        channels, height, width = input_shape
        if min(height, width) < 2**blocks:
            raise ConfigError(f"conv{2 * blocks} pools {blocks} times; inputs of {height}x{width} are too small")
        layers: list[nn.Module] = []
        for block in range(blocks):
            out = 64 * 2**block
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def conv_from_name(name: str, input_shape: tuple[int, ...], num_classes: int) -> ConvNet:
    """``conv2``, ``conv4``, ``conv6``: 1, 2 or 3 blocks of two convolutions (the paper's Conv-2/4/6)."""
    return ConvNet(int(name[len("conv"):]) // 2, input_shape, num_classes)
