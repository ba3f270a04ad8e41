"""Statistics for deciding, with evidence, whether a lottery ticket is real.

Every function here is pure: it takes numbers (sequences / numpy arrays or
plain run records) and returns frozen dataclasses.  Nothing is trained, read
or written.  The statistics themselves come from :mod:`scipy.stats`; this
module only decides *which* test answers *which* question and handles the
degenerate cases (one seed, identical values) that scipy answers with NaN.

Why these choices
-----------------
* **Seeds are replicates, and they are paired.**  Within one seed every arm
  (``ticket``, ``reinit``, ``random``, ``shuffle``) and every pruning level
  shares the data order and the original initialisation, so two arms'
  results for the same seed are correlated.  Comparing them with an unpaired
  test would throw that correlation away and bury real differences in the
  seed-to-seed noise; a paired test works on the per-seed differences
  instead.  The pair is the *seed number*, never the position in a list.
* **Student t, not a normal approximation.**  Experiments use a handful of
  seeds (3-5 is typical); with so few replicates the t distribution's heavier
  tails are what make a 95% interval actually cover 95% of the time.
* **No interval from one seed.**  With one replicate the spread is unknown,
  so intervals and p-values are ``None`` (never NaN) and the result says so,
  so that a report can print "no interval with 1 seed" instead of inventing
  precision.
* **JSON-safe records.**  Every result has ``to_dict()`` returning plain
  Python values with ``None`` wherever a number is undefined (NaN and
  infinity are not valid JSON).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as _sps

__all__ = [
    "Interval",
    "PairedTest",
    "Verdict",
    "SummaryRow",
    "VerdictRow",
    "VerdictTable",
    "METRICS",
    "mean_ci",
    "paired_test",
    "control_comparison",
    "level_verdict",
    "sparsest_matching_level",
    "summarize",
    "verdict_table",
]

Alternative = Literal["two-sided", "less", "greater"]

#: Per-run metrics summarised by :func:`summarize`.
METRICS: tuple[str, ...] = ("test_acc_at_early_stop", "final_test_acc", "early_stop_step")

#: Below this many pairs the Wilcoxon signed-rank test cannot reach p < 0.05
#: (two-sided), so it is only reported from here on.
WILCOXON_MIN_N = 6

_TICKET_ARM = "ticket"
_REQUIRED_KEYS = ("level", "arm", "seed", "percent_remaining", *METRICS)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Convert a value to plain JSON-serialisable Python (NaN/inf -> None)."""
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
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


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _is_missing(x: Any) -> bool:
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
            "mean": _jsonable(self.mean),
            "low": _jsonable(self.low),
            "high": _jsonable(self.high),
            "n": int(self.n),
            "std": _jsonable(self.std),
            "confidence": float(self.confidence),
            "has_interval": self.has_interval,
            "note": self.note,
        }


def mean_ci(values: Iterable[float] | np.ndarray, confidence: float = 0.95) -> Interval:
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
    return Interval(
        mean=mean, low=float(low), high=float(high), n=n, std=std, confidence=confidence
    )


