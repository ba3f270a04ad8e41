"""Tests for ticketlab.evidence.power: seeds planned from a pilot, checked by simulation and the issue's table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ticketlab.errors import ConfigError
from ticketlab.evidence.power import (
    claim_power,
    level_power,
    pilot_sd,
    plan,
    sd_upper_bound,
    seeds_for_claim,
    seeds_for_level,
    trainings,
)

LEVELS = 18
MARGIN = 0.5


def _simulated_level_power(n: int, sd: float, true_diff: float, sims: int, seed: int) -> float:
    """The paired one-sided t bound, simulated directly: how often it clears -margin."""
    d = np.random.default_rng(seed).normal(true_diff, sd, size=(sims, n))
    lower = d.mean(1) - sps.t.ppf(0.95, n - 1) * d.std(1, ddof=1) / math.sqrt(n)
    return float(np.mean(lower >= -MARGIN))


@pytest.mark.parametrize(("n", "sd", "true_diff"), [(3, 0.28, 0.0), (5, 0.4, 0.0), (8, 0.65, 0.1), (12, 0.65, -0.2)])
def test_level_power_agrees_with_a_simulation_of_the_paired_bound(n: int, sd: float, true_diff: float) -> None:
    sims = 4000
    planned = level_power(n, sd, MARGIN, 0.05, true_diff)
    simulated = _simulated_level_power(n, sd, true_diff, sims, seed=n)
    se = math.sqrt(planned * (1 - planned) / sims)
    assert abs(simulated - planned) <= 3 * se + 1e-3, (planned, simulated, se)


def test_level_power_at_the_margin_is_alpha() -> None:
    # The true difference exactly at -margin is the null's edge: the bound clears it alpha of the time.
    assert level_power(6, 0.3, MARGIN, 0.05, assumed_diff=-MARGIN) == pytest.approx(0.05, abs=1e-9)


def test_level_power_equals_statsmodels_ttestpower() -> None:
    smp = pytest.importorskip("statsmodels.stats.power")
    for n, sd, diff in [(3, 0.28, 0.0), (12, 0.65, 0.1), (20, 0.65, -0.1)]:
        expected = smp.TTestPower().power((MARGIN + diff) / sd, n, 0.05, alternative="larger")
        assert level_power(n, sd, MARGIN, 0.05, diff) == pytest.approx(expected, abs=1e-9)


# The issue's table: 18 levels all equal to dense, delta = 0.5 points.
TABLE = [  # (sd, seeds, per-level power, P(all 18) or None)
    (0.28, 3, 0.63, 0.04),
    (0.28, 5, 0.94, 0.59),
    (0.28, 8, 1.00, 0.97),
    (0.65, 12, 0.80, None),
    (0.65, 20, 0.95, None),
]


@pytest.mark.parametrize(("sd", "n", "per_level", "joint"), TABLE)
def test_the_issues_table(sd: float, n: int, per_level: float, joint: float | None) -> None:
    assert level_power(n, sd, MARGIN) == pytest.approx(per_level, abs=0.02)
    if joint is not None:
        # The table's joint figures are those of levels sharing their dense run (correlation 0.5).
        got = claim_power(n, [sd] * LEVELS, MARGIN, sims=8000, seed=1)
        assert got == pytest.approx(joint, abs=0.025)


def test_the_product_is_exact_for_independent_levels_and_a_lower_bound_for_shared_dense() -> None:
    sds = [0.28] * LEVELS
    product = claim_power(5, sds, MARGIN, method="product")
    assert product == pytest.approx(level_power(5, 0.28) ** LEVELS)
    independent = claim_power(5, sds, MARGIN, correlation=0.0, sims=8000, seed=2)
    assert independent == pytest.approx(product, abs=3 * math.sqrt(product * (1 - product) / 8000) + 1e-3)
    assert claim_power(5, sds, MARGIN, correlation=0.5, sims=8000, seed=2) > product + 0.1


def test_pooled_sd_is_the_df_weighted_root_mean_square() -> None:
    pilot = [[0.1, 0.5], [0.0, 0.2, -0.4]]
    spread = pilot_sd(pilot)
    s1, s2 = np.std(pilot[0], ddof=1), np.std(pilot[1], ddof=1)
    assert spread.per_level == pytest.approx((s1, s2))
    assert spread.pooled_df == 3
    assert spread.pooled == pytest.approx(math.sqrt((1 * s1**2 + 2 * s2**2) / 3))
    assert spread.planning == pytest.approx((spread.pooled, spread.pooled))
    assert pilot_sd(pilot, pool=False).planning == pytest.approx((s1, s2))


def test_upper_confidence_bound_of_the_sd_covers_the_true_sd() -> None:
    # Coverage by simulation: the 80% upper bound from 3 seeds is above the true sd 80% of the time.
    rng = np.random.default_rng(3)
    sims, true_sd = 4000, 0.4
    samples = rng.normal(0.0, true_sd, size=(sims, 3)).std(1, ddof=1)
    covered = np.mean([sd_upper_bound(s, 2, 0.8) >= true_sd for s in samples])
    assert covered == pytest.approx(0.8, abs=3 * math.sqrt(0.16 / sims))
    spread = pilot_sd([[0.0, 0.3, 0.1]], upper_confidence=0.8)
    assert spread.planning[0] > spread.pooled


def test_zero_spread_pilot_needs_a_floor() -> None:
    with pytest.raises(ConfigError, match="sd_floor"):
        pilot_sd([[0.2, 0.2, 0.2]])
    assert pilot_sd([[0.2, 0.2, 0.2]], sd_floor=0.04).planning == (0.04,)


@pytest.mark.parametrize("bad", [[], [[0.1]], [[0.1, float("nan")]]])
def test_a_pilot_without_a_spread_is_refused(bad: list[list[float]]) -> None:
    with pytest.raises(ConfigError):
        pilot_sd(bad)


def test_seeds_for_level_is_the_fewest_reaching_the_power() -> None:
    n = seeds_for_level(0.65, 0.9, MARGIN)
    assert level_power(n, 0.65) >= 0.9 > level_power(n - 1, 0.65)
    assert seeds_for_level(0.65, 0.95, MARGIN) == 20  # the table's last row
    with pytest.raises(ConfigError, match="no number of seeds"):
        seeds_for_level(0.3, 0.9, MARGIN, assumed_diff=-MARGIN)


def test_seeds_for_claim_reaches_the_joint_power_and_one_seed_fewer_does_not() -> None:
    sds = [0.28] * LEVELS
    n = seeds_for_claim(sds, 0.9, MARGIN, sims=4000, seed=4)
    assert claim_power(n, sds, MARGIN, sims=4000, seed=4) >= 0.9 > claim_power(n - 1, sds, MARGIN, sims=4000, seed=4)
    assert n >= seeds_for_level(0.28, 0.9, MARGIN)
    assert seeds_for_claim(sds, 0.9, MARGIN, method="product") >= n


def test_plan_from_a_pilot_and_its_cost_in_trainings() -> None:
    rng = np.random.default_rng(5)
    pilot = [list(rng.normal(0.0, 0.3, 3)) for _ in range(6)]
    result = plan(pilot, sims=4000)
    assert len(result.level_seeds) == 6 and len(set(result.level_seeds)) == 1  # pooled: one sd for all
    assert result.claim_seeds >= max(result.level_seeds)
    assert result.claim_power >= 0.9
    assert result.trainings() == result.claim_seeds * 7
    assert result.trainings(controls=2) == result.claim_seeds * (1 + 6 + 12)
    assert result.to_dict()["claim_seeds"] == result.claim_seeds


def test_trainings_counts_dense_tickets_and_controls() -> None:
    assert trainings(5, 18) == 5 * 19
    assert trainings(5, 18, controls=2, controlled_levels=3) == 5 * (1 + 18 + 6)
    with pytest.raises(ConfigError):
        trainings(5, 18, controls=1, controlled_levels=19)


def test_a_pilot_whose_sparsest_levels_collapsed_plans_the_claim_it_can_make() -> None:
    """Like the Transformer pilot: the first levels match closely, the last two collapse. Their
    own spread puts them out of reach; the plan claims the levels before them, not nothing."""
    close = [[0.1, -0.2, 0.3], [0.0, 0.2, -0.1], [0.2, 0.1, -0.3]]
    collapsed = [[-6.0, -30.0, 0.1], [-60.0, -90.0, -40.0]]
    own = plan(close + collapsed, pool=False)
    assert own.level_seeds[3:] == (None, None) and all(n is not None for n in own.level_seeds[:3])
    assert own.reach == 3 and own.claim_seeds == seeds_for_claim(list(own.sd.planning[:3]))
    assert own.to_dict()["claim_reach"] == 3
    pooled = plan(close + collapsed)  # the collapsed levels' spread swamps the pooled sd
    assert pooled.reach < 3 and (pooled.claim_seeds is None or pooled.claim_seeds > own.claim_seeds)
    assert plan(close).reach == 3 and plan(close).claim_reach is None  # nothing out of reach: the whole claim


def test_the_longest_reachable_claim_is_the_one_a_level_by_level_scan_finds() -> None:
    """Where every level is within reach alone but the whole claim is not (a wide pooled sd), the
    plan's bisection stops at the longest prefix some seeds carry, with the seeds that prefix
    needs: what trying each prefix from the longest down finds."""
    sds, options = [4.4, 4.6, 4.8, 4.9, 5.0], {"sims": 2000}
    result = plan([[s, -s, 0.0] for s in sds], pool=False, **options)  # each level's sd is its s

    def scan() -> tuple[int, int | None]:
        for prefix in range(len(sds), 0, -1):
            try:
                return prefix, seeds_for_claim(list(result.sd.planning[:prefix]), **options)
            except ConfigError:
                continue
        return 0, None

    assert all(n is not None for n in result.level_seeds)
    assert 0 < result.reach < len(sds) and result.claim_reach == result.reach
    assert (result.reach, result.claim_seeds) == scan()
