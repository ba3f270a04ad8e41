"""Sequential seeds (issue 20): seeds = "auto" trains look by look until every level is decided."""

from __future__ import annotations

import pytest

import ticketlab
from ticketlab.api import Result
from ticketlab.cli import main
from ticketlab.config import Config, RunOptions
from ticketlab.errors import ConfigError, StoreError
from ticketlab.evidence.sequential import Design
from ticketlab.evidence.tables import caption, compact_rows
from ticketlab.evidence.verdicts import Criteria, verdict_table
from ticketlab.experiment.looks import replay, stored_design
from ticketlab.experiment.unit import Unit

SEQUENTIAL = {"model": "mlp_32_16", "levels": 2, "seeds": "auto", "max_seeds": 4,
              "sequential": {"looks": [3, 4], "futility": None},
              "data": {"dataset": "digits"}, "train": {"iterations": 100, "eval_every": 20, "batch_size": 32}}


def _options(root) -> RunOptions:
    return RunOptions(root=str(root), device="cpu", workers=1, progress=False)


def _differences(result: Result, level: int, seeds: int) -> list[float]:
    acc = {(r["replicate"], r["level"]): r["test_acc_at_early_stop"] for r in result.select("ticket")}
    return [100 * (acc[(s, level)] - acc[(s, 0)]) for s in range(seeds)]


@pytest.mark.parametrize("margin", [0.5, 0.001])  # 50 points: decided at once; 0.1 point: never before the end
def test_the_seeds_trained_are_the_ones_the_design_decides(tmp_path, margin, capsys) -> None:
    result = ticketlab.run(SEQUENTIAL, _options(tmp_path), criteria=Criteria(margin=margin))
    design = stored_design(result.store)
    assert design == Design(looks=(3, 4), alpha=0.05, margin=100 * margin, futility=None,
                            sd_floor=100 / result.runs[0]["test_examples"] / 6 ** 0.5)
    first = {level: design.decide(_differences(result, level, 3)) for level in (1, 2)}
    expected = 3 if all(d.stopped for d in first.values()) else 4
    assert sorted({r["replicate"] for r in result.runs}) == list(range(expected))
    assert expected == (3 if margin == 0.5 else 4)
    state = result.sequential()
    assert state.finished and state.seeds == expected
    for level in (1, 2):
        assert state.decisions[level] == design.decide(_differences(result, level, expected))
    table = result.verdicts(Criteria(margin=0.3))  # the stored design's margin, not the one asked now
    assert table.criteria.margin == margin and table.design == design
    rows = compact_rows(result.runs, table)
    assert [row["look"] for row in rows] == ["-"] + [str(state.decided_at(level) + 1) for level in (1, 2)]
    assert "sequential: looks at 3, 4 seeds" in caption(result.runs, table)
    main(["check", str(result.directory)])  # counts the trainings the design asked for, not max_seeds'
    assert f"{3 * expected} of {3 * expected} trainings finished" in capsys.readouterr().out


def test_a_killed_sequential_run_resumes_at_its_look_and_keeps_its_design(tmp_path) -> None:
    criteria = Criteria(margin=0.001)

    def kill_in_look_two(unit: Unit, summary: dict) -> None:
        if unit.replicate == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ticketlab.run(SEQUENTIAL, _options(tmp_path), on_done=kill_in_look_two, criteria=criteria)
    (directory,) = tmp_path.iterdir()
    killed = Result.load(directory)
    state = killed.sequential()
    assert state.look == 1 and not state.finished and {r["replicate"] for r in killed.runs} == {0, 1, 2, 3}
    with pytest.raises(StoreError, match="look 2 of its sequential design has not finished"):
        Result.load(directory, require_complete=True)
    with pytest.raises(ConfigError, match="margin: stored 0.1, asked 0.2"):
        ticketlab.run(SEQUENTIAL, _options(tmp_path), criteria=Criteria(margin=0.002))

    def summaries() -> dict[tuple[int, int], int]:
        store = killed.store
        return {(r, level): store.unit(r, level, "ticket").summary.stat().st_mtime_ns
                for r in range(4) for level in range(3) if store.unit(r, level, "ticket").done()}

    before = summaries()
    seen: list[Unit] = []
    result = ticketlab.run(SEQUENTIAL, _options(tmp_path), on_done=lambda u, s: seen.append(u), criteria=criteria)
    assert result.sequential().finished and len(result.runs) == 12  # 4 seeds x (dense + 2 levels)
    assert seen and all(u.replicate == 3 for u in seen)  # the resumed run is in look 2, nothing of look 1 runs
    after = summaries()
    assert all(after[key] == stamp for key, stamp in before.items()) and len(after) == 12  # finished units kept


