"""The per-level summary table shown by ``run``, ``show`` and the report.

One row per level: % of weights remaining, the early-stopping iteration and test accuracy
(at early stop and at the end) of the ticket as mean ± 95% CI half-width over seeds, the
controls' accuracy at early stop, and the verdict against the dense network.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ticketlab.stats import Interval, summarize, verdict_table


def _fmt(interval: Interval | None, scale: float = 1.0, digits: int = 1) -> str:
    if interval is None or interval.n == 0 or interval.mean is None:
        return "-"
    text = f"{interval.mean * scale:.{digits}f}"
    if interval.has_interval:
        text += f" ± {interval.half_width * scale:.{digits}f}"
    return text


def level_rows(runs: list[dict[str, Any]]) -> tuple[list[dict[str, str]], Any]:
    """Display rows (strings) per level plus the verdict table they came from."""
    summary = {(row.level, row.arm): row for row in summarize(runs)}
    verdicts = verdict_table(runs) if any(r["level"] > 0 for r in runs) else None
    controls = sorted({arm for _, arm in summary if arm != "ticket"})
    rows = []
    for level in sorted({level for level, _ in summary}):
        ticket = summary.get((level, "ticket"))
        if ticket is None:
            continue
        row = {
            "level": str(level),
            "% remaining": f"{ticket.percent_remaining:.1f}",
            "seeds": str(ticket.n_seeds),
            "early-stop iter": _fmt(ticket.early_stop_step, digits=0),
            "test acc @ES (%)": _fmt(ticket.test_acc_at_early_stop, 100),
            "test acc end (%)": _fmt(ticket.final_test_acc, 100),
        }
        for arm in controls:
            control = summary.get((level, arm))
            row[f"{arm} @ES (%)"] = _fmt(control.test_acc_at_early_stop, 100) if control else "-"
        if level == 0:
            row["verdict"] = "dense"
        elif verdicts is not None:
            verdict_row = verdicts.row(level)
            row["verdict"] = verdict_row.label or "-"
        rows.append(row)
    return rows, verdicts


def rich_table(runs: list[dict[str, Any]], title: str) -> Table:
    rows, verdicts = level_rows(runs)
    table = Table(title=title, caption=_caption(runs, verdicts))
    for column in rows[0]:
        table.add_column(column, justify="right" if column != "verdict" else "left")
    for row in rows:
        table.add_row(*row.values())
    return table


def _caption(runs: list[dict[str, Any]], verdicts: Any) -> str:
    n_seeds = len({r["seed"] for r in runs})
    parts = ["mean ± 95% CI half-width over seeds" if n_seeds > 1 else "1 seed: no confidence interval can be computed"]
    if verdicts is not None:
        level = verdicts.sparsest_matching_level
        parts.append(f"sparsest matching level: {level if level is not None else 'none'}")
    return "; ".join(parts)
