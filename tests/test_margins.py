"""Each level's achieved margin and reason, the compact 80-column table, non-negative intervals.

Issue 20: a label alone hides how far a level is from the stated delta; the table carries the
achieved margin (minus the lower bound of ticket - dense) and a short reason for every level.
"""

from __future__ import annotations

import random

from rich.console import Console

from ticketlab.evidence.stats import positive_ci, summarize
from ticketlab.evidence.tables import caption, compact_rows, level_rows, markdown_table, rich_table
from test_verdicts import dense, judge, level, run


def _render(table, width: int = 200) -> list[str]:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))
    console.print(table)
    return console.export_text().splitlines()


def test_a_ticket_that_beats_dense_shows_its_margin_and_why() -> None:
    d = [0.950, 0.960, 0.970]
    runs = dense(d) + level(1, [a + 0.01 for a in d[:2]] + [d[2] + 0.012], es=900)
    table = judge(runs)
    row = table.row(1)
    assert row.matching and row.accuracy.bound > 0
    assert row.achieved_margin == -row.accuracy.bound < 0  # matching even at a negative delta
    assert row.short_reason.startswith("beats dense by ≥ ")
    assert f"{100 * row.accuracy.bound:.2f}" in row.short_reason
    compact = compact_rows(runs, table)[1]
    assert compact["δ* pp"] == f"−{100 * row.accuracy.bound:.2f}" and compact["reason"] == row.short_reason
    text = markdown_table(runs, table)
    assert "δ\\* (pp)" in text and "beats dense by ≥" in text  # escaped: a bare * starts emphasis


def test_every_label_has_a_short_reason_with_its_numbers() -> None:
    d = [0.950, 0.960, 0.970]
    runs = dense(d) + level(1, [a - 0.008 for a in d], es=900)  # 0.8 points worse on every seed
    runs += level(2, d[:2], es=900)  # two seeds only
    runs += level(3, d, es=900) + level(3, [a - 0.05 for a in d], arm="reinit")
    runs += level(4, d, es=900) + level(4, [a + 0.0001 for a in d], arm="random")
    table = judge(runs)
    one = table.row(1)
    assert one.label == "not matching" and one.achieved_margin > 0.005
    assert one.short_reason == f"bound −{100 * one.achieved_margin:.2f} < −0.5"
    assert table.row(2).short_reason == "2 seeds < min 3"
    assert table.row(2).accuracy is not None  # the numbers are shown, no claim made
    assert "beats reinit" in table.row(3).reasons()
    assert table.row(4).short_reason == "random not beaten"
    assert table.to_dict()["rows"][0]["reasons"] == one.reasons()


def _many_levels() -> list[dict]:
    rng = random.Random(0)
    runs = [run(0, "ticket", s, 0.975 + rng.uniform(-0.003, 0.003), es=12000 + 100 * s) for s in range(5)]
    for lvl in range(1, 25):
        for s in range(5):
            acc = 0.975 - 0.0003 * lvl ** 1.6 + rng.uniform(-0.003, 0.003)
            runs.append(run(lvl, "ticket", s, acc, es=10000 + 700 * s, pct=100 * 0.8 ** lvl))
            runs.append(run(lvl, "reinit", s, acc - 0.002 * lvl, es=20000, pct=100 * 0.8 ** lvl))
            runs.append(run(lvl, "random", s, acc - 0.003 * lvl, es=20000, pct=100 * 0.8 ** lvl))
    return runs


def test_the_compact_table_fits_80_columns_on_a_many_level_result() -> None:
    runs = _many_levels()
    table = judge(runs)
    lines = _render(rich_table(runs, "mnist / lenet_300_100", table), width=200)
    body = [line for line in lines if "%" not in line and line.strip()]
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert len([line for line in body if line.strip()[:2].strip().isdigit()]) >= 25
    # at 80 columns nothing is cut: every margin appears whole
    narrow = "\n".join(_render(rich_table(runs, "mnist / lenet_300_100", table), width=80))
    assert "…" not in narrow
    for row in compact_rows(runs, table)[1:]:
        assert row["δ* pp"] in narrow and row["acc @ES %"] in narrow
    wide = _render(rich_table(runs, "t", table, wide=True), width=400)
    assert max(len(line) for line in wide) > 80 and any("beats random" in line for line in wide)


def test_early_stop_intervals_never_go_below_zero() -> None:
    steps = [100, 100, 3000]  # a symmetric t interval over three seeds reaches -2,900
    interval = positive_ci(steps)
    assert interval.scale == "log" and interval.low > 0 and interval.mean == 1066.6666666666667
    runs = [run(0, "ticket", s, 0.95, es=e) for s, e in enumerate(steps)]
    (row,) = summarize(runs)
    assert row.early_stop_step.low > 0 and row.early_stop_step.low < row.early_stop_step.high
    shown = level_rows(runs, None)[0]["early-stop iter"]
    assert shown.startswith("1067 [") and "-" not in shown
    assert "log scale" in caption(runs, None)
    # values that are not positive (never an early stop) still give an interval at or above 0
    assert positive_ci([0.0, 0.0, 300.0]).low >= 0


def test_a_bound_below_minus_100_points_reads_as_vacuous_not_as_a_measurement() -> None:
    """Accuracies differ by at most 100 points, so a lower bound below -100 (an early look of a
    sequential design on a collapsed level) is shown as ">100" and explained under the table."""
    d = [0.990, 0.995, 1.000]
    runs = dense(d) + level(1, [0.10, 0.95, 0.40], es=900)  # collapsed on two seeds of three
    table = judge(runs)
    row = table.row(1)
    assert row.achieved_margin > 1.0  # t(0.95, 2) * sd / sqrt(3) reaches below -100 points
    assert compact_rows(runs, table)[1]["δ* pp"] == ">100"
    assert ">100: a bound below −100 points" in caption(runs, table)
    intact = dense(d) + level(1, d, es=900)
    assert ">100" not in caption(intact, judge(intact))
