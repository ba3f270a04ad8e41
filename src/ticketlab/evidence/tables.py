"""The per-level summary table shown by ``run``, ``show`` and the report.

One row per level. Two layouts of the same evidence:

* **compact** (the default in a terminal; fits 80 columns): % of weights remaining, seeds, the
  ticket's test accuracy at early stop (mean ± 95% CI half-width), its mean early-stopping
  iteration, the achieved margin ``δ*`` (the smallest delta at which the level would be matching:
  minus the one-sided lower bound of ticket − dense), the verdict and its most decisive reason
  (controls appear in that reason: "reinit not beaten").
* **wide** (``--wide``, and the markdown of ``show --markdown``): every interval, each control's
  accuracy and whether the ticket beats it (Holm-adjusted), and all the reasons.

A sequential experiment (``seeds = "auto"``) adds the look that decided each level.

The verdicts follow the stated :class:`ticketlab.evidence.verdicts.Criteria`; the caption under
either table states them, with the headline.
"""

from __future__ import annotations

import re
from typing import Any

from rich import box
from rich.table import Table

from ticketlab.evidence.stats import Interval, SummaryRow, summarize
from ticketlab.evidence.verdicts import LevelVerdict, VerdictTable, signed_points

_BEATS = {True: "yes", False: "no", None: "-"}


def format_interval(interval: Interval | None, scale: float = 1.0, digits: int = 1, compact: bool = False) -> str:
    """``mean ± half-width``; a log-scale interval (asymmetric) as ``mean [low, high]``."""
    if interval is None or interval.n == 0 or interval.mean is None:
        return "-"
    text = f"{interval.mean * scale:.{digits}f}"
    if not interval.has_interval:
        return text
    if interval.scale == "log":
        return text if compact else f"{text} [{interval.low * scale:.{digits}f}, {interval.high * scale:.{digits}f}]"
    return text + (f"±{interval.half_width * scale:.{digits}f}" if compact else f" ± {interval.half_width * scale:.{digits}f}")


def _margin(verdict: LevelVerdict | None) -> str:
    """The achieved margin in points, signed ("−0.12": matching even at delta −0.12)."""
    if verdict is None or verdict.achieved_margin is None:
        return "-"
    if _vacuous(verdict):
        return ">100"
    return signed_points(verdict.achieved_margin).lstrip("+")


def _vacuous(verdict: LevelVerdict) -> bool:
    """A lower bound below -100 points says nothing: accuracies differ by at most 100. It comes
    from a collapsed level with few seeds, above all at an early look of a sequential design
    (whose boundary there is very wide); its number in points would read as a measurement."""
    return verdict.achieved_margin is not None and verdict.achieved_margin > 1.0


def _label(level: int, verdict: LevelVerdict | None) -> str:
    if level == 0:
        return "dense"
    if verdict is None:
        return "-"
    return verdict.label + ("†" if verdict.matching and not verdict.in_sequence else "")


def level_rows(
    runs: list[dict[str, Any]], verdicts: VerdictTable | None, control_early_stop: bool = False
) -> list[dict[str, str]]:
    """The wide display rows (strings) per level, from the run records and their verdicts.

    ``control_early_stop`` adds each control's early-stopping iteration (the form used for
    documents, where the paper's Figure 4 comparison needs it).
    """
    summary = {(row.level, row.arm): row for row in summarize(runs)}
    controls = sorted({arm for _, arm in summary if arm != "ticket"})
    by_level = {row.level: row for row in verdicts} if verdicts is not None else {}
    rows = []
    for level in sorted({level for level, _ in summary} | set(by_level)):
        ticket, verdict = summary.get((level, "ticket")), by_level.get(level)
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
            row.update(_control_cells(arm, summary.get((level, arm)), verdict, control_early_stop))
        row["δ* (pp)"] = "-" if level == 0 else _margin(verdict)
        if verdicts is not None and verdicts.design is not None:
            row["decided at look"] = _look(verdict)
        row["verdict"] = _label(level, verdict)
        row["reason"] = "; ".join(verdict.reasons()) if verdict is not None and level else ""
        rows.append(row)
    return rows


def _control_cells(arm: str, control: SummaryRow | None, verdict: LevelVerdict | None,
                   early_stop: bool) -> dict[str, str]:
    cells = {f"{arm} @ES (%)": format_interval(control.test_acc_at_early_stop, 100) if control else "-"}
    if early_stop:
        cells[f"{arm} ES iter"] = format_interval(control.early_stop_step, digits=0) if control else "-"
    test = verdict.controls.get(arm) if verdict is not None else None
    cells[f"beats {arm}"] = _BEATS[test.beats] if test is not None else "-"
    return cells


