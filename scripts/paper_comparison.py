"""Print the rows of a LeNet study at the sparsities of Frankle & Carbin (2019), Figures 3-4.

    python scripts/paper_comparison.py studies/<full-mnist experiment> [studies/<longer run>]

For each of 100, 51.3, 21.1, 7.0, 3.6 and 1.9% of weights remaining (levels 0, 3, 7, 12, 15
and 18 at the paper's rates), one markdown row with test accuracy at early stop and the
early-stopping iteration of the ticket, reinit and random arms (mean ± 95% half-width over
seeds). With a second experiment (the longer run), a second table compares, seed by seed,
the seeds the two share. Every number is read from the stored runs; nothing is retrained.
"""

from __future__ import annotations

import sys

from ticketlab import Result
from ticketlab.evidence.stats import Interval, summarize

PAPER_LEVELS = (0, 3, 7, 12, 15, 18)
ARMS = ("ticket", "reinit", "random")


def _cell(acc: Interval, es: Interval) -> str:
    if acc.mean is None:
        return "-"
    half = f" ± {100 * acc.half_width:.2f}" if acc.has_interval else ""
    es_half = f" ± {es.half_width:.0f}" if es.has_interval else ""
    return f"{100 * acc.mean:.2f}{half} @ {es.mean:.0f}{es_half}"


def comparison_table(result: Result) -> str:
    summary = {(row.level, row.arm): row for row in summarize(result.runs)}
    lines = ["| level | % remaining | ticket: acc (%) @ ES iter | reinit: acc (%) @ ES iter | random: acc (%) @ ES iter |",
             "|---:|---:|---:|---:|---:|"]
    for level in PAPER_LEVELS:
        ticket = summary.get((level, "ticket"))
        if ticket is None:
            continue
        cells = [str(level), f"{ticket.percent_remaining:.1f}"]
        for arm in ARMS:
            row = summary.get((level, arm))
            cells.append(_cell(row.test_acc_at_early_stop, row.early_stop_step) if row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def longer_run_table(short: Result, long: Result) -> str:
    """Seed by seed, the same sparsities in the two runs (each arm present in both)."""
    def by_key(result: Result) -> dict:
        return {(r["level"], r["arm"], r["seed"]): r for r in result.runs}

    a, b = by_key(short), by_key(long)
    lines = ["| level | % remaining | arm | seed | acc (%) @ ES iter, short run | acc (%) @ ES iter, long run |",
             "|---:|---:|---|---:|---:|---:|"]
    for key in sorted(set(a) & set(b)):
        level, arm, seed = key
        if level not in PAPER_LEVELS:
            continue
        ra, rb = a[key], b[key]
        lines.append(f"| {level} | {ra['percent_remaining']:.1f} | {arm} | {seed} | "
                     f"{100 * ra['test_acc_at_early_stop']:.2f} @ {ra['early_stop_step']} | "
                     f"{100 * rb['test_acc_at_early_stop']:.2f} @ {rb['early_stop_step']} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) not in (1, 2):
        raise SystemExit(__doc__)
    main_run = Result.load(argv[0])
    print(comparison_table(main_run))
    if len(argv) == 2:
        print()
        print(longer_run_table(main_run, Result.load(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
