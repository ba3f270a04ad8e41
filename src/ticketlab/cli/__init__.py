"""Command line: argument parsing and printing only; all work is done by ``ticketlab.api``.

Every user error (bad flag, bad config, missing data, locked directory, damaged results) ends
as one line on stderr and exit code 2, never a traceback. Warnings (a damaged file set aside,
an experiment without checksums) are one line each on stderr.

Exit codes: 0 success; 1 ``check`` found damage or ``verify``'s claim failed; 2 bad input or unusable results (also
``check`` of a directory whose config.json is itself unusable);
3 ``run`` finished but some training diverged (each named in one line); 130 interrupted;
143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ticketlab.cli import flags
from ticketlab.api import Result, run as run_experiment
from ticketlab.experiment.audit import scan
from ticketlab.config import Config, RunOptions, check_threads, load_config_file
from ticketlab.errors import ConfigError, IntegrityWarning, TicketlabError
from ticketlab.export import FORMATS as EXPORT_FORMATS
from ticketlab.experiment.schedule import all_units, blocked, diverged_levels
from ticketlab.pruning.transfer import transfer_config
from ticketlab.store.layout import Store, reset_warnings
from ticketlab.report import write_report
from ticketlab.evidence.tables import markdown_table, rich_table
from ticketlab.evidence.verdicts import Criteria

# Newer typer vendors click (its errors derive from typer.TyperException); older typer uses click.
_CLI_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(typer, "TyperException", None),) if cls is not None
)
try:
    import click as _click

    _CLI_ERRORS += (_click.ClickException,)
    _ABORTS: tuple[type[BaseException], ...] = (typer.Abort, _click.exceptions.Abort, KeyboardInterrupt)
except ImportError:  # pragma: no cover
    _ABORTS = (typer.Abort, KeyboardInterrupt)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Find, verify and ship lottery tickets.")
# Tables are wide; when output goes to a file or pipe, don't squeeze them to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 400)


def _csv(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


# The verdict rules, shared by run, show and report: they judge stored results and never change
# what is trained, so they are options of the reading commands, not part of the config.
MARGIN = typer.Option(0.5, "--margin", help="Matching margin delta in accuracy points (rule 'margin').")
MATCHING_RULE = typer.Option("margin", "--matching-rule", help="margin (lower bound >= -delta) or std (Frankle 2020: within 1 sd of dense).")
ALPHA = typer.Option(0.05, "--alpha", help="One-sided error level of every bound and test.")
MIN_SEEDS = typer.Option(3, "--min-seeds", help="Fewest paired seeds for a verdict (at least 2).")


def _criteria(margin: float, rule: str, alpha: float, min_seeds: int) -> Criteria:
    """The verdict criteria from CLI flags; a bad value is a one-line ConfigError."""
    try:
        return Criteria(rule=rule, margin=margin / 100.0, alpha=alpha, min_seeds=min_seeds)  # type: ignore[arg-type]
    except ValueError as err:
        hint = " (--margin is in accuracy points, e.g. 0.5)" if "margin" in str(err) else ""
        raise ConfigError(f"verdict criteria: {err}{hint}") from None


WIDE = typer.Option(False, "--wide", help="The full table (every interval, each control, all reasons) instead of "
                    "the compact one that fits 80 columns.")


def _print_table(result: Result, criteria: Criteria, wide: bool = False) -> None:
    title = f"{result.config.data.dataset} / {result.config.model}"
    verdicts = result.verdicts(criteria)
    console.print(rich_table(result.runs, title=title, verdicts=verdicts, wide=wide))
    undecided = verdicts.undecided_levels() if verdicts is not None else []
    if undecided:  # more seeds could decide these levels: point at the command that says how many
        console.print(f"undecided: level(s) {', '.join(map(str, undecided))} (too few seeds, or a mean within the "
                      f"margin whose bound is not); `ticketlab plan {result.directory}` estimates the seeds a "
                      "decided claim needs", highlight=False, markup=False, soft_wrap=True)


def _int_csv(value: Optional[str], flag: str) -> Optional[list[int]]:
    """``"3,7,12"`` as [3, 7, 12]; a part that is not an integer is a one-line ConfigError."""
    parts = _csv(value)
    if parts is None:
        return None
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise ConfigError(f"{flag} takes comma-separated integers like 3,7,12, got {value!r}") from None


def run_command(
    config_file: Optional[Path] = typer.Argument(None, help="TOML or JSON experiment config; flags override it."),
    *,
    transfer_from: Optional[Path] = typer.Option(None, help="Retrain the ticket masks of this experiment directory under the flags given here (its config is the base).", rich_help_panel=flags.PANELS[""]),
    report: bool = typer.Option(True, help="Write the HTML report (figures, verdicts) when the run ends."),
    margin: float = MARGIN,
    matching_rule: str = MATCHING_RULE,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
    **fields: Any,
) -> None:
    """Run (or resume) an IMP experiment and print its per-level table.

    Every config field is a flag: --levels, --train.lr (or --lr), --prune.nm-group, ...; a flag
    overrides the config file, and its value is checked with the file's."""
    criteria = _criteria(margin, matching_rule, alpha, min_seeds)
    raw: dict[str, Any] = load_config_file(config_file) if config_file else {}
    if transfer_from is not None:
        raw = transfer_config(transfer_from, raw)
    config = Config.from_dict(flags.apply(raw, flags.given(flags.CONFIG_FLAGS, fields)))
    options = RunOptions(**flags.given(flags.OPTION_FLAGS, fields))

    started = time.perf_counter()
    with _progress_display(config, enabled=options.progress, root=options.root) as (on_progress, on_done):
        result = run_experiment(config, options, progress=on_progress, on_done=on_done, criteria=criteria)
    _print_table(result, criteria, wide=options.wide)
    console.print(f"experiment: {result.directory}  (wall time {time.perf_counter() - started:.1f} s)", soft_wrap=True)
    if report:
        console.print(f"report: {write_report(result.directory, criteria)}")
    diverged = result.diverged()
    for record in diverged:
        _error_line(record["message"])
    if diverged:
        sys.exit(EXIT_DIVERGED)