# --------------------------------------------------------------------------
# 2. paired test
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired comparison of ``a`` against ``b`` across seeds.

    ``mean_difference`` and ``ci`` describe ``a − b`` (the CI is always the
    two-sided interval of the per-seed differences, whatever the test's
    ``alternative``).  ``statistic``/``p_value`` are from the paired t-test
    (``scipy.stats.ttest_rel``); they are ``None`` with fewer than two pairs,
    and ``note`` explains any special case.  ``wilcoxon_p_value`` is a
    distribution-free cross-check, reported only with at least
    :data:`WILCOXON_MIN_N` pairs.
    """

    n: int
    mean_difference: float | None
    ci: Interval
    statistic: float | None
    p_value: float | None
    test: str = "paired t-test"
    alternative: str = "two-sided"
    wilcoxon_p_value: float | None = None
    note: str | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        """True when ``p_value < alpha`` (False when there is no p-value)."""
        return self.p_value is not None and self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": int(self.n),
            "mean_difference": _jsonable(self.mean_difference),
            "ci": self.ci.to_dict(),
            "statistic": _jsonable(self.statistic),
            "p_value": _jsonable(self.p_value),
            "test": self.test,
            "alternative": self.alternative,
            "wilcoxon_p_value": _jsonable(self.wilcoxon_p_value),
            "note": self.note,
        }


def _constant_difference_p(mean_d: float, alternative: str) -> float:
    """p-value of a t-test whose differences are all equal to ``mean_d``.

    Zero variance is the limit of an infinitely precise experiment: a non-zero
    constant difference is certain (p = 0 in its own direction, 1 in the
    other), and an all-zero difference carries no evidence at all (p = 1).
    """
    if mean_d == 0.0:
        return 1.0
    if alternative == "two-sided":
        return 0.0
    if alternative == "less":
        return 0.0 if mean_d < 0 else 1.0
    return 0.0 if mean_d > 0 else 1.0


def paired_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alternative: Alternative = "two-sided",
    confidence: float = 0.95,
) -> PairedTest:
    """Paired t-test of ``a`` against ``b``, where ``a[i]`` and ``b[i]`` share a seed.

    Why paired: within a replicate the arms share the data order and the
    original initialisation, so per-seed results are correlated; testing the
    per-seed differences ``d = a − b`` removes the seed-to-seed variation that
    an unpaired test would count as noise.  The caller is responsible for
    aligning the two sequences by seed (see :func:`verdict_table`).

    ``alternative`` is passed to :func:`scipy.stats.ttest_rel`: ``"less"``
    tests H1 "mean(a − b) < 0", ``"greater"`` H1 "mean(a − b) > 0".

    Special cases:

    * ``n < 2``: ``statistic``/``p_value`` are ``None`` and ``note`` says no
      test is possible.
    * all differences exactly zero: ``p_value = 1.0``, ``statistic = 0.0``
      (scipy returns NaN).
    * all differences equal but non-zero: ``statistic = ±inf`` (``None`` in
      ``to_dict``) and ``p_value`` 0 or 1 depending on direction.

    With ``n >= 6`` the Wilcoxon signed-rank p-value (same ``alternative``)
    is added as a check that does not assume normal differences.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    x = _as_finite_1d(a, "a")
    y = _as_finite_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same length, got {x.size} and {y.size}")
    n = int(x.size)
    d = x - y
    ci = mean_ci(d, confidence=confidence)
    mean_d = ci.mean

    if n < 2:
        reason = (
            "no pairs: no test possible"
            if n == 0
            else "only 1 seed: no test possible (a paired test needs at least 2 seeds)"
        )
        return PairedTest(
            n=n, mean_difference=mean_d, ci=ci, statistic=None, p_value=None,
            alternative=alternative, note=reason,
        )

    note: str | None = None
    if np.ptp(d) == 0.0:
        assert mean_d is not None
        p = _constant_difference_p(mean_d, alternative)
        statistic = 0.0 if mean_d == 0.0 else math.copysign(math.inf, mean_d)
        note = (
            "all differences are exactly zero: no evidence of a difference (p = 1)"
            if mean_d == 0.0
            else "all differences are identical (zero variance): t is infinite"
        )
    else:
        with warnings.catch_warnings():
            # scipy warns (and returns ±inf) when differences are equal up to
            # rounding; that answer is the right limit, the warning is noise.
            warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
            res = _sps.ttest_rel(x, y, alternative=alternative)
        statistic = float(res.statistic)
        p = float(res.pvalue)
        if math.isnan(p):  # pragma: no cover - defensive, scipy should not get here
            p = None  # type: ignore[assignment]
            note = "scipy returned NaN for the paired t-test"

    wilcoxon_p: float | None = None
    if n >= WILCOXON_MIN_N:
        if not np.any(d != 0.0):
            wilcoxon_p = 1.0
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    w = _sps.wilcoxon(x, y, alternative=alternative)
                wp = float(w.pvalue)
                wilcoxon_p = wp if math.isfinite(wp) else None
            except ValueError:
                wilcoxon_p = None

    return PairedTest(
        n=n, mean_difference=mean_d, ci=ci, statistic=statistic, p_value=p,
        alternative=alternative, wilcoxon_p_value=wilcoxon_p, note=note,
    )


def control_comparison(
    ticket: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
) -> PairedTest:
    """Two-sided paired t-test of the ticket against a control arm (ticket − control).

    A ticket is only interesting if its *specific* mask and initialisation
    matter: if ``reinit`` (same mask, fresh weights), ``random`` (random mask)
    or ``shuffle`` do as well, the "ticket" is just a sparse network.  Both
    sequences must be aligned by seed.  Two-sided, because a control beating
    the ticket is as important to see as the reverse.
    """
    return paired_test(ticket, control, alternative="two-sided", confidence=confidence)


