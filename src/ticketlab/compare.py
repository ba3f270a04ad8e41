"""One comparison of several experiments: accuracy at equal sparsity, with each method's cost.

Every experiment contributes one column: its ticket's test accuracy at early stop (mean ± 95%
CI over seeds) at each sparsity it reached, and its controls at the sparsities where they
trained. Rows are sparsities: percentages within 1% of each other (relative) share a row, so
IMP's layerwise levels (64.1%, with the output layer pruned at its own rate) and a method at
initialisation pruned globally to 64.0% sit side by side; the row says the range. The cost table says what
each accuracy cost, from the stored summaries (nothing is re-run): trainings, optimizer steps,
wall time, and the trainings one ticket at the sparsest level needs (the IMP chain's L + 1
against one training for a method at initialisation). Reading never needs the model's code.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketlab.api import Result
from ticketlab.errors import ConfigError
from ticketlab.stats import Interval, mean_ci
from ticketlab.tables import _fmt


@dataclass(frozen=True)
class Column:
    """One experiment in the comparison."""

    label: str
    result: Result

    @property
    def method(self) -> str:
        return self.result.config.prune.method

    def accuracy(self, row: tuple[float, float], arm: str = "ticket") -> Interval | None:
        """Mean ± CI of ``arm`` over the runs whose sparsity falls in ``row`` (low, high)."""
        values = [r["test_acc_at_early_stop"] for r in self.result.runs
                  if r["arm"] == arm and r["status"] == "ok" and row[0] <= r["percent_remaining"] <= row[1]]
        return mean_ci(values, bounds=(0.0, 1.0)) if values else None

    def cost(self) -> dict[str, Any]:
        runs = self.result.runs
        needs_training = self.method == "magnitude"  # IMP: each level prunes the previous trained ticket
        sparsest = max(r["level"] for r in runs)
        return {
            "trainings": len(runs),
            "optimizer steps": sum(int(r["final_step"]) - int(r["start_step"]) for r in runs),
            "wall time (s)": round(sum(r["wall_time_s"] for r in runs)),
            "trainings per ticket at the sparsest level": sparsest + 1 if needs_training else 1,
        }


def load_columns(directories: list[str | Path]) -> list[Column]:
    """Each directory as a column, labelled by its pruning method (and name when methods repeat)."""
    if not directories:
        raise ConfigError("give at least one experiment directory to compare")
    results = [Result.load(d) for d in directories]
    methods = [r.config.prune.method for r in results]
    labels = [m if methods.count(m) == 1 else f"{m} ({r.directory.name})" for m, r in zip(methods, results)]
    return [Column(label, result) for label, result in zip(labels, results)]


RELATIVE = 0.01  # sparsities within 1% of each other are "equal" for the comparison


def sparsity_rows(columns: list[Column]) -> list[tuple[float, float]]:
    """(low, high) percentage ranges, densest first, each holding sparsities within RELATIVE."""
    percents = sorted({r["percent_remaining"] for c in columns for r in c.result.runs}, reverse=True)
    rows: list[list[float]] = []
    for percent in percents:
        if rows and rows[-1][0] - percent <= RELATIVE * rows[-1][0]:
            rows[-1].append(percent)
        else:
            rows.append([percent])
    return [(min(row), max(row)) for row in rows]


def _label(row: tuple[float, float]) -> str:
    low, high = (f"{p:.1f}" for p in row)
    return low if low == high else f"{low}–{high}"


def accuracy_markdown(columns: list[Column]) -> str:
    """Ticket accuracy at every sparsity any experiment reached (one column per experiment)."""
    header = "| % remaining | " + " | ".join(c.label for c in columns) + " |"
    lines = [header, "|---:|" + "---:|" * len(columns)]
    for row in sparsity_rows(columns):
        cells = [_fmt(c.accuracy(row), 100.0) for c in columns]
        lines.append(f"| {_label(row)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def controls_markdown(columns: list[Column]) -> str:
    """Each experiment's ticket beside its own controls where they trained (the ablations)."""
    rows: dict[tuple[str, tuple[float, float]], dict[str, Interval | None]] = defaultdict(dict)
    arms: list[str] = []
    sparsities = sparsity_rows(columns)
    for column in columns:
        for run in column.result.runs:
            if run["arm"] != "ticket":
                row = next(r for r in sparsities if r[0] <= run["percent_remaining"] <= r[1])
                rows[(column.label, row)][run["arm"]] = column.accuracy(row, run["arm"])
                rows[(column.label, row)]["ticket"] = column.accuracy(row)
                if run["arm"] not in arms:
                    arms.append(run["arm"])
    if not rows:
        return ""
    lines = ["| method | % remaining | ticket | " + " | ".join(arms) + " |",
             "|---|---:|---:|" + "---:|" * len(arms)]
    for (label, row), cells in rows.items():
        values = [_fmt(cells.get("ticket"), 100.0)] + [_fmt(cells.get(a), 100.0) for a in arms]
        lines.append(f"| {label} | {_label(row)} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def cost_markdown(columns: list[Column]) -> str:
    keys = list(columns[0].cost())
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for column in columns:
        cost = column.cost()
        lines.append(f"| {column.label} | " + " | ".join(f"{cost[k]:,}" for k in keys) + " |")
    return "\n".join(lines)


def comparison_markdown(directories: list[str | Path]) -> str:
    columns = load_columns(directories)
    parts = ["Test accuracy at early stop (%), mean ± 95% CI over seeds:", accuracy_markdown(columns)]
    controls = controls_markdown(columns)
    if controls:
        parts += ["Each ticket beside its own controls (%):", controls]
    parts += ["Cost, from the stored runs:", cost_markdown(columns)]
    return "\n\n".join(parts)