def _with_field_flags(command: Any) -> Any:
    """``command`` with one keyword parameter per config and run-option field in place of its
    ``**fields`` (after its argument): typer reads ``__signature__``, so the flags, their types
    and their help come from the dataclasses (``ticketlab.cli.flags``)."""
    signature = inspect.signature(command)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    generated = (flags.parameters(flags.CONFIG_FLAGS, flags.config_panel)
                 + flags.parameters(flags.OPTION_FLAGS, lambda _: flags.OPTIONS_PANEL))
    command.__signature__ = signature.replace(parameters=fixed[:1] + generated + fixed[1:])
    return command


app.command("run", context_settings={"token_normalize_func": flags.normalize})(_with_field_flags(run_command))


@app.command("compare")
def compare_command(
    experiment_dirs: list[Path] = typer.Argument(..., help="Experiment directories (e.g. IMP and methods at initialisation)."),
) -> None:
    """Accuracy at equal sparsity across experiments, each ticket beside its controls, and the cost of each."""
    from ticketlab.report.compare import comparison_markdown

    console.print(comparison_markdown([str(d) for d in experiment_dirs]), markup=False, highlight=False, soft_wrap=True)


@app.command("stability")
def stability_command(
    experiment_dir: Path = typer.Argument(..., help="An experiment directory."),
    levels: str = typer.Option("0", help="Comma-separated levels (0 = dense) whose masks are analysed."),
    k: str = typer.Option("0", "--k", help="Comma-separated rewinding iterations k."),
    points: int = typer.Option(30, help="Interpolation points between the two copies, endpoints included (the paper's 30)."),
    threshold: float = typer.Option(2.0, help="Stable when the barrier's one-sided 95% upper bound is at or below this (points)."),
    replicates: Optional[str] = typer.Option(None, help="Comma-separated replicates (default: all)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(1, help="Torch threads."),
) -> None:
    """Linear mode connectivity (Frankle et al. 2020): the error barrier between two copies
    trained from iteration k, per level and k, with the stable verdict and a barrier-vs-k plot."""
    import torch

    from ticketlab.studies.stability import run_stability, stability_markdown

    check_threads(threads, "--threads")
    torch.set_num_threads(threads)
    rows = run_stability(experiment_dir, _int_csv(levels, "--levels"), _int_csv(k, "--k"), points,
                         _int_csv(replicates, "--replicates"), threshold, device,
                         progress=lambda what: console.print(f"stability: {what}", highlight=False, markup=False))
    console.print(stability_markdown(rows), markup=False, highlight=False, soft_wrap=True)
    console.print(f"plot: {experiment_dir / 'stability' / 'barrier_vs_k.png'}", highlight=False, markup=False)


@app.command("check")
def check_command(experiment_dir: Path = typer.Argument(..., help="An experiment directory.")) -> None:
    """Verify every file of an experiment; print what is damaged and what a re-run recomputes."""
    store = Store(experiment_dir)
    config = store.read_config()
    findings = scan(store, config)
    if not store.legacy:
        from ticketlab.studies.stability_files import stability_findings

        findings += stability_findings(store)
    units = all_units(config)
    records = [record for u in units if (record := _readable_summary(store, store.unit(u.replicate, u.level, u.arm)))]
    if config.is_sequential:  # the trainings its design has asked for so far, not max_seeds' worth
        from ticketlab.experiment.looks import state_of

        state = state_of(store, config, records)
        done = {(r["replicate"], r["level"], r["arm"]) for r in records}
        asked = set(state.next_units) if state is not None else set()
        units = [u for u in units if (u.replicate, u.level, u.arm) in done or u in asked]
    diverged = diverged_levels(records)
    blocked_units = sum(blocked(u, diverged) for u in units)
    for finding in findings:
        console.print(f"damaged: {finding.line(experiment_dir)}", highlight=False, markup=False, soft_wrap=True)
    verified = "not verifiable (no checksums: older format)" if store.legacy else "all checksums read"
    console.print(f"{experiment_dir}: {len(records)} of {len(units)} trainings finished "
                  f"({sum(r['status'] != 'ok' for r in records)} diverged, {blocked_units} not trained after a "
                  f"diverged ticket), {verified}; {len(findings)} damaged file(s)",
                  highlight=False, markup=False, soft_wrap=True)
    if findings:
        sys.exit(EXIT_DAMAGED)


@app.command("show")
def show_command(
    experiment_dir: Path = typer.Argument(..., help="An experiment directory."),
    margin: float = MARGIN,
    matching_rule: str = MATCHING_RULE,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
    markdown: bool = typer.Option(False, "--markdown", help="Print a GitHub markdown table (with control early stops)."),
    wide: bool = WIDE,
) -> None:
    """Print the per-level table of an experiment from disk, judged by the stated criteria."""
    criteria = _criteria(margin, matching_rule, alpha, min_seeds)
    result = Result.load(experiment_dir)
    if markdown:
        print(markdown_table(result.runs, result.verdicts(criteria)))
        return
    _print_table(result, criteria, wide=wide)
    console.print(f"experiment: {result.directory}")


@app.command("report")
def report_command(
    experiment_dir: Path = typer.Argument(..., help="An experiment directory."),
    margin: float = MARGIN,
    matching_rule: str = MATCHING_RULE,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
    compare: list[Path] = typer.Option([], "--compare", help="Another experiment to show beside this one (repeatable)."),
) -> None:
    """Write the experiment's HTML report (figures, verdicts, criteria, config) and print its table."""
    criteria = _criteria(margin, matching_rule, alpha, min_seeds)
    path = write_report(experiment_dir, criteria, compare_with=[str(p) for p in compare])
    _print_table(Result.load(experiment_dir), criteria)
    console.print(f"report: {path}")


class _progress_display:
    """Rich progress on a terminal: one bar for all trainings with the time left, one per level
    (units done), and one for the current training's iterations.

    Units a resumed run skips are counted as done from the start, and the time left counts
    only units trained now (``experiment.progress.Estimate``); rich's own estimate, from the
    last seconds' rate, has nothing to go on while one unit trains for minutes. Elsewhere (no
    terminal) the run logs one line per training instead (``api.run``).
    """

    def __init__(self, config: Config, enabled: bool, root: str | None = None) -> None:
        self.enabled = enabled and sys.stderr.isatty() or enabled == "force"
        self.config, self.root = config, root
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=err_console,
                                 transient=False)
        self.level_tasks: dict[int, Any] = {}
        self.unit_task: Any = None

    def __enter__(self):
        if not self.enabled:
            return None, None
        from ticketlab.experiment.progress import Estimate, finished_units

        units = all_units(self.config)
        before = finished_units(self.config, Store.for_config(self.config, self.root)) if self.root else set()
        estimate = Estimate(len(units), before)
        overall = self.progress.add_task("all trainings", total=len(units), completed=len(before), eta=estimate.eta())
        for level in sorted({unit.level for unit in units}):
            count = sum(unit.level == level for unit in units)
            done = sum(unit.level == level for unit in before)
            self.level_tasks[level] = self.progress.add_task(f"level {level:2d}", total=count, completed=done, eta="")
        self.unit_task = self.progress.add_task("training", total=1, visible=False, eta="")
        self.progress.start()

        def on_progress(unit, step, end):
            self.progress.update(self.unit_task, description=str(unit), completed=step, total=end, visible=True)

        def on_done(unit, summary):
            if estimate.finished(unit):
                self.progress.advance(self.level_tasks[unit.level])
                self.progress.update(overall, completed=estimate.done, eta=estimate.eta())

        return on_progress, on_done

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()


