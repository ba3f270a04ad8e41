"""The experiment report: one self-contained HTML file with the evidence for every verdict.

``write_report(experiment_dir)`` writes ``<experiment_dir>/report/``:

* ``report.html`` — config, environment, the verdict table (``id="verdict-table"``), the
  figures, per-layer sparsity and wall time. Figures are embedded as base64 ``data:`` URIs
  and the styles are inline, so the single file can be mailed, archived or opened offline
  and still shows everything; it loads nothing from anywhere.
* ``<figure>.png`` — the same figures as separate files, for papers and slides.
* ``verdicts.json`` — :meth:`ticketlab.evidence.verdicts.VerdictTable.to_dict` (criteria included), for machines.

Every file is written atomically (PNGs and JSON first, the HTML last), so a reader never
sees a half-written report. All text that comes from data is passed through
:func:`html.escape`. The figures module (matplotlib) is imported inside the functions that
need it, so that importing the CLI, which imports this module, stays fast.
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch

from ticketlab.api import Result
from ticketlab.experiment.schedule import all_units
from ticketlab.io import write_json_atomic, write_text_atomic
from ticketlab.evidence.stats import Interval, SummaryRow, summarize
from ticketlab.evidence.verdicts import Criteria, LevelVerdict, VerdictTable

__all__ = ["REPORT_DIRNAME", "render_html", "software_and_machine", "write_report"]

#: Folder inside the experiment directory that holds the report.
REPORT_DIRNAME = "report"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.muted { color: #666; font-size: 0.9rem; }
.headline { font-size: 1.1rem; background: #f4f7fb; border-left: 4px solid #1f77b4; padding: 0.6rem 0.9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88rem; margin: 0.6rem 0; }
th, td { border: 1px solid #d0d0d0; padding: 0.3rem 0.5rem; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.level-row td { border-bottom: none; }
tr.criterion-row td { border-top: none; }
td.criterion { font-size: 0.8rem; color: #444; }
.ci { font-size: 0.8rem; color: #555; }
tr.sparsest td { background: #fff7d6; }
tr.level-row.sparsest td { font-weight: 600; }
.star { color: #9a6700; font-size: 0.8rem; }
.label-winning { color: #1a7f37; font-weight: 700; }
.label-matching { color: #2f7d32; }
.label-not-matching { color: #b42318; }
.label-dense { color: #555; font-style: italic; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.88rem; color: #444; max-width: 60rem; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 0.6rem; overflow-x: auto; font-size: 0.82rem; }
.columns { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.columns > div { flex: 1 1 28rem; min-width: 0; }
"""


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 1e-4:
        return "< 0.0001"
    return f"{value:.4f}"


def _signed(value: float | None, scale: float = 100.0) -> str:
    return "-" if value is None else f"{value * scale:+.2f}"


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "",
           numeric: Sequence[bool] | None = None, row_classes: Sequence[str] | None = None) -> str:
    """An HTML table of already-escaped cells."""
    numeric = numeric or [False] * len(headers)
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="num">{c}</td>' if numeric[j] else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f"<tr{css}>{cells}</tr>")
    return f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# --------------------------------------------------------------------------- sections


def software_and_machine(result: Result) -> dict[str, str]:
    """Software and machine facts a reader needs to judge or repeat the numbers.

    Versions and threads are those of the process writing the report; the devices come
    from the run summaries, because a report may be written on a different machine than
    the one that trained.
    """
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    devices = sorted({str(r.get("device", "unknown")) for r in result.runs})
    return {
        "ticketlab": version("ticketlab"),
        "python": sys.version.split()[0] + f" ({platform.python_implementation()})",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": version("matplotlib"),
        "platform": platform.platform(),
        "CPU count": str(os.cpu_count()),
        "torch threads (report process)": str(torch.get_num_threads()),
        "devices used (from run summaries)": ", ".join(devices),
    }


def _verdict_rules(verdicts: VerdictTable | None) -> str:
    """The criteria every verdict on the page was judged by, with their numbers."""
    criteria = verdicts.criteria if verdicts is not None else Criteria()
    family = verdicts is not None and bool(verdicts.claim_levels)  # its sentence replaces the fixed sequence's
    statements = [line for line in criteria.statements() if not (family and line.startswith("sparsest matching"))]
    statements += [verdicts.family_statement()] if verdicts is not None else []
    items = "".join(f"<li>{_e(statement)}</li>" for statement in statements)
    return (
        "<p><b>How verdicts are decided.</b> Each pruned level's ticket is compared with the dense network "
        "(level 0) on test accuracy at the early-stopping iteration (minimum validation loss), <i>paired by "
        "seed</i>: a seed's ticket, controls and dense run share initialisation and data order.</p>"
        f'<ul id="criteria">{items}</ul>'
    )


