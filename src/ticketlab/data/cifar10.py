"""CIFAR-10 from the binary version (``cifar-10-batches-bin``) in a user-given directory.

Each file is a run of 3,073-byte records: one label byte, then 3x32x32 pixel bytes in
channel-major order (all red, then green, then blue). The real files hold 10,000 records
each; any whole number is accepted so tests can use tiny files. As in the paper a seeded
stratified 5,000 of the 50,000 training images are held out for validation (10% when the
files are smaller). Features are (N, 3, 32, 32) float32, scaled to [0, 1] then standardised
per channel with training-split statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ticketlab.data.base import Dataset
from ticketlab.data.split import check_labels, held_out_dataset
from ticketlab.errors import ConfigError, DataError

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FOLDER = "cifar-10-batches-bin"


def load_cifar10(data_dir: Path | None, split_seed: int) -> Dataset:
    """CIFAR-10 from ``data_dir`` (required), validation held out of the training batches."""
    if data_dir is None:
        raise ConfigError(
            f"cifar10 needs --data-dir pointing at the {FOLDER} folder "
            "of the CIFAR-10 binary version"
        )
    x_train, y_train, x_test, y_test = read_cifar10(data_dir)
    return held_out_dataset("cifar10", (x_train, y_train), (x_test, y_test), split_seed,
                            num_classes=NUM_CLASSES, scale=255.0, channel_axis=1)


def read_cifar10(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw (train images, train labels, test images, test labels): uint8 (N, 3, 32, 32), int64."""
    folder = _resolve_folder(Path(data_dir))
    train = [read_cifar_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = read_cifar_batch(folder / TEST_FILE)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file as (uint8 images (N, 3, 32, 32), int64 labels), not normalised."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        reason = err.strerror or err
        message = f"{path}: cannot read CIFAR-10 batch ({reason}); check it is readable"
        raise DataError(message) from err
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a positive whole number of {RECORD_BYTES}-byte "
            f"records; the file is truncated or not the CIFAR-10 binary version, download it again"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    check_labels(path, labels, NUM_CLASSES)
    return records[:, 1:].reshape(-1, *IMAGE_SHAPE), labels


def _resolve_folder(data_dir: Path) -> Path:
    """``data_dir`` or its ``cifar-10-batches-bin`` child, whichever holds every batch file."""
    if not data_dir.is_dir():
        raise DataError(
            f"CIFAR-10 data directory {data_dir} does not exist; "
            f"pass --data-dir pointing at {FOLDER}"
        )
    for folder in (data_dir, data_dir / FOLDER):
        if all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return folder
    missing = [n for n in (*TRAIN_FILES, TEST_FILE) if not (data_dir / n).is_file()]
    raise DataError(
        f"CIFAR-10 files missing in {data_dir}: {', '.join(missing)}; pass --data-dir pointing at "
        f"the {FOLDER} folder of the binary version (not the Python or MATLAB version)"
    )