# --------------------------------------------------------------------------
# 3. verdicts
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a pruned ticket is *matching* / *winning* against the dense network.

    See :func:`level_verdict` for the definitions.  ``criterion`` is a
    sentence saying which rule decided; ``p_value`` is the one-sided paired
    t-test's p-value (``None`` with one seed); ``mean_difference`` is
    mean(ticket − dense) over the paired seeds, *without* the margin.
    """

    matching: bool
    winning: bool
    criterion: str
    p_value: float | None
    mean_difference: float
    n: int = 0
    margin: float = 0.0
    alpha: float = 0.05
    ticket_mean: float | None = None
    dense_mean: float | None = None
    dense_ci_low: float | None = None
    ticket_early_stop_mean: float | None = None
    dense_early_stop_mean: float | None = None

    @property
    def label(self) -> str:
        """``"winning"``, ``"matching"`` or ``"not matching"``."""
        if self.winning:
            return "winning"
        if self.matching:
            return "matching"
        return "not matching"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        out["label"] = self.label
        return out


def level_verdict(
    ticket: Sequence[float] | np.ndarray,
    dense: Sequence[float] | np.ndarray,
    ticket_es: Sequence[float] | np.ndarray,
    dense_es: Sequence[float] | np.ndarray,
    margin: float = 0.0,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> Verdict:
    """Decide whether a ticket is *matching* and *winning* (the public contract).

    Inputs are aligned by seed: ``ticket[i]``, ``dense[i]``, ``ticket_es[i]``
    and ``dense_es[i]`` all come from seed ``i``'s replicate.  ``ticket`` and
    ``dense`` are test accuracies (higher is better); ``*_es`` are
    early-stopping iterations (the step of minimum validation loss).
    ``margin`` (>= 0, in accuracy units) is the drop the user is willing to
    tolerate.

    Definitions
    -----------
    **matching** — the ticket is not significantly worse than dense.

    * With >= 2 seeds, both must hold:

      1. a one-sided paired t-test of H1 "ticket < dense − margin" (i.e.
         ``ttest_rel(ticket + margin, dense, alternative="less")``) is *not*
         significant: ``p >= alpha``; and
      2. the ticket's mean accuracy is >= the lower end of dense's
         ``confidence`` (95%) Student-t interval minus ``margin``.

      The test alone is not enough: with few or noisy seeds a much worse
      ticket can escape significance, so rule 2 also requires the ticket's
      mean to be inside the range dense itself plausibly reaches.
    * With 1 seed no test is possible: matching iff
      ``ticket >= dense − margin``, and ``criterion`` says so.

    **winning** — matching AND the ticket's mean early-stopping iteration is
    <= dense's (it learns no later than dense, as in Frankle & Carbin 2019).

    Why paired: the ticket at level k and dense at level 0 of the same seed
    share data order and the original initialisation, so the per-seed
    difference is the quantity with the least noise.

    Raises ``ValueError`` when the inputs are empty, contain NaN, or differ
    in length.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    t = _as_finite_1d(ticket, "ticket")
    dn = _as_finite_1d(dense, "dense")
    tes = _as_finite_1d(ticket_es, "ticket_es")
    des = _as_finite_1d(dense_es, "dense_es")
    n = int(t.size)
    if n == 0:
        raise ValueError("level_verdict needs at least one paired seed")
    if not (dn.size == tes.size == des.size == n):
        raise ValueError(
            "ticket, dense, ticket_es and dense_es must be aligned by seed (same length), got "
            f"{t.size}, {dn.size}, {tes.size}, {des.size}"
        )

    ticket_mean = float(np.mean(t))
    dense_mean = float(np.mean(dn))
    mean_difference = float(np.mean(t - dn))
    t_es = float(np.mean(tes))
    d_es = float(np.mean(des))
    margin_txt = f" − margin {_fmt(margin)}" if margin else ""

    p_value: float | None
    dense_low: float | None
    if n == 1:
        p_value = None
        dense_low = None
        matching = bool(t[0] >= dn[0] - margin)
        relation = ">=" if matching else "<"
        criterion = (
            f"single seed, no statistical test possible: {'matching' if matching else 'not matching'} "
            f"because ticket accuracy {_fmt(ticket_mean)} {relation} dense {_fmt(dense_mean)}{margin_txt}"
        )
    else:
        test = paired_test(t + margin, dn, alternative="less", confidence=confidence)
        p_value = test.p_value
        dense_ci = mean_ci(dn, confidence=confidence)
        dense_low = dense_ci.low
        assert p_value is not None and dense_low is not None
        test_ok = p_value >= alpha
        ci_ok = ticket_mean >= dense_low - margin
        matching = bool(test_ok and ci_ok)
        conf_pct = f"{confidence * 100:g}%"
        test_txt = (
            f"one-sided paired t-test of 'ticket < dense{margin_txt}' over {n} seeds "
            f"{'not significant' if test_ok else 'significant'} "
            f"(p = {_fmt(p_value)} {'>=' if test_ok else '<'} alpha {_fmt(alpha)})"
        )
        ci_txt = (
            f"ticket mean {_fmt(ticket_mean)} {'>=' if ci_ok else '<'} lower end of dense's "
            f"{conf_pct} CI {_fmt(dense_low)}{margin_txt}"
        )
        if matching:
            criterion = f"matching: {test_txt} and {ci_txt}"
        elif not test_ok and not ci_ok:
            criterion = f"not matching: {test_txt}, and {ci_txt}"
        elif not test_ok:
            criterion = f"not matching: {test_txt}"
        else:
            criterion = f"not matching: {ci_txt}"

    winning = bool(matching and t_es <= d_es)
    if matching:
        es_txt = (
            f"ticket mean early-stop iteration {_fmt(t_es, 6)} "
            f"{'<=' if winning else '>'} dense {_fmt(d_es, 6)}"
        )
        criterion += f"; {'winning' if winning else 'not winning'}: {es_txt}"

    return Verdict(
        matching=matching,
        winning=winning,
        criterion=criterion,
        p_value=p_value,
        mean_difference=mean_difference,
        n=n,
        margin=float(margin),
        alpha=float(alpha),
        ticket_mean=ticket_mean,
        dense_mean=dense_mean,
        dense_ci_low=dense_low,
        ticket_early_stop_mean=t_es,
        dense_early_stop_mean=d_es,
    )


