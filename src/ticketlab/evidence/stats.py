"""Statistics for judging lottery tickets: intervals, one-sided paired bounds, Holm.

Every function here is pure: it takes numbers (sequences / numpy arrays or plain run records)
and returns frozen dataclasses. Nothing is trained, read or written. The distributions come
from :mod:`scipy.stats`; this module decides *which* quantity answers *which* question and
handles the degenerate cases (one seed, identical values) conservatively. The rules that turn
these numbers into verdicts live in :mod:`ticketlab.evidence.verdicts`.

Why these choices
-----------------
* **Seeds are replicates, and they are paired.** Within one seed every arm and every pruning
  level shares the data order and the original initialisation, so two arms' results for the
  same seed are correlated; a paired analysis works on the per-seed differences. The pair is
  the *seed number*, never the position in a list.
* **Student t, not a normal approximation.** Experiments use a handful of seeds; with so few
  replicates the t distribution's heavier tails are what make a 95% bound hold 95% of the time,
  and they widen as seeds get fewer, so fewer seeds make every claim harder to earn.
* **Zero variance is not infinite precision.** Accuracies are counts of test examples and
  early-stopping iterations sit on the evaluation grid, so identical per-seed differences say
  the spread is below the measurement's resolution, not that it is zero. Bounds therefore use
  a standard deviation of at least the resolution's rounding error (``resolution / sqrt(6)``,
  the standard deviation of the difference of two values each rounded to the grid).
* **Intervals stay in range.** An accuracy interval is clipped to [0, 1]; an early-stopping
  iteration's is a t interval on the log scale (:func:`positive_ci`), so it is never below 0.
* **No interval from one seed**, and JSON-safe records (``None``, never NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as _sps

__all__ = [
    "Interval",
    "PairedBound",
    "SummaryRow",
    "METRICS",
    "ACCURACY_METRICS",
    "holm_adjust",
    "index_runs",
    "is_missing",
    "jsonable",
    "mean_ci",
    "paired_bound",
    "positive_ci",
    "quantization_sd",
    "summarize",
]

#: Per-run metrics summarised by :func:`summarize`.
METRICS: tuple[str, ...] = ("test_acc_at_early_stop", "final_test_acc", "early_stop_step")
#: The metrics that are fractions in [0, 1]; their intervals are clipped to that range.
ACCURACY_METRICS: tuple[str, ...] = ("test_acc_at_early_stop", "final_test_acc")

_TICKET_ARM = "ticket"
_REQUIRED_KEYS = ("level", "arm", "seed", "percent_remaining", *METRICS)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Convert a value to plain JSON-serialisable Python (NaN/inf -> None)."""
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _as_finite_1d(values: Iterable[float] | np.ndarray, name: str = "values") -> np.ndarray:
    """Return ``values`` as a 1-D float array, refusing NaN/inf.

    Missing results must be dropped by the caller on purpose; letting a NaN
    through would silently turn every statistic into NaN.
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    return arr


def is_missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


# --------------------------------------------------------------------------
# 1. confidence intervals
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean with its Student-t confidence interval over ``n`` seeds.

    ``low``/``high`` (and ``std``) are ``None`` when ``n < 2``: one replicate
    says nothing about the spread, and callers print "no interval with 1 seed"
    rather than a NaN.  ``mean`` is ``None`` only when ``n == 0``.
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    std: float | None
    confidence: float = 0.95
    scale: Literal["linear", "log"] = "linear"

    @property
    def has_interval(self) -> bool:
        """True when an interval exists (at least two values)."""
        return self.low is not None and self.high is not None

    @property
    def half_width(self) -> float | None:
        """Half the interval's width (``None`` without an interval)."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2.0

    @property
    def note(self) -> str | None:
        """Why there is no interval, or ``None`` when there is one."""
        if self.n == 0:
            return "no values"
        if self.n == 1:
            return "no interval with 1 seed"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": jsonable(self.mean),
            "low": jsonable(self.low),
            "high": jsonable(self.high),
            "n": int(self.n),
            "std": jsonable(self.std),
            "confidence": float(self.confidence),
            "scale": self.scale,
            "has_interval": self.has_interval,
            "note": self.note,
        }


