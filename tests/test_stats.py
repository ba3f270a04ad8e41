"""Tests for ticketlab.evidence.stats: intervals, one-sided paired bounds, Holm, summaries."""

from __future__ import annotations

import json
import math
import warnings

import pytest
from scipy import stats as sps

from ticketlab.evidence.stats import (
    Interval,
    PairedBound,
    holm_adjust,
    mean_ci,
    paired_bound,
    quantization_sd,
    summarize,
)

T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2), also in any t table


def _json_roundtrip(obj: object) -> object:
    # allow_nan=False: NaN / inf anywhere would raise here.
    return json.loads(json.dumps(obj, allow_nan=False))


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_matches_hand_computed_t_interval() -> None:
    ci = mean_ci([0.9, 0.92, 0.94])
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert ci.n == 3
    assert ci.mean == pytest.approx(0.92, abs=1e-10)
    assert ci.std == pytest.approx(0.02, abs=1e-10)
    assert ci.low == pytest.approx(0.92 - half, abs=1e-10)
    assert ci.high == pytest.approx(0.92 + half, abs=1e-10)
    assert ci.half_width == pytest.approx(half, abs=1e-10)
    assert ci.has_interval and ci.note is None


def test_mean_ci_confidence_changes_width() -> None:
    narrow = mean_ci([1.0, 2.0, 4.0], confidence=0.80)
    wide = mean_ci([1.0, 2.0, 4.0], confidence=0.99)
    assert narrow.half_width is not None and wide.half_width is not None
    assert narrow.half_width < wide.half_width
    # 90% interval by hand: mean 7/3, sd sqrt(7/3), df 2
    ci = mean_ci([1.0, 2.0, 4.0], confidence=0.90)
    half = sps.t.ppf(0.95, 2) * math.sqrt(7 / 3) / math.sqrt(3)
    assert ci.low == pytest.approx(7 / 3 - half)
    assert ci.high == pytest.approx(7 / 3 + half)


def test_mean_ci_single_value_has_no_interval() -> None:
    ci = mean_ci([0.87])
    assert ci.n == 1 and ci.mean == pytest.approx(0.87)
    assert ci.low is None and ci.high is None and ci.std is None
    assert not ci.has_interval
    assert ci.note == "no interval with 1 seed"
    assert _json_roundtrip(ci.to_dict())["low"] is None


def test_mean_ci_empty() -> None:
    ci = mean_ci([])
    assert ci.n == 0 and ci.mean is None and not ci.has_interval


def test_mean_ci_constant_values_collapse_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = mean_ci([0.1, 0.1, 0.1, 0.1])
    assert ci.std == 0.0
    assert ci.low == ci.high == ci.mean == 0.1


def test_mean_ci_rejects_nan() -> None:
    with pytest.raises(ValueError):
        mean_ci([0.9, float("nan")])


# ---------------------------------------------------------------- paired_bound


def test_paired_bound_matches_scipy_one_sided_ttest_rel() -> None:
    a = [0.90, 0.85, 0.88, 0.92]
    b = [0.87, 0.84, 0.86, 0.88]
    d = [x - y for x, y in zip(a, b)]  # 0.03, 0.01, 0.02, 0.04
    n = len(d)
    mean_d = sum(d) / n
    sd = math.sqrt(sum((x - mean_d) ** 2 for x in d) / (n - 1))

    lower = paired_bound(a, b, side="lower")
    assert isinstance(lower, PairedBound)
    assert lower.n == 4 and lower.mean == pytest.approx(0.025) and lower.sd == pytest.approx(sd)
    assert lower.p_value == pytest.approx(sps.ttest_rel(a, b, alternative="greater").pvalue)
    assert lower.bound == pytest.approx(mean_d - sps.t.ppf(0.95, n - 1) * sd / math.sqrt(n))
    assert lower.accepted and not lower.floored

    upper = paired_bound(a, b, side="upper", null=0.01)
    assert upper.p_value == pytest.approx(
        sps.ttest_rel([x - 0.01 for x in a], b, alternative="less").pvalue)
    assert upper.bound == pytest.approx(mean_d + sps.t.ppf(0.95, n - 1) * sd / math.sqrt(n))


def test_paired_bound_is_paired_not_unpaired() -> None:
    # Large seed-to-seed spread, tiny consistent difference: only a paired analysis sees it.
    b = [0.50, 0.70, 0.90, 0.60, 0.80]
    a = [x + 0.01 + 0.001 * i for i, x in enumerate(b)]
    assert paired_bound(a, b, side="lower").p_value < 1e-4
    assert sps.ttest_ind(a, b).pvalue > 0.5