def sparsest_matching_level(
    levels: Sequence[int],
    percent_remaining: Sequence[float],
    verdicts: Sequence[Verdict | None],
) -> int | None:
    """The level with the fewest weights remaining whose verdict is matching.

    Matching is not monotone in sparsity with noisy seeds (a denser level can
    fail while a sparser one passes), so this looks at every level rather
    than stopping at the first failure.  ``None`` entries in ``verdicts``
    (no verdict computable) are skipped.  Ties in ``percent_remaining`` go to
    the higher level.  Returns ``None`` when no level is matching.
    """
    if not (len(levels) == len(percent_remaining) == len(verdicts)):
        raise ValueError(
            "levels, percent_remaining and verdicts must have the same length, got "
            f"{len(levels)}, {len(percent_remaining)}, {len(verdicts)}"
        )
    best: tuple[float, int] | None = None
    for level, pct, verdict in zip(levels, percent_remaining, verdicts):
        if verdict is None or not verdict.matching or _is_missing(pct):
            continue
        key = (float(pct), -int(level))
        if best is None or key < best:
            best = key
    return None if best is None else -best[1]


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
            "percent_remaining": _jsonable(self.percent_remaining),
            "n_seeds": int(self.n_seeds),
            "seeds": _jsonable(list(self.seeds)),
            "test_acc_at_early_stop": self.test_acc_at_early_stop.to_dict(),
            "final_test_acc": self.final_test_acc.to_dict(),
            "early_stop_step": self.early_stop_step.to_dict(),
        }


def _arm_sort_key(arm: str) -> tuple[int, str]:
    return (0 if arm == _TICKET_ARM else 1, arm)


def _index_runs(runs: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], dict[Any, Mapping[str, Any]]]:
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


def _present(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if not _is_missing(v)]


