"""How fast a ticket's exports run against the dense model, measured here and now.

This is ``ticketlab bench`` and the core of ``bench/export.py``. Every side computes the same
function (``export_model`` checks each reloaded export against the masked model before anything
is timed); sides are timed in
interleaved rounds whose order rotates, and each side's speed is the median over rounds of
(dense time / side time) paired within a round, so load that comes and goes hits every side
alike. A side that cannot be built for this model (the structured export of a non-chain model,
ONNX without onnxruntime) is left out with the reason.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ticketlab.data.batch import ModelInputs, call, map_inputs, take
from ticketlab.errors import TicketlabError
from ticketlab.export.prune_interop import apply_mask
from ticketlab.masks import Mask


@dataclass
class Sides:
    """The callables to time (dense first), their files' sizes, and what was left out and why."""

    calls: dict[str, Callable[[torch.Tensor], torch.Tensor]]
    file_bytes: dict[str, int]
    skipped: dict[str, str]
    removed: dict | None = None  # the structured export's units before/after


def export_sides(model: nn.Module, mask: Mask, example: torch.Tensor, threads: int = 1,
                 workdir: Path | None = None) -> Sides:
    """Dense, masked, sparse, structured and ONNX versions of ``model`` under ``mask``, each
    written by ``export_model`` (which reloads the file and checks it against the masked model),
    run as a user would run them."""
    from ticketlab.export.onnx_export import OnnxRunner
    from ticketlab.export.ticket import export_model

    model = model.eval()
    tmp = Path(workdir or tempfile.mkdtemp(prefix="ticketlab-bench-"))
    sides = Sides({"dense": model, "masked": apply_mask(copy.deepcopy(model), mask).eval()}, {}, {})
    for fmt, name in (("sparse", "sparse.safetensors"), ("structured", "structured.safetensors"), ("onnx", "model.onnx")):
        try:
            report = export_model(model, mask, fmt, tmp / name, example)
        except TicketlabError as exc:  # not built for this model, or onnxruntime missing
            sides.skipped[fmt] = str(exc)
            continue
        sides.file_bytes.setdefault("dense", report.dense.file_bytes)
        sides.file_bytes[fmt] = report.exported.file_bytes
        sides.calls[fmt] = OnnxRunner(report.path, threads=threads) if fmt == "onnx" else report.loaded
        if fmt == "structured":
            sides.removed = report.removed
    return sides


def _calls_for(fn: Callable, x: ModelInputs, seconds: float) -> int:
    """How many calls take about ``seconds`` (at least 3)."""
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 5 or calls < 3:
        call(fn, x)
        calls += 1
    return max(3, calls * 5)


def interleaved_times(calls: dict[str, Callable], x: ModelInputs, rounds: int, seconds: float) -> dict[str, list[float]]:
    """Seconds per call of each side, one value per round; the order rotates every round."""
    names = list(calls)
    with torch.inference_mode():
        repeats = {n: _calls_for(calls[n], x, seconds) for n in names}
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                for _ in range(repeats[n]):
                    call(calls[n], x)
                times[n].append((time.perf_counter() - start) / repeats[n])
    return times


def paired_speedups(times: dict[str, list[float]], baseline: str = "dense") -> dict[str, list[float]]:
    """Per side, the per-round ratios baseline time / side time (above 1: faster than dense)."""
    return {n: [b / t for b, t in zip(times[baseline], side)] for n, side in times.items()}


def latency_table(sides: Sides, example: ModelInputs, batches: Sequence[int], rounds: int,
                  seconds: float) -> list[str]:
    """Markdown lines: per batch size, each side's median time and paired speedup over dense."""
    lines = ["| side | file bytes | dense / file |", "|---|---:|---:|"]
    lines += [f"| {n} | {b:,} | {sides.file_bytes['dense'] / b:.1f}x |" for n, b in sides.file_bytes.items()]
    for batch in batches:
        x = map_inputs(torch.Tensor.contiguous, take(example, slice(0, batch)))
        times = interleaved_times(sides.calls, x, rounds, seconds)
        speedups = paired_speedups(times)
        lines += ["", f"| batch {batch} | median us/call | dense / side (median of {rounds} paired rounds) | range |",
                  "|---|---:|---:|---:|"]
        for n in times:
            ratios = speedups[n]
            lines.append(f"| {n} | {1e6 * statistics.median(times[n]):.1f} | {statistics.median(ratios):.2f}x | "
                         f"{min(ratios):.2f}..{max(ratios):.2f} |")
    lines += [f"({n} left out: {why})" for n, why in sides.skipped.items()]
    return lines
