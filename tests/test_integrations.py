"""The Lightning callback and the Hugging Face TrainerCallback drive a unit exactly: after every
optimizer step the pruned weights are exactly zero, the rewind point is the framework's weights
at iteration k, and ticketlab evaluates on its own grid (``metrics=None``, the default).
Skipped with a reason where the framework is not installed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
from ticketlab.io import load_tensors

from test_user_loop import blobs, options

CONFIG = {"levels": 1, "controls": ["random"], "rewind_iteration": 4, "prune": {"rate": 0.5},
          "train": {"iterations": 16, "eval_every": 8, "batch_size": 32}}


def pruned_nonzero(model: nn.Module, masks: dict[str, torch.Tensor]) -> list[str]:
    params = dict(model.named_parameters())
    return [name for name, mask in masks.items() if torch.any(params[name].detach()[mask == 0] != 0)]


def check_trained(result, seen_nonzero: list[str], steps: list[int]) -> None:
    assert not seen_nonzero
    assert len(steps) == 3 * 16 - 4 * 2  # dense 16 steps; ticket and random from k = 4: 12 each
    assert [r["step"] for r in result.metrics(0)] == [8, 16]  # ticketlab's grid
    assert [r["step"] for r in result.metrics(1)] == [8, 16] and result.runs[1]["start_step"] == 4
    mask = result.mask(1)
    final = load_tensors(result.final_weights_path(1))
    assert all(torch.all(final[n][~m] == 0) for n, m in mask.items())
    assert {r["stepper"] for r in result.runs} == {"user"}


def test_lightning_callback_masks_after_every_step(tmp_path):
    lightning = pytest.importorskip("lightning", reason="needs lightning (pip install 'ticketlab[lightning]')")
    from torch.utils.data import DataLoader, TensorDataset

    from ticketlab.integrations.lightning import LotteryTicket

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    nonzero: list[str] = []
    steps: list[int] = []

    class Check(lightning.Callback):  # runs after LotteryTicket (callbacks run in list order)
        def __init__(self, unit):
            self.unit = unit

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps.append(self.unit.iteration)
            nonzero.extend(pruned_nonzero(pl_module, self.unit.masks))

    def train(model, unit):
        data = unit.data
        loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=32, shuffle=True,
                            generator=torch.Generator().manual_seed(unit.seed))
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(str(tmp_path / "logs"), name=unit.name.replace(" ", "_"))  # the user's own logger
        trainer = lightning.Trainer(max_steps=unit.remaining, callbacks=[LotteryTicket(unit), Check(unit)],
                                    accelerator="cpu", logger=logger, enable_checkpointing=False,
                                    enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model, loader)

    result = ticketlab.run(CONFIG, options(tmp_path), model=Module, data=blobs(), train=train)
    check_trained(result, nonzero, steps)
    logged = sorted((tmp_path / "logs").rglob("metrics.csv"))
    assert len(logged) == len(result.runs)  # ticketlab's evaluations reached the user's logger, per unit
    assert all("ticketlab/val_loss" in path.read_text().splitlines()[0] for path in logged)
    rewind = load_tensors(result.store.rewind_path(0))
    assert any(k.startswith("optim/momentum_buffer/") for k in rewind)  # the tracked optimizer's state at k


def test_hf_callback_masks_after_every_step(tmp_path):
    pytest.importorskip("transformers", reason="needs transformers (pip install 'ticketlab[hf]')")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (pip install 'ticketlab[hf]')")
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from ticketlab.integrations.hf import LotteryTicketCallback

    class Model(nn.Module):
        """A model as the Trainer calls it (keyword inputs, a loss with labels) and ticketlab too."""

        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, inputs, labels=None):
            logits = self.net(inputs)
            return {"logits": logits} if labels is None else {"loss": F.cross_entropy(logits, labels), "logits": logits}

    class Pairs(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"inputs": self.x[i], "labels": self.y[i]}

    nonzero: list[str] = []
    steps: list[int] = []

    class Check(TrainerCallback):
        def __init__(self, unit):
            self.unit = unit

        def on_step_end(self, args, state, control, model=None, **kwargs):
            steps.append(self.unit.iteration)
            nonzero.extend(pruned_nonzero(model, self.unit.masks))

    def train(model, unit, scratch=str(tmp_path / "hf")):
        args = TrainingArguments(output_dir=scratch, max_steps=unit.remaining, per_device_train_batch_size=32,
                                 learning_rate=1e-2, save_strategy="no", logging_strategy="no", report_to=[],
                                 disable_tqdm=True, use_cpu=True, seed=unit.seed % 2**31)
        trainer = Trainer(model=model, args=args, train_dataset=Pairs(unit.data.x_train, unit.data.y_train),
                          callbacks=[LotteryTicketCallback(unit), Check(unit)])
        trainer.remove_callback(PrinterCallback)
        trainer.train()

    result = ticketlab.run(CONFIG, options(tmp_path), model=Model, data=blobs(), train=train)
    check_trained(result, nonzero, steps)
    rewind = load_tensors(result.store.rewind_path(0))
    assert any(k.startswith("optim/exp_avg/") for k in rewind)  # the Trainer's AdamW state at k, tracked