def compact_rows(runs: list[dict[str, Any]], verdicts: VerdictTable | None) -> list[dict[str, str]]:
    """The compact display rows: the numbers a verdict rests on, in under 80 columns."""
    summary = {(row.level, row.arm): row for row in summarize(runs)}
    by_level = {row.level: row for row in verdicts} if verdicts is not None else {}
    rows = []
    for level in sorted({level for level, arm in summary if arm == "ticket"} | set(by_level)):
        ticket, verdict = summary.get((level, "ticket")), by_level.get(level)
        row = {"lvl": str(level), "% left": "-", "n": "-", "acc @ES %": "-", "ES it": "-"}
        if ticket is not None:
            row.update({"% left": f"{ticket.percent_remaining:.1f}", "n": str(ticket.n_seeds),
                        "acc @ES %": format_interval(ticket.test_acc_at_early_stop, 100, digits=2, compact=True),
                        "ES it": format_interval(ticket.early_stop_step, digits=0, compact=True)})
        row["δ* pp"] = "-" if level == 0 else _margin(verdict)
        if verdicts is not None and verdicts.design is not None:
            row["look"] = _look(verdict)
        row["verdict"] = _label(level, verdict)
        reason = verdict.short_reason if verdict is not None and level else ""
        row["reason"] = _LOOK_PREFIX.sub("", reason) if "look" in row else reason
        rows.append(row)
    return rows


_LOOK_PREFIX = re.compile(r"^look \d+: ")


def _look(verdict: LevelVerdict | None) -> str:
    """The look that decided a level of a sequential experiment ("-": undecided, or dense)."""
    decision = verdict.decision if verdict is not None else None
    return str(decision.look + 1) if decision is not None and decision.stopped and decision.look is not None else "-"


_TEXT_COLUMNS = ("verdict", "reason")


def rich_table(runs: list[dict[str, Any]], title: str, verdicts: VerdictTable | None, wide: bool = False) -> Table:
    """The terminal table: compact (fits 80 columns) unless ``wide``."""
    rows = level_rows(runs, verdicts) if wide else compact_rows(runs, verdicts)
    table = Table(title=title, caption=caption(runs, verdicts, wide=wide), caption_justify="left",
                  box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, pad_edge=wide, show_edge=wide,
                  collapse_padding=not wide)
    columns = _columns(rows)
    for column in columns:
        text = column in _TEXT_COLUMNS
        table.add_column(column, justify="left" if text else "right", no_wrap=not text)
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
    lines = ["| " + " | ".join(c.replace("δ*", "δ\\*") for c in columns) + " |",
             "|" + "|".join("---" if c in _TEXT_COLUMNS else "---:" for c in columns) + "|"]
    lines += ["| " + " | ".join(row.get(c, "-") for c in columns) + " |" for row in rows]
    notes = caption(runs, verdicts, wide=True).replace("δ*", "δ\\*").splitlines()  # a bare * would start emphasis
    text = "\n".join(lines) + "\n\n" + "\n".join(f"*{line}*  " for line in notes)
    controls = controls_markdown(verdicts) if verdicts is not None else ""
    return text + ("\n\n" + controls if controls else "")


def controls_markdown(verdicts: VerdictTable) -> str:
    """Per level and control: ticket - control in points, its one-sided bound, raw and Holm p, verdict."""
    arms = verdicts.control_arms
    if not arms:
        return ""
    conf = f"{100 * (1 - verdicts.criteria.alpha):g}%"
    columns = ["level", "% remaining"] + [f"ticket - {arm} (pp), {conf} lower bound; p raw / Holm" for arm in arms]
    lines = ["| " + " | ".join(c.replace("δ*", "δ\\*") for c in columns) + " |", "|" + "|".join("---:" for _ in columns) + "|"]
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


def caption(runs: list[dict[str, Any]], verdicts: VerdictTable | None, wide: bool = True) -> str:
    """What the numbers are, the rule the verdicts follow, and the headline."""
    n_seeds = len({r["seed"] for r in runs})
    parts = [("accuracy: mean ± 95% CI half-width over seeds; early-stop iteration: mean"
              + (" [95% t interval on the log scale, never below 0]" if wide else " (its interval, on the log "
                 "scale, is in --wide)"))
             if n_seeds > 1 else "1 seed: no confidence interval can be computed"]
    if verdicts is not None:
        c = verdicts.criteria
        rule = (f"matching: {100 * (1 - c.alpha):g}% lower bound of ticket - dense >= -{100 * c.margin:g} points"
                if c.rule == "margin" else "matching: ticket mean >= dense mean - 1 sd (Frankle et al. 2020)")
        parts.append(f"{rule}; beats <control>: Holm-adjusted p < {c.alpha:g}")
        parts.append("δ*: the smallest margin at which a level would be matching (− its lower bound of "
                     "ticket − dense, points; negative: it beats dense"
                     + ("; >100: a bound below −100 points, which says nothing, since accuracies differ by at most 100"
                        if any(_vacuous(v) for v in verdicts) else "") + ")")
        parts.append(verdicts.family_statement())
        if any(r.matching and not r.in_sequence for r in verdicts):
            parts.append("† outside the headline's claim (" + ("not a claim level)" if verdicts.claim_levels
                                                              else "past the first non-matching level)"))
        parts.append(verdicts.headline())
    return "\n".join(parts)
