"""The per-level summary table shown by ``run``, ``show`` and the report.

One row per level: % of weights remaining, the early-stopping iteration and test accuracy
(at early stop and at the end) of the ticket as mean ± 95% CI half-width over seeds, each
control's accuracy at early stop and whether the ticket beats it (Holm-adjusted), and the
verdict against the dense network under the stated :class:`ticketlab.evidence.verdicts.Criteria`.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ticketlab.evidence.stats import Interval, summarize
from ticketlab.evidence.verdicts import VerdictTable

_BEATS = {True: "yes", False: "no", None: "-"}


def format_interval(interval: Interval | None, scale: float = 1.0, digits: int = 1) -> str:
    if interval is None or interval.n == 0 or interval.mean is None:
        return "-"
    text = f"{interval.mean * scale:.{digits}f}"
    if interval.has_interval:
        text += f" ± {interval.half_width * scale:.{digits}f}"
    return text


def level_rows(
    runs: list[dict[str, Any]], verdicts: VerdictTable | None, control_early_stop: bool = False
) -> list[dict[str, str]]:
    """Display rows (strings) per level, from the run records and their verdicts.

    ``control_early_stop`` adds each control's early-stopping iteration (the wide form used for
    documents, where the paper's Figure 4 comparison needs it).
    """
    summary = {(row.level, row.arm): row for row in summarize(runs)}
    controls = sorted({arm for _, arm in summary if arm != "ticket"})
    by_level = {row.level: row for row in verdicts} if verdicts is not None else {}
    rows = []
    for level in sorted({level for level, _ in summary} | set(by_level)):
        ticket = summary.get((level, "ticket"))
        verdict = by_level.get(level)
        if ticket is None:  # every ticket run of the level diverged: only its verdict is left
            rows.append({"level": str(level), "verdict": verdict.label if verdict else "-"})
            continue
        row = {
            "level": str(level),
            "% remaining": f"{ticket.percent_remaining:.1f}",
            "seeds": str(ticket.n_seeds),
            "early-stop iter": format_interval(ticket.early_stop_step, digits=0),
            "test acc @ES (%)": format_interval(ticket.test_acc_at_early_stop, 100),
            "test acc end (%)": format_interval(ticket.final_test_acc, 100),
        }
        for arm in controls:
            control = summary.get((level, arm))
            row[f"{arm} @ES (%)"] = format_interval(control.test_acc_at_early_stop, 100) if control else "-"
            if control_early_stop:
                row[f"{arm} ES iter"] = format_interval(control.early_stop_step, digits=0) if control else "-"
            test = verdict.controls.get(arm) if verdict is not None else None
            row[f"beats {arm}"] = _BEATS[test.beats] if test is not None else "-"
        if level == 0:
            row["verdict"] = "dense"
        else:
            label = verdict.label if verdict is not None else "-"
            row["verdict"] = label + ("†" if verdict is not None and verdict.matching and not verdict.in_sequence else "")
        rows.append(row)
    return rows


def rich_table(runs: list[dict[str, Any]], title: str, verdicts: VerdictTable | None) -> Table:
    rows = level_rows(runs, verdicts)
    table = Table(title=title, caption=caption(runs, verdicts))
    columns = _columns(rows)
    for column in columns:
        table.add_column(column, justify="right" if column != "verdict" else "left")
    for row in rows:
        table.add_row(*(row.get(c, "-") for c in columns))
    return table


def _columns(rows: list[dict[str, str]]) -> list[str]:
    """Every column any row has, in first-seen order (a diverged level's row is short)."""
    return list(dict.fromkeys(c for row in rows for c in row))


def markdown_table(runs: list[dict[str, Any]], verdicts: VerdictTable | None) -> str:
    """The wide table as GitHub markdown, with its caption lines below, for results pages."""
    rows = level_rows(runs, verdicts, control_early_stop=True)
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if c != "verdict" else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(row.get(c, "-") for c in columns) + " |" for row in rows]
    text = "\n".join(lines) + "\n\n" + "\n".join(f"*{line}*  " for line in caption(runs, verdicts).splitlines())
    controls = controls_markdown(verdicts) if verdicts is not None else ""
    return text + ("\n\n" + controls if controls else "")


def controls_markdown(verdicts: VerdictTable) -> str:
    """Per level and control: ticket - control in points, its one-sided bound, raw and Holm p, verdict."""
    arms = verdicts.control_arms
    if not arms:
        return ""
    conf = f"{100 * (1 - verdicts.criteria.alpha):g}%"
    columns = ["level", "% remaining"] + [f"ticket - {arm} (pp), {conf} lower bound; p raw / Holm" for arm in arms]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" for _ in columns) + "|"]
    for row in verdicts:
        if not row.controls:
            continue
        cells = [str(row.level), f"{row.percent_remaining:.1f}"]
        for arm in arms:
            test = row.controls.get(arm)
            if test is None or test.test.mean is None:
                cells.append("-")
                continue
            t = test.test
            bound = f" (≥ {100 * t.bound:+.2f})" if t.bound is not None else ""
            p = f"; p {t.p_value:.2g} / {test.p_holm:.2g}" if test.p_holm is not None else ""
            cells.append(f"{100 * t.mean:+.2f}{bound}{p}: {_BEATS_WORDS[test.beats]}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_BEATS_WORDS = {True: "**beats**", False: "does not beat", None: "no claim"}


def caption(runs: list[dict[str, Any]], verdicts: VerdictTable | None) -> str:
    """What the numbers are, the rule the verdicts follow, and the headline."""
    n_seeds = len({r["seed"] for r in runs})
    parts = ["mean ± 95% CI half-width over seeds" if n_seeds > 1 else "1 seed: no confidence interval can be computed"]
    if verdicts is not None:
        c = verdicts.criteria
        rule = (f"matching: {100 * (1 - c.alpha):g}% lower bound of ticket - dense >= -{100 * c.margin:g} points"
                if c.rule == "margin" else "matching: ticket mean >= dense mean - 1 sd (Frankle et al. 2020)")
        parts.append(f"{rule}; beats <control>: Holm-adjusted p < {c.alpha:g}")
        if any(r.matching and not r.in_sequence for r in verdicts):
            parts.append("† past the first non-matching level, outside the headline's claim")
        parts.append(verdicts.headline())
    return "\n".join(parts)