def summarize(runs: Iterable[Mapping[str, Any]], confidence: float = 0.95) -> list[SummaryRow]:
    """Per-(level, arm) mean and Student-t interval of each metric.

    Runs are grouped by *both* level and arm, never pooled across either:
    arms are different treatments and levels different sparsities, and mixing
    them would average away exactly the differences being measured.

    Each record needs the keys ``level``, ``arm``, ``seed``,
    ``percent_remaining``, ``test_acc_at_early_stop``, ``final_test_acc`` and
    ``early_stop_step``.  A metric that is ``None``/NaN for a run is left out
    of that metric's interval (its ``n`` shows it).  ``percent_remaining`` is
    the mean over the cell's runs (identical across seeds for ticket arms).

    Rows are sorted by level, then ``ticket`` first, then other arms by name.
    Raises ``ValueError`` on a duplicate (level, arm, seed).
    """
    cells = _index_runs(runs)
    rows: list[SummaryRow] = []
    for level, arm in sorted(cells, key=lambda k: (k[0], _arm_sort_key(k[1]))):
        by_seed = cells[(level, arm)]
        recs = list(by_seed.values())
        pct = _present(r["percent_remaining"] for r in recs)
        intervals = {m: mean_ci(_present(r[m] for r in recs), confidence=confidence) for m in METRICS}
        rows.append(
            SummaryRow(
                level=level,
                arm=arm,
                percent_remaining=float(np.mean(pct)) if pct else math.nan,
                n_seeds=len(recs),
                seeds=tuple(sorted(by_seed, key=lambda s: (str(type(s)), s))),
                **intervals,
            )
        )
    return rows


@dataclass(frozen=True)
class VerdictRow:
    """One pruning level's verdict against dense plus its control comparisons.

    ``verdict`` is ``None`` (and ``note`` says why) when the level shares no
    seed with the dense runs.  ``controls`` maps each control arm present at
    this level to the two-sided paired test of ticket − control over the
    seeds both have (``control_seeds``).
    """

    level: int
    percent_remaining: float
    seeds: tuple[Any, ...]
    verdict: Verdict | None
    controls: dict[str, PairedTest] = field(default_factory=dict)
    control_seeds: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    unpaired_seeds: tuple[Any, ...] = ()
    is_sparsest_matching: bool = False
    note: str | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def label(self) -> str | None:
        return None if self.verdict is None else self.verdict.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": int(self.level),
            "percent_remaining": _jsonable(self.percent_remaining),
            "n_seeds": self.n_seeds,
            "seeds": _jsonable(list(self.seeds)),
            "label": self.label,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "controls": {k: v.to_dict() for k, v in self.controls.items()},
            "control_seeds": {k: _jsonable(list(v)) for k, v in self.control_seeds.items()},
            "unpaired_seeds": _jsonable(list(self.unpaired_seeds)),
            "is_sparsest_matching": bool(self.is_sparsest_matching),
            "note": self.note,
        }


