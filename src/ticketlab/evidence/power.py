"""How many seeds a claim needs, planned from a pilot.

A level is judged *matching* when the one-sided ``1 - alpha`` lower confidence bound of the mean
paired difference ``d = ticket - dense`` (accuracy points, one value per seed, Student t with
``n - 1`` degrees of freedom) is at least ``-margin``. This module answers the question to ask
*before* training: with the spread a pilot showed, how many seeds make that bound likely to clear
the margin when the ticket really is as good as dense (or as good as a stated ``assumed_diff``)?

Why these choices
-----------------
* **Power of the paired t bound, exactly.** The bound clears ``-margin`` exactly when
  ``t = (mean(d) + margin) / (s / sqrt(n))`` exceeds ``t(1 - alpha, n - 1)``, and ``t`` has a
  noncentral t distribution with noncentrality ``(margin + assumed_diff) / sd * sqrt(n)``. This is
  the one-sample t power with a shifted null that ``statsmodels.stats.power.TTestPower`` computes
  (``effect_size = (margin + assumed_diff) / sd``, ``alternative="larger"``); it is evaluated here
  with :func:`scipy.stats.nct` directly so that planning needs no extra dependency (a test checks
  the two agree where statsmodels is installed, and both against a simulation).
* **Pooled sd by default.** Two or three pilot seeds give an sd that is off by a factor of two
  either way, and levels of one experiment share model, data and training recipe, so their spreads
  are alike: the pooled sd ``sqrt(sum((n_l - 1) s_l^2) / sum(n_l - 1))`` uses every pilot seed.
  ``pool=False`` plans each level with its own sd (for levels known to differ, e.g. the sparsest).
* **An upper confidence bound of the sd, on request.** Planning with the point estimate gives the
  stated power only half the time the pilot under-estimates the sd; ``upper_confidence=0.8`` plans
  with the one-sided 80% upper bound ``s * sqrt(df / chi2(1 - 0.8, df))``, which over-plans a
  little when the pilot is right and saves the study when it was lucky.
* **The whole claim needs every level.** The headline "sparsest matching level" is a fixed
  sequence: all ``L`` levels before it must pass. Every level's difference subtracts the *same*
  dense run of a seed, so levels are positively correlated (``corr = var(dense) / (var(ticket) +
  var(dense))``, 0.5 when the two spread alike, the default). The joint power is computed by
  simulating the ``L`` paired t bounds with that correlation; ``method="product"`` multiplies the
  per-level powers instead, which is exact for independent levels and, with positive correlation,
  a lower bound (so seeds planned with it are enough, but more than needed). The issue's table
  (18 levels, sd 0.28: P(all) 0.04 / 0.59 / 0.97 with 3 / 5 / 8 seeds) is reproduced by the
  correlation 0.5, not by independence (which gives 0.0003 / 0.35 / 0.96).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as _sps

from ticketlab.errors import ConfigError

__all__ = [
    "PilotSd",
    "Plan",
    "ExperimentPlan",
    "LevelPlan",
    "claim_power",
    "level_power",
    "pilot_differences",
    "pilot_sd",
    "plan",
    "plan_from_experiment",
    "sd_upper_bound",
    "seeds_for_claim",
    "seeds_for_level",
    "trainings",
]

ClaimMethod = Literal["simulation", "product"]
#: Planning never goes past this many seeds: a design that needs more is not a design to run.
MAX_SEEDS = 1000
_SIM_CHUNK = 2000  # simulations per block, to bound memory at sims x seeds x levels


# --------------------------------------------------------------------------
# the pilot's spread
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PilotSd:
    """The spread a pilot showed, and the sd each level is planned with.

    ``per_level`` and ``dfs`` are each level's sample sd (``ddof=1``) and ``n - 1``; ``pooled``
    and ``pooled_df`` pool them. ``planning`` is what the planner uses per level: the pooled or
    own sd, raised to its ``upper_confidence`` bound when one is asked for, and never below
    ``sd_floor`` (the measurement's rounding error: identical pilot values are not certainty).
    """

    per_level: tuple[float, ...]
    dfs: tuple[int, ...]
    pooled: float
    pooled_df: int
    planning: tuple[float, ...]
    pool: bool
    upper_confidence: float | None
    sd_floor: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_level": list(self.per_level),
            "dfs": list(self.dfs),
            "pooled": self.pooled,
            "pooled_df": self.pooled_df,
            "planning": list(self.planning),
            "pool": self.pool,
            "upper_confidence": self.upper_confidence,
            "sd_floor": self.sd_floor,
        }


def _pilot_levels(differences: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """The pilot as one finite array per level, each with at least two seeds."""
    levels = [np.asarray(list(level), dtype=float) for level in differences]
    if not levels:
        raise ConfigError("the pilot has no levels: give one list of ticket - dense differences per level")
    for index, values in enumerate(levels):
        if values.ndim != 1 or values.size < 2:
            raise ConfigError(f"pilot level {index} has {values.size} seed(s); a spread needs at least 2")
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"pilot level {index} has NaN or infinite differences: {values.tolist()}")
    return levels


def sd_upper_bound(sd: float, df: int, confidence: float) -> float:
    """One-sided ``confidence`` upper bound of a normal sd from a sample sd with ``df`` degrees of freedom.

    ``(df * s^2) / sigma^2`` is chi-square with ``df`` degrees of freedom, so
    ``sigma <= s * sqrt(df / chi2.ppf(1 - confidence, df))`` with probability ``confidence``.
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"upper_confidence must be in (0, 1), got {confidence}")
    return sd * math.sqrt(df / float(_sps.chi2.ppf(1.0 - confidence, df)))


