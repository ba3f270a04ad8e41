"""The process settings that change a training's floating-point results, recorded and re-applied.

Two trainings of the same unit give the same bits only under the same *numerics*: the number
of intra-op threads (a reduction split over more threads adds in another order), the
determinism flags, and on CUDA whether matrix products may use TF32. None of it is part of
the config (it does not change what is trained, only the last bits of how), so each unit's
summary records the settings it trained under (:func:`numerics_record`), a bundle carries
them per replicate, and ``verify`` re-trains under them (:func:`applied`): a bundle then
verifies exactly on the machine that made it whatever the environment's ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

#: What a record holds where an older summary has none: ``ticketlab run``'s default of one
#: thread and torch's default flags (what every ticketlab before this record trained under).
DEFAULT_RECORD: dict[str, Any] = {"threads": 1, "deterministic_algorithms": False,
                                  "float32_matmul_precision": "highest", "cudnn_deterministic": False,
                                  "cudnn_benchmark": False, "cudnn_allow_tf32": True}


def numerics_record() -> dict[str, Any]:
    """This process's settings that move a training's last bits (JSON-able)."""
    return {
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }


def complete(record: dict[str, Any] | None) -> dict[str, Any]:
    """``record`` with every setting present (missing ones at :data:`DEFAULT_RECORD`)."""
    return {**DEFAULT_RECORD, **(record or {})}


def _set(record: dict[str, Any]) -> None:
    """Apply ``record`` to this process (a ``mixed`` mark, of a resumed unit, is not a setting)."""
    torch.set_num_threads(int(record["threads"]))
    torch.use_deterministic_algorithms(bool(record["deterministic_algorithms"]))
    torch.set_float32_matmul_precision(str(record["float32_matmul_precision"]))
    torch.backends.cudnn.deterministic = bool(record["cudnn_deterministic"])
    torch.backends.cudnn.benchmark = bool(record["cudnn_benchmark"])
    torch.backends.cudnn.allow_tf32 = bool(record["cudnn_allow_tf32"])


@contextlib.contextmanager
def applied(record: dict[str, Any] | None) -> Iterator[None]:
    """Run the body under the recorded settings (missing ones at their defaults), and restore
    this process's own afterwards, so that a caller's thread count survives a ``verify``."""
    saved = numerics_record()
    _set(complete(record))
    try:
        yield
    finally:
        _set(saved)
