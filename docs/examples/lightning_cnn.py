"""Lottery tickets with a Lightning training loop: a LightningModule CNN with augmentation, on 8x8 digits.

Demonstrates ``ticketlab.integrations.lightning.LotteryTicket``: the training function
``ticketlab.run`` calls once per training (dense run, tickets, controls) builds a
``lightning.Trainer`` with the callback and fits the model ticketlab handed it, masked and
rewound. The module keeps its own ``configure_optimizers`` (AdamW), its augmentation (random
shifts and a little Gaussian noise in ``training_step``) and its validation logging; the
callback re-masks after every optimizer step, captures the rewind point, hands the optimizer
to ticketlab (so a late-rewound ticket gets the dense run's AdamW moments at k) and records
the module's logged ``val_loss``/``val_acc`` at each validation. Masks, rewinding, controls,
seeds, the store and the verdicts stay ticketlab's.

Needs Lightning: ``pip install ticketlab[lightning]``.

Run::

    python docs/examples/lightning_cnn.py            # 3 levels, a few minutes on one CPU thread
    python docs/examples/lightning_cnn.py --quick    # a smoke test
"""

from __future__ import annotations

import logging
import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from _report import command_line, run_example
from cnn_batchnorm import digits_data

try:
    import lightning
except ImportError:  # the example says so in main()
    lightning = None

BATCH = 64


def make_model() -> nn.Module:
    """The LightningModule: two convolutions with BatchNorm and a Linear head."""

    class DigitsModule(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(32 * 4 * 4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).flatten(1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            shift = torch.randint(-1, 2, (2,)).tolist()  # augmentation, under the unit's own torch RNG
            x = torch.roll(x, shifts=shift, dims=(2, 3)) + 0.05 * torch.randn_like(x)
            loss = F.cross_entropy(self(x), y)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, batch_size=len(y))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=2e-3, weight_decay=1e-4)

    return DigitsModule()


def my_train(model, unit) -> None:
    """Fit ``model`` for the unit's remaining steps, validating every epoch (and at the end)."""
    from torch.utils.data import DataLoader, TensorDataset

    from ticketlab.integrations.lightning import LotteryTicket

    data = unit.data
    order = torch.Generator().manual_seed(unit.seed)  # this unit's data order
    train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True, generator=order,
                       drop_last=True)
    val = DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=512)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # its banners, once per training
    trainer = lightning.Trainer(
        max_steps=unit.remaining, callbacks=[LotteryTicket(unit, metrics=("val_loss", "val_acc"))],
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, val_check_interval=unit.eval_every,
        check_val_every_n_epoch=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # inside Lightning, about torch's pytree
        trainer.fit(model, train_dataloaders=train, val_dataloaders=val)


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)
    if lightning is None:
        sys.exit("this example needs Lightning: pip install lightning")
    config = {
        "levels": 3, "seeds": 1, "controls": ["reinit", "random"], "rewind_iteration": 20,
        "prune": {"rate": 0.4},
        "train": {"iterations": 400, "eval_every": 50, "batch_size": BATCH},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 40, "eval_every": 20, "batch_size": BATCH})
    return run_example(config, args, model=make_model, data=digits_data(), train=my_train)


if __name__ == "__main__":
    main()
