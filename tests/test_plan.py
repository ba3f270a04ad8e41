"""`ticketlab plan`: seeds and cost of a decided claim, from a tiny pilot experiment (issue 20)."""

from __future__ import annotations

import json

import pytest

import ticketlab
from ticketlab.api import Result
from ticketlab.cli import main
from ticketlab.config import RunOptions
from ticketlab.evidence.power import pilot_differences, pilot_sd, plan, plan_from_experiment, seeds_for_level

PILOT = {"model": "mlp_32_16", "levels": 2, "seeds": 3, "controls": ["reinit"], "control_levels": [2],
         "data": {"dataset": "digits"}, "train": {"iterations": 100, "eval_every": 20, "batch_size": 32}}


@pytest.fixture(scope="module")
def pilot(tmp_path_factory) -> Result:
    root = tmp_path_factory.mktemp("pilot")
    return ticketlab.run(PILOT, RunOptions(root=str(root), device="cpu", workers=1, progress=False))


def test_the_plan_is_the_power_modules_plan_of_the_pilots_differences(pilot: Result) -> None:
    planned = plan_from_experiment(pilot, power=0.9, margin=0.5, alpha=0.05, method="product")
    differences = pilot_differences(pilot.runs)
    assert sorted(differences) == [1, 2] and all(len(d) == 3 for d in differences.values())
    for level, seeds in differences.items():  # ticket - dense in points, paired by seed
        dense = {r["seed"]: r["test_acc_at_early_stop"] for r in pilot.select("ticket", 0)}
        for run in pilot.select("ticket", level):
            assert seeds[run["seed"]] == pytest.approx(100 * (run["test_acc_at_early_stop"] - dense[run["seed"]]))
    floor = 100 / pilot.runs[0]["test_examples"] / 6 ** 0.5
    expected = plan([list(differences[1].values()), list(differences[2].values())], 0.9, 0.5, 0.05,
                    sd_floor=floor, method="product")
    assert planned.plan.level_seeds == expected.level_seeds and planned.plan.claim_seeds == expected.claim_seeds
    sd = pilot_sd([list(d.values()) for d in differences.values()], sd_floor=floor).planning[0]
    assert planned.levels[0].seeds == seeds_for_level(sd, 0.9, 0.5, 0.05)
    # cost: per seed dense + 2 tickets + reinit at level 2; the pilot's 3 seeds are already there
    n = planned.plan.claim_seeds
    assert planned.trainings == 4 * n and planned.already == 12
    assert planned.levels[0].trainings == 2 * planned.levels[0].seeds  # dense + level 1
    cells = {(r["level"], r["arm"]) for r in pilot.runs}
    per_seed = sum(sum(r["wall_time_s"] for r in pilot.select(arm, level)) / 3 for level, arm in cells)
    assert planned.seconds == pytest.approx(n * per_seed)  # each cell's mean recorded wall time
    assert planned.remaining_seconds == pytest.approx(planned.seconds * (n - 3) / n)
    assert json.loads(json.dumps(planned.to_dict()))["plan"]["claim_seeds"] == n


def test_the_cli_prints_the_plan_and_refuses_bad_input_in_one_line(pilot: Result, capsys) -> None:
    main(["plan", str(pilot.directory), "--joint", "product", "--margin", "5"])
    out = capsys.readouterr().out
    assert "whole claim (fixed sequence over 2 level(s)" in out and "trainings" in out and "of training left" in out
    assert out.splitlines()[1].split()[:3] == ["level", "%", "left"]
    for args, words in ((["--power", "1.5"], "power must be in"), (["--joint", "magic"], "--joint must be"),
                        (["--margin", "-1"], "margin")):
        with pytest.raises(SystemExit) as stop:
            main(["plan", str(pilot.directory), *args])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and words in err and err.count("\n") == 1, err


def test_a_pilot_without_two_paired_seeds_is_refused(tmp_path, capsys) -> None:
    one = ticketlab.run({**PILOT, "seeds": 1, "controls": [], "control_levels": [], "levels": 1},
                        RunOptions(root=str(tmp_path), device="cpu", workers=1, progress=False))
    with pytest.raises(SystemExit) as stop:
        main(["plan", str(one.directory)])
    assert stop.value.code == 2 and "2 or more seeds" in capsys.readouterr().err


def test_show_suggests_plan_when_more_seeds_could_decide_a_level(pilot: Result, capsys) -> None:
    main(["show", str(pilot.directory)])
    out = capsys.readouterr().out
    table = pilot.verdicts()
    open_levels = [r.level for r in table if r.label == "no verdict" or (r.label == "not matching"
                                                                       and r.accuracy.mean > -table.criteria.margin)]
    assert open_levels, "the 100-iteration pilot is too noisy for 3 seeds to decide its levels"
    assert f"undecided: level(s) {', '.join(map(str, open_levels))}" in out
    assert f"ticketlab plan {pilot.directory}" in out.replace("\n", "")
    assert "δ* pp" in out and "reinit @ES" not in out  # compact: controls only in the reasons
    main(["show", str(pilot.directory), "--wide"])
    wide = capsys.readouterr().out
    assert "δ* (pp)" in wide and "reinit @ES (%)" in wide and "beats reinit" in wide


def test_a_claim_family_is_planned_at_alpha_over_its_size(pilot: Result) -> None:
    import dataclasses

    from ticketlab.evidence.power import seeds_for_claim

    family = dataclasses.replace(pilot, config=pilot.config.replace(claim_levels=[1, 2]))
    planned = plan_from_experiment(family, method="product")
    sds = [level.sd for level in planned.levels]
    assert planned.claim_levels == (1, 2)
    assert planned.plan.claim_seeds == seeds_for_claim(sds, 0.9, 0.5, 0.025, method="product")
    assert planned.plan.level_seeds == plan_from_experiment(pilot, method="product").plan.level_seeds
    assert "Holm family of claim levels 1, 2, each planned at alpha 0.05/2" in "\n".join(planned.lines())
