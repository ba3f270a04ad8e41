"""Shared fixtures. Tests run torch with one thread: on a shared 2-core machine two threads
can collapse when another process competes, and results must not depend on thread count."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from ticketlab.config import Config, RunOptions  # noqa: E402


def tiny_config(**changes) -> Config:
    """A real but fast experiment: sklearn digits, a small MLP, a few hundred iterations."""
    raw = {
        "model": "mlp_64_32",
        "levels": 2,
        "data": {"dataset": "digits"},
        "train": {"iterations": 300, "eval_every": 50, "checkpoint_every": 100, "batch_size": 32},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return Config.from_dict(raw)


@pytest.fixture
def options(tmp_path) -> RunOptions:
    return RunOptions(root=str(tmp_path / "experiments"), device="cpu", threads=1, workers=1, progress=False)