def mean_ci(
    values: Iterable[float] | np.ndarray,
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> Interval:
    """Mean and two-sided Student-t confidence interval of ``values``.

    The interval is ``mean ± t_{(1+confidence)/2, n-1} · s/√n`` (computed with
    :func:`scipy.stats.t.interval` and :func:`scipy.stats.sem`, sample standard
    deviation with ``ddof=1``).  The t distribution is used because seeds are
    few; a normal interval would be too narrow at n = 3.

    * ``n == 0``: every field is ``None`` (``n`` is 0).
    * ``n == 1``: ``mean`` is the value; ``low``, ``high`` and ``std`` are
      ``None`` and :attr:`Interval.note` says "no interval with 1 seed".
    * identical values: ``std == 0`` and ``low == high == mean`` exactly
      (scipy would return NaN for a zero scale; no warning is raised).

    * ``bounds``: the interval is clipped to this range (accuracies: (0, 1)); a mean of
      accuracies can never be above 100%, whatever two seeds' spread suggests.

    Raises ``ValueError`` for NaN/inf input or a confidence outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    arr = _as_finite_1d(values)
    n = int(arr.size)
    if n == 0:
        return Interval(mean=None, low=None, high=None, n=0, std=None, confidence=confidence)
    mean = float(np.mean(arr))
    if n == 1:
        return Interval(mean=mean, low=None, high=None, n=1, std=None, confidence=confidence)
    if np.ptp(arr) == 0.0:
        # Exactly constant: no spread, so the interval collapses to the value.
        value = float(arr[0])
        return Interval(mean=value, low=value, high=value, n=n, std=0.0, confidence=confidence)
    std = float(np.std(arr, ddof=1))
    sem = float(_sps.sem(arr, ddof=1))
    low, high = _sps.t.interval(confidence, n - 1, loc=mean, scale=sem)
    if bounds is not None:
        low, high = max(float(low), bounds[0]), min(float(high), bounds[1])
    return Interval(
        mean=mean, low=float(low), high=float(high), n=n, std=std, confidence=confidence
    )


def positive_ci(values: Iterable[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean and a confidence interval that never goes below zero, for positive quantities.

    Early-stopping iterations are positive and skewed (a run that stops late stops much later),
    so a symmetric t interval over three seeds can reach below iteration 0. This is the Student
    t interval of ``log(values)`` taken back with ``exp``: an interval of the geometric mean,
    strictly positive, wider above than below. ``mean`` stays the arithmetic mean (what tables
    and tests report), ``scale`` is ``"log"``. Values that are not all positive (never an early
    stop, which is at least one evaluation interval) fall back to :func:`mean_ci` clipped at 0.
    """
    arr = _as_finite_1d(values)
    if arr.size < 2 or np.any(arr <= 0):
        return mean_ci(arr, confidence, bounds=(0.0, math.inf))
    logs = mean_ci(np.log(arr), confidence)
    assert logs.low is not None and logs.high is not None  # n >= 2
    mean = float(np.mean(arr))
    return Interval(mean=mean, low=math.exp(logs.low), high=math.exp(logs.high), n=int(arr.size),
                    std=float(np.std(arr, ddof=1)), confidence=confidence, scale="log")


# --------------------------------------------------------------------------
# 2. one-sided bounds on paired differences, and Holm's adjustment
# --------------------------------------------------------------------------


def quantization_sd(resolution: float) -> float:
    """Standard deviation of the difference of two values each rounded to a grid of ``resolution``.

    Each rounding error is uniform on ``[-resolution/2, resolution/2]`` (variance
    ``resolution**2 / 12``); the difference of two independent ones has variance
    ``resolution**2 / 6``. A per-seed difference whose observed spread is below this is
    treated as having this spread: the data cannot show less.
    """
    if resolution < 0:
        raise ValueError(f"resolution must be >= 0, got {resolution}")
    return resolution / math.sqrt(6.0)


Side = Literal["lower", "upper"]


@dataclass(frozen=True)
class PairedBound:
    """A one-sided test on the mean of paired differences ``d = a - b`` (aligned by seed).

    ``side="lower"`` tests H0 "mean(d) <= null" against H1 "mean(d) > null" and ``bound`` is
    the one-sided ``1 - alpha`` *lower* confidence bound of mean(d); H1 is accepted exactly when
    ``bound > null`` (equivalently ``p_value < alpha``). ``side="upper"`` is the mirror image.
    ``sd`` is the standard deviation used (the observed one, or the ``sd_floor`` when that is
    larger: ``floored`` says which); ``ci`` is the two-sided ``1 - 2*alpha`` interval of the
    mean difference, for display. With fewer than 2 pairs there is no bound and no p-value.
    """

    n: int
    mean: float | None
    sd: float | None
    side: str
    null: float
    alpha: float
    bound: float | None
    p_value: float | None
    floored: bool = False

    @property
    def accepted(self) -> bool:
        """True when the data reject H0 in favour of H1 at ``alpha``."""
        return self.p_value is not None and self.p_value < self.alpha

    @property
    def ci(self) -> tuple[float | None, float | None]:
        """The two-sided ``1 - 2*alpha`` interval of the mean difference (``None`` ends with n < 2)."""
        if self.n < 2 or self.mean is None or self.sd is None:
            return (None, None)
        half = _sps.t.ppf(1.0 - self.alpha, self.n - 1) * self.sd / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}
        out["accepted"] = self.accepted
        out["ci"] = jsonable(list(self.ci))
        return out


