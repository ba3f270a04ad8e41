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

import argparse

import torch
from torch import nn
from sklearn.datasets import load_diabetes

import ticketlab
from _report import report


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
    train, val, test = slice(0, 300), slice(300, 370), slice(370, None)
    x = (x - x[train].mean(0)) / x[train].std(0)
    y = (y - y[train].mean()) / y[train].std()
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds), to check that it works")
    parser.add_argument("--out", default="experiments/examples", help="where experiments are written")
    args = parser.parse_args(argv)

    config = {
        "levels": 4, "seeds": 1, "controls": ["reinit", "random"],
        "prune": {"rate": 0.5},
        "train": {"iterations": 300, "eval_every": 25, "batch_size": 32, "lr": 1e-3},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 40, "eval_every": 20, "batch_size": 32, "lr": 1e-3})

    result = ticketlab.run(config, ticketlab.RunOptions(root=args.out, workers=1, progress=False, device="cpu"),
                           model=MLP, data=diabetes_data(), task=ticketlab.Task("regression"))
    report(result)
    return result


if __name__ == "__main__":
    main()
