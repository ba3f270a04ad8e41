"""Datasets as tensors.

Every loader returns a :class:`Dataset`: train/validation/test tensors that live whole on the
training device, so the hot loop indexes tensors instead of iterating a DataLoader. The
validation split is held out of training and drives early stopping, as in the paper.

A loader takes ``(data_dir or None, split_seed)`` and returns a CPU Dataset; a new dataset is
one module plus one line in :data:`DATASETS`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ticketlab.data.base import Dataset
from ticketlab.plugins import Registry

DATASETS = Registry("dataset", {
    "mnist": "ticketlab.data.mnist:load_mnist",
    "mnist5k": "ticketlab.data.mnist:load_mnist5k",
    "mnist1d": "ticketlab.data.mnist1d:load_mnist1d",
    "digits": "ticketlab.data.digits:load_digits",
    "cifar10": "ticketlab.data.cifar10:load_cifar10",
    "modadd": "ticketlab.data.modadd:load_modadd",
})


def load_dataset(name: str, data_dir: str | Path | None = None, split_seed: int = 0,
                 device: torch.device | str = "cpu") -> Dataset:
    """Load the built-in dataset ``name`` and move it to ``device``.

    Raises ConfigError for an unknown name and DataError for missing or malformed files.
    """
    if name not in DATASETS:
        raise DATASETS.unknown(name, hint="")
    path = Path(data_dir) if data_dir is not None else None
    return DATASETS.load(name)(path, split_seed).to(device)


__all__ = ["DATASETS", "Dataset", "load_dataset"]
