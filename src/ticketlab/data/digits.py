"""scikit-learn's bundled 8x8 handwritten digits: a tiny, download-free image dataset.

1,797 images with values 0..16, split by a seeded stratified split into exactly
1,257 train / 180 validation / 360 test (about 70 / 10 / 20 %). Features are
(N, 1, 8, 8) float32, scaled to [0, 1] and standardised with one scalar mean/std from the
training split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ticketlab.data.base import Dataset, refuse_data_dir
from ticketlab.data.split import split_dataset

NUM_CLASSES = 10
SIZES = (1257, 180, 360)
MAX_VALUE = 16.0


def load_digits(data_dir: Path | None, split_seed: int) -> Dataset:
    """The sklearn digits split 1,257 / 180 / 360; ``data_dir`` must be None."""
    refuse_data_dir("digits", data_dir, "ships with scikit-learn")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    return split_dataset("digits", (x, y), SIZES, split_seed, num_classes=NUM_CLASSES, scale=MAX_VALUE)
