"""A convolutional network with BatchNorm, on scikit-learn's 8x8 handwritten digits.

Demonstrates:

* bringing your own ``nn.Module`` (Conv2d + BatchNorm2d + a Linear head) and your own tensors;
* what iterative magnitude pruning touches by *role*: the Conv2d and Linear weights are pruned,
  while BatchNorm's scale/shift and all biases are left dense (prune them only by adding
  ``"norm"`` / ``"bias"`` to ``prune.roles``);
* the lottery-ticket comparison: the ticket (the winning mask with the original initial
  weights) against two controls, the same mask re-initialised (``reinit``) and a random mask
  with the same per-layer sparsity (``random``).

Run::

    python docs/examples/cnn_batchnorm.py            # 4 levels, about a minute on one CPU thread
    python docs/examples/cnn_batchnorm.py --quick    # a few seconds: a smoke test
"""

from __future__ import annotations

import torch
from torch import nn
from sklearn.datasets import load_digits

from _report import command_line, run_example, splits


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def digits_data(seed: int = 0) -> dict:
    """The 1,797 digits as [N, 1, 8, 8] float images, standardized, split 1,200 / 300 / 297."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    x = (x - x[:1200].mean()) / x[:1200].std()  # statistics of the training part only
    return splits(x, y, train=1200, val=300)


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)

    config = {
        "levels": 4, "seeds": 1, "controls": ["reinit", "random"],
        "prune": {"rate": 0.4},  # remove 40% of the remaining weights per level (output layer: 10%)
        "train": {"iterations": 400, "eval_every": 50, "batch_size": 64, "lr": 1e-3},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 40, "eval_every": 20, "batch_size": 64, "lr": 1e-3})

    result = run_example(config, args, model=DigitsCNN, data=digits_data())
    return result


if __name__ == "__main__":
    main()
