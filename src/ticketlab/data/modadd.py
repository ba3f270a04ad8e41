"""Modular addition, ``(a + b) mod p``: a tiny, download-free algorithmic task for Transformers.

Every pair ``(a, b)`` with ``0 <= a, b < p`` appears exactly once, split by a seeded random
permutation (a pure function of ``split_seed``) into train / validation / test parts of
fixed sizes. An example is three token ids ``[a, b, p]``: the operands, then an "=" token
whose id is ``p``, so the vocabulary has ``p + 1`` tokens. The label is ``(a + b) mod p``,
one of ``p`` classes.

Unlike the image datasets the features are **int64 token ids**, not standardised float32:
models for this dataset must embed them (see ``ticketlab.models.transformer``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ticketlab.data.base import Dataset, refuse_data_dir
from ticketlab.errors import ConfigError

P = 59
# Fractions of the p*p pairs in (train, validation, test); the test part takes the rounding.
FRACTIONS = (0.7, 0.1, 0.2)


def split_sizes(n: int, fractions: tuple[float, float, float] = FRACTIONS) -> tuple[int, int, int]:
    """(train, val, test) counts summing to ``n``: train and val rounded, test the rest."""
    train = int(round(fractions[0] * n))
    val = int(round(fractions[1] * n))
    return train, val, n - train - val


def make_modadd(
    p: int = P,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = FRACTIONS,
    name: str = "modadd",
) -> Dataset:
    """All ``p*p`` pairs as token ids ``[a, b, p]`` with labels ``(a+b) mod p``, split by ``split_seed``."""
    if p < 2:
        raise ConfigError(f"modadd needs a modulus p >= 2, got {p}")
    a, b = np.divmod(np.arange(p * p, dtype=np.int64), p)
    x = np.stack([a, b, np.full_like(a, p)], axis=1)  # [p*p, 3]; token p is "="
    y = (a + b) % p
    order = np.random.default_rng(split_seed).permutation(p * p)
    n_train, n_val, _ = split_sizes(p * p, fractions)
    parts = np.split(order, [n_train, n_train + n_val])
    t = [torch.from_numpy(np.ascontiguousarray(arr[idx])) for idx in parts for arr in (x, y)]
    return Dataset(
        name=name,
        x_train=t[0], y_train=t[1],
        x_val=t[2], y_val=t[3],
        x_test=t[4], y_test=t[5],
        num_classes=p,
    )


def load_modadd(data_dir: Path | None, split_seed: int) -> Dataset:
    """(a + b) mod 59 over all 3,481 pairs, split 2,437 / 348 / 696 (70 / 10 / 20 %); ``data_dir`` must be None."""
    refuse_data_dir("modadd", data_dir, "is generated in memory")
    return make_modadd(P, split_seed)