def paired_bound(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    side: Side,
    null: float = 0.0,
    alpha: float = 0.05,
    sd_floor: float = 0.0,
) -> PairedBound:
    """One-sided paired t bound of mean(a - b) against ``null`` (see :class:`PairedBound`).

    The statistic is ``t = (mean(d) - null) / (s / sqrt(n))`` with ``s = max(sd(d), sd_floor)``
    and ``n - 1`` degrees of freedom; without the floor this is exactly scipy's one-sided
    ``ttest_rel`` (a test checks). The floor (see :func:`quantization_sd`) keeps a constant
    difference from being "certain" (p = 0) with two or three seeds.
    """
    if side not in ("lower", "upper"):
        raise ValueError(f"side must be 'lower' or 'upper', got {side!r}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if sd_floor < 0:
        raise ValueError(f"sd_floor must be >= 0, got {sd_floor}")
    x, y = _as_finite_1d(a, "a"), _as_finite_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same length, got {x.size} and {y.size}")
    d = x - y
    n = int(d.size)
    mean = float(np.mean(d)) if n else None
    if n < 2:
        return PairedBound(n=n, mean=mean, sd=None, side=side, null=null, alpha=alpha, bound=None, p_value=None)
    observed = float(np.std(d, ddof=1))
    sd = max(observed, sd_floor)
    if sd == 0.0:  # no floor and no spread: the limit of an infinitely precise experiment
        beyond = (mean > null) if side == "lower" else (mean < null)
        return PairedBound(n=n, mean=mean, sd=0.0, side=side, null=null, alpha=alpha, bound=mean,
                           p_value=0.0 if beyond else 1.0)
    se = sd / math.sqrt(n)
    t_crit = float(_sps.t.ppf(1.0 - alpha, n - 1))
    t_stat = (mean - null) / se
    if side == "lower":
        bound, p = mean - t_crit * se, float(_sps.t.sf(t_stat, n - 1))
    else:
        bound, p = mean + t_crit * se, float(_sps.t.cdf(t_stat, n - 1))
    return PairedBound(n=n, mean=mean, sd=sd, side=side, null=null, alpha=alpha, bound=float(bound),
                       p_value=p, floored=sd_floor > observed)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sort ascending; the i-th smallest (1-based) becomes ``min(1, (m - i + 1) * p_(i))``, made
    non-decreasing along the sorted order. Rejecting where the adjusted p is below alpha
    controls the family-wise error rate at alpha under any dependence between the tests.
    """
    p = [float(v) for v in p_values]
    if any(not 0.0 <= v <= 1.0 for v in p):
        raise ValueError(f"p-values must lie in [0, 1], got {p}")
    m = len(p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted

# --------------------------------------------------------------------------
# 5. run records -> tables
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryRow:
    """Summary of one (level, arm) cell over its seeds.

    ``n_seeds`` counts runs; each metric's :class:`Interval` has its own
    ``n``, which is smaller when some runs lack that metric (None/NaN).
    """

    level: int
    arm: str
    percent_remaining: float
    n_seeds: int
    seeds: tuple[Any, ...]
    test_acc_at_early_stop: Interval
    final_test_acc: Interval
    early_stop_step: Interval

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": int(self.level),
            "arm": self.arm,
            "percent_remaining": jsonable(self.percent_remaining),
            "n_seeds": int(self.n_seeds),
            "seeds": jsonable(list(self.seeds)),
            "test_acc_at_early_stop": self.test_acc_at_early_stop.to_dict(),
            "final_test_acc": self.final_test_acc.to_dict(),
            "early_stop_step": self.early_stop_step.to_dict(),
        }


def _arm_sort_key(arm: str) -> tuple[int, str]:
    return (0 if arm == _TICKET_ARM else 1, arm)


def index_runs(runs: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], dict[Any, Mapping[str, Any]]]:
    """Group runs by (level, arm) and then by seed; reject duplicates.

    A duplicate (level, arm, seed) would make seed pairing ambiguous, so it
    is an error rather than something to average away.
    """
    cells: dict[tuple[int, str], dict[Any, Mapping[str, Any]]] = {}
    for i, run in enumerate(runs):
        missing = [k for k in _REQUIRED_KEYS if k not in run]
        if missing:
            raise KeyError(f"run record #{i} lacks keys {missing}: {dict(run)!r}")
        key = (int(run["level"]), str(run["arm"]))
        by_seed = cells.setdefault(key, {})
        seed = run["seed"]
        if seed in by_seed:
            raise ValueError(f"duplicate run for level={key[0]} arm={key[1]!r} seed={seed!r}")
        by_seed[seed] = run
    return cells


def sorted_seeds(seeds: Iterable[Any]) -> list[Any]:
    """Seeds in a stable order, whatever their type (ints and strings may both name seeds)."""
    return sorted(seeds, key=lambda s: (str(type(s)), s))


def _present(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if not is_missing(v)]


def summarize(runs: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[SummaryRow]:
    """Per-(level, arm) mean and Student-t interval of each metric.

    Runs are grouped by *both* level and arm, never pooled across either:
    arms are different treatments and levels different sparsities, and mixing
    them would average away exactly the differences being measured.

    Each record needs the keys ``level``, ``arm``, ``seed``,
    ``percent_remaining``, ``test_acc_at_early_stop``, ``final_test_acc`` and
    ``early_stop_step``.  Runs whose ``status`` is ``"diverged"`` are left out (their
    numbers describe a broken training).  A metric that is ``None``/NaN for a run is left out
    of that metric's interval (its ``n`` shows it).  ``percent_remaining`` is
    the mean over the cell's runs (identical across seeds for ticket arms).

    Rows are sorted by level, then ``ticket`` first, then other arms by name.
    Raises ``ValueError`` on a duplicate (level, arm, seed).
    """
    cells = index_runs(r for r in runs if not is_diverged(r))
    rows: list[SummaryRow] = []
    for level, arm in sorted(cells, key=lambda k: (k[0], _arm_sort_key(k[1]))):
        by_seed = cells[(level, arm)]
        recs = list(by_seed.values())
        pct = _present(r["percent_remaining"] for r in recs)
        intervals = {
            m: mean_ci(_present(r[m] for r in recs), confidence=confidence, bounds=(0.0, 1.0))
            if m in ACCURACY_METRICS else positive_ci(_present(r[m] for r in recs), confidence)
            for m in METRICS
        }
        rows.append(
            SummaryRow(
                level=level,
                arm=arm,
                percent_remaining=float(np.mean(pct)) if pct else math.nan,
                n_seeds=len(recs),
                seeds=tuple(sorted_seeds(by_seed)),
                **intervals,
            )
        )
    return rows


def is_diverged(run: Mapping[str, Any]) -> bool:
    """Whether a run record says its training diverged (non-finite loss or weights)."""
    return run.get("status") == "diverged"
