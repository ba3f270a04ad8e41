"""Tests for ticketlab.stats: intervals, paired tests, verdicts and tables."""

from __future__ import annotations

import json
import math
import random
import warnings

import pytest
from scipy import stats as sps

from ticketlab.stats import (
    Interval,
    PairedTest,
    Verdict,
    control_comparison,
    level_verdict,
    mean_ci,
    paired_test,
    sparsest_matching_level,
    summarize,
    verdict_table,
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


# ---------------------------------------------------------------- paired_test


def test_paired_test_matches_hand_computed_t() -> None:
    a = [0.90, 0.85, 0.88, 0.92]
    b = [0.87, 0.84, 0.86, 0.88]
    d = [x - y for x, y in zip(a, b)]  # 0.03, 0.01, 0.02, 0.04
    n = len(d)
    mean_d = sum(d) / n
    sd = math.sqrt(sum((x - mean_d) ** 2 for x in d) / (n - 1))
    t_hand = mean_d / (sd / math.sqrt(n))
    assert t_hand == pytest.approx(math.sqrt(15), rel=1e-9)  # 0.025 / (0.012910/2)

    res = paired_test(a, b)
    assert isinstance(res, PairedTest)
    assert res.test == "paired t-test"
    assert res.n == 4
    assert res.mean_difference == pytest.approx(0.025)
    assert res.statistic == pytest.approx(t_hand)
    assert res.p_value == pytest.approx(2 * sps.t.sf(t_hand, n - 1))
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert res.ci.low == pytest.approx(mean_d - half)
    assert res.ci.high == pytest.approx(mean_d + half)
    assert res.wilcoxon_p_value is None  # n < 6

    less = paired_test(a, b, alternative="less")
    greater = paired_test(a, b, alternative="greater")
    assert greater.p_value == pytest.approx(sps.t.sf(t_hand, n - 1))
    assert less.p_value == pytest.approx(1 - sps.t.sf(t_hand, n - 1))


def test_paired_test_is_paired_not_unpaired() -> None:
    # Large seed-to-seed spread, tiny consistent difference: only a paired
    # test sees it.
    b = [0.50, 0.70, 0.90, 0.60, 0.80]
    a = [x + 0.01 + 0.001 * i for i, x in enumerate(b)]
    assert paired_test(a, b).p_value < 1e-4
    assert sps.ttest_ind(a, b).pvalue > 0.5


def test_paired_test_all_zero_differences_gives_p_one() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = paired_test([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert res.p_value == 1.0
    assert res.statistic == 0.0
    assert res.mean_difference == 0.0
    assert res.note is not None and "zero" in res.note
    _json_roundtrip(res.to_dict())


def test_paired_test_constant_nonzero_difference_is_json_safe() -> None:
    res = paired_test([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert res.p_value == 0.0
    assert res.statistic == math.inf
    assert _json_roundtrip(res.to_dict())["statistic"] is None


def test_paired_test_single_pair_has_no_p_value() -> None:
    res = paired_test([0.9], [0.8])
    assert res.n == 1
    assert res.p_value is None and res.statistic is None
    assert res.note is not None and "1 seed" in res.note
    assert res.mean_difference == pytest.approx(0.1)
    _json_roundtrip(res.to_dict())


def test_paired_test_length_mismatch() -> None:
    with pytest.raises(ValueError):
        paired_test([0.9, 0.8], [0.9])


def test_paired_test_wilcoxon_from_six_pairs() -> None:
    a = [0.91, 0.92, 0.90, 0.95, 0.93, 0.94]
    b = [0.90, 0.90, 0.91, 0.91, 0.90, 0.90]
    res = paired_test(a, b)
    expected = sps.wilcoxon(a, b).pvalue
    assert res.wilcoxon_p_value == pytest.approx(expected)


def test_control_comparison_is_two_sided_ticket_minus_control() -> None:
    t = [0.9, 0.91, 0.93]
    c = [0.8, 0.83, 0.82]
    res = control_comparison(t, c)
    assert res.alternative == "two-sided"
    assert res.mean_difference == pytest.approx(0.0966666666)
    assert res.p_value == pytest.approx(sps.ttest_rel(t, c).pvalue)


# ---------------------------------------------------------------- verdicts


def test_verdict_clearly_better_and_earlier_is_winning() -> None:
    v = level_verdict(
        ticket=[0.95, 0.96, 0.955],
        dense=[0.90, 0.91, 0.905],
        ticket_es=[1000, 1100, 1050],
        dense_es=[3000, 3100, 2900],
    )
    assert isinstance(v, Verdict)
    assert v.matching and v.winning and v.label == "winning"
    assert v.p_value is not None and v.p_value > 0.9
    assert v.mean_difference == pytest.approx(0.05)
    assert "winning" in v.criterion


def test_verdict_equal_accuracy_but_later_is_matching_not_winning() -> None:
    acc = [0.90, 0.91, 0.92]
    v = level_verdict(acc, list(acc), ticket_es=[5000, 5200, 5100], dense_es=[3000, 3100, 2900])
    assert v.matching and not v.winning
    assert v.label == "matching"
    assert v.p_value == 1.0
    assert "not winning" in v.criterion


def test_verdict_consistently_much_worse_is_not_matching() -> None:
    v = level_verdict(
        ticket=[0.70, 0.72, 0.71, 0.69],
        dense=[0.90, 0.91, 0.92, 0.90],
        ticket_es=[100, 100, 100, 100],  # earlier, but that cannot rescue it
        dense_es=[3000, 3000, 3000, 3000],
    )
    assert not v.matching and not v.winning
    assert v.label == "not matching"
    assert v.p_value is not None and v.p_value < 0.05
    assert v.criterion.startswith("not matching")
    assert "significant" in v.criterion


def test_verdict_noisy_worse_ticket_fails_on_ci_rule() -> None:
    # diffs -0.30, +0.04, -0.22: t-test not significant with 3 seeds,
    # but the ticket mean 0.75 is far below dense's CI.
    v = level_verdict([0.60, 0.95, 0.70], [0.90, 0.91, 0.92], [1, 1, 1], [2, 2, 2])
    assert v.p_value is not None and v.p_value >= 0.05
    assert not v.matching
    assert "lower end" in v.criterion and "t-test" not in v.criterion


def test_verdict_margin_tolerates_small_drop() -> None:
    dense = [0.900, 0.910, 0.920, 0.905]
    ticket = [x - 0.005 + 0.0005 * i for i, x in enumerate(dense)]
    es = [1, 1, 1, 1]
    assert not level_verdict(ticket, dense, es, es, margin=0.0).matching
    assert level_verdict(ticket, dense, es, es, margin=0.01).matching


def test_verdict_single_seed_compares_directly() -> None:
    v = level_verdict([0.91], [0.90], [100], [200])
    assert v.matching and v.winning and v.p_value is None
    assert "single seed" in v.criterion
    v2 = level_verdict([0.89], [0.90], [100], [200])
    assert not v2.matching and not v2.winning
    assert "single seed" in v2.criterion
    assert level_verdict([0.89], [0.90], [100], [200], margin=0.02).matching
    _json_roundtrip(v.to_dict())


def test_verdict_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError):
        level_verdict([0.9, 0.9], [0.9, 0.9], [1], [1, 1])
    with pytest.raises(ValueError):
        level_verdict([], [], [], [])


def _verdict(matching: bool) -> Verdict:
    return Verdict(matching=matching, winning=False, criterion="x", p_value=None, mean_difference=0.0)


def test_sparsest_matching_level_skips_non_matching_denser_level() -> None:
    levels = [1, 2, 3, 4]
    pct = [80.0, 64.0, 51.2, 41.0]
    verdicts = [_verdict(True), _verdict(False), _verdict(True), _verdict(False)]
    assert sparsest_matching_level(levels, pct, verdicts) == 3
    # order of the inputs does not matter
    assert sparsest_matching_level(levels[::-1], pct[::-1], verdicts[::-1]) == 3
    assert sparsest_matching_level(levels, pct, [_verdict(False)] * 4) is None
    assert sparsest_matching_level([], [], []) is None


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


def _experiment() -> list[dict]:
    # Dense accuracy differs a lot between seeds; the level-1 ticket equals
    # dense seed by seed, so only seed pairing gives zero differences.
    dense = {0: 0.80, 1: 0.90, 2: 0.95}
    runs = [_run(0, "ticket", s, a, 3000 + s, 100.0) for s, a in dense.items()]
    runs += [_run(1, "ticket", s, a, 2000, 80.0) for s, a in dense.items()]
    runs += [_run(1, "ticket", 3, 0.10, 2000, 80.0)]  # no dense partner: excluded
    runs += [_run(1, "reinit", s, a - 0.10 - 0.01 * s, 2500, 80.0) for s, a in dense.items()]
    runs += [_run(1, "random", s, a - 0.02, 2500, 80.0) for s, a in dense.items() if s != 2]
    # level 2 much worse at every seed, level 3 matching again
    runs += [_run(2, "ticket", s, a - 0.20 - 0.01 * s, 2000, 64.0) for s, a in dense.items()]
    runs += [_run(3, "ticket", s, a + 0.001 * s, 4000, 51.2) for s, a in dense.items()]
    return runs


def test_verdict_table_pairs_by_seed_number_not_order() -> None:
    runs = _experiment()
    table = verdict_table(runs)
    shuffled = list(runs)
    random.Random(1234).shuffle(shuffled)
    assert verdict_table(shuffled).to_dict() == table.to_dict()

    assert [r.level for r in table] == [1, 2, 3]
    row1 = table.row(1)
    assert row1.seeds == (0, 1, 2)
    assert row1.unpaired_seeds == (3,)
    assert row1.verdict is not None
    assert row1.verdict.p_value == 1.0  # all paired differences are zero
    assert row1.verdict.mean_difference == 0.0
    assert row1.label == "winning"  # 2000 <= mean(3000, 3001, 3002)
    assert table.row(2).label == "not matching"
    assert table.row(3).label == "matching"  # later early stop than dense

    # controls: ticket − control by seed, over seeds both arms have
    assert set(row1.controls) == {"reinit", "random"}
    assert row1.controls["reinit"].mean_difference == pytest.approx(0.11)
    assert row1.controls["reinit"].n == 3
    assert row1.control_seeds["random"] == (0, 1)
    assert row1.controls["random"].mean_difference == pytest.approx(0.02)

    assert table.sparsest_matching_level == 3
    assert [r.is_sparsest_matching for r in table] == [False, False, True]
    _json_roundtrip(table.to_dict())


def test_verdict_table_requires_dense_runs() -> None:
    with pytest.raises(ValueError):
        verdict_table([_run(1, "ticket", 0, 0.9, 1, 80.0)])


def test_verdict_table_single_seed_rows_are_json_safe() -> None:
    runs = [_run(0, "ticket", 7, 0.90, 300, 100.0), _run(1, "ticket", 7, 0.91, 200, 80.0),
            _run(1, "reinit", 7, 0.85, 250, 80.0)]
    table = verdict_table(runs)
    row = table.row(1)
    assert row.verdict is not None and "single seed" in row.verdict.criterion
    assert row.controls["reinit"].p_value is None
    d = _json_roundtrip(table.to_dict())
    assert d["sparsest_matching_level"] == 1
    assert d["rows"][0]["controls"]["reinit"]["ci"]["low"] is None


def test_interval_is_frozen() -> None:
    ci = mean_ci([1.0, 2.0])
    assert isinstance(ci, Interval)
    with pytest.raises(AttributeError):
        ci.mean = 3.0  # type: ignore[misc]
