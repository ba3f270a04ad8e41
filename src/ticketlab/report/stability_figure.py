"""The instability analysis' figure: error barrier against the rewinding point k, one line per
level, with one-sided 95% bounds over replicates and the stability threshold drawn in (Frankle et al.
2020, Figure 3 style). k = 0 sits on a symmetric-log axis so it shows beside k > 0."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ticketlab.io import write_bytes_atomic
from ticketlab.report.figures import new_figure, png_bytes

if TYPE_CHECKING:
    from ticketlab.studies.stability import StabilityRow


def barrier_figure(rows: "Sequence[StabilityRow]", path: Path) -> None:
    figure, axes = new_figure()
    for level in sorted({r.level for r in rows}):
        line = sorted((r for r in rows if r.level == level), key=lambda r: r.k)
        ks = [r.k for r in line]
        means = [r.barrier.mean for r in line]
        low = [r.barrier.mean - r.barrier.low if r.barrier.has_interval else 0.0 for r in line]
        high = [r.barrier.high - r.barrier.mean if r.barrier.has_interval else 0.0 for r in line]
        label = "dense" if level == 0 else f"level {level} ({line[0].percent_remaining:.1f}% remaining)"
        axes.errorbar(ks, means, yerr=[low, high], marker="o", capsize=3, label=label)
    if rows:
        axes.axhline(rows[0].threshold, color="#555555", linestyle="--", linewidth=1,
                     label=f"stability threshold ({rows[0].threshold:g} points)")
        top = max(ks_k for ks_k in (r.k for r in rows))
        axes.set_xscale("symlog", linthresh=max(1.0, min([r.k for r in rows if r.k > 0], default=1.0)))
        axes.set_xlim(-0.05 * max(top, 1), top * 1.5 if top else 1)
    axes.set_xlabel("rewinding iteration k")
    axes.set_ylabel("test error barrier (percentage points)")
    axes.set_title("Instability: error barrier between two copies trained from iteration k")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    write_bytes_atomic(path, png_bytes(figure), checksum=True)  # checked by `ticketlab check`
