"""One comparison of several experiments: accuracy at equal sparsity, with each method's cost.

Every experiment contributes one column: its ticket's test accuracy at early stop (mean ± 95%
CI over seeds) at each sparsity it reached, and its controls at the sparsities where they
trained. Rows are sparsities: percentages within 1% of each other (relative) share a row, so
IMP's layerwise levels (64.1%, with the output layer pruned at its own rate) and a method at
initialisation pruned globally to 64.0% sit side by side; the row says the range. The cost table says what
each accuracy cost, from the stored summaries (nothing is re-run): trainings, optimizer steps,
wall time, training FLOPs (as run, and at the masks' density), and the trainings one ticket
at the sparsest level needs (the IMP chain's L + 1 against one training for a method at
initialisation). Reading never needs the user's code: FLOPs are counted for built-in models.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ticketlab.api import Result
from ticketlab.data.batch import moved, take
from ticketlab.errors import ConfigError
from ticketlab.evidence.stats import Interval, mean_ci
from ticketlab.evidence.flops import TRAINING_STEP_FORWARDS, ForwardFlops
from ticketlab.evidence.tables import format_interval


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

    def cost(self, flops: "ForwardFlops | None") -> dict[str, str]:
        """What the column's runs cost, from their summaries; FLOPs when the model's forward
        FLOPs are known (see ``column_flops``)."""
        runs, train = self.result.runs, self.result.config.train
        steps = sum(int(r["final_step"]) - int(r["start_step"]) for r in runs)
        per_ticket = trainings_per_ticket(self.method, max(r["level"] for r in runs))
        cost = {
            "trainings": f"{len(runs):,}",
            "optimizer steps": f"{steps:,}",
            "wall time (s)": f"{round(sum(r['wall_time_s'] for r in runs)):,}",
            "trainings per ticket at the sparsest level": "?" if per_ticket is None else f"{per_ticket:,}",
            "training FLOPs as run": "-",
            "training FLOPs at the masks' density": "-",
        }
        if flops is not None:
            factor = TRAINING_STEP_FORWARDS * train.batch_size
            run_flops = sum((int(r["final_step"]) - int(r["start_step"])) * factor * flops.total for r in runs)
            sparse = sum((int(r["final_step"]) - int(r["start_step"])) * factor
                         * flops.at_density({n: p / 100.0 for n, p in r["layer_percent_remaining"].items()})
                         for r in runs)
            cost["training FLOPs as run"] = f"{run_flops:.3g}"
            cost["training FLOPs at the masks' density"] = f"{sparse:.3g}"
        return cost


def trainings_per_ticket(method: str, level: int) -> int | None:
    """Trainings one ticket at ``level`` needs: the whole IMP chain (L + 1), the dense run and
    the ticket for one-shot (2), one for a method at initialisation; None for a plug-in method
    whose code is not importable here, or a transfer (its cost is the source's)."""
    from ticketlab.pruning.base import Need
    from ticketlab.pruning.registry import METHODS, resolve_method

    if method not in METHODS or method == "transfer":
        return None
    needs = resolve_method(method).needs(level)
    if Need.PREVIOUS_TRAINED in needs:
        return level + 1
    return 2 if Need.DENSE_TRAINED in needs else 1


def column_flops(result: Result) -> "ForwardFlops | None":
    """Forward FLOPs per example of the experiment's model, for a built-in model and dataset
    (None otherwise: reading an experiment never imports or needs the user's code)."""
    config = result.config
    if ":" in config.model or ":" in config.data.dataset:
        return None
    from ticketlab.evidence.flops import forward_flops
    from ticketlab.experiment.environment import environment

    env = environment(config)
    return forward_flops(env.build(0, "cpu"), moved(take(env.data.x_train, slice(0, 1)), "cpu"))


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


@dataclass(frozen=True)
class Table:
    """A comparison table as text cells: rendered as markdown here and as HTML in the report."""

    caption: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def prunes_at_init(method: str) -> bool:
    """Whether ``method`` makes its masks from untrained weights, as its own ``needs`` declare
    (False for a plug-in whose code is not importable here)."""
    from ticketlab.pruning.base import pruned_from_level
    from ticketlab.pruning.registry import resolve_method

    try:
        return pruned_from_level(resolve_method(method), 1) is None and method != "transfer"
    except ConfigError:
        return False


def at_init_note(columns: list[Column]) -> str:
    """What a reader must know before comparing a method at initialisation with IMP, layerwise:
    such a method keeps IMP's *total* count but ranks its scores across layers, so the output
    layer gets no rate of its own (IMP prunes it at ``prune.output_rate``)."""
    at_init = [c.label for c in columns if prunes_at_init(c.method)]
    layerwise = [c for c in columns if not prunes_at_init(c.method) and c.result.config.prune.strategy == "layerwise"]
    if not at_init or not layerwise:
        return ""
    rate = layerwise[0].result.config.prune.output_rate
    own = f" (IMP prunes it at output_rate = {rate:g})" if rate is not None else ""
    return (f" {', '.join(at_init)} keep IMP's total count but rank scores across layers: the output layer has no "
            f"rate of its own{own}, unless prune.layer_rates names it.")


def accuracy_table(columns: list[Column]) -> Table:
    """Ticket accuracy at every sparsity any experiment reached (one column per experiment)."""
    rows = [[_label(row)] + [format_interval(c.accuracy(row), 100.0) for c in columns] for row in sparsity_rows(columns)]
    return Table("Test accuracy at early stop (%), mean ± 95% CI over seeds, at equal sparsity "
                 "(sparsities within 1% of each other share a row)." + at_init_note(columns),
                 ["% remaining"] + [c.label for c in columns], rows)


def controls_table(columns: list[Column]) -> Table | None:
    """Each experiment's ticket beside its own controls where they trained (the ablations)."""
    cells: dict[tuple[str, tuple[float, float]], dict[str, Interval | None]] = defaultdict(dict)
    arms: list[str] = []
    sparsities = sparsity_rows(columns)
    for column in columns:
        for run in column.result.runs:
            if run["arm"] != "ticket":
                row = next(r for r in sparsities if r[0] <= run["percent_remaining"] <= r[1])
                cells[(column.label, row)][run["arm"]] = column.accuracy(row, run["arm"])
                cells[(column.label, row)]["ticket"] = column.accuracy(row)
                if run["arm"] not in arms:
                    arms.append(run["arm"])
    if not cells:
        return None
    rows = [[label, _label(row)] + [format_interval(values.get(a), 100.0) for a in ["ticket", *arms]]
            for (label, row), values in cells.items()]
    return Table("Each ticket beside its own controls (%):", ["method", "% remaining", "ticket", *arms], rows)


def cost_table(columns: list[Column]) -> Table:
    costs = [c.cost(column_flops(c.result)) for c in columns]
    keys = list(costs[0])
    return Table("Cost, from the stored runs (FLOPs: 3 forward passes per example per optimizer step; "
                 "evaluation and mask scoring not included; 'as run' is the dense-masked loop, 'at the masks' "
                 "density' what kernels skipping pruned weights would need):",
                 ["method", *keys], [[c.label, *(cost[k] for k in keys)] for c, cost in zip(columns, costs)])


def comparison_tables(directories: list[str | Path]) -> list[Table]:
    columns = load_columns(directories)
    return [t for t in (accuracy_table(columns), controls_table(columns), cost_table(columns)) if t is not None]


def comparison_markdown(directories: list[str | Path]) -> str:
    return "\n\n".join(f"{t.caption}\n\n{t.markdown()}" for t in comparison_tables(directories))
