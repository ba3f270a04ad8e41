"""Tests for ticketlab.evidence.verdicts: the stated criteria behave as a reviewer would sign.

Each case here was a failure of the earlier rules (see the issue "Verdicts a reviewer would
sign"): a two-seed ticket 3 points below dense labelled winning, one test example worse on every
seed judged by the width of an interval rather than a stated margin, ties at the last step
counted as winning, no multiplicity correction, and a headline reached by skipping failures.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from scipy import stats as sps

from ticketlab.evidence.verdicts import Criteria, verdict_table


def run(level: int, arm: str, seed: int, acc: float, es: int = 1000, pct: float | None = None,
        final_step: int = 3000, test_examples: int = 1000, status: str | None = None) -> dict:
    record = {
        "level": level, "arm": arm, "seed": seed,
        "percent_remaining": 100.0 * 0.8 ** level if pct is None else pct,
        "test_acc_at_early_stop": acc, "final_test_acc": acc, "early_stop_step": es,
        "final_step": final_step, "test_examples": test_examples,
    }
    if status is not None:
        record["status"] = status
    return record


def dense(accs: list[float], es: int = 1000, **kw) -> list[dict]:
    return [run(0, "ticket", s, a, es, **kw) for s, a in enumerate(accs)]


def level(lvl: int, accs: list[float], arm: str = "ticket", es: int = 1000, **kw) -> list[dict]:
    return [run(lvl, arm, s, a, es, **kw) for s, a in enumerate(accs)]


def judge(runs: list[dict], **criteria) -> object:
    return verdict_table(runs, Criteria(**criteria), eval_every=100)


# ---------------------------------------------------------------- evidence floor


def test_two_seeds_three_points_below_dense_is_never_matching() -> None:
    runs = dense([0.97, 0.90]) + level(1, [0.94, 0.87], es=500)
    row = judge(runs).row(1)
    assert row.label == "no verdict" and not row.matching and not row.winning
    assert "at least 3" in row.reason
    assert judge(runs).sparsest_matching_level is None


def test_fewer_seeds_make_the_same_evidence_harder_to_earn() -> None:
    # per-seed differences with mean -0.3 points and sd 0.2 points
    pattern = [-0.001, -0.005, -0.003]
    for n, expected in ((3, False), (9, True)):
        diffs = (pattern * 3)[:n]
        dense_accs = [0.95 + 0.001 * s for s in range(n)]
        runs = dense(dense_accs) + level(1, [a + d for a, d in zip(dense_accs, diffs)], es=1000)
        assert judge(runs).row(1).matching is expected, n


def test_one_example_worse_on_every_seed_is_judged_by_the_stated_margin() -> None:
    dense_accs = [0.950, 0.960, 0.955]
    ticket_accs = [a - 0.001 for a in dense_accs]  # one of 1,000 test examples, every seed
    runs = dense(dense_accs, es=1000) + level(1, ticket_accs, es=900)
    generous = judge(runs, margin=0.005).row(1)
    strict = judge(runs, margin=0.0005).row(1)
    assert generous.matching and generous.accuracy.floored  # zero spread floored, not "certain"
    assert 0 < generous.accuracy.p_value < 0.05
    assert strict.label == "not matching"
    # the bound by hand: -0.1 points - t(0.95, 2) * (0.1 points / sqrt 6) / sqrt 3
    expected = -0.001 - sps.t.ppf(0.95, 2) * (0.001 / math.sqrt(6)) / math.sqrt(3)
    assert generous.accuracy.bound == pytest.approx(expected)


def test_std_rule_is_frankle_2020_within_one_standard_deviation() -> None:
    dense_accs = [0.950, 0.960, 0.970]  # sd = 1 point
    runs = dense(dense_accs) + level(1, [0.951, 0.951, 0.951]) + level(2, [0.949, 0.949, 0.949])
    table = judge(runs, rule="std")
    assert table.row(1).matching  # 95.1 >= 96.0 - 1.0
    assert not table.row(2).matching  # 94.9 < 95.0
    with pytest.raises(ValueError):
        Criteria(rule="loose")  # type: ignore[arg-type]


# ---------------------------------------------------------------- winning


def test_ties_at_the_last_step_are_not_winning() -> None:
    runs = dense([0.95, 0.96, 0.97], es=3000) + level(1, [0.955, 0.965, 0.975], es=3000)
    row = judge(runs).row(1)
    assert row.label == "matching" and not row.winning
    assert "did not early-stop" in row.reason and "train longer" in row.reason
    assert "dense seed 0" in row.not_early_stopped


def test_ties_on_the_evaluation_grid_count_as_no_later() -> None:
    runs = dense([0.95, 0.96, 0.97], es=1000) + level(1, [0.955, 0.965, 0.975], es=1000)
    row = judge(runs).row(1)
    assert row.label == "winning" and row.early_stop.floored


def test_a_consistently_later_ticket_is_not_winning() -> None:
    runs = dense([0.95, 0.96, 0.97], es=1000) + level(1, [0.955, 0.965, 0.975], es=1200)
    row = judge(runs).row(1)
    assert row.label == "matching" and "not winning" in row.reason


# ---------------------------------------------------------------- controls and multiplicity


def test_controls_are_holm_adjusted_over_levels_and_controls() -> None:
    d = [0.950, 0.960, 0.955]
    runs = dense(d)
    runs += level(1, d) + level(1, [a - 0.030 for a in d], arm="reinit")      # clear win
    runs += level(1, [a - 0.002 + e for a, e in zip(d, (0.0, 0.0009, -0.0009))], arm="random")  # small
    runs += level(2, d) + level(2, [a + 0.001 for a in d], arm="reinit")      # control better
    table = judge(runs)
    tests = {(r.level, arm): c for r in table for arm, c in r.controls.items()}
    raw = [tests[k].test.p_value for k in sorted(tests)]
    from ticketlab.evidence.stats import holm_adjust

    assert [tests[k].p_holm for k in sorted(tests)] == pytest.approx(holm_adjust(raw))
    assert tests[(1, "reinit")].beats is True
    assert tests[(2, "reinit")].beats is False
    # an unadjusted test of the small random difference passes, the family-wise one does not
    assert tests[(1, "random")].test.p_value < 0.05 < tests[(1, "random")].p_holm
    assert tests[(1, "random")].beats is False


def test_control_with_too_few_seeds_makes_no_claim() -> None:
    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, d) + [run(1, "random", 0, 0.5), run(1, "random", 1, 0.5)]
    test = judge(runs).row(1).controls["random"]
    assert test.beats is None and test.p_holm is None


# ---------------------------------------------------------------- headline, pairing, degenerate


def test_headline_stops_at_the_first_failure() -> None:
    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, d, es=900) + level(2, [a - 0.05 for a in d]) + level(3, d, es=900)
    table = judge(runs)
    assert [r.label for r in table] == ["winning", "not matching", "winning"]
    assert table.sparsest_matching_level == 1
    assert [r.in_sequence for r in table] == [True, False, False]
    assert [r.is_sparsest_matching for r in table] == [True, False, False]
    assert "Sparsest matching level: 1" in table.headline()


def test_pairs_by_seed_number_not_order_and_reports_unpaired_seeds() -> None:
    d = [0.80, 0.90, 0.95]  # large seed-to-seed spread: only pairing shows the ticket equals dense
    runs = dense(d) + level(1, d, es=900) + [run(1, "ticket", 7, 0.1)]
    shuffled = list(runs)
    random.Random(3).shuffle(shuffled)
    table = judge(runs)
    assert judge(shuffled).to_dict() == table.to_dict()
    row = table.row(1)
    assert row.seeds == (0, 1, 2) and row.unpaired_seeds == (7,)
    assert row.label == "winning"


def test_diverged_level_is_labelled_and_ends_the_sequence() -> None:
    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, d, es=900)
    runs[-1]["status"] = "diverged"
    runs += level(2, d, es=900)
    table = judge(runs)
    assert table.row(1).label == "diverged" and table.sparsest_matching_level is None
    assert not table.row(2).in_sequence


def test_table_is_strict_json_with_the_criteria() -> None:
    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, d) + level(1, [0.5, 0.5, 0.5], arm="random")
    out = json.loads(json.dumps(judge(runs).to_dict(), allow_nan=False))
    assert out["criteria"]["margin"] == 0.005 and len(out["criteria"]["statements"]) == 5
    assert out["rows"][0]["controls"]["random"]["beats"] is True


def test_requires_a_dense_run() -> None:
    with pytest.raises(ValueError):
        verdict_table(level(1, [0.9, 0.9, 0.9]))


def test_tables_show_a_level_whose_tickets_all_diverged() -> None:
    from ticketlab.evidence.tables import level_rows, markdown_table

    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, d, es=900)
    for seed in range(3):
        runs.append(run(2, "ticket", seed, None, None, status="diverged"))  # type: ignore[arg-type]
    table = judge(runs)
    rows = level_rows(runs, table)
    assert rows[-1] == {"level": "2", "verdict": "diverged"}
    assert "| 2 | - |" in markdown_table(runs, table) and "diverged" in markdown_table(runs, table)


def test_headline_says_the_sequence_stopped_at_a_failing_first_level_while_later_levels_match() -> None:
    """The issue's case: the first level fails, most later ones are labelled matching in the table.
    The headline must name the level that stopped the claim and count the matching levels outside it."""
    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, [a - 0.05 for a in d])
    for lvl in range(2, 6):
        runs += level(lvl, d, es=900) if lvl != 4 else level(lvl, [a - 0.05 for a in d])
    table = judge(runs)
    labels = [r.label for r in table]
    matching = sum(r.matching for r in table)
    assert labels[0] == "not matching" and matching == 3 and table.sparsest_matching_level is None
    headline = table.headline()
    assert "No pruned level is matching" not in headline  # the old sentence contradicted the table
    assert "stops at the first level tested, level 1" in headline and "not matching" in headline
    assert f"{matching} of the {len(table)} levels outside the claim are matching on their own" in headline


def test_headline_names_where_the_sequence_stopped_after_a_claim() -> None:
    d = [0.95, 0.96, 0.97]
    runs = dense(d) + level(1, d, es=900) + level(2, [a - 0.05 for a in d]) + level(3, d, es=900)
    headline = judge(runs).headline()
    assert headline.startswith("Sparsest matching level: 1")
    assert "The sequence stops at level 2, which is not matching; 1 of the 2 levels outside the claim is matching" in headline
    # nothing matching past the stop: no second sentence
    only = judge(dense(d) + level(1, d, es=900) + level(2, [a - 0.05 for a in d])).headline()
    assert "stops" not in only


def test_headline_when_the_first_level_has_no_verdict_or_diverged() -> None:
    d = [0.95, 0.96, 0.97]
    few = dense(d) + level(1, d[:2], es=900) + level(2, d, es=900)
    assert "level 1" in judge(few).headline() and "has no verdict (fewer than 3 paired seeds)" in judge(few).headline()
    assert "1 of the 2 levels outside the claim is matching on its own" in judge(few).headline()
    runs = dense(d) + level(1, d, es=900)
    runs[-1]["status"] = "diverged"
    assert "which diverged" in judge(runs + level(2, d, es=900)).headline()
