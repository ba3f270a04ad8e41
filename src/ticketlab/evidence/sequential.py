"""Group-sequential designs for the matching test: look at the seeds as they come, stop early.

A level is *matching* when the one-sided lower confidence bound of the mean paired difference
``d = ticket - dense`` (accuracy points, one value per seed) is at least ``-margin``, i.e. when the
paired statistic ``T = (mean(d) + margin) / (s / sqrt(n))`` is large. A fixed design computes it
once, at ``N`` seeds. A group-sequential design, fixed before the first seed is trained, computes
it after ``n_1 < n_2 < ... < n_K = N_max`` seeds and stops as soon as the evidence is in: matching
when ``T`` crosses the look's efficacy boundary, not matching when the final look is reached
without crossing, or earlier when a (non-binding) futility rule says the final look is out of reach.
Looking more than once at a test made for one look would inflate its error; the boundaries are
raised so that the probability of ever declaring a level matching when it is exactly ``margin``
worse than dense stays at ``alpha``.

Why these choices
-----------------
* **Lan-DeMets alpha spending.** The error is spent as a function of the information fraction
  ``t_k = n_k / N_max`` (seeds are the information: each adds one paired difference), so the
  boundaries depend only on the planned looks and ``alpha``. ``"obrien_fleming"`` spends
  ``2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``: almost nothing at the first looks, so the final look
  keeps nearly the fixed design's threshold (best when stopping early is a bonus);
  ``"pocock"`` spends ``alpha * log(1 + (e - 1) t)``: evenly, so early stops are likelier and the
  final threshold is higher.
* **t boundaries, calibrated on the exact null.** Seeds are few, so the sd is estimated and the
  statistic is Student t. At a true difference of exactly ``-margin`` the sequence
  ``T_1, ..., T_K`` has a joint distribution free of the unknown sd (each ``T_k`` is a one-sample t
  statistic of mean-zero normal differences, the looks sharing their first seeds), so the
  boundaries are calibrated on 400,000 simulated null paths with a fixed seed: the first look's
  boundary is the exact ``t.isf(alpha(t_1), n_1 - 1)``, each later one the quantile of the
  not-yet-crossed paths that spends that look's increment. The only approximations are that
  per-seed differences are normal and a Monte-Carlo error of about 0.0003 in the spent alpha.
  The normal-theory z boundaries are computed too (multivariate normal with
  ``corr(Z_j, Z_k) = sqrt(t_j / t_k)``, :func:`scipy.stats.multivariate_normal.cdf` with a fixed
  seed), for comparison with published tables. Converting each look's z boundary to the t
  boundary of the same tail probability with ``n_k - 1`` degrees of freedom, the simpler route,
  was measured and rejected: with a first look at 3 seeds it keeps each look's marginal error but
  not the joint one, and the type I error came out at 0.052-0.055 instead of 0.05 (20,000
  simulations, standard error 0.0016) for looks (3, 5, 8) and (3, 6, 9, 12) and both spendings.
* **Non-binding futility by conditional power.** At an interim look, the design computes the
  probability of crossing the *final* boundary if the remaining seeds have mean ``assumed_diff``
  (the planning assumption, default 0: the ticket as good as dense) and the observed sd, ignoring
  the later interim looks; below ``futility`` (default 0.10) it recommends stopping as not
  matching. The efficacy boundaries are computed as if futility never stopped anything, so the
  type I error holds whether or not the recommendation is followed (non-binding); following it
  only lowers the type I error and, a little, the power. This rule needs no planning sd, unlike
  beta spending, which would also tie the futility bounds to a guessed effect.
* **Fixed before the first look.** A design is a frozen value stored with the experiment
  (:meth:`Design.to_dict`); a later run that asks for a different one is refused
  (:func:`bind_design`), because choosing looks or spending after seeing data is what the
  boundaries exist to prevent.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _sps

from ticketlab.errors import ConfigError, require

__all__ = [
    "SPENDING",
    "Boundaries",
    "Decision",
    "Design",
    "OperatingCharacteristics",
    "bind_design",
    "holm_family",
    "spent",
]

Spending = Literal["obrien_fleming", "pocock"]
Status = Literal["matching", "not_matching", "continue"]
SPENDING: tuple[str, ...] = ("obrien_fleming", "pocock")
_KIND = "ticketlab.group_sequential_design"
_VERSION = 1
_MVN_SEED = 20  # the boundaries' quasi-Monte-Carlo integration is seeded: same design, same numbers
_MVN_ABSEPS = 1e-5  # z boundaries to about 1e-4 (scipy's default; 1e-6 took 14x as long with 6 looks)
_CALIBRATION_SEED = 2026  # the t boundaries' calibration paths are seeded, likewise
_CALIBRATION_PATHS = 400_000  # Monte-Carlo error of the spent alpha: about 0.0003 at alpha = 0.05
_CALIBRATION_CHUNK = 50_000


# --------------------------------------------------------------------------
# alpha spending and boundaries
# --------------------------------------------------------------------------


def spent(spending: str, alpha: float, fraction: float) -> float:
    """Cumulative one-sided alpha spent by information fraction ``fraction`` in (0, 1]."""
    if spending == "pocock":
        return alpha * math.log(1.0 + (math.e - 1.0) * fraction)
    if spending == "obrien_fleming":
        return 2.0 - 2.0 * float(_sps.norm.cdf(_sps.norm.isf(alpha / 2.0) / math.sqrt(fraction)))
    raise ConfigError(f"spending must be one of {', '.join(SPENDING)}, got {spending!r}")


def _correlation(fractions: tuple[float, ...]) -> np.ndarray:
    """Correlation of the sequential z statistics: ``sqrt(t_j / t_k)`` for ``t_j <= t_k``."""
    t = np.asarray(fractions)
    return np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))


def _none_crossed(bounds: Sequence[float], corr: np.ndarray) -> float:
    """P(Z_1 < b_1, ..., Z_k < b_k) for the first ``k = len(bounds)`` looks."""
    k = len(bounds)
    if k == 1:
        return float(_sps.norm.cdf(bounds[0]))
    return float(_sps.multivariate_normal.cdf(np.asarray(bounds), mean=np.zeros(k), cov=corr[:k, :k],
                                              abseps=_MVN_ABSEPS, releps=0.0, rng=_MVN_SEED))


def _next_bound(bounds: list[float], corr: np.ndarray, target: float) -> float:
    """The next look's z boundary: the one that leaves P(no crossing through it) at ``target``."""
    def gap(b: float) -> float:
        return _none_crossed([*bounds, b], corr) - target
    return float(_opt.brentq(gap, -5.0, 15.0, xtol=1e-7))