def pilot_sd(
    differences: Sequence[Sequence[float]],
    *,
    pool: bool = True,
    upper_confidence: float | None = None,
    sd_floor: float = 0.0,
) -> PilotSd:
    """Estimate the per-level sd of ``ticket - dense`` from a pilot (one list of differences per level).

    See the module docstring for why pooling is the default and when to ask for an
    ``upper_confidence`` bound. ``sd_floor`` is a lower limit on every planning sd.
    """
    if sd_floor < 0 or not math.isfinite(sd_floor):
        raise ConfigError(f"sd_floor must be a finite number >= 0, got {sd_floor}")
    levels = _pilot_levels(differences)
    # Exactly equal values have no spread (np.std can return a rounding error such as 3e-17).
    sds = tuple(float(np.std(values, ddof=1)) if np.ptp(values) > 0 else 0.0 for values in levels)
    dfs = tuple(int(values.size - 1) for values in levels)
    pooled_df = sum(dfs)
    pooled = math.sqrt(sum(df * sd**2 for sd, df in zip(sds, dfs)) / pooled_df)
    base = [(pooled, pooled_df)] * len(sds) if pool else list(zip(sds, dfs))
    if upper_confidence is not None:
        base = [(sd_upper_bound(sd, df, upper_confidence), df) for sd, df in base]
    planning = tuple(max(sd, sd_floor) for sd, _ in base)
    if any(sd <= 0.0 for sd in planning):
        raise ConfigError(
            "a pilot level has zero spread; give sd_floor (the measurement's rounding error) to plan with it"
        )
    return PilotSd(per_level=sds, dfs=dfs, pooled=pooled, pooled_df=pooled_df, planning=planning,
                   pool=pool, upper_confidence=upper_confidence, sd_floor=sd_floor)


# --------------------------------------------------------------------------
# one level
# --------------------------------------------------------------------------


def _check_test(margin: float, alpha: float, target: float | None = None) -> None:
    if not (math.isfinite(margin) and margin > 0):
        raise ConfigError(f"margin must be > 0 accuracy points, got {margin}")
    if not 0.0 < alpha < 0.5:
        raise ConfigError(f"alpha must be in (0, 0.5), got {alpha}")
    if target is not None and not alpha < target < 1.0:
        raise ConfigError(f"power must be in (alpha, 1) = ({alpha}, 1), got {target}")