def _readable_summary(store: Store, paths) -> dict | None:
    """A finished unit's summary, or None if unfinished or damaged (``check`` lists the damage)."""
    try:
        return store.summary(paths) if paths.done() else None
    except TicketlabError:
        return None


EXIT_DAMAGED = 1
EXIT_DIVERGED = 3
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM, raised in the main thread. A BaseException, so no ``except Exception`` on the
    way up (nor click, which turns KeyboardInterrupt into Abort) swallows it: unwinding stops
    the run's workers (``ProcessPoolUnitExecutor.close``) and ``main`` prints one line."""


def _raise_terminated(signum: int, frame: object) -> None:  # noqa: ARG001
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def _sigterm_stops_cleanly() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` while the CLI runs, and restore the old handler after.

    Python's default for SIGTERM ends the process on the spot; the workers then die through
    their own links to the run, but nothing says what happened. Only the main thread can set
    a handler; elsewhere (a CLI called from a thread) the default stays.
    """
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _log_lines_on_stderr() -> Iterator[None]:
    """The ``ticketlab`` logger's lines (progress without a terminal: ``experiment.progress``)
    on stderr while a command runs, as ``ticketlab: <line>``. The CLI is the application, so
    it decides where its log goes; the logger is restored after (for a CLI called in-process)."""
    import logging

    logger = logging.getLogger("ticketlab")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ticketlab: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _error_line(message: str) -> None:
    err_console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Warnings as one line on stderr, without the source location Python adds."""
    err_console.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True)


@app.command("export")
def export_command(
    experiment_dir: Path = typer.Argument(..., help="An experiment directory."),
    level: int = typer.Option(..., "--level", help="The pruning level whose ticket to export."),
    fmt: str = typer.Option("sparse", "--format", help=f"One of {', '.join(EXPORT_FORMATS)}."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output file (default ticket_level<L>_<format>.safetensors or .onnx)."),
    replicate: int = typer.Option(0, "--replicate", help="Which replicate's ticket."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="A safetensors weights file to export instead of the final weights."),
) -> None:
    """Export a ticket as a small model, check it reproduces the masked model, and compare it with dense."""
    from ticketlab.export.ticket import export_ticket

    out = out or Path(f"ticket_level{level}_{fmt}" + (".onnx" if fmt == "onnx" else ".safetensors"))
    report = export_ticket(experiment_dir, level, fmt, out, replicate=replicate, weights=weights)
    lines = [f"{fmt} export of level {level} (replicate {replicate}): {report.path}  "
             f"(max |output - masked model| = {report.max_abs_diff:.2g})",
             f"{'':12} {'dense':>12} {'export':>12} {'dense/export':>13}"]
    lines += [f"{name:12} {dense:>12,} {exported:>12,} {ratio:>12.1f}x" for name, dense, exported, ratio in report.rows()]
    if report.removed:
        inputs = report.removed.get("inputs")
        lines.append("units kept: " + ", ".join(f"{name} {a}->{b}" for name, (a, b) in report.removed["units"].items())
                     + (f"; inputs {inputs[0]}->{inputs[1]}" if inputs else ""))
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command("bench")
def bench_command(
    experiment_dir: Path = typer.Argument(..., help="An experiment directory."),
    level: int = typer.Option(..., "--level", help="The pruning level whose ticket to time."),
    replicate: int = typer.Option(0, "--replicate", help="Which replicate's ticket."),
    batches: str = typer.Option("1,256", help="Comma-separated batch sizes."),
    rounds: int = typer.Option(7, help="Interleaved timing rounds."),
    seconds: float = typer.Option(0.25, help="Target seconds per side per round."),
    threads: int = typer.Option(1, help="Torch (and onnxruntime) threads."),
) -> None:
    """Time your ticket's exports (masked, sparse, structured, ONNX) against the dense model on this
    machine: interleaved rounds, median paired speedups, file sizes."""
    import torch

    from ticketlab.export.latency import export_sides, latency_table
    from ticketlab.export.ticket import load_ticket

    check_threads(threads, "--threads")
    torch.set_num_threads(threads)
    sizes = _int_csv(batches, "--batches")
    if not sizes or min(sizes) < 1 or rounds < 1 or seconds <= 0:
        raise ConfigError("--batches must be positive integers, --rounds >= 1 and --seconds > 0")
    model, mask, example, _ = load_ticket(experiment_dir, level, replicate, max(sizes))
    sides = export_sides(model, mask, example, threads)
    console.print(f"level {level} (replicate {replicate}): {100 * mask.fraction_remaining():.2f}% of weights remain; "
                  f"{threads} thread(s)", highlight=False, markup=False)
    for line in latency_table(sides, example, sizes, rounds, seconds):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    command = typer.main.get_command(app)
    reset_warnings()
    try:
        with _sigterm_stops_cleanly(), _log_lines_on_stderr(), warnings.catch_warnings():
            warnings.simplefilter("always", IntegrityWarning)
            warnings.showwarning = _warning_line
            command.main(args=argv, prog_name="ticketlab", standalone_mode=False)
    except TicketlabError as exc:
        _error_line(str(exc))
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a write outside the store's atomic writer (a lock file, a folder) found the disk full
        _error_line(f"no space left on the device ({exc.filename or 'writing'}); free some space, or choose "
                    "another --out, and run the same command again")
        sys.exit(2)
    except _CLI_ERRORS as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty for "no arguments: help was printed"
            err_console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except _ABORTS:
        err_console.print("interrupted; run the same command again to resume", markup=False)
        sys.exit(130)
    except Terminated:
        err_console.print("terminated (SIGTERM); run the same command again to resume", markup=False)
        sys.exit(EXIT_TERMINATED)


# ---------------------------------------------------------------------------- bundle and verify
@app.command("bundle")
def bundle_command(
    experiment_dir: Path = typer.Argument(..., help="An experiment directory."),
    level: int = typer.Option(..., "--level", help="The pruning level whose ticket to bundle."),
    out: Optional[Path] = typer.Option(None, "--out", help="Bundle file (default <experiment>-levelLL.ticket.safetensors)."),
) -> None:
    """Write one level's ticket (init, mask, early-stopped and final weights, claim) as one shareable file."""
    from ticketlab.bundle.pack import make_bundle

    console.print(f"bundle: {make_bundle(experiment_dir, level, out)}", highlight=False, markup=False, soft_wrap=True)


@app.command("verify")
def verify_command(
    bundle_file: Path = typer.Argument(..., help="A ticket bundle (from `ticketlab bundle`)."),
    controls: Optional[str] = typer.Option(None, help="Comma-separated control arms to train beside the ticket (evidence)."),
    seeds: int = typer.Option(0, help="New seeds to run through IMP to the bundle's level (evidence)."),
    workdir: Optional[Path] = typer.Option(None, help="Keep the re-trained experiment here (default: a temporary folder)."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
) -> None:
    """Re-train a bundled ticket and check its claim; exit 1 when the claim fails."""
    from rich.table import Table

    from ticketlab.bundle.verification import claim_line, verify

    outcome = verify(bundle_file, _csv(controls), seeds, workdir, device)
    console.print(claim_line(outcome.bundle), highlight=False, markup=False, soft_wrap=True)
    table = Table(title=f"{bundle_file.name}: level {outcome.bundle.level}, {outcome.mode} check")
    for column in ("check", "claimed", "measured", "result"):
        table.add_column(column)
    words = {True: "match", False: "MISMATCH", None: "evidence"}
    for check in outcome.checks:
        table.add_row(check.what, str(check.claimed), str(check.measured), words[check.ok])
    console.print(table)
    console.print(f"{outcome.mode}: {outcome.mode_reason}", highlight=False, markup=False, soft_wrap=True)
    if not outcome.passed:
        _error_line(f"the claim of {bundle_file} failed verification (see MISMATCH above)")
        sys.exit(EXIT_DAMAGED)
    console.print(f"verified: the claim of {bundle_file} holds ({outcome.mode})", highlight=False, markup=False,
                  soft_wrap=True)


# ---------------------------------------------------------------------------- plan
@app.command("plan")
def plan_command(
    experiment_dir: Path = typer.Argument(..., help="A pilot experiment directory (2-3 seeds of a few levels)."),
    power: float = typer.Option(0.90, "--power", help="Probability the claim is decided matching if the ticket is as good as assumed."),
    margin: float = MARGIN,
    alpha: float = ALPHA,
    assumed_diff: float = typer.Option(0.0, "--assumed-diff", help="True ticket - dense difference to plan for (points)."),
    own_sd: bool = typer.Option(False, "--own-sd", help="Plan each level with its own sd instead of the pooled one."),
    upper_confidence: Optional[float] = typer.Option(None, "--upper-confidence", help="Plan with this one-sided upper confidence bound of the sd (e.g. 0.8)."),
    joint: str = typer.Option("simulation", "--joint", help="Joint power of the claim: simulation (levels share dense) or product (a lower bound, fast)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Seeds a decided claim needs, from a pilot's spread: per level and for the whole claim, with the cost."""
    import json

    from ticketlab.evidence.power import plan_from_experiment

    _criteria(margin, "margin", alpha, 3)  # the same one-line refusals as show's
    if joint not in ("simulation", "product"):
        raise ConfigError(f"--joint must be simulation or product, got {joint!r}")
    result = Result.load(experiment_dir)
    planned = plan_from_experiment(result, power, margin, alpha, assumed_diff, pool=not own_sd,
                                   upper_confidence=upper_confidence, method=joint)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(planned.to_dict(), indent=2))
        return
    for line in planned.lines():
        console.print(line, highlight=False, markup=False, soft_wrap=True)


# ---------------------------------------------------------------------------- list
@app.command("list")
def list_command(
    root: Path = typer.Argument(Path("experiments"), help="The folder holding experiment directories."),
    margin: float = MARGIN,
    matching_rule: str = MATCHING_RULE,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
) -> None:
    """Every experiment under ROOT: status, method, dataset, model, levels, seeds, trainings done
    and the headline verdict. Read-only; damaged or unfinished experiments are listed with a status."""
    from rich.table import Table

    from ticketlab.report.listing import list_experiments

    criteria = _criteria(margin, matching_rule, alpha, min_seeds)
    entries = list_experiments(root, criteria)
    if not entries:
        console.print(f"no experiments under {root}", highlight=False, markup=False)
        return
    table = Table(title=f"experiments under {root}")
    columns = ("experiment", "status", "method", "dataset", "model", "levels", "seeds", "done", "headline")
    for column in columns:  # the folder name whole (it is what the other commands take), the rest wraps
        table.add_column(column, no_wrap=column == "experiment", overflow="fold")
    for e in entries:
        table.add_row(e.directory.name, e.status, e.method, e.dataset, e.model, e.levels, e.seeds, e.units, e.headline)
    console.print(table)


if __name__ == "__main__":
    main()