@lru_cache(maxsize=256)
def _z_boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    """Efficacy z boundaries whose crossing probabilities under H0 are the spending increments."""
    corr = _correlation(fractions)
    bounds: list[float] = []
    before, survive = 0.0, 1.0  # alpha spent so far, P(no crossing so far)
    for fraction in fractions:
        increment = spent(spending, alpha, fraction) - before
        target = survive - increment  # P(no crossing through this look)
        bounds.append(_next_bound(bounds, corr, target))
        before, survive = before + increment, target
    return tuple(bounds)


@lru_cache(maxsize=4)
def _t_paths(looks: tuple[int, ...], paths: int, seed: int) -> np.ndarray:
    """Null paths of the paired statistic at each look, shape ``(paths, len(looks))``.

    At a true difference of exactly ``-margin``, ``T_k = (mean_k + margin) / (s_k / sqrt(n_k))`` is
    the one-sample t statistic of mean-zero normal differences, whatever their sd: its joint
    distribution over the looks is free of unknowns, so standard normal paths represent it exactly.
    Cached (read-only): a family of levels tested at several alphas reuses the same paths.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((paths, len(looks)))
    for start in range(0, paths, _CALIBRATION_CHUNK):
        block = rng.standard_normal((min(_CALIBRATION_CHUNK, paths - start), looks[-1]))
        for k, n in enumerate(looks):
            prefix = block[:, :n]
            out[start:start + block.shape[0], k] = prefix.mean(axis=1) / (prefix.std(axis=1, ddof=1) / math.sqrt(n))
    out.setflags(write=False)
    return out


@lru_cache(maxsize=256)
def _t_boundaries(looks: tuple[int, ...], alpha: float, spending: str) -> tuple[float, ...]:
    """Efficacy t boundaries whose crossing probabilities under H0 are the spending increments.

    The first look's boundary is exact (``t.isf(alpha(t_1), n_1 - 1)``); each later one is the
    quantile of the calibration paths that have not crossed yet which spends that look's increment.
    """
    fractions = [n / looks[-1] for n in looks]
    bounds = [float(_sps.t.isf(spent(spending, alpha, fractions[0]), looks[0] - 1))]
    if len(looks) == 1:
        return tuple(bounds)
    paths = _t_paths(looks, _CALIBRATION_PATHS, _CALIBRATION_SEED)
    alive = paths[:, 0] < bounds[0]
    for k in range(1, len(looks)):
        increment = spent(spending, alpha, fractions[k]) - spent(spending, alpha, fractions[k - 1])
        survivors = paths[alive, k]
        share = min(1.0, increment * paths.shape[0] / max(survivors.size, 1))
        bounds.append(float(np.quantile(survivors, 1.0 - share)))
        alive &= paths[:, k] < bounds[-1]
    return tuple(bounds)


@dataclass(frozen=True)
class Boundaries:
    """Each look's seeds, information fraction, cumulative alpha spent, z and t efficacy boundary.

    ``t`` are the boundaries decisions use; ``z`` the normal-theory ones (known sd), for
    comparison with published tables. ``nominal[k]`` is the one-sided level of look ``k`` alone
    (``t.sf(t_k, n_k - 1)``): the bound a look
    reports is the ``1 - nominal[k]`` lower confidence bound, so a level is matching at look
    ``k`` exactly when that bound is at least ``-margin``.
    """

    looks: tuple[int, ...]
    fractions: tuple[float, ...]
    alpha_spent: tuple[float, ...]
    z: tuple[float, ...]
    t: tuple[float, ...]
    nominal: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {name: list(getattr(self, name)) for name in ("looks", "fractions", "alpha_spent", "z", "t", "nominal")}


# --------------------------------------------------------------------------
# one look, for one experiment or many simulated ones at once
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _LookResult:
    """The rule at one look, element-wise over experiments (arrays)."""

    efficacy: np.ndarray
    futility: np.ndarray
    lower: np.ndarray
    conditional_power: np.ndarray


@dataclass(frozen=True)
class Decision:
    """What a design says after the seeds so far.

    ``status`` is ``matching`` (efficacy boundary crossed), ``not_matching`` (final look without
    crossing, or futility at an interim look: a recommendation, the design being non-binding) or
    ``continue``. ``look`` is the 0-based index of the deciding look (``None`` before the first);
    ``lower_bound`` is that look's one-sided lower bound of mean(d) at its nominal level and
    ``achieved_margin = -lower_bound`` the smallest margin the data would have called matching.
    """

    status: Status
    look: int | None
    seeds: int
    reason: str
    mean: float | None = None
    sd: float | None = None
    t_statistic: float | None = None
    t_boundary: float | None = None
    lower_bound: float | None = None
    conditional_power: float | None = None

    @property
    def achieved_margin(self) -> float | None:
        return None if self.lower_bound is None else -self.lower_bound

    @property
    def stopped(self) -> bool:
        return self.status != "continue"

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["achieved_margin"] = self.achieved_margin
        return out


@dataclass(frozen=True)
class OperatingCharacteristics:
    """A design's behaviour by simulation (normal paired differences with sd ``sd``).

    ``power``, ``expected_seeds`` and the per-look stop probabilities are at ``true_diff`` with the
    futility rule followed. ``type_i_error`` is at ``true_diff = -margin`` with futility ignored
    (the worst case a non-binding rule allows); ``type_i_error_with_futility`` follows it.
    """

    sd: float
    true_diff: float
    sims: int
    seed: int
    power: float
    expected_seeds: float
    stop_matching: tuple[float, ...]
    stop_futility: tuple[float, ...]
    type_i_error: float
    type_i_error_with_futility: float
    expected_seeds_at_margin: float

    @property
    def power_se(self) -> float:
        return math.sqrt(self.power * (1.0 - self.power) / self.sims)

    @property
    def type_i_error_se(self) -> float:
        return math.sqrt(self.type_i_error * (1.0 - self.type_i_error) / self.sims)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["stop_matching"], out["stop_futility"] = list(self.stop_matching), list(self.stop_futility)
        out["power_se"], out["type_i_error_se"] = self.power_se, self.type_i_error_se
        return out


# --------------------------------------------------------------------------
# the design
# --------------------------------------------------------------------------

_FIELDS = ("looks", "alpha", "margin", "spending", "futility", "assumed_diff", "sd_floor")


@dataclass(frozen=True)
class Design:
    """A group-sequential matching test, fixed before the first look (see the module docstring).

    ``looks``: seeds at each look, increasing, the first at least 2 (a bound needs a spread), the
    last ``N_max``. ``margin`` (delta) and ``assumed_diff`` are in accuracy points. ``futility``
    is the conditional-power threshold below which an interim look recommends stopping
    (``None``: never). ``sd_floor`` is the least sd a look uses (the measurement's rounding
    error: identical differences are not certainty).
    """

    looks: tuple[int, ...] = (3, 5, 8)
    alpha: float = 0.05
    margin: float = 0.5
    spending: Spending = "obrien_fleming"
    futility: float | None = 0.10
    assumed_diff: float = 0.0
    sd_floor: float = 0.0

    def __post_init__(self) -> None:
        require(not isinstance(self.looks, (str, bytes)) and all(_is_count(n) for n in self.looks),
                 f"looks must be whole numbers of seeds, got {self.looks!r}")
        looks = tuple(int(n) for n in self.looks)
        object.__setattr__(self, "looks", looks)  # a list from JSON is the same design as a tuple
        for name in ("alpha", "margin", "assumed_diff", "sd_floor"):
            require(_is_number(getattr(self, name)), f"{name} must be a number, got {getattr(self, name)!r}")
        require(self.futility is None or _is_number(self.futility),
                 f"futility must be a number or None, got {self.futility!r}")
        require(len(looks) >= 1 and looks[0] >= 2, f"looks must start at 2 seeds or more, got {list(looks)}")
        require(all(a < b for a, b in itertools.pairwise(looks)), f"looks must increase, got {list(looks)}")
        require(0.0 < self.alpha < 0.5, f"alpha must be in (0, 0.5), got {self.alpha}")
        require(math.isfinite(self.margin) and self.margin > 0, f"margin must be > 0 points, got {self.margin}")
        require(self.spending in SPENDING, f"spending must be one of {', '.join(SPENDING)}, got {self.spending!r}")
        require(self.futility is None or 0.0 < self.futility < 1.0,
                 f"futility (a conditional-power threshold) must be in (0, 1) or None, got {self.futility}")
        require(math.isfinite(self.assumed_diff), f"assumed_diff must be finite, got {self.assumed_diff}")
        require(math.isfinite(self.sd_floor) and self.sd_floor >= 0, f"sd_floor must be >= 0, got {self.sd_floor}")

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    # ---------------------------------------------------------------- storage

    def to_dict(self) -> dict[str, Any]:
        """The design as plain JSON, to store with the experiment before the first look."""
        out: dict[str, Any] = {"kind": _KIND, "version": _VERSION}
        out.update({name: getattr(self, name) for name in _FIELDS})
        out["looks"] = list(self.looks)
        return out

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Design:
        """The design a :meth:`to_dict` stored; refuses anything else (ConfigError)."""
        if stored.get("kind") != _KIND or stored.get("version") != _VERSION:
            raise ConfigError(
                f"not a stored group-sequential design (kind {_KIND!r}, version {_VERSION}): {dict(stored)!r}"
            )
        names = set(stored) - {"kind", "version"}
        if names != set(_FIELDS):
            raise ConfigError(f"stored design has fields {sorted(names)}; expected {sorted(_FIELDS)}")
        return cls(**{name: stored[name] for name in _FIELDS})

    # ---------------------------------------------------------------- boundaries

    def boundaries(self) -> Boundaries:
        """Each look's efficacy boundary (z, and t with ``n_k - 1`` degrees of freedom)."""
        fractions = tuple(n / self.max_seeds for n in self.looks)
        z = _z_boundaries(fractions, float(self.alpha), self.spending)
        t = _t_boundaries(self.looks, float(self.alpha), self.spending)
        nominal = tuple(float(_sps.t.sf(c, n - 1)) for c, n in zip(t, self.looks))
        alpha_spent = tuple(spent(self.spending, self.alpha, f) for f in fractions)
        return Boundaries(looks=self.looks, fractions=fractions, alpha_spent=alpha_spent, z=z, t=t, nominal=nominal)

    def t_boundaries(self) -> tuple[float, ...]:
        """The efficacy boundary of the paired t statistic at each look (what decisions use)."""
        return _t_boundaries(self.looks, float(self.alpha), self.spending)

    def _look(self, index: int, mean: np.ndarray, sd: np.ndarray) -> _LookResult:
        """The rule at look ``index`` for arrays of means and (floored) sds of ``looks[index]`` seeds."""
        bounds = self.t_boundaries()
        n = self.looks[index]
        crit = bounds[index]
        lower = mean - crit * sd / math.sqrt(n)
        efficacy = np.where(sd > 0, lower >= -self.margin, mean > -self.margin)
        cp = self._conditional_power(n, mean, sd, bounds[-1])
        interim = index < len(self.looks) - 1 and self.futility is not None
        futility = (cp < self.futility) & ~efficacy if interim else np.zeros_like(efficacy)
        return _LookResult(efficacy=efficacy, futility=futility, lower=lower, conditional_power=cp)

    def _conditional_power(self, n: int, mean: np.ndarray, sd: np.ndarray, final_crit: float) -> np.ndarray:
        """P(final look matching | seeds so far), if the rest have mean ``assumed_diff`` and sd ``sd``.

        The final mean is ``(n * mean + (N - n) * assumed_diff) / N`` plus normal noise of sd
        ``sd * sqrt(N - n) / N``; matching needs it at least ``-margin + c_K * sd / sqrt(N)``.
        """
        big_n = self.max_seeds
        if n >= big_n:
            return np.where(mean - final_crit * sd / math.sqrt(n) >= -self.margin, 1.0, 0.0)
        expected = (n * mean + (big_n - n) * self.assumed_diff) / big_n
        needed = -self.margin + final_crit * sd / math.sqrt(big_n)
        spread = sd * math.sqrt(big_n - n) / big_n
        safe = np.where(spread > 0, spread, 1.0)  # zero spread (sd 0): the outcome is certain
        return np.where(spread > 0, _sps.norm.cdf((expected - needed) / safe), (expected >= needed).astype(float))

    # ---------------------------------------------------------------- one experiment

    def decide(self, differences_so_far: Sequence[float]) -> Decision:
        """The decision after the seeds so far (ticket - dense, points, in the order trained).

        Every look up to the current one is replayed on its prefix of the seeds: an earlier look
        whose efficacy boundary was crossed decides (the experiment should have stopped there);
        an earlier futility recommendation does not bind, so later looks are judged as usual.
        The number of seeds must be a planned look (or fewer than the first: ``continue``).
        """
        d = np.asarray(list(differences_so_far), dtype=float)
        if d.ndim != 1 or not np.all(np.isfinite(d)):
            raise ConfigError(f"differences must be a list of finite numbers, got {list(differences_so_far)!r}")
        n = int(d.size)
        if n < self.looks[0]:
            return Decision("continue", None, n, f"the first look is at {self.looks[0]} seeds")
        if n not in self.looks:
            raise ConfigError(
                f"{n} seeds is not a look of this design (looks at {', '.join(map(str, self.looks))} seeds); "
                "a look at an unplanned number of seeds would change the boundaries after seeing data"
            )
        current = self.looks.index(n)
        for index in range(current + 1):
            decision = self._decide_at(index, d[: self.looks[index]])
            if decision.status == "matching" or index == current:
                return decision
        raise AssertionError("unreachable")  # the loop returns at the current look

    def _decide_at(self, index: int, d: np.ndarray) -> Decision:
        n = int(d.size)
        mean = float(np.mean(d))
        observed = float(np.std(d, ddof=1)) if np.ptp(d) > 0 else 0.0
        sd = max(observed, self.sd_floor)
        result = self._look(index, np.array([mean]), np.array([sd]))
        crit = self.t_boundaries()[index]
        t_stat = (mean + self.margin) / (sd / math.sqrt(n)) if sd > 0 else math.copysign(math.inf, mean + self.margin)
        numbers = {"mean": mean, "sd": sd, "t_statistic": t_stat, "t_boundary": crit,
                   "lower_bound": float(result.lower[0]),
                       "conditional_power": float(result.conditional_power[0])}
        final = index == len(self.looks) - 1
        if bool(result.efficacy[0]):
            status = "matching"
            reason = f"look {index + 1}: lower bound >= -{self.margin:g} (t {t_stat:.3g} >= {crit:.3g})"
        elif final:
            status, reason = "not_matching", f"final look: lower bound < -{self.margin:g} (t {t_stat:.3g} < {crit:.3g})"
        elif bool(result.futility[0]):
            status = "not_matching"
            reason = (f"look {index + 1}: futility, conditional power {numbers['conditional_power']:.3g} < "
                      f"{self.futility:g} (non-binding: continuing keeps the error rate)")
        else:
            status = "continue"
            reason = f"look {index + 1}: boundary not crossed; next look at {self.looks[index + 1]} seeds"
        return Decision(status, index, n, reason, **numbers)

    # ---------------------------------------------------------------- by simulation

    def _simulate(self, sd: float, true_diff: float, sims: int, rng: np.random.Generator,
                  follow_futility: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Simulated experiments: (matching?, seeds used, look of efficacy stop, look of futility stop)."""
        d = rng.normal(true_diff, sd, size=(sims, self.max_seeds))
        active = np.ones(sims, dtype=bool)
        matching = np.zeros(sims, dtype=bool)
        seeds = np.full(sims, self.max_seeds)
        eff_look = np.full(sims, -1)
        fut_look = np.full(sims, -1)
        for index, n in enumerate(self.looks):
            prefix = d[:, :n]
            observed = prefix.std(axis=1, ddof=1)
            result = self._look(index, prefix.mean(axis=1), np.maximum(observed, self.sd_floor))
            hit = active & result.efficacy
            quit_ = active & ~result.efficacy & result.futility if follow_futility else np.zeros(sims, dtype=bool)
            matching |= hit
            eff_look[hit], fut_look[quit_] = index, index
            seeds[hit | quit_] = n
            active &= ~(hit | quit_)
        return matching, seeds, eff_look, fut_look

    def operating_characteristics(self, sd: float, true_diff: float | None = None, sims: int = 10000,
                                  seed: int = 0) -> OperatingCharacteristics:
        """Power and expected seeds at ``true_diff`` (default ``assumed_diff``), type I error at ``-margin``."""
        require(math.isfinite(sd) and sd > 0, f"sd must be > 0, got {sd}")
        require(sims >= 1, f"sims must be >= 1, got {sims}")
        diff = self.assumed_diff if true_diff is None else float(true_diff)
        alt_seed, null_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng
        matching, seeds, eff_look, fut_look = self._simulate(sd, diff, sims, rng(alt_seed), follow_futility=True)
        # The same null experiments with and without futility stops: following it can only lower the error.
        null_ignored, _, _, _ = self._simulate(sd, -self.margin, sims, rng(null_seed), follow_futility=False)
        null_followed, null_seeds, _, _ = self._simulate(sd, -self.margin, sims, rng(null_seed), follow_futility=True)
        looks = range(len(self.looks))
        return OperatingCharacteristics(
            sd=float(sd), true_diff=diff, sims=sims, seed=seed,
            power=float(matching.mean()), expected_seeds=float(seeds.mean()),
            stop_matching=tuple(float(np.mean(eff_look == k)) for k in looks),
            stop_futility=tuple(float(np.mean(fut_look == k)) for k in looks),
            type_i_error=float(null_ignored.mean()), type_i_error_with_futility=float(null_followed.mean()),
            expected_seeds_at_margin=float(null_seeds.mean()),
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_count(value: object) -> bool:
    return _is_number(value) and float(value) == int(value)  # type: ignore[arg-type]


def bind_design(stored: Mapping[str, Any] | None, requested: Design | None) -> Design:
    """The design an experiment runs under: the stored one, which a run may not change.

    ``stored`` is what the experiment saved (``None`` before the first look: then ``requested``
    is the design, and the caller stores its :meth:`Design.to_dict`). A ``requested`` design that
    differs from the stored one is refused with ConfigError naming the fields that differ.
    """
    if stored is None:
        if requested is None:
            raise ConfigError("no group-sequential design stored or given: give one before the first look")
        return requested
    fixed = Design.from_dict(stored)
    if requested is not None and requested != fixed:
        changed = [f"{name}: stored {getattr(fixed, name)!r}, asked {getattr(requested, name)!r}"
                   for name in _FIELDS if getattr(fixed, name) != getattr(requested, name)]
        raise ConfigError("the experiment's group-sequential design was fixed before its first look and cannot "
                          "change (" + "; ".join(changed) + ")")
    return fixed


# --------------------------------------------------------------------------
# a family of pre-registered claim levels
# --------------------------------------------------------------------------


def holm_family(design: Design, differences: Mapping[Hashable, Sequence[float]]) -> dict[Hashable, Decision]:
    """Group-sequential Holm over pre-registered ``claim_levels`` (the keys): one decision each.

    Why not the fixed sequence over every level: all ``L`` levels must then pass, and the joint
    power falls fast with ``L`` (18 levels, sd 0.28, 3 seeds: 0.04). Pre-registering a few primary
    levels and testing them as a family lets each one stand on its own, with the family-wise error
    (any of them wrongly called matching) at most ``alpha`` whatever their dependence.

    The procedure (the Bonferroni-Holm graph of Maurer & Bretz 2013, "Multiple testing in group
    sequential trials using graphical approaches"): with ``m`` levels not yet matching, each is
    tested by ``design`` at ``alpha / m``, replaying every look so far; the levels matching at
    that level are rejected, the rest are retested at ``alpha / (m - r)`` (boundaries recomputed,
    earlier looks compared with the new ones too), until none more crosses. A level that does not
    cross gets its decision under the last alpha it was tested at: continue, or not matching.
    All levels must have the same number of seeds (each seed trains every level).
    """
    if not differences:
        raise ConfigError("holm_family needs at least one claim level")
    sizes = {len(list(v)) for v in differences.values()}
    require(len(sizes) == 1, f"every claim level needs the same seeds; got counts {sorted(sizes)}")
    decisions: dict[Hashable, Decision] = {}
    open_levels = list(differences)
    while open_levels:
        share = dataclasses.replace(design, alpha=design.alpha / len(open_levels))
        tested = {level: share.decide(differences[level]) for level in open_levels}
        crossed = [level for level in open_levels if tested[level].status == "matching"]
        decisions.update(tested)
        if not crossed:
            break
        open_levels = [level for level in open_levels if level not in crossed]
    return {level: decisions[level] for level in differences}