def level_power(n: int | np.ndarray, sd: float, margin: float = 0.5, alpha: float = 0.05,
                assumed_diff: float = 0.0) -> float | np.ndarray:
    """Probability that ``n`` seeds make one level matching when its true mean difference is ``assumed_diff``.

    The noncentral-t power of the paired one-sided bound (module docstring); ``n`` may be an
    array of seed counts (each at least 2).
    """
    _check_test(margin, alpha)
    if not sd > 0:
        raise ConfigError(f"sd must be > 0, got {sd}")
    seeds = np.asarray(n, dtype=float)
    if np.any(seeds < 2):
        raise ConfigError(f"a paired bound needs at least 2 seeds, got {n}")
    df = seeds - 1.0
    noncentrality = (margin + assumed_diff) / sd * np.sqrt(seeds)
    power = _sps.nct.sf(_sps.t.ppf(1.0 - alpha, df), df, noncentrality)
    return float(power) if np.ndim(power) == 0 else power


def seeds_for_level(sd: float, power: float = 0.90, margin: float = 0.5, alpha: float = 0.05,
                    assumed_diff: float = 0.0) -> int:
    """Fewest seeds (at least 2) whose :func:`level_power` reaches ``power``.

    Refused when no number of seeds up to :data:`MAX_SEEDS` does: an ``assumed_diff`` at or below
    ``-margin`` can never be expected to pass, whatever the seeds.
    """
    _check_test(margin, alpha, power)
    counts = np.arange(2, MAX_SEEDS + 1)
    reached = np.nonzero(level_power(counts, sd, margin, alpha, assumed_diff) >= power)[0]
    if reached.size == 0:
        raise ConfigError(
            f"no number of seeds up to {MAX_SEEDS} reaches power {power} with sd {sd}, margin {margin} "
            f"and assumed difference {assumed_diff}"
        )
    return int(counts[reached[0]])


# --------------------------------------------------------------------------
# the whole claim (all levels of the fixed sequence)
# --------------------------------------------------------------------------


def _as_levels(values: float | Sequence[float], count: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(values, dtype=float), (count,)).copy()
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _simulated_claim_power(n: int, sds: np.ndarray, margin: float, alpha: float, diffs: np.ndarray,
                           correlation: float, sims: int, seed: int) -> float:
    """Fraction of simulated experiments in which every level's paired bound clears ``-margin``.

    Per seed ``s`` and level ``l``: ``d = diff_l + sd_l * (sqrt(rho) * Z_s + sqrt(1 - rho) * E_ls)``,
    the shared ``Z_s`` standing for the dense run every level is compared with.
    """
    rng = np.random.default_rng(seed)
    t_crit = float(_sps.t.ppf(1.0 - alpha, n - 1))
    shared, own = math.sqrt(correlation), math.sqrt(1.0 - correlation)
    passed = 0
    for start in range(0, sims, _SIM_CHUNK):
        block = min(_SIM_CHUNK, sims - start)
        noise = shared * rng.standard_normal((block, n, 1)) + own * rng.standard_normal((block, n, sds.size))
        d = diffs + sds * noise
        lower = d.mean(axis=1) - t_crit * d.std(axis=1, ddof=1) / math.sqrt(n)
        passed += int(np.all(lower >= -margin, axis=1).sum())
    return passed / sims


def claim_power(
    n: int,
    sds: Sequence[float],
    margin: float = 0.5,
    alpha: float = 0.05,
    assumed_diff: float | Sequence[float] = 0.0,
    *,
    correlation: float = 0.5,
    method: ClaimMethod = "simulation",
    sims: int = 20000,
    seed: int = 0,
) -> float:
    """Probability that ``n`` seeds make *every* level matching (one planning sd per level).

    ``method="simulation"`` draws ``sims`` experiments with a fixed ``seed`` (standard error about
    ``sqrt(p(1-p)/sims)``, 0.0035 at p = 0.5 and 20,000 sims); ``"product"`` multiplies the
    per-level powers (exact for ``correlation=0``, a lower bound for positive correlation).
    """
    _check_test(margin, alpha)
    if n < 2:
        raise ConfigError(f"a paired bound needs at least 2 seeds, got {n}")
    if not 0.0 <= correlation < 1.0:
        raise ConfigError(f"correlation between levels must be in [0, 1), got {correlation}")
    sd = _as_levels(sds, len(sds), "sds")
    if sd.size == 0 or np.any(sd <= 0):
        raise ConfigError(f"give one sd > 0 per level, got {list(sds)}")
    diffs = _as_levels(assumed_diff, sd.size, "assumed_diff")
    if method == "product":
        return float(np.prod([level_power(n, s, margin, alpha, a) for s, a in zip(sd, diffs)]))
    if method != "simulation":
        raise ConfigError(f"method must be 'simulation' or 'product', got {method!r}")
    if sims < 1:
        raise ConfigError(f"sims must be >= 1, got {sims}")
    return _simulated_claim_power(n, sd, margin, alpha, diffs, correlation, sims, seed)


