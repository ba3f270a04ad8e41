"""MNIST-1D, regenerated locally with the ``mnist1d`` package (never downloaded).

The generation seed is the package default (42): it defines the dataset, so every run sees
the same 4,000 training and 1,000 test sequences the MNIST-1D paper uses. ``split_seed``
only chooses which stratified 500 of the 4,000 training sequences are held out for
validation: 3,500 train / 500 validation / 1,000 test. Features are (N, 40) float32,
re-standardised with training-split statistics (the package standardises with statistics
of all 5,000 sequences, test included).
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import numpy as np

from ticketlab.data.base import Dataset, refuse_data_dir
from ticketlab.data.split import held_out_dataset

NUM_CLASSES = 10
VALIDATION_SIZE = 500


def load_mnist1d(data_dir: Path | None, split_seed: int) -> Dataset:
    """MNIST-1D split 3,500 / 500 / 1,000; ``data_dir`` must be None."""
    refuse_data_dir("mnist1d", data_dir, "is generated locally")
    x, y, x_test, y_test = generated_mnist1d()
    return held_out_dataset("mnist1d", (x, y), (x_test, y_test), split_seed,
                            num_classes=NUM_CLASSES, holdout=VALIDATION_SIZE)


@lru_cache(maxsize=1)
def generated_mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read-only (x (4000, 40), y, x_test (1000, 40), y_test) from the package's generator.

    Cached in-process because generation takes about a second. The generator reseeds the
    global ``random`` and ``numpy.random`` states, so they are saved and restored around it.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    arrays = (
        raw["x"].astype(np.float32),
        raw["y"].astype(np.int64),
        raw["x_test"].astype(np.float32),
        raw["y_test"].astype(np.int64),
    )
    for a in arrays:
        a.setflags(write=False)
    return arrays