def _record(replicate: int, level: int, acc: float) -> dict:
    return {"replicate": replicate, "seed": replicate, "level": level, "arm": "ticket", "status": "ok",
            "percent_remaining": 100 * 0.8 ** level, "test_acc_at_early_stop": acc, "final_test_acc": acc,
            "early_stop_step": 100, "final_step": 300, "test_examples": 1000}


def test_new_seeds_train_only_as_deep_as_the_deepest_undecided_level() -> None:
    config = Config.from_dict({"levels": 3, "seeds": "auto", "max_seeds": 5, "sequential": {"looks": [3, 5]},
                               "controls": ["reinit"]})
    design = Design(looks=(3, 5), margin=0.5, futility=None)
    runs = []
    for r, noise in enumerate([0.0, 0.004, -0.004]):
        runs += [_record(r, 0, 0.95), _record(r, 1, 0.95 + noise), _record(r, 2, 0.951), _record(r, 3, 0.951)]
    done = {(r["replicate"], r["level"], r["arm"]) for r in runs} | {(r, lvl, "reinit") for r in range(3) for lvl in (1, 2, 3)}
    state = replay(config, design, runs, lambda u: (u.replicate, u.level, u.arm) in done)
    assert state.decisions[1].status == "continue" and state.decisions[3].status == "matching"
    assert state.look == 1 and not state.finished
    assert state.next_units == [Unit(r, level, arm) for r in (3, 4) for level, arm in
                                ((0, "ticket"), (1, "ticket"), (1, "reinit"))]


def test_bad_sequential_configs_are_one_line_refusals(tmp_path) -> None:
    for raw, words in (({"seeds": "auto"}, "needs max_seeds"), ({"seeds": 3, "max_seeds": 5}, "go with seeds = 'auto'"),
                       ({"seeds": "auto", "max_seeds": 5, "sequential": {"looks": [3, 4]}}, "must be max_seeds"),
                       ({"seeds": "many"}, "seeds must be"), ({"claim_levels": [9]}, "claim_levels must")):
        with pytest.raises(ConfigError, match=words):
            Config.from_dict(raw)
    with pytest.raises(ConfigError, match="below --min-seeds 3"):
        ticketlab.run({**SEQUENTIAL, "sequential": {"looks": [2, 4]}}, _options(tmp_path))


def test_claim_levels_are_a_holm_family_and_the_caption_says_so() -> None:
    runs = []
    for s in range(4):
        runs += [_record(s, 0, 0.95), _record(s, 1, 0.95 + 0.001 * (s % 2)), _record(s, 2, 0.90),
                 _record(s, 3, 0.951 - 0.001 * (s % 2))]
    fixed = verdict_table(runs, Criteria(), eval_every=100)
    family = verdict_table(runs, Criteria(), eval_every=100, claim_levels=(1, 3))
    assert fixed.sparsest_matching_level == 1 and not fixed.row(3).in_sequence  # level 2 stops the sequence
    assert family.sparsest_matching_level == 3 and family.row(3).decision is not None
    assert family.row(2).decision is None and not family.row(2).in_sequence
    assert "Holm over the 2" in caption(runs, family) and "fixed sequence from dense" in caption(runs, fixed)
    assert family.headline().startswith("Sparsest matching claim level: 3")


def test_a_diverged_ticket_closes_its_level_and_the_deeper_ones() -> None:
    """Replicate 1's level-2 ticket diverged (its level 3 is never trained): levels 2 and 3 can
    never be judged at a look, so only level 1 (still undecided) keeps seeds coming."""
    config = Config.from_dict({"levels": 3, "seeds": "auto", "max_seeds": 5, "sequential": {"looks": [3, 5]}})
    design = Design(looks=(3, 5), margin=0.5, futility=None)
    runs = []
    for r, noise in enumerate([0.0, 0.004, -0.004]):
        runs += [_record(r, 0, 0.95), _record(r, 1, 0.95 + noise), _record(r, 2, 0.951)]
        runs += [_record(r, 3, 0.951)] if r != 1 else []
    runs[6] |= {"status": "diverged", "test_acc_at_early_stop": None}
    assert (runs[6]["replicate"], runs[6]["level"]) == (1, 2)
    done = {(r["replicate"], r["level"], r["arm"]) for r in runs}
    state = replay(config, design, runs, lambda u: (u.replicate, u.level, u.arm) in done)
    assert set(state.decisions) == {1} and state.decisions[1].status == "continue"
    assert not state.finished and {u.level for u in state.next_units} == {0, 1}
