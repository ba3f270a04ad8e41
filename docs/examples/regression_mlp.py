"""Regression: a small MLP on scikit-learn's diabetes data, scored by R².

Demonstrates:

* regression with no extra setup: float labels make the task regression (mean squared error as
  the loss, and as the score R² = 1 - MSE / variance of the training targets, which every
  summary names in its ``metric`` field); ``ticketlab.Task("regression")`` says it explicitly;
* the score is "higher is better", so the verdict tables and controls read as for accuracy.

The diabetes data (442 patients, 10 features) ships with scikit-learn: nothing is downloaded.

Run::

    python docs/examples/regression_mlp.py            # 4 levels, well under a minute
    python docs/examples/regression_mlp.py --quick
"""

from __future__ import annotations

import torch
from torch import nn
from sklearn.datasets import load_diabetes

import ticketlab
from _report import command_line, run_example, splits


class MLP(nn.Module):
    def __init__(self, features: int = 10, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # one prediction per example: [N], like the labels


def diabetes_data(seed: int = 0) -> dict:
    """Features and target standardized with training statistics; split 300 / 70 / 72."""
    x, y = load_diabetes(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    x = (x - x[:300].mean(0)) / x[:300].std(0)  # statistics of the training part only
    y = (y - y[:300].mean()) / y[:300].std()
    return splits(x, y, train=300, val=70)


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)

    config = {
        "levels": 4, "seeds": 1, "controls": ["reinit", "random"],
        "prune": {"rate": 0.5},
        "train": {"iterations": 300, "eval_every": 25, "batch_size": 32, "lr": 1e-3},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 40, "eval_every": 20, "batch_size": 32, "lr": 1e-3})

    result = run_example(config, args, model=MLP, data=diabetes_data(), task=ticketlab.Task("regression"))
    return result


if __name__ == "__main__":
    main()
