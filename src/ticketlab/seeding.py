"""Seeds derived from the config, one stream per purpose.

Initialisation, data order and each control's random draws get separate seeds, derived by
hashing (base seed, purpose, ...). Changing how many controls run, or their order, can
therefore never change the ticket's results, and the derivation is identical in every
process (unlike Python's salted ``hash``).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a stable function of ``parts``."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed torch's global RNG inside the block and restore it after, e.g. for model construction."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