def test_paired_bound_bound_and_p_value_agree() -> None:
    # bound > null exactly when p < alpha, for a sweep of nulls around the data
    a, b = [0.91, 0.93, 0.90], [0.92, 0.92, 0.92]
    for null in [x / 1000 for x in range(-40, 20)]:
        res = paired_bound(a, b, side="lower", null=null)
        assert (res.bound > null) == res.accepted


def test_constant_difference_is_not_certainty_once_floored() -> None:
    # one example (of 1,000) worse on every seed: zero spread, but not zero uncertainty
    ticket, dense = [0.899, 0.919, 0.909], [0.900, 0.920, 0.910]
    floor = quantization_sd(1 / 1000)
    assert floor == pytest.approx(0.001 / math.sqrt(6))
    res = paired_bound(ticket, dense, side="upper", null=0.0, sd_floor=floor)
    assert res.floored and res.sd == pytest.approx(floor)
    assert 0.0 < res.p_value < 1.0
    # without the floor the same data would be "certain"
    assert paired_bound(ticket, dense, side="upper", null=0.0).p_value == 0.0
    _json_roundtrip(res.to_dict())


def test_paired_bound_single_pair_has_no_bound() -> None:
    res = paired_bound([0.9], [0.8], side="lower")
    assert res.n == 1 and res.bound is None and res.p_value is None and not res.accepted
    assert res.mean == pytest.approx(0.1)
    assert _json_roundtrip(res.to_dict())["ci"] == [None, None]


def test_paired_bound_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        paired_bound([0.9, 0.8], [0.9], side="lower")
    with pytest.raises(ValueError):
        paired_bound([0.9, 0.8], [0.9, 0.7], side="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        paired_bound([0.9, float("nan")], [0.9, 0.7], side="lower")


# ---------------------------------------------------------------- Holm


def test_holm_matches_a_hand_computed_example() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1, and the empty family is empty
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []
    with pytest.raises(ValueError):
        holm_adjust([1.5])


def test_accuracy_intervals_never_leave_zero_to_one() -> None:
    runs = [_run(0, "ticket", s, a, 100, 100.0, final=a) for s, a in ((0, 0.9951), (1, 0.9999))]
    row = summarize(runs)[0]
    assert row.test_acc_at_early_stop.high <= 1.0
    assert mean_ci([0.9951, 0.9999]).high > 1.0  # what an unclipped 2-seed interval says


# ---------------------------------------------------------------- tables


def _run(level: int, arm: str, seed: int, acc: float, es: int, pct: float, final: float | None = None) -> dict:
    return {
        "level": level,
        "arm": arm,
        "seed": seed,
        "percent_remaining": pct,
        "test_acc_at_early_stop": acc,
        "final_test_acc": acc - 0.01 if final is None else final,
        "early_stop_step": es,
    }


def test_summarize_never_mixes_arms_or_levels() -> None:
    runs = [
        _run(1, "ticket", 0, 0.90, 100, 80.0),
        _run(1, "ticket", 1, 0.92, 120, 80.0),
        _run(1, "reinit", 0, 0.70, 300, 80.0),
        _run(1, "reinit", 1, 0.72, 320, 80.0),
        _run(0, "ticket", 0, 0.50, 500, 100.0),
    ]
    rows = summarize(runs)
    assert [(r.level, r.arm) for r in rows] == [(0, "ticket"), (1, "ticket"), (1, "reinit")]
    by = {(r.level, r.arm): r for r in rows}
    assert by[(1, "ticket")].test_acc_at_early_stop.mean == pytest.approx(0.91)
    assert by[(1, "reinit")].test_acc_at_early_stop.mean == pytest.approx(0.71)
    assert by[(1, "reinit")].early_stop_step.mean == pytest.approx(310)
    assert by[(1, "ticket")].final_test_acc.mean == pytest.approx(0.90)
    assert by[(1, "ticket")].n_seeds == 2 and by[(1, "ticket")].percent_remaining == 80.0
    assert by[(0, "ticket")].test_acc_at_early_stop.n == 1
    assert not by[(0, "ticket")].test_acc_at_early_stop.has_interval
    _json_roundtrip([r.to_dict() for r in rows])


def test_summarize_rejects_duplicate_seed() -> None:
    with pytest.raises(ValueError):
        summarize([_run(1, "ticket", 0, 0.9, 1, 80.0), _run(1, "ticket", 0, 0.8, 1, 80.0)])


def test_interval_is_frozen() -> None:
    ci = mean_ci([1.0, 2.0])
    assert isinstance(ci, Interval)
    with pytest.raises(AttributeError):
        ci.mean = 3.0  # type: ignore[misc]