def seeds_for_claim(
    sds: Sequence[float],
    power: float = 0.90,
    margin: float = 0.5,
    alpha: float = 0.05,
    assumed_diff: float | Sequence[float] = 0.0,
    *,
    correlation: float = 0.5,
    method: ClaimMethod = "simulation",
    sims: int = 20000,
    seed: int = 0,
) -> int:
    """Fewest seeds whose :func:`claim_power` reaches ``power``.

    The search starts at the most any single level needs (the claim cannot need fewer), gallops
    up in doubling steps until the power is reached and bisects back, so a pilot with a wide
    spread (hundreds of seeds) costs a few dozen simulations, not hundreds. The answer reaches
    ``power`` and one seed fewer does not; every candidate is simulated with the same ``seed``, so
    it is reproducible.
    """
    _check_test(margin, alpha, power)
    diffs = _as_levels(assumed_diff, len(sds), "assumed_diff")

    def reaches(n: int) -> bool:
        return claim_power(n, sds, margin, alpha, diffs, correlation=correlation, method=method,
                           sims=sims, seed=seed) >= power

    low = max(seeds_for_level(s, power, margin, alpha, a) for s, a in zip(sds, diffs))
    if reaches(low):
        return low
    step = 1
    while True:  # invariant: low does not reach the power
        high = min(low + step, MAX_SEEDS)
        if reaches(high):
            break
        if high == MAX_SEEDS:
            raise ConfigError(f"no number of seeds up to {MAX_SEEDS} reaches power {power} for all {len(sds)} levels")
        low, step = high, 2 * step
    while high - low > 1:  # low fails, high reaches
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


def trainings(seeds: int, levels: int, controls: int = 0, controlled_levels: int | None = None) -> int:
    """Trainings an experiment of ``seeds`` seeds costs: per seed one dense run, one ticket per
    pruned level and one run per control arm at each controlled level (all levels by default)."""
    if min(seeds, levels, controls) < 0:
        raise ConfigError(f"seeds, levels and controls must be >= 0, got {seeds}, {levels}, {controls}")
    controlled = levels if controlled_levels is None else controlled_levels
    if not 0 <= controlled <= levels:
        raise ConfigError(f"controlled_levels must lie in 0..levels ({levels}), got {controlled_levels}")
    return seeds * (1 + levels + controls * controlled)