def _acc_cell(interval: Interval | None) -> str:
    """Accuracy mean on one line and its interval (or why there is none) below, escaped."""
    if interval is None or interval.mean is None:
        return "-"
    mean = f"{interval.mean * 100:.2f}"
    if interval.has_interval:
        return f'{mean}<br><span class="ci">[{interval.low * 100:.2f}, {interval.high * 100:.2f}]</span>'
    return f'{mean}<br><span class="ci">{_e(interval.note or "")}</span>'


def _verdict_section(summary: Mapping[tuple[int, str], SummaryRow], verdicts: VerdictTable | None,
                     controls: Sequence[str]) -> str:
    """The verdict table: one row of numbers per level, then a row with its criterion sentence.

    The sentence gets a full-width row of its own because it is long; squeezed into a
    column it would make every row a narrow tower of words.
    """
    alpha = verdicts.criteria.alpha if verdicts is not None else 0.05
    bound = f"{100 * (1 - alpha):g}% lower bound"
    headers = ["level", "% remaining", "seeds", "ticket acc @ES (%)<br>mean [95% CI]",
               "dense acc @ES (%)<br>mean [95% CI]", f"&Delta; ticket &minus; dense (pp)<br>mean, {bound}",
               "early-stop iter<br>ticket / dense", "verdict"]
    headers += [f"{_e(arm)} acc @ES (%)<br>&Delta; ticket &minus; {_e(arm)} (pp), {bound}; Holm p" for arm in controls]
    verdict_column = 7  # the only left-aligned (text) cell of a level row
    dense = summary.get((0, "ticket"))
    dense_txt = _acc_cell(dense.test_acc_at_early_stop) if dense else "-"

    body = []
    judged = {row.level for row in verdicts} if verdicts is not None else set()
    for level in sorted({level for level, arm in summary if arm == "ticket"} | judged):
        ticket = summary.get((level, "ticket"))
        if ticket is None:  # every ticket run of the level diverged: no numbers, only the verdict
            row = verdicts.row(level)  # type: ignore[union-attr]
            cells = [str(level)] + ["-"] * (verdict_column - 1) + [f'<span class="label-diverged">{_e(row.label)}</span>']
            cells += ["-"] * len(controls)
            body.append(f'<tr class="level-row" data-level="{level}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            body.append(f'<tr class="criterion-row"><td></td><td colspan="{len(headers) - 1}" class="criterion">'
                        f"{_e(row.reason)}</td></tr>")
            continue
        es = f"{ticket.early_stop_step.mean:.0f}" if ticket.early_stop_step.mean is not None else "-"
        cells = [str(level), f"{ticket.percent_remaining:.2f}", str(ticket.n_seeds),
                 _acc_cell(ticket.test_acc_at_early_stop), dense_txt]
        classes = ["level-row"]
        row = _row_or_none(verdicts, level)
        criterion = None
        if level == 0:
            cells += ["-", es, '<span class="label-dense">dense (reference)</span>']
        elif row is None:
            cells += ["-", es, "no verdict"]
            criterion = "no dense run shares a seed with this level"
        else:
            label = f'<span class="label-{row.label.replace(" ", "-")}">{_e(row.label)}</span>'
            if row.is_sparsest_matching:
                label += '<br><span class="star">&#9733; sparsest matching</span>'
                classes.append("sparsest")
            criterion = row.reason
            if not row.in_sequence and row.matching:
                criterion += " (past the first non-matching level: outside the headline's claim)"
            if row.unpaired_seeds:
                criterion += f" (seeds without a dense pair, left out: {list(row.unpaired_seeds)})"
            dense_es = summary[(0, "ticket")].early_stop_step.mean if dense else None
            es += f" / {dense_es:.0f}" if dense_es is not None else ""
            cells += [_bound_cell(row.accuracy), es, label]
        for arm in controls:
            control = summary.get((level, arm))
            test = row.controls.get(arm) if row is not None else None
            if control is None:
                cells.append("-")
                continue
            text = _acc_cell(control.test_acc_at_early_stop)
            if test is not None:
                verdict = {True: "beats", False: "does not beat", None: "no claim"}[test.beats]
                p_holm = _p(test.p_holm) if test.p_holm is not None else "n/a"
                text += (f'<br><span class="ci">&Delta; {_bound_cell(test.test)}; p = {_e(p_holm)}</span>'
                         f'<br><b>{_e(verdict)}</b>')
            cells.append(text)
        tds = "".join(f"<td>{c}</td>" if i == verdict_column else f'<td class="num">{c}</td>'
                      for i, c in enumerate(cells))
        body.append(f'<tr class="{" ".join(classes)}" data-level="{level}">{tds}</tr>')
        if criterion is not None:
            body.append(f'<tr class="criterion-row{" sparsest" if "sparsest" in classes else ""}">'
                        f'<td></td><td colspan="{len(headers) - 1}" class="criterion">{_e(criterion)}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in headers)
    return (f'<div class="scroll"><table id="verdict-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _row_or_none(verdicts: VerdictTable | None, level: int) -> LevelVerdict | None:
    if verdicts is None or level == verdicts.dense_level:
        return None
    try:
        return verdicts.row(level)
    except KeyError:
        return None


def _bound_cell(test: Any) -> str:
    """``+0.12 (&ge; -0.05)``: a paired mean difference in points and its one-sided bound."""
    if test is None or test.mean is None:
        return "-"
    text = _signed(test.mean)
    return text + (f" (&ge; {_signed(test.bound)})" if test.bound is not None else " (1 seed)")


def _headline(result: Result, summary: Mapping[tuple[int, str], SummaryRow], verdicts: VerdictTable | None) -> str:
    n_seeds = len({r["seed"] for r in result.runs})
    n_units = len(all_units(result.config))
    parts = []
    if verdicts is not None and len(verdicts):
        parts.append(f"<b>{_e(verdicts.headline())}</b>")
    else:
        parts.append("No pruned level has finished yet, so there is no verdict.")
    parts.append(f"{n_seeds} seed{'s' if n_seeds != 1 else ''}, levels {min(result.levels())}&ndash;"
                 f"{max(result.levels())}, {len(result.runs)} of {n_units} training units finished.")
    min_seeds = verdicts.criteria.min_seeds if verdicts is not None else Criteria().min_seeds
    if n_seeds == 1:
        parts.append("With 1 seed no confidence interval can be computed and no verdict is given.")
    if n_seeds < min_seeds:
        parts.append(f"Verdicts need at least {min_seeds} seeds: the numbers are shown without a claim.")
    if len(result.runs) < n_units:
        parts.append("The experiment is incomplete; run it again to finish it, then rewrite this report.")
    return f'<p class="headline">{" ".join(parts)}</p>'


def _layer_section(runs: Sequence[dict[str, Any]]) -> str:
    from ticketlab.report.figures import layer_percentages

    per_level = layer_percentages(runs)
    names: list[str] = []
    for _, layers in per_level.values():
        names += [n for n in layers if n not in names]
    headers = ["level", "whole network"] + [_e(n) for n in names]
    rows = []
    for level, (overall, layers) in per_level.items():
        rows.append([str(level), f"{overall:.2f}"] + [f"{layers[n]:.2f}" if n in layers else "-" for n in names])
    return ("<p>% of weights remaining per prunable layer, ticket arm (mean over seeds).</p>"
            + _table(headers, rows, attrs=' id="layer-table"', numeric=[True] * len(headers)))


def _wall_time_section(runs: Sequence[dict[str, Any]]) -> str:
    headers = ["level", "units", "total (s)", "mean per unit (s)", "evaluating", "arms"]
    rows = []
    total, evaluating, count = 0.0, 0.0, 0
    for level in sorted({r["level"] for r in runs}):
        times = [float(r.get("wall_time_s") or 0.0) for r in runs if r["level"] == level]
        evals = [float(r.get("eval_time_s") or 0.0) for r in runs if r["level"] == level]
        arms = sorted({r["arm"] for r in runs if r["level"] == level}, key=lambda a: (a != "ticket", a))
        rows.append([str(level), str(len(times)), _seconds(sum(times)), _seconds(sum(times) / len(times)),
                     _share(sum(evals), sum(times)), _e(", ".join(arms))])
        total += sum(times)
        evaluating += sum(evals)
        count += len(times)
    rows.append(["<b>all</b>", str(count), f"<b>{_seconds(total)}</b>", _seconds(total / max(count, 1)),
                 _share(evaluating, total), ""])
    return ("<p>Training wall time from each unit's summary (excludes data loading and process start-up; "
            "units may have run in parallel). <i>Evaluating</i>: the share of it spent on validation "
            "and test evaluations (units trained by older versions did not record it).</p>"
            + _table(headers, rows, attrs=' id="wall-time-table"', numeric=[True, True, True, True, True, False]))


def _share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole > 0 and part > 0 else "-"


def _config_section(result: Result) -> str:
    canonical = json.dumps(result.config.canonical_dict(), indent=2, sort_keys=True)
    full = json.dumps(result.config.to_dict(), indent=2, sort_keys=True)
    return (
        f"<p>Experiment <code>{_e(result.directory.name)}</code>. The canonical config lists only "
        "the settings that differ from the defaults, less <code>levels</code> and <code>name</code> (how far the "
        "chain is trained, and its label); its hash names the experiment directory.</p>"
        '<div class="columns">'
        f"<div><h3>canonical</h3><pre>{_e(canonical)}</pre></div>"
        f"<div><h3>full (defaults filled in)</h3><pre>{_e(full)}</pre></div>"
        "</div>"
    )


def _figures_section(figures: Mapping[str, bytes]) -> str:
    from ticketlab.report.figures import FIGURES

    parts = []
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        caption = FIGURES.get(name, name)
        parts.append(f'<figure id="figure-{_e(name)}"><img src="data:image/png;base64,{data}" '
                     f'alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>')
    return "".join(parts)


# --------------------------------------------------------------------------- assembly


def _comparison_section(tables: Sequence[Any]) -> str:
    """The comparison view (``ticketlab.report.compare``): this experiment beside the others given."""
    parts = ['<p class="muted">This experiment beside the others given to <code>ticketlab report --compare</code>: '
             "accuracy at equal sparsity, each ticket beside its controls, and what each cost.</p>"]
    for table in tables:
        parts.append(f"<p>{_e(table.caption)}</p>")
        numeric = [i > 0 for i in range(len(table.headers))]
        parts.append(_table([_e(h) for h in table.headers], [[_e(c) for c in row] for row in table.rows],
                            attrs=' class="comparison"', numeric=numeric))
    return "\n".join(parts)


def render_html(result: Result, figures: Mapping[str, bytes], verdicts: VerdictTable | None,
                comparison: Sequence[Any] = ()) -> str:
    """The report page as one string: everything inline, nothing fetched."""
    summary = {(row.level, row.arm): row for row in summarize(result.runs)}
    controls = sorted({arm for _, arm in summary if arm != "ticket"})
    title = f"ticketlab report: {result.config.data.dataset} / {result.config.model}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env_rows = [[_e(k), _e(v)] for k, v in software_and_machine(result).items()]
    sections = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(result.directory)} &middot; written {_e(generated)}</p>',
        _headline(result, summary, verdicts),
        "<h2>Verdicts</h2>",
        _verdict_section(summary, verdicts, controls),
        '<p class="muted">@ES: at the early-stopping iteration (minimum validation loss). '
        "Intervals are 95% Student-t intervals over seeds; pp: percentage points.</p>",
        _verdict_rules(verdicts),
        "<h2>Figures</h2>",
        _figures_section(figures),
        *(["<h2>Comparison</h2>", _comparison_section(comparison)] if comparison else []),
        "<h2>Per-layer sparsity</h2>",
        _layer_section(result.runs),
        "<h2>Wall time</h2>",
        _wall_time_section(result.runs),
        "<h2>Config</h2>",
        _config_section(result),
        "<h2>Environment</h2>",
        _table(["", "value"], env_rows, attrs=' id="environment-table"'),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        # The page may load nothing but its own inline styles and data: images; a browser
        # refuses (and logs) anything else, so the report stays offline-safe by construction.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        'style-src \'unsafe-inline\'">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(experiment_dir: str | Path, criteria: Criteria | None = None,
                 compare_with: Sequence[str | Path] = ()) -> Path:
    """Write ``<experiment_dir>/report/`` (figures, ``verdicts.json``, ``report.html``); return the HTML path.

    Works on a finished or a partly finished experiment (it reports what has finished).
    ``criteria`` are the verdict rules (default :class:`ticketlab.evidence.verdicts.Criteria`); the
    page and ``verdicts.json`` state them. ``compare_with``: other experiments shown beside this
    one in a comparison section (``ticketlab.report.compare``).
    Raises :class:`ticketlab.errors.StoreError` when ``experiment_dir`` is not an
    experiment or nothing has finished yet.
    """
    from ticketlab.report.figures import write_figures

    result = Result.load(experiment_dir)
    out = Path(experiment_dir) / REPORT_DIRNAME
    verdicts = result.verdicts(criteria)
    paths = write_figures(result, out, verdicts)
    write_json_atomic(out / "verdicts.json", verdicts.to_dict() if verdicts is not None else
                      {"rows": [], "sparsest_matching_level": None, "note": "no dense run: no verdict"})
    comparison = ()
    if compare_with:
        from ticketlab.report.compare import comparison_tables

        comparison = comparison_tables([experiment_dir, *compare_with])
    page = render_html(result, {name: path.read_bytes() for name, path in paths.items()}, verdicts, comparison)
    target = out / "report.html"
    write_text_atomic(target, page)
    return target
