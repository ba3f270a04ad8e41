"""The report's figures, drawn from an experiment's results as PNG files.

Sparsity plots follow Frankle & Carbin (2019): the x axis is the percentage of weights
remaining on a log scale, inverted so that pruning proceeds to the right. Means come with
95% Student-t bands from :func:`ticketlab.evidence.stats.summarize`, so a reader sees at a glance
whether a difference is larger than the seed-to-seed noise; with one seed no band is drawn
(one replicate says nothing about the spread) and the figure says so.

Figures are drawn with matplotlib's object API on an explicit Agg canvas rather than
``pyplot``: no global figure state, no GUI backend, and nothing changes for a caller who
uses matplotlib interactively in the same process.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

from ticketlab.api import Result
from ticketlab.io import write_bytes_atomic
from ticketlab.evidence.stats import Interval, SummaryRow, summarize
from ticketlab.evidence.verdicts import VerdictTable

__all__ = ["FIGURES", "write_figures"]

#: Figure name -> caption, in the order the report shows them. File names are ``<name>.png``.
FIGURES: dict[str, str] = {
    "accuracy": "Test accuracy at the early-stopping iteration (minimum validation loss) against the "
    "percentage of weights remaining, per arm; mean over seeds with its 95% confidence band. "
    "The dashed line is the dense network (its band: dense's 95% interval). Each ticket level is marked "
    "by its verdict (stated criteria in the verdict section): star winning, filled circle matching, "
    "cross not matching, hollow circle no verdict (too few seeds).",
    "early_stop": "Early-stopping iteration (minimum validation loss) against the percentage of weights "
    "remaining, per arm; mean over seeds with its 95% confidence band. Lower means the network learns faster.",
    "curves": "Validation accuracy during training for a few levels of the ticket arm (dense, a middle "
    "level and the sparsest), mean over seeds.",
    "layer_sparsity": "Percentage of weights remaining in each prunable layer of the ticket against the "
    "whole network's percentage remaining (mean over seeds).",
}

#: One colour per arm, the same in every figure.
ARM_COLORS: dict[str, str] = {"ticket": "#1f77b4", "reinit": "#ff7f0e", "random": "#2ca02c",
                              "weight_shuffle": "#d62728", "shuffle": "#9467bd"}
ARM_LABELS: dict[str, str] = {
    "ticket": "ticket (IMP mask, rewound weights)",
    "reinit": "reinit (same mask, fresh init)",
    "random": "random (random mask)",
    "weight_shuffle": "weight_shuffle (IMP mask, init values permuted)",
    "shuffle": "shuffle (older runs: mask shuffled per layer)",
}
ARM_MARKERS: dict[str, str] = {"ticket": "o", "reinit": "s", "random": "^", "weight_shuffle": "D", "shuffle": "v"}
_LAYER_MARKERS = "osD^v<>ph*"
_DENSE_COLOR = "#555555"
_MAX_TICKS = 8
_DPI = 110


# --------------------------------------------------------------------------- helpers


def _arm_order(arm: str) -> tuple[int, str]:
    return (0 if arm == "ticket" else 1, arm)


def new_figure(width: float = 7.5, height: float = 4.6) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software"/date metadata: the same results give byte-identical files.
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _pick_ticks(values: Sequence[float]) -> list[float]:
    """At most ``_MAX_TICKS`` of the levels' percentages, always keeping the first and last.

    Ticks at the actual levels read better than powers of ten (a 5-level run spans only
    100% to 33%, where a plain log axis would show a single tick).
    """
    unique = sorted({round(v, 6) for v in values if v > 0 and math.isfinite(v)}, reverse=True)
    if len(unique) <= _MAX_TICKS:
        return unique
    step = math.ceil((len(unique) - 1) / (_MAX_TICKS - 1))
    picked = unique[::step]
    if picked[-1] != unique[-1]:
        picked[-1] = unique[-1]
    return picked


def _percent_label(value: float, _pos: Any = None) -> str:
    return f"{value:.3g}"


def _sparsity_axis(axes: Axes, percents: Sequence[float]) -> None:
    """Log-scaled "% of weights remaining" axis, inverted: sparsity grows to the right."""
    axes.set_xscale("log")
    ticks = _pick_ticks(percents)
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FuncFormatter(_percent_label))
    axes.xaxis.set_minor_formatter(NullFormatter())
    if ticks:
        high, low = max(ticks), min(ticks)
        pad = (high / low) ** 0.04 if high > low else 1.15
        axes.set_xlim(high * pad, low / pad)  # descending limits invert the axis
    axes.set_xlabel("% of weights remaining (log scale)")
    axes.grid(True, which="major", alpha=0.3)


def _interval_arrays(rows: Sequence[SummaryRow], metric: str, scale: float) -> tuple[np.ndarray, ...]:
    """x (% remaining), mean, low, high for the rows where ``metric`` has a mean.

    ``low``/``high`` are NaN where there is no interval, which leaves a gap in the band.
    """
    xs, means, lows, highs = [], [], [], []
    for row in rows:
        interval: Interval = getattr(row, metric)
        if interval.mean is None or not math.isfinite(row.percent_remaining) or row.percent_remaining <= 0:
            continue
        xs.append(row.percent_remaining)
        means.append(interval.mean * scale)
        lows.append(interval.low * scale if interval.low is not None else math.nan)
        highs.append(interval.high * scale if interval.high is not None else math.nan)
    return tuple(np.asarray(a, dtype=float) for a in (xs, means, lows, highs))


def _per_arm_figure(summary: list[SummaryRow], metric: str, scale: float, ylabel: str, title: str,
                    clip: tuple[float, float] | None = None) -> Figure:
    """Mean line + 95% band per arm against % remaining, with the dense reference."""
    figure, axes = new_figure()
    arms = sorted({row.arm for row in summary}, key=_arm_order)
    any_band = False
    for arm in arms:
        rows = sorted((r for r in summary if r.arm == arm), key=lambda r: -r.percent_remaining)
        x, mean, low, high = _interval_arrays(rows, metric, scale)
        if clip is not None:  # a t-interval can run past 100% accuracy; the axis should not
            low, high = np.clip(low, *clip), np.clip(high, *clip)
        if x.size == 0:
            continue
        color = ARM_COLORS.get(arm, None)
        # Distinct markers and dashes keep arms apart where their means coincide.
        axes.plot(x, mean, marker=ARM_MARKERS.get(arm, "o"), markersize=4.5, linewidth=1.8, color=color,
                  linestyle="-" if arm == "ticket" else (0, (4, 1.5)), label=ARM_LABELS.get(arm, arm),
                  zorder=4 if arm == "ticket" else 3)
        if np.any(np.isfinite(low)):
            any_band = True
            axes.fill_between(x, low, high, color=color, alpha=0.13, linewidth=0, zorder=1)

    dense = next((r for r in summary if r.level == 0 and r.arm == "ticket"), None)
    if dense is not None:
        interval: Interval = getattr(dense, metric)
        if interval.mean is not None:
            axes.axhline(interval.mean * scale, color=_DENSE_COLOR, linestyle="--", linewidth=1.2,
                         label="dense reference (level 0)", zorder=2)
            if interval.has_interval and interval.high != interval.low:
                band = np.clip([interval.low * scale, interval.high * scale], *(clip or (-np.inf, np.inf)))
                axes.axhspan(band[0], band[1], color=_DENSE_COLOR, alpha=0.10,
                             linewidth=0, zorder=0)

    _sparsity_axis(axes, [r.percent_remaining for r in summary])
    axes.set_ylabel(ylabel)
    n_seeds = max((r.n_seeds for r in summary), default=0)
    note = f"mean and 95% CI over {n_seeds} seeds" if any_band else (
        "1 seed: no confidence interval can be computed" if n_seeds <= 1 else f"mean over {n_seeds} seeds")
    axes.set_title(f"{title}\n{note}", fontsize=11)
    axes.legend(fontsize=8, loc="best", framealpha=0.85)
    return figure


# --------------------------------------------------------------------------- figures


def accuracy_figure(summary: list[SummaryRow], verdicts: VerdictTable | None = None) -> Figure:
    """Test accuracy at early stop vs % remaining, per arm, with the dense reference.

    Ticket levels carry their verdict as a marker, so the curve is never read as "winning"
    where the evidence says only "matching" or less.
    """
    figure = _per_arm_figure(summary, "test_acc_at_early_stop", 100.0, "test accuracy at early stop (%)",
                             "Test accuracy at early stop", clip=(0.0, 100.0))
    if verdicts is not None and len(verdicts):
        axes = figure.axes[0]
        tickets = {r.level: r for r in summary if r.arm == "ticket"}
        for label, style in VERDICT_MARKERS.items():
            points = [(tickets[v.level].percent_remaining, tickets[v.level].test_acc_at_early_stop.mean * 100)
                      for v in verdicts if v.label == label and v.level in tickets
                      and tickets[v.level].test_acc_at_early_stop.mean is not None]
            if points:
                xs, ys = zip(*points)
                axes.scatter(xs, ys, s=70, zorder=5, label=f"ticket verdict: {label}", **style)
        axes.legend(fontsize=8, loc="best", framealpha=0.85)
    return figure


#: How each verdict label is drawn on the ticket's accuracy curve.
VERDICT_MARKERS: dict[str, dict[str, Any]] = {
    "winning": dict(marker="*", color="#1f77b4", edgecolors="black", linewidths=0.6),
    "matching": dict(marker="o", color="#1f77b4", edgecolors="black", linewidths=0.6),
    "not matching": dict(marker="X", color="#b22222", edgecolors="white", linewidths=0.6),
    "no verdict": dict(marker="o", facecolors="none", edgecolors="#1f77b4", linewidths=1.2),
    "diverged": dict(marker="X", color="black"),
}


def early_stop_figure(summary: list[SummaryRow]) -> Figure:
    """Early-stopping iteration vs % remaining, per arm, with the dense reference."""
    return _per_arm_figure(summary, "early_stop_step", 1.0, "early-stopping iteration",
                           "Early-stopping iteration (minimum validation loss)", clip=(0.0, np.inf))


def curve_levels(levels: Sequence[int]) -> list[int]:
    """Dense, a middle level and the sparsest: the three a reader compares first."""
    ordered = sorted(set(levels))
    if not ordered:
        return []
    return sorted({ordered[0], ordered[len(ordered) // 2], ordered[-1]})


def _mean_curve(curves: Sequence[Sequence[dict[str, float]]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``key`` per step over the seeds that evaluated at that step."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for record in curve:
            value = record.get(key)
            if value is None or not math.isfinite(float(value)):
                continue
            by_step.setdefault(int(record["step"]), []).append(float(value))
    steps = sorted(by_step)
    return np.asarray(steps, dtype=float), np.asarray([np.mean(by_step[s]) for s in steps], dtype=float)


def curves_figure(result: Result) -> Figure:
    """Validation accuracy over training iterations for a few ticket levels, mean over seeds."""
    figure, axes = new_figure()
    ticket = result.select(arm="ticket")
    chosen = curve_levels([r["level"] for r in ticket])
    cmap = matplotlib.colormaps["viridis"]
    n_seeds = 0
    for i, level in enumerate(chosen):
        runs = [r for r in ticket if r["level"] == level]
        curves = [result.metrics(level, r["replicate"], "ticket") for r in runs]
        steps, mean = _mean_curve(curves, "val_acc")
        if steps.size == 0:
            continue
        n_seeds = max(n_seeds, len(runs))
        pct = float(np.mean([r["percent_remaining"] for r in runs]))
        color = _level_color(i, len(chosen), cmap)
        label = f"level {level} ({pct:.3g}% remaining)" + (" = dense" if level == 0 else "")
        axes.plot(steps, mean * 100.0, color=color, linewidth=1.8, marker="o", markersize=3, label=label)
    axes.set_xlabel("training iteration")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(f"Validation accuracy during training (ticket)\nmean over {n_seeds} seed{'s' if n_seeds != 1 else ''}",
                   fontsize=11)
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(fontsize=8, loc="lower right", framealpha=0.85)
    return figure


def _level_color(index: int, count: int, cmap: Any) -> Any:
    """Dark for dense, bright for the sparsest (viridis), so order reads without the legend."""
    return cmap(0.85 * index / max(count - 1, 1))


def layer_percentages(runs: Sequence[dict[str, Any]]) -> dict[int, tuple[float, dict[str, float]]]:
    """level -> (overall % remaining, {layer: % remaining}) of the ticket arm, mean over seeds.

    Layer-wise pruning gives every seed the same numbers; global pruning does not, hence
    the mean. Layers keep the order the model lists them in.
    """
    out: dict[int, tuple[float, dict[str, float]]] = {}
    for level in sorted({r["level"] for r in runs if r["arm"] == "ticket"}):
        cell = [r for r in runs if r["arm"] == "ticket" and r["level"] == level]
        layers: dict[str, list[float]] = {}
        for run in cell:
            for name, pct in (run.get("layer_percent_remaining") or {}).items():
                layers.setdefault(name, []).append(float(pct))
        overall = float(np.mean([r["percent_remaining"] for r in cell]))
        out[level] = (overall, {name: float(np.mean(v)) for name, v in layers.items()})
    return out


def layer_sparsity_figure(runs: Sequence[dict[str, Any]]) -> Figure:
    """% remaining of each prunable layer against the network's % remaining (ticket arm)."""
    figure, axes = new_figure()
    per_level = layer_percentages(runs)
    layer_names: list[str] = []
    for _, layers in per_level.values():
        layer_names += [n for n in layers if n not in layer_names]
    overall = [per_level[level][0] for level in per_level]
    for i, name in enumerate(layer_names):
        xs = [per_level[level][0] for level in per_level if name in per_level[level][1]]
        ys = [per_level[level][1][name] for level in per_level if name in per_level[level][1]]
        axes.plot(xs, ys, marker=_LAYER_MARKERS[i % len(_LAYER_MARKERS)], markersize=4, linewidth=1.5,
                  color=f"C{i % 10}", linestyle="-" if i < 10 else "--", label=name)
    axes.plot(overall, overall, color=_DENSE_COLOR, linestyle=":", linewidth=1.2, label="whole network")
    _sparsity_axis(axes, overall)
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(_percent_label))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, which="major", axis="y", alpha=0.3)
    axes.set_ylabel("% of layer's weights remaining (log scale)")
    axes.set_title("Per-layer sparsity of the ticket", fontsize=11)
    axes.legend(fontsize=8, loc="lower left", framealpha=0.85, ncols=2 if len(layer_names) > 6 else 1)
    return figure


def write_figures(result: Result, out_dir: str | Path, verdicts: VerdictTable | None = None) -> dict[str, Path]:
    """Draw every figure of :data:`FIGURES` into ``out_dir`` as ``<name>.png``.

    Each file is written atomically, so a report directory never holds a half-written
    image. Returns figure name -> path, in :data:`FIGURES` order.
    """
    out = Path(out_dir)
    summary = summarize(result.runs)
    builders = {
        "accuracy": lambda: accuracy_figure(summary, verdicts),
        "early_stop": lambda: early_stop_figure(summary),
        "curves": lambda: curves_figure(result),
        "layer_sparsity": lambda: layer_sparsity_figure(result.runs),
    }
    paths: dict[str, Path] = {}
    for name in FIGURES:
        path = out / f"{name}.png"
        write_bytes_atomic(path, png_bytes(builders[name]()))
        paths[name] = path
    return paths
