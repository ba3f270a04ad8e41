"""Datasets as tensors.

Every loader returns a :class:`Dataset`: train/validation/test tensors that live whole on the
training device, so the hot loop indexes tensors instead of iterating a DataLoader. The
validation split is held out of training and drives early stopping, as in the paper.
"""

from __future__ import annotations

from ticketlab.data.base import Dataset, load_dataset, DATASETS

__all__ = ["Dataset", "load_dataset", "DATASETS"]
