"""Lottery tickets around your own training loop: your optimizer, schedule, data order and augmentation.

Demonstrates ``ticketlab.run(config, model=..., data=..., train=my_train)``: ticketlab calls
``my_train(model, unit)`` once per training (the dense run, each level's ticket, each control)
with the model already masked and rewound. The loop is an ordinary PyTorch loop (SGD with
Nesterov momentum, a cosine learning-rate schedule, random-shift augmentation, its own
shuffling); it tells ticketlab two things:

* ``unit.step(loss)`` after every optimizer step: pruned weights go back to exactly zero
  (momentum cannot regrow them), the iteration is counted, and at ``rewind_iteration`` the dense
  run's weights (and, with ``unit.track(optimizer)``, its momentum) are captured for rewinding;
* ``unit.evaluate()`` at its evaluation points: ticketlab scores the model on the run's
  validation split (and test split where a reported number comes from).

Everything else is ticketlab's: the levels, masks, rewinding, the ``reinit`` and ``random``
controls, seeds, the store, and the verdicts, so ``ticketlab show``/``report``/``bundle`` read
the experiment as any other. The function reaches worker processes by value (cloudpickle), so
``workers=N`` runs units in parallel. A killed training restarts from its start point.

Run::

    python docs/examples/plain_loop.py            # 3 seeds x 3 levels, a few minutes on one CPU thread
    python docs/examples/plain_loop.py --quick    # seconds: a smoke test
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from _report import command_line, run_example, splits


def make_model() -> nn.Module:
    """An MLP on the 64 pixels of an 8x8 digit."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))


def digits_data(seed: int = 0) -> dict:
    """The 1,797 digits as [N, 1, 8, 8] images, standardized, split 1,200 / 300 / 297."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    x = (x - x[:1200].mean()) / x[:1200].std()
    return splits(x, y, train=1200, val=300)


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augmentation: every image shifted by up to one pixel in each direction (zero padded)."""
    padded = F.pad(images, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[..., dy:dy + 8, dx:dx + 8]


def my_train(model: nn.Module, unit) -> None:
    """A plain PyTorch loop; the two ``unit`` calls are all ticketlab needs."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    unit.track(optimizer)  # optional: a ticket rewound to iteration k gets the dense run's momentum at k
    total = unit.end
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * (unit.start + i) / total)))
    x, y = unit.data.x_train, unit.data.y_train
    generator = torch.Generator().manual_seed(unit.seed)  # this unit's data-order seed
    while not unit.done:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - 63, 64):
            if unit.done:
                break
            rows = order[start:start + 64]
            loss = F.cross_entropy(model(shifted(x[rows], generator)), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            unit.step(loss)
            if unit.eval_due:  # every train.eval_every steps and at the end, as ticketlab's loop does
                unit.evaluate()


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)
    config = {
        "levels": 3, "seeds": 3, "controls": ["reinit", "random"], "rewind_iteration": 20,
        "prune": {"rate": 0.5},
        "train": {"iterations": 600, "eval_every": 50, "batch_size": 64},
    }
    if args.quick:
        config.update(levels=1, seeds=1, train={"iterations": 60, "eval_every": 20, "batch_size": 64})
    result = run_example(config, args, model=make_model, data=digits_data(), train=my_train)

    from ticketlab.evidence.tables import markdown_table
    from ticketlab.report import write_report

    print("\nverdicts (ticket against the dense network and the controls):")
    print(markdown_table(result.runs, result.verdicts()))
    print(f"\nreport: {write_report(result.directory)}")
    return result


if __name__ == "__main__":
    main()