@dataclass(frozen=True)
class VerdictTable:
    """Rows of :func:`verdict_table` plus the sparsest matching level.

    Iterating, ``len()`` and indexing act on ``rows``, so it can be used as
    the list of row records directly.
    """

    rows: tuple[VerdictRow, ...]
    sparsest_matching_level: int | None
    dense_level: int = 0
    metric: str = "test_acc_at_early_stop"
    margin: float = 0.0
    alpha: float = 0.05

    def __iter__(self) -> Iterator[VerdictRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> VerdictRow:
        return self.rows[index]

    def row(self, level: int) -> VerdictRow:
        """The row for ``level`` (``KeyError`` if absent)."""
        for r in self.rows:
            if r.level == level:
                return r
        raise KeyError(level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dense_level": int(self.dense_level),
            "metric": self.metric,
            "margin": float(self.margin),
            "alpha": float(self.alpha),
            "sparsest_matching_level": self.sparsest_matching_level,
            "rows": [r.to_dict() for r in self.rows],
        }


def _seed_values(
    by_seed: Mapping[Any, Mapping[str, Any]], keys: Sequence[str]
) -> dict[Any, tuple[float, ...]]:
    """seed -> values of ``keys`` for the runs where all of them are present."""
    out: dict[Any, tuple[float, ...]] = {}
    for seed, run in by_seed.items():
        vals = [run[k] for k in keys]
        if any(_is_missing(v) for v in vals):
            continue
        out[seed] = tuple(float(v) for v in vals)
    return out


def _sorted_seeds(seeds: Iterable[Any]) -> list[Any]:
    return sorted(seeds, key=lambda s: (str(type(s)), s))


def verdict_table(
    runs: Iterable[Mapping[str, Any]],
    dense_arm_level: int = 0,
    margin: float = 0.0,
    alpha: float = 0.05,
    metric: str = "test_acc_at_early_stop",
    confidence: float = 0.95,
) -> VerdictTable:
    """Verdict of every pruned level's ticket against dense, with control tests.

    Dense is the ``ticket`` arm at ``dense_arm_level`` (level 0: no weights
    pruned yet).  For each other level that has ``ticket`` runs:

    * the ticket's :func:`level_verdict` against dense on ``metric`` and
      ``early_stop_step``, **paired by seed number** — only seeds present (with
      both values) in both are used, in sorted seed order; seeds found on one
      side only are listed in ``unpaired_seeds``.  Input order never matters.
    * for each control arm at that level (every arm other than ``ticket``),
      the two-sided paired test of ticket − control on ``metric`` over the
      seeds both have (:func:`control_comparison`).

    The result also names the sparsest matching level (fewest weights
    remaining), and flags its row.  Raises ``ValueError`` if there are no
    ``ticket`` runs at ``dense_arm_level``.
    """
    if metric not in ("test_acc_at_early_stop", "final_test_acc"):
        raise ValueError(f"metric must be an accuracy metric, got {metric!r}")
    cells = _index_runs(runs)
    dense_cell = cells.get((dense_arm_level, _TICKET_ARM))
    if not dense_cell:
        raise ValueError(f"no '{_TICKET_ARM}' runs at dense level {dense_arm_level}")
    dense_vals = _seed_values(dense_cell, (metric, "early_stop_step"))

    levels = sorted({lvl for (lvl, arm) in cells if arm == _TICKET_ARM and lvl != dense_arm_level})
    draft: list[dict[str, Any]] = []
    for level in levels:
        ticket_cell = cells[(level, _TICKET_ARM)]
        ticket_vals = _seed_values(ticket_cell, (metric, "early_stop_step"))
        common = _sorted_seeds(set(ticket_vals) & set(dense_vals))
        unpaired = _sorted_seeds(set(ticket_vals) ^ set(dense_vals))
        pct = _present(r["percent_remaining"] for r in ticket_cell.values())

        verdict: Verdict | None = None
        note: str | None = None
        if common:
            verdict = level_verdict(
                ticket=[ticket_vals[s][0] for s in common],
                dense=[dense_vals[s][0] for s in common],
                ticket_es=[ticket_vals[s][1] for s in common],
                dense_es=[dense_vals[s][1] for s in common],
                margin=margin,
                alpha=alpha,
                confidence=confidence,
            )
        else:
            note = f"no seed shared with dense level {dense_arm_level}: no verdict"

        controls: dict[str, PairedTest] = {}
        control_seeds: dict[str, tuple[Any, ...]] = {}
        for (lvl, arm), cell in sorted(cells.items(), key=lambda kv: _arm_sort_key(kv[0][1])):
            if lvl != level or arm == _TICKET_ARM:
                continue
            ctrl_vals = _seed_values(cell, (metric,))
            shared = _sorted_seeds(set(ticket_vals) & set(ctrl_vals))
            controls[arm] = control_comparison(
                [ticket_vals[s][0] for s in shared],
                [ctrl_vals[s][0] for s in shared],
                confidence=confidence,
            )
            control_seeds[arm] = tuple(shared)

        draft.append(
            dict(
                level=level,
                percent_remaining=float(np.mean(pct)) if pct else math.nan,
                seeds=tuple(common),
                verdict=verdict,
                controls=controls,
                control_seeds=control_seeds,
                unpaired_seeds=tuple(unpaired),
                note=note,
            )
        )

    sparsest = sparsest_matching_level(
        [d["level"] for d in draft],
        [d["percent_remaining"] for d in draft],
        [d["verdict"] for d in draft],
    )
    rows = tuple(VerdictRow(**d, is_sparsest_matching=(d["level"] == sparsest)) for d in draft)
    return VerdictTable(
        rows=rows,
        sparsest_matching_level=sparsest,
        dense_level=dense_arm_level,
        metric=metric,
        margin=float(margin),
        alpha=float(alpha),
    )
