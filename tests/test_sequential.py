"""Tests for ticketlab.evidence.sequential: boundaries, error rates by simulation, a design fixed once stored."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest

from ticketlab.errors import ConfigError
from ticketlab.evidence.power import level_power
from ticketlab.evidence.sequential import (
    SPENDING,
    Design,
    bind_design,
    holm_family,
    spent,
)

ALPHA, MARGIN = 0.05, 0.5


def _se(p: float, sims: int) -> float:
    return math.sqrt(p * (1.0 - p) / sims)


def _run_by_decide(design: Design, sd: float, true_diff: float, sims: int, seed: int) -> tuple[float, float]:
    """Experiments run seed by seed through decide(), stopping at the first decision: (P(matching), E[seeds])."""
    rng = np.random.default_rng(seed)
    matching, seeds = 0, 0
    for _ in range(sims):
        d = rng.normal(true_diff, sd, design.max_seeds)
        for n in design.looks:
            decision = design.decide(d[:n])
            if decision.stopped:
                break
        matching += decision.status == "matching"
        seeds += decision.seeds
    return matching / sims, seeds / sims


# ---------------------------------------------------------------- spending and boundaries


@pytest.mark.parametrize("spending", SPENDING)
def test_spending_reaches_alpha_at_the_end_and_grows(spending: str) -> None:
    values = [spent(spending, ALPHA, t) for t in (0.1, 0.3, 0.6, 1.0)]
    assert values[-1] == pytest.approx(ALPHA, abs=1e-12)
    assert all(a < b for a, b in itertools.pairwise(values))


def test_obrien_fleming_spends_less_early_than_pocock() -> None:
    assert spent("obrien_fleming", ALPHA, 0.3) < spent("pocock", ALPHA, 0.3) / 5


def test_z_boundaries_match_the_published_lan_demets_obrien_fleming_values() -> None:
    # Lan-DeMets O'Brien-Fleming spending, one-sided 0.025, three equally spaced looks
    # (the values gsDesign and the textbooks give: 3.710, 2.511, 1.993).
    z = Design(looks=(10, 20, 30), alpha=0.025, spending="obrien_fleming").boundaries().z
    assert z == pytest.approx((3.710, 2.511, 1.993), abs=3e-3)


@pytest.mark.parametrize("spending", SPENDING)
def test_z_boundaries_spend_alpha_as_planned_on_brownian_paths(spending: str) -> None:
    design = Design(looks=(3, 5, 8), spending=spending)
    bounds = design.boundaries()
    rng = np.random.default_rng(11)
    sims = 200_000
    increments = rng.standard_normal((sims, 8))
    z = np.stack([increments[:, :n].sum(1) / math.sqrt(n) for n in design.looks], axis=1)
    crossed_by = np.maximum.accumulate(z >= np.asarray(bounds.z), axis=1).mean(0)
    for k, target in enumerate(bounds.alpha_spent):
        assert crossed_by[k] == pytest.approx(target, abs=3 * _se(target, sims) + 1e-4)


def test_t_boundaries_are_above_z_and_fall_towards_the_last_look() -> None:
    bounds = Design(looks=(3, 5, 8), spending="obrien_fleming").boundaries()
    assert all(t > z for t, z in zip(bounds.t, bounds.z))  # an estimated sd needs a higher bar
    assert bounds.t[0] > bounds.t[1] > bounds.t[2]
    assert json.loads(json.dumps(bounds.to_dict()))["looks"] == [3, 5, 8]


# ---------------------------------------------------------------- error rates by simulation


@pytest.mark.parametrize("spending", SPENDING)
@pytest.mark.parametrize("looks", [(3, 5, 8), (3, 6, 9, 12)])
def test_type_one_error_at_the_margin_stays_at_alpha(spending: str, looks: tuple[int, ...]) -> None:
    sims = 40_000
    oc = Design(looks=looks, spending=spending).operating_characteristics(sd=0.4, true_diff=-MARGIN, sims=sims, seed=7)
    se = _se(ALPHA, sims)
    assert oc.type_i_error <= ALPHA + 2 * se, oc
    assert oc.type_i_error >= ALPHA - 3 * se, oc  # and not needlessly conservative
    assert oc.type_i_error_with_futility <= oc.type_i_error  # following a non-binding rule only lowers it


@pytest.mark.parametrize("spending", SPENDING)
def test_type_one_error_by_decide_agrees(spending: str) -> None:
    # The seed-by-seed decide() path, not the vectorised simulation, at the margin (futility followed).
    sims = 3000
    design = Design(looks=(3, 5, 8), spending=spending)
    rate, _ = _run_by_decide(design, sd=0.4, true_diff=-MARGIN, sims=sims, seed=8)
    assert rate <= ALPHA + 2 * _se(ALPHA, sims)


@pytest.mark.parametrize("spending", SPENDING)
def test_power_and_expected_seeds_agree_with_decide_and_are_sensible(spending: str) -> None:
    design, sd, sims = Design(looks=(3, 5, 8), spending=spending), 0.5, 3000
    oc = design.operating_characteristics(sd=sd, true_diff=0.0, sims=20_000, seed=9)
    power, seeds = _run_by_decide(design, sd=sd, true_diff=0.0, sims=sims, seed=10)
    assert power == pytest.approx(oc.power, abs=3 * _se(oc.power, sims) + 3 * oc.power_se)
    assert seeds == pytest.approx(oc.expected_seeds, abs=0.15)
    assert oc.expected_seeds < design.max_seeds
    assert oc.power >= level_power(design.looks[0], sd, MARGIN, ALPHA)
    assert oc.power <= level_power(design.max_seeds, sd, MARGIN, ALPHA) + 3 * oc.power_se
    assert sum(oc.stop_matching) == pytest.approx(oc.power)


def test_futility_saves_seeds_on_a_bad_ticket_and_costs_little_power() -> None:
    with_rule, without = Design(futility=0.10), Design(futility=None)
    bad = with_rule.operating_characteristics(sd=0.5, true_diff=-1.0, sims=10_000, seed=12)
    plain_bad = without.operating_characteristics(sd=0.5, true_diff=-1.0, sims=10_000, seed=12)
    assert bad.expected_seeds < 0.6 * plain_bad.expected_seeds
    good, plain = (d.operating_characteristics(sd=0.5, true_diff=0.0, sims=10_000, seed=13)
                   for d in (with_rule, without))
    assert good.power >= plain.power - 0.02


# ---------------------------------------------------------------- decide


def test_decide_before_the_first_look_and_at_an_unplanned_one() -> None:
    design = Design(looks=(3, 5, 8))
    assert design.decide([0.1, 0.2]).status == "continue"
    assert design.decide([0.1, 0.2]).look is None
    with pytest.raises(ConfigError, match="not a look"):
        design.decide([0.1, 0.2, 0.0, 0.1])
    with pytest.raises(ConfigError):
        design.decide([0.1, float("nan"), 0.0])


def test_an_early_crossing_decides_even_if_later_seeds_are_given() -> None:
    design = Design(looks=(3, 5, 8))
    early = design.decide([0.0, 0.01, 0.02])
    assert early.status == "matching" and early.look == 0
    later = design.decide([0.0, 0.01, 0.02, -2.0, -2.0])
    assert later.status == "matching" and later.look == 0 and later.seeds == 3


def test_achieved_margin_is_minus_the_looks_lower_bound() -> None:
    design = Design(looks=(3, 5, 8))
    d = [0.1, -0.3, 0.2, 0.0, -0.1]
    decision = design.decide(d)
    crit = design.boundaries().t[1]
    lower = np.mean(d) - crit * np.std(d, ddof=1) / math.sqrt(5)
    assert decision.lower_bound == pytest.approx(lower)
    assert decision.achieved_margin == pytest.approx(-lower)
    assert (decision.status == "matching") == (decision.achieved_margin <= MARGIN)


def test_futility_recommends_stopping_but_does_not_bind() -> None:
    design = Design(looks=(3, 5, 8), futility=0.10)
    bad = [-1.5, -1.6, -1.4]
    assert design.decide(bad).status == "not_matching" and "futility" in design.decide(bad).reason
    # Continuing anyway: the later looks are judged on their own boundaries.
    assert design.decide(bad + [0.0, 0.01]).status in ("continue", "not_matching")
    assert design.decide(bad + [3.0] * 5).status == "matching"


def test_zero_spread_uses_the_sd_floor() -> None:
    assert Design(sd_floor=0.04).decide([0.0, 0.0, 0.0]).sd == pytest.approx(0.04)


# ---------------------------------------------------------------- a design fixed once stored


def test_to_dict_from_dict_round_trip_through_json() -> None:
    design = Design(looks=(3, 6, 9), alpha=0.025, margin=0.4, spending="pocock", futility=None, assumed_diff=0.1)
    assert Design.from_dict(json.loads(json.dumps(design.to_dict()))) == design
    with pytest.raises(dataclasses.FrozenInstanceError):
        design.looks = (3, 6)  # type: ignore[misc]


def test_a_changed_design_is_refused_once_stored() -> None:
    stored = Design(looks=(3, 5, 8)).to_dict()
    assert bind_design(None, Design()) == Design()
    assert bind_design(stored, None) == Design(looks=(3, 5, 8))
    assert bind_design(stored, Design(looks=[3, 5, 8])) == Design()  # a list of looks is the same design
    with pytest.raises(ConfigError, match="looks: stored"):
        bind_design(stored, Design(looks=(3, 6, 8)))
    with pytest.raises(ConfigError, match="spending"):
        bind_design(stored, Design(spending="pocock"))
    with pytest.raises(ConfigError):
        bind_design(None, None)


@pytest.mark.parametrize("edit", [{"kind": "other"}, {"version": 2}, {"extra": 1}, {"looks": [5, 3]}, {"alpha": 0.7},
                                  {"alpha": "0.05"}, {"looks": [3, 5.5, 8]}, {"looks": "358"}, {"futility": True}])
def test_a_damaged_stored_design_is_refused(edit: dict[str, object]) -> None:
    stored = {**Design().to_dict(), **edit}
    with pytest.raises(ConfigError):
        Design.from_dict(stored)


@pytest.mark.parametrize(
    "bad", [{"looks": (1, 3)}, {"looks": (3, 3)}, {"spending": "linear"}, {"futility": 1.0}, {"margin": 0.0}]
)
def test_invalid_designs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Design(**bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- a family of claim levels


def test_holm_family_controls_the_familywise_error_at_the_margin() -> None:
    # Three claim levels all exactly delta worse than dense, sharing the dense run (correlation 0.5);
    # the worst case: every look replayed, futility ignored (decide at the last look replays them all).
    design, sims, rng = Design(looks=(3, 5, 8), futility=None), 3000, np.random.default_rng(14)
    shared, own = rng.standard_normal((sims, 1, 8)), rng.standard_normal((sims, 3, 8))
    d = -MARGIN + 0.4 * (math.sqrt(0.5) * shared + math.sqrt(0.5) * own)
    any_wrong = np.mean([
        any(x.status == "matching" for x in holm_family(design, {f"L{i}": d[s, i] for i in range(3)}).values())
        for s in range(sims)
    ])
    assert any_wrong <= ALPHA + 2 * _se(ALPHA, sims)


def test_holm_family_recycles_alpha_after_a_rejection() -> None:
    design = Design(looks=(3, 5, 8), futility=None)
    strong = [0.3, 0.2, 0.25, 0.3, 0.2, 0.22, 0.28, 0.24]
    # A level that clears the margin at alpha but not at alpha / 2, at the final look.
    crit_full = design.t_boundaries()[-1]
    crit_half = dataclasses.replace(design, alpha=ALPHA / 2).t_boundaries()[-1]
    rng = np.random.default_rng(15)
    z = rng.standard_normal(8)
    z = (z - z.mean()) / z.std(ddof=1)  # mean 0, sd 1 exactly
    sd = 0.5
    mean = -MARGIN + 0.5 * (crit_full + crit_half) * sd / math.sqrt(8)
    borderline = list(mean + sd * z)
    assert dataclasses.replace(design, alpha=ALPHA / 2).decide(borderline).status != "matching"
    assert design.decide(borderline).status == "matching"
    result = holm_family(design, {"a": strong, "b": borderline})
    assert result["a"].status == "matching" and result["b"].status == "matching"
    with pytest.raises(ConfigError):
        holm_family(design, {"a": strong, "b": borderline[:5]})