# --------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Seeds a stated power needs, per level and for the whole claim, from a pilot.

    ``level_seeds[l]`` is what level ``l`` needs on its own (None: more than :data:`MAX_SEEDS`);
    ``claim_seeds`` what the claim's levels need together (``claim_method`` says how the joint
    power was computed), and ``claim_power`` the joint power at ``claim_seeds``. The claim is the
    first ``claim_reach`` levels of the fixed sequence: all of them where the pilot's spread lets
    every level be reached, else the longest reachable run from dense (0 levels: ``claim_seeds``
    and ``claim_power`` are None), so a pilot whose sparsest levels collapsed still plans the
    claim it can make, and says where it ends.
    """

    sd: PilotSd
    power: float
    margin: float
    alpha: float
    assumed_diff: float
    level_seeds: tuple[int | None, ...]
    claim_seeds: int | None
    claim_power: float | None
    claim_method: str
    correlation: float
    claim_reach: int | None = None  # None: every level

    @property
    def reach(self) -> int:
        """How many levels, from dense, the claim covers."""
        return self.levels if self.claim_reach is None else self.claim_reach

    @property
    def levels(self) -> int:
        return len(self.level_seeds)

    def trainings(self, controls: int = 0, controlled_levels: int | None = None) -> int:
        """Trainings the whole claim costs at :attr:`claim_seeds` (see :func:`trainings`)."""
        return trainings(self.claim_seeds or 0, self.levels, controls, controlled_levels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sd": self.sd.to_dict(),
            "power": self.power,
            "margin": self.margin,
            "alpha": self.alpha,
            "assumed_diff": self.assumed_diff,
            "level_seeds": list(self.level_seeds),
            "claim_seeds": self.claim_seeds,
            "claim_power": self.claim_power,
            "claim_method": self.claim_method,
            "correlation": self.correlation,
            "claim_reach": self.reach,
        }


def plan(
    pilot_differences: Sequence[Sequence[float]],
    power: float = 0.90,
    margin: float = 0.5,
    alpha: float = 0.05,
    assumed_diff: float = 0.0,
    *,
    pool: bool = True,
    upper_confidence: float | None = None,
    sd_floor: float = 0.0,
    correlation: float = 0.5,
    method: ClaimMethod = "simulation",
    sims: int = 20000,
    seed: int = 0,
) -> Plan:
    """Plan seeds from pilot differences (ticket - dense, accuracy points, one list per level)."""
    _check_test(margin, alpha, power)  # bad settings are an error, not "out of reach"
    spread = pilot_sd(pilot_differences, pool=pool, upper_confidence=upper_confidence, sd_floor=sd_floor)
    per_level = tuple(_seeds_or_none(sd, power, margin, alpha, assumed_diff) for sd in spread.planning)
    options = {"correlation": correlation, "method": method, "sims": sims, "seed": seed}
    reach = next((i for i, n in enumerate(per_level) if n is None), len(per_level))
    reach, claim_n = _longest_claim(spread.planning, reach, power, margin, alpha, assumed_diff, options)
    joint = None if claim_n is None else claim_power(claim_n, spread.planning[:reach], margin, alpha,
                                                     assumed_diff, **options)
    return Plan(sd=spread, power=power, margin=margin, alpha=alpha, assumed_diff=assumed_diff,
                level_seeds=per_level, claim_seeds=claim_n, claim_power=joint, claim_method=method,
                correlation=correlation, claim_reach=None if reach == len(per_level) else reach)


def _longest_claim(sds: Sequence[float], reach: int, power: float, margin: float, alpha: float,
                   assumed_diff: float, options: dict[str, Any]) -> tuple[int, int | None]:
    """The longest run of levels from dense (at most ``reach``) whose claim some number of seeds up
    to :data:`MAX_SEEDS` reaches, and those seeds; ``(0, None)`` when not even the first level's does.

    The whole run is tried first (the usual case, a few simulations). When it is out of reach,
    the run is found by bisection on whether :data:`MAX_SEEDS` seeds carry a prefix (a longer
    prefix cannot have more power), not by galloping to :data:`MAX_SEEDS` once per prefix: on a
    pilot whose sparsest levels collapsed that was minutes. The seeds of the run found are those
    :func:`seeds_for_claim` gives it, with the same simulations as before.
    """
    def seeds(prefix: int) -> int | None:
        try:
            return seeds_for_claim(sds[:prefix], power, margin, alpha, assumed_diff, **options)
        except ConfigError:
            return None

    def carried(prefix: int) -> bool:
        return claim_power(MAX_SEEDS, sds[:prefix], margin, alpha, assumed_diff, **options) >= power

    if reach == 0:
        return 0, None
    whole = seeds(reach)
    if whole is not None:
        return reach, whole
    low, high = 0, reach  # prefix `low` is carried (0 trivially), `high` is not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if carried(middle) else (low, middle)
    # carried at MAX_SEEDS is seeds_for_claim's own last test, so it finds the prefix's seeds
    return (low, seeds(low)) if low > 0 else (0, None)


def _seeds_or_none(sd: float, power: float, margin: float, alpha: float, assumed_diff: float) -> int | None:
    """:func:`seeds_for_level`, or None where no number up to :data:`MAX_SEEDS` reaches ``power``."""
    try:
        return seeds_for_level(sd, power, margin, alpha, assumed_diff)
    except ConfigError:
        return None


# --------------------------------------------------------------------------
# a plan from a pilot experiment on disk
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelPlan:
    """One pruned level of a pilot: its paired differences (points), and what it needs on its own.

    ``seeds`` is planned at ``assumed_diff`` (the ticket as good as dense, by default);
    ``seeds_at_observed`` at the pilot's own mean difference (``None``: out of reach with
    :data:`MAX_SEEDS` seeds or fewer, as it always is when the observed mean is at or below
    ``-margin``), so a level that looks lost says so. ``trainings`` and
    ``seconds`` are what ``seeds`` seeds of the chain up to this level cost (IMP reaches a level
    only through every level before it), serial seconds on the pilot's machine.
    """

    level: int
    percent_remaining: float
    differences: tuple[float, ...]
    sd: float
    seeds: int | None  # None: more than MAX_SEEDS
    seeds_at_observed: int | None
    trainings: int | None
    seconds: float | None

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences))

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["differences"], out["mean"] = list(self.differences), self.mean
        return out


@dataclass(frozen=True)
class ExperimentPlan:
    """Seeds and cost of a decided claim, from a pilot experiment (:func:`plan_from_experiment`).

    ``trainings`` counts every training of the experiment at ``plan.claim_seeds`` seeds, of which
    ``already`` exist in the pilot; ``seconds`` is their serial training time on the machine that
    ran the pilot (each level and arm's mean recorded ``wall_time_s``) and ``remaining_seconds``
    that of the trainings not yet done. Parallel workers divide both. ``skipped`` are pruned
    levels with fewer than two paired seeds (no spread to plan from).
    """

    plan: Plan
    levels: tuple[LevelPlan, ...]
    pilot_seeds: int
    metric: str
    trainings: int
    already: int
    seconds: float
    remaining_seconds: float
    skipped: tuple[int, ...] = ()
    claim_levels: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        """The plan in words, for the terminal: per level, then the whole claim."""
        p = self.plan
        spread = f"pooled sd {p.sd.pooled:.3g} pp" if p.sd.pool else "each level's own sd"
        if p.sd.upper_confidence is not None:
            spread += f" (planned at its {100 * p.sd.upper_confidence:g}% upper bound)"
        head = (f"power {100 * p.power:g}% that the {100 * (1 - p.alpha):g}% lower bound of ticket - dense "
                f"clears -{p.margin:g} pp if the true difference is {p.assumed_diff:+g} pp; {spread}")
        rows = [f"{'level':>5} {'% left':>7} {'pilot n':>7} {'mean d':>7} {'sd':>6} {'seeds':>6} "
                f"{'at mean d':>9} {'trainings':>9} {'time':>8}"]
        beyond = f">{MAX_SEEDS}"
        for lvl in self.levels:
            observed = "no" if lvl.seeds_at_observed is None else str(lvl.seeds_at_observed)
            seeds = beyond if lvl.seeds is None else str(lvl.seeds)
            cost = "-" if lvl.trainings is None else str(lvl.trainings)
            time = "-" if lvl.seconds is None else _duration(lvl.seconds)
            rows.append(f"{lvl.level:>5} {lvl.percent_remaining:>7.1f} {len(lvl.differences):>7} {lvl.mean:>+7.2f} "
                        f"{lvl.sd:>6.2f} {seeds:>6} {observed:>9} {cost:>9} {time:>8}")
        reached = self.levels[: p.reach]
        if self.claim_levels:
            family = (f"Holm family of claim levels {', '.join(map(str, self.claim_levels))}, each planned at alpha "
                      f"{p.alpha:g}/{len(self.claim_levels)}")
        elif p.reach == len(self.levels):
            family = f"fixed sequence over {len(self.levels)} level(s)"
        else:
            family = (f"fixed sequence over levels {reached[0].level}-{reached[-1].level}, down to "
                      f"{reached[-1].percent_remaining:.1f}%" if reached else "fixed sequence")
        if p.claim_seeds is None:
            claim = (f"no claim is reachable: already level {self.levels[0].level} needs more than {MAX_SEEDS} seeds "
                     "at this spread")
        else:
            claim = (f"{'whole claim' if p.reach == len(self.levels) else 'claim'} ({family}, {p.claim_method} joint "
                     f"power {100 * p.claim_power:.1f}%): {p.claim_seeds} seeds = {self.trainings} trainings, "
                     f"{max(self.trainings - self.already, 0)} more than the pilot's {self.already}; about "
                     f"{_duration(self.remaining_seconds)} of training left on this machine "
                     f"({_duration(self.seconds)} in all, serial: divide by parallel workers)")
        notes = [f"levels {', '.join(map(str, self.skipped))}: fewer than 2 paired seeds, not planned"] if self.skipped else []
        out_of_reach = [lvl.level for lvl in self.levels[p.reach:]] if not self.claim_levels else []
        if out_of_reach:
            notes.append(f"level(s) {', '.join(map(str, out_of_reach))}: not in the claim; at this spread it cannot "
                         f"reach them with {MAX_SEEDS} seeds or fewer (as a fixed sequence it stops before them)")
        wide = [lvl.level for lvl, own in zip(self.levels, p.sd.per_level)
                if p.sd.pool and len(self.levels) > 1 and own > 2 * p.sd.pooled]
        if wide:
            notes.append(f"level(s) {', '.join(map(str, wide))} spread more than twice the pooled sd, so pooling "
                         "misstates the others: --own-sd plans each level with its own")
        notes.append(f"'at mean d': seeds if the true difference is the pilot's mean ('no': out of reach with "
                     f"{MAX_SEEDS} seeds or fewer, always so at or below -delta); pilot means of 2-3 seeds are rough")
        return [head, *rows, claim, *notes]

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan.to_dict(), "levels": [lvl.to_dict() for lvl in self.levels],
                "pilot_seeds": self.pilot_seeds, "metric": self.metric, "trainings": self.trainings,
                "already": self.already, "seconds": self.seconds, "remaining_seconds": self.remaining_seconds,
                "skipped": list(self.skipped), "claim_levels": list(self.claim_levels)}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def pilot_differences(runs: Sequence[Mapping[str, Any]],
                      metric: str = "test_acc_at_early_stop") -> dict[int, dict[Any, float]]:
    """Per pruned level, seed -> ``ticket - dense`` in accuracy points (finished, not diverged).

    Paired by seed number, as the verdicts are: a seed missing on either side is left out.
    """
    def usable(run: Mapping[str, Any]) -> bool:
        value = run.get(metric)
        return run.get("status", "ok") == "ok" and value is not None and math.isfinite(float(value))

    tickets = [r for r in runs if r["arm"] == "ticket" and usable(r)]
    dense = {r["seed"]: float(r[metric]) for r in tickets if r["level"] == 0}
    out: dict[int, dict[Any, float]] = {}
    for run in sorted(tickets, key=lambda r: (r["level"], str(r["seed"]))):
        if run["level"] > 0 and run["seed"] in dense:
            out.setdefault(int(run["level"]), {})[run["seed"]] = 100.0 * (float(run[metric]) - dense[run["seed"]])
    return out


def _unit_seconds(runs: Sequence[Mapping[str, Any]]) -> Callable[[int, str], float]:
    """Mean recorded wall time of a (level, arm) unit; the arm's, then all units' mean where the
    pilot did not train that cell."""
    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    timed = [r for r in runs if r.get("wall_time_s") is not None]
    overall = mean([float(r["wall_time_s"]) for r in timed]) or 0.0

    def seconds(level: int, arm: str) -> float:
        cell = mean([float(r["wall_time_s"]) for r in timed if r["level"] == level and r["arm"] == arm])
        by_arm = mean([float(r["wall_time_s"]) for r in timed if r["arm"] == arm])
        return next(v for v in (cell, by_arm, overall) if v is not None)
    return seconds


def _chain_units(config: Any, up_to: int) -> list[tuple[int, str]]:
    """The (level, arm) units one seed trains for levels 0..``up_to`` under ``config``."""
    units = [(0, "ticket")]
    for level in range(1, up_to + 1):
        if config.trains(level):
            units.append((level, "ticket"))
            if config.has_controls(level):
                units.extend((level, arm) for arm in config.controls)
    return units


def plan_from_experiment(
    result: Any,
    power: float = 0.90,
    margin: float = 0.5,
    alpha: float = 0.05,
    assumed_diff: float = 0.0,
    *,
    pool: bool = True,
    upper_confidence: float | None = None,
    metric: str = "test_acc_at_early_stop",
    method: ClaimMethod = "simulation",
    sims: int = 20000,
) -> ExperimentPlan:
    """Plan the seeds of a decided claim from a pilot experiment (``ticketlab.Result``: ``runs``
    and ``config``), as :func:`plan` does from numbers, with its cost in trainings and time.

    The spread is that of the pilot's paired ``ticket - dense`` differences (points), floored at
    the accuracy's rounding error (one test example: identical pilot values are not certainty).
    Every pruned level with at least two paired seeds is planned; the whole claim is all of them.
    """
    by_level = {level: seeds for level, seeds in pilot_differences(result.runs, metric).items() if len(seeds) >= 2}
    trained = sorted({int(r["level"]) for r in result.runs if r["arm"] == "ticket" and r["level"] > 0})
    if not by_level:
        raise ConfigError("the pilot has no pruned level with 2 or more seeds paired with dense; "
                          "run it with --seeds 2 (or 3) first")
    levels = sorted(by_level)
    examples = min((int(r["test_examples"]) for r in result.runs if r.get("test_examples")), default=1000)
    floor = 100.0 * (1.0 / examples) / math.sqrt(6.0)  # stats.quantization_sd of one example, in points
    the_plan = plan([list(by_level[level].values()) for level in levels], power, margin, alpha, assumed_diff,
                    pool=pool, upper_confidence=upper_confidence, sd_floor=floor, method=method, sims=sims)
    claim_levels = tuple(level for level in getattr(result.config, "claim_levels", ()) if level in by_level)
    if claim_levels:
        the_plan = _family_claim(the_plan, levels, claim_levels, method, sims)
    seconds = _unit_seconds(result.runs)
    percent = {int(r["level"]): float(r["percent_remaining"]) for r in result.runs if r["arm"] == "ticket"}
    level_plans = tuple(
        _level_plan(level, percent.get(level, math.nan), tuple(by_level[level].values()), sd, n,
                    _chain_units(result.config, level), seconds, the_plan)
        for level, sd, n in zip(levels, the_plan.sd.planning, the_plan.level_seeds)
    )
    units = _chain_units(result.config, max(levels))
    pilot_seeds = len({r["seed"] for r in result.runs})
    claim_n = the_plan.claim_seeds or 0  # None: no claim reachable, nothing to cost
    per_seed = sum(seconds(level, arm) for level, arm in units)
    already = sum(1 for r in result.runs if (int(r["level"]), r["arm"]) in set(units))
    return ExperimentPlan(plan=the_plan, levels=level_plans, pilot_seeds=pilot_seeds, metric=metric,
                          trainings=claim_n * len(units), already=min(already, claim_n * len(units)),
                          seconds=claim_n * per_seed, remaining_seconds=max(claim_n - pilot_seeds, 0) * per_seed,
                          skipped=tuple(level for level in trained if level not in by_level),
                          claim_levels=claim_levels)


def _family_claim(the_plan: Plan, levels: list[int], claim_levels: tuple[int, ...], method: ClaimMethod,
                  sims: int) -> Plan:
    """The whole claim as a Holm family of ``claim_levels``: every one matching, each tested at
    ``alpha / m`` (Holm's first step; its later steps test at larger alphas, so the power of all
    of them passing is at least this and the seeds are enough)."""
    sds = [the_plan.sd.planning[levels.index(level)] for level in claim_levels]
    share = the_plan.alpha / len(claim_levels)
    options = {"correlation": the_plan.correlation, "method": method, "sims": sims}
    n = seeds_for_claim(sds, the_plan.power, the_plan.margin, share, the_plan.assumed_diff, **options)
    joint = claim_power(n, sds, the_plan.margin, share, the_plan.assumed_diff, **options)
    return dataclasses.replace(the_plan, claim_seeds=n, claim_power=joint, claim_reach=None)


def _level_plan(level: int, percent: float, differences: tuple[float, ...], sd: float, n: int | None,
                units: list[tuple[int, str]], seconds: Callable[[int, str], float], the_plan: Plan) -> LevelPlan:
    mean = float(np.mean(differences))
    try:
        observed: int | None = seeds_for_level(sd, the_plan.power, the_plan.margin, the_plan.alpha, mean)
    except ConfigError:  # no number of seeds up to MAX_SEEDS is expected to pass at the observed mean
        observed = None
    return LevelPlan(level=level, percent_remaining=percent, differences=differences, sd=sd, seeds=n,
                     seeds_at_observed=observed, trainings=None if n is None else n * len(units),
                     seconds=None if n is None else n * sum(seconds(lvl, arm) for lvl, arm in units))
