"""Progress as lines: one log record per finished training, with an estimate of the time left.

A terminal gets live bars (``cli._progress_display``); everywhere else (the Python API, a
notebook, a job's log file, a pipe) a long run would otherwise be silent for hours. So each
finished unit is one ``INFO`` record on the ``ticketlab`` logger, which any logging setup can
route, filter or silence (``logging.getLogger("ticketlab").setLevel(logging.WARNING)``, or
``RunOptions(progress=False)``). When nothing is configured to show it (no handler anywhere),
the run shows it on stderr itself, for its own duration only.

The estimate counts only units trained in this run: finished units a resumed run skips cost
nothing and would make the rate look absurdly fast. It is elapsed time per trained unit times
the units left, which with parallel workers already reflects the parallelism.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import time
from typing import Any, Callable, Iterator

from ticketlab.config import Config
from ticketlab.experiment.schedule import all_units
from ticketlab.experiment.unit import Unit
from ticketlab.store.layout import Store

logger = logging.getLogger("ticketlab")

OnDone = Callable[[Unit, dict], None]


def finished_units(config: Config, store: Store) -> set[Unit]:
    """The units of ``config`` already finished in ``store`` (a resumed run skips them)."""
    return {u for u in all_units(config) if store.unit(u.replicate, u.level, u.arm).done()}


def clock_text(seconds: float) -> str:
    """``h:mm:ss``, as rich's bars show times."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


class Estimate:
    """Units done of ``total`` and the time left, from the units trained in this run only."""

    def __init__(self, total: int, done_before: set[Unit], clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.done_before, self.clock = total, done_before, clock
        self.started = clock()
        self.done = len(done_before)
        self.trained = 0
        self.seen: set[Unit] = set(done_before)

    def finished(self, unit: Unit) -> bool:
        """Count ``unit`` as finished; False for one finished before this run (already counted)."""
        if unit in self.done_before:
            return False
        self.seen.add(unit)
        self.done += 1
        self.trained += 1
        return True

    def blocked(self, units: list[Unit]) -> None:
        """``units`` will not train (their replicate's ticket diverged below them): not left to do."""
        self.total -= sum(unit not in self.seen for unit in units)

    def eta(self) -> str:
        """``ETA h:mm:ss`` (``ETA -`` before any unit trained), or ``all done in h:mm:ss``."""
        elapsed = self.clock() - self.started
        left = max(0, self.total - self.done)
        if not left:
            return f"all done in {clock_text(elapsed)}"
        return f"ETA {clock_text(elapsed / self.trained * left)}" if self.trained else "ETA -"


class UnitLines:
    """Logs one line per finished unit: ``[k/N] <unit> finished in S s (<score>); L left, ETA h:mm:ss``."""

    def __init__(self, estimate: Estimate, units: list[Unit]) -> None:
        self.estimate, self.units = estimate, units
        if estimate.done_before and estimate.done < estimate.total:  # a finished experiment re-run stays silent
            logger.info("resuming: %d of %d trainings already finished", estimate.done, estimate.total)

    def __call__(self, unit: Unit, summary: dict[str, Any]) -> None:
        estimate = self.estimate
        if not estimate.finished(unit):
            return  # a resumed run's skipped unit: its stored summary only comes back
        if unit.arm == "ticket" and summary.get("status", "ok") != "ok":  # as the scheduler drops them
            estimate.blocked([u for u in self.units if u.replicate == unit.replicate and u.level > unit.level])
        left = estimate.total - estimate.done
        logger.info("[%d/%d] %s %s%s; %s", estimate.done, estimate.total, unit, _outcome(summary), _score(summary),
                    f"{left} left, {estimate.eta()}" if left else estimate.eta())


def _outcome(summary: dict[str, Any]) -> str:
    word = "finished" if summary.get("status", "ok") == "ok" else "diverged"
    seconds = summary.get("wall_time_s")
    return f"{word} in {seconds:.1f} s" if isinstance(seconds, (int, float)) else word


def _score(summary: dict[str, Any]) -> str:
    value = summary.get("test_acc_at_early_stop")
    if not isinstance(value, (int, float)):
        return ""
    return f" (test {summary.get('metric') or 'score'} {value:.4g} at early stop)"


@contextlib.contextmanager
def progress_lines(config: Config, store: Store, on_done: OnDone | None, enabled: bool) -> Iterator[OnDone | None]:
    """``on_done`` extended by one log line per finished unit while the run lasts (``enabled``)."""
    if not enabled:
        yield on_done
        return
    with _shown():
        units = all_units(config)
        lines = UnitLines(Estimate(len(units), finished_units(config, store)), units)

        def both(unit: Unit, summary: dict) -> None:
            lines(unit, summary)
            if on_done is not None:
                on_done(unit, summary)

        yield both


@contextlib.contextmanager
def _shown() -> Iterator[None]:
    """A stderr handler on the ``ticketlab`` logger while no logging is configured anywhere
    (a plain script, the CLI writing to a file); a configured application keeps its own rules."""
    if logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ticketlab: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
