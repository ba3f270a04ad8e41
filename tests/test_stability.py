"""Instability analysis: the barrier's definition, its oracles, the replayed rewind point, resume."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.errors import IntegrityWarning
from ticketlab.io import load_tensors, read_json
from ticketlab.store.checkpoint import load_training_state
from ticketlab.studies.stability import (
    error_barrier,
    run_stability,
    stability_markdown,
    stability_verdict,
    summarize_stability,
    errors_along_line,
    train_from,
)
from ticketlab.evidence.stats import Interval
from ticketlab.experiment.environment import environment, replicate_seed
from ticketlab.seeding import derive_seed

from conftest import cli, tiny_config

FAST = {"iterations": 120, "eval_every": 40, "checkpoint_every": 40}


def test_error_barrier_is_the_peak_above_the_mean_of_the_endpoints():
    assert error_barrier([10.0, 30.0, 12.0]) == pytest.approx(19.0)
    assert error_barrier([5.0, 4.0, 3.0]) == pytest.approx(1.0)  # the line's max may be an endpoint
    assert error_barrier([2.0, 2.0, 2.0]) == 0.0


def test_stable_verdict_needs_the_whole_interval_on_one_side_of_the_threshold():
    def iv(low, high, n=3):
        return Interval((low + high) / 2, low, high, n, 1.0)

    assert stability_verdict(iv(0.1, 1.9), 2.0) == "stable"
    assert stability_verdict(iv(2.1, 9.0), 2.0) == "unstable"
    assert stability_verdict(iv(1.0, 3.0), 2.0) == "inconclusive"
    assert stability_verdict(Interval(0.5, None, None, 1, None), 2.0) == "no verdict"


def test_identical_networks_have_a_barrier_of_exactly_zero(tmp_path):
    result = ticketlab.run(tiny_config(levels=1, train=FAST),
                           ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    env = environment(result.config)
    final = load_tensors(result.final_weights_path(0))
    errors = errors_along_line(env, final, final, 7)
    assert len(errors) == 7 and len(set(errors)) == 1 and error_barrier(errors) == 0.0
    # the endpoint is the trained network: its error is the run's final test error
    assert errors[0] == pytest.approx(100.0 * (1.0 - result.select(arm="ticket", level=0)[0]["final_test_acc"]), abs=1e-4)


def test_replayed_rewind_point_equals_the_one_the_experiment_captured(tmp_path):
    """The analysis replays the dense run to any k; at the experiment's own k it must reproduce
    the captured rewind point (weights and optimizer state) bit for bit."""
    config = tiny_config(levels=1, rewind_iteration=40, train=FAST)
    result = ticketlab.run(config, ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    env = environment(config)
    seed = replicate_seed(config, 0)
    weights, optimizer_state = train_from(env, load_tensors(result.store.init_path(0)), {}, None, 0, 40,
                                          derive_seed(seed, "data"), derive_seed(seed, "rng", 0, "ticket"))
    captured_weights, captured_state, _ = load_training_state(result.store, result.store.rewind_path(0))
    assert weights.keys() == captured_weights.keys()
    assert all(torch.equal(weights[n], captured_weights[n]) for n in weights)
    assert all(torch.equal(optimizer_state[n].float(), captured_state[n].float()) for n in captured_state)


def test_analysis_resumes_from_its_files_and_summarises_per_level_and_k(tmp_path):
    result = ticketlab.run(tiny_config(levels=2, seeds=2, train=FAST),
                           ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    rows = run_stability(result.directory, levels=[0, 2], ks=[0, 40], points=5)
    assert [(r.level, r.k) for r in rows] == [(0, 0), (0, 40), (2, 0), (2, 40)]
    assert all(r.barrier.n == 2 for r in rows)
    folder = result.directory / "stability" / "replicate_1" / "level_02" / "k_40"
    first = read_json(folder / "result.json")
    copies = {p.name: p.stat().st_mtime_ns for p in folder.glob("copy_*.safetensors")}
    assert len(copies) == 2 and first["level"] == 2 and len(first["errors"]) == 5
    # killed after the copies were trained, before the interpolation was written: nothing retrains
    (folder / "result.json").unlink()
    again = run_stability(result.directory, levels=[2], ks=[40], points=5, replicates=[1])
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("copy_*.safetensors")} == copies
    assert read_json(folder / "result.json")["barrier"] == first["barrier"] and again[0].barrier.n == 1
    assert (result.directory / "stability" / "barrier_vs_k.png").stat().st_size > 0
    # the two copies differ (different data orders) and start from the same masked point
    a, b = (load_tensors(folder / f"copy_{c}.safetensors") for c in (0, 1))
    mask = result.mask(2, 1)
    assert any(not torch.equal(a[n], b[n]) for n in a)
    assert all(torch.equal(a[n][~mask[n]], torch.zeros_like(a[n][~mask[n]])) for n in mask)


def test_stability_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    result = ticketlab.run(tiny_config(levels=1, train=FAST),
                           ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    code, out, err = cli(["stability", str(result.directory), "--levels", "5"], capsys)
    assert code == 2 and "outside the experiment" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli(["stability", str(result.directory), "--k", "500"], capsys)
    assert code == 2 and "below the training length" in err
    code, out, err = cli(["stability", str(result.directory), "--k", "0", "--points", "3"], capsys)
    assert code == 0 and "| 0 | 100.0 | 0 | 1 |" in out and "no verdict" in out


def test_copies_that_learned_nothing_are_not_called_stable():
    records = [{"level": 3, "k": 50, "percent_remaining": 10.0, "barrier": 0.0, "test_examples": 1000,
                "endpoint_test_acc": [0.012, 0.011], "replicate": r} for r in range(3)]
    (row,) = summarize_stability(records, 2.0, chance=1 / 59)
    assert row.verdict == "not trained" and row.barrier.low >= 0.0
    trained = [{**r, "endpoint_test_acc": [0.97, 0.98]} for r in records]
    assert summarize_stability(trained, 2.0, chance=1 / 59)[0].verdict == "stable"


# ---------------------------------------------------------------------------- the analysis' files
@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """An experiment with one stability cell (two seeds), copied by each test."""
    root = tmp_path_factory.mktemp("analysed")
    result = ticketlab.run(tiny_config(levels=1, seeds=2, train=FAST),
                           ticketlab.RunOptions(root=str(root), device="cpu", progress=False, workers=1))
    rows = run_stability(result.directory, levels=[1], ks=[40], points=5)
    return result.directory, rows


@pytest.fixture
def analysis(analysed, tmp_path):
    import shutil

    directory, rows = analysed
    copy = tmp_path / directory.name
    shutil.copytree(directory, copy)
    return copy, rows


CELL = "stability/replicate_0/level_01/k_40/"


def _rerun(directory) -> list:
    with pytest.warns(IntegrityWarning, match="set aside"):
        return run_stability(directory, levels=[1], ks=[40], points=5)


def test_every_stability_file_is_checksummed_and_checked(analysis, capsys):
    directory, _ = analysis
    code, out, err = cli(["check", str(directory)], capsys)
    assert code == 0 and "0 damaged" in out, out + err
    outputs = [p for p in (directory / "stability").rglob("*") if p.is_file() and p.name not in ("manifest.json", ".lock")]
    assert {p.name for p in outputs} >= {"copy_0.safetensors", "copy_1.safetensors", "result.json", "dense_k40.safetensors",
                                         "stability.json", "barrier_vs_k.png"}
    for path in outputs:
        assert path.name in read_json(path.parent / "manifest.json")["files"], path


def test_damaged_copy_and_deleted_result_are_recomputed_not_used(analysis, capsys):
    directory, rows = analysis
    copy = directory / CELL / "copy_0.safetensors"
    data = bytearray(copy.read_bytes())
    data[-64:] = b"\x00" * 64
    copy.write_bytes(bytes(data))
    (directory / CELL / "result.json").unlink()
    code, out, err = cli(["check", str(directory)], capsys)
    assert code == 1 and f"damaged: {CELL}copy_0.safetensors" in out and f"damaged: {CELL}result.json: missing" in out
    again = _rerun(directory)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in rows]
    code, out, err = cli(["check", str(directory)], capsys)
    assert code == 0 and "0 damaged" in out, out + err


@pytest.mark.parametrize("content", ["{}", "edit", "other cell"])
def test_a_bad_result_json_is_recomputed(analysis, capsys, content):
    import json

    directory, rows = analysis
    path = directory / CELL / "result.json"
    record = json.loads(path.read_text())
    if content == "edit":
        record["barrier"] = 50.0
        text = json.dumps(record)
    elif content == "other cell":  # a result copied from replicate 1, manifest entry updated to match
        from ticketlab.io import write_json_atomic

        write_json_atomic(path, read_json(directory / CELL.replace("replicate_0", "replicate_1") / "result.json"),
                          checksum=True)
        text = None
    else:
        text = content
    if text is not None:
        path.write_text(text)
    code, out, err = cli(["check", str(directory)], capsys)
    assert code == 1 and f"damaged: {CELL}result.json" in out, out + err
    again = _rerun(directory)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in rows]


def test_stale_temporaries_of_a_killed_analysis_are_removed(analysis):
    directory, rows = analysis
    stale = directory / CELL / ".result.json.abc123.tmp"
    stale.write_text("{")
    assert [r.to_dict() for r in run_stability(directory, levels=[1], ks=[40], points=5)] == [r.to_dict() for r in rows]
    assert not stale.exists()


def test_untrained_pairs_are_left_out_of_the_barrier_per_pair_and_counted():
    """The issue's cell: mean accuracy well above chance, yet two of five pairs learned nothing
    (barrier ~ 0); averaged in, they pulled an unstable cell towards 'stable'."""
    def record(replicate, barrier, accs):
        return {"level": 10, "k": 200, "percent_remaining": 10.7, "barrier": barrier, "test_examples": 1000,
                "endpoint_test_acc": accs, "replicate": replicate, "chance": 0.1}

    trained = [record(r, b, [0.95, 0.96]) for r, b in enumerate([6.0, 7.5, 9.0])]
    untrained = [record(3, 0.0, [0.10, 0.11]), record(4, 0.1, [0.09, 0.10])]
    half = [record(5, 40.0, [0.95, 0.12])]  # one copy failed to train: a failed training, not instability
    cell = trained + untrained + half
    assert sum(sum(r["endpoint_test_acc"]) / 2 for r in cell) / len(cell) > 2 * 0.1  # the cell mean hides them
    (row,) = summarize_stability(cell, 2.0)
    (alone,) = summarize_stability(trained, 2.0)
    assert row.untrained == 3 and row.barrier.n == 3
    assert row.barrier == alone.barrier and row.verdict == alone.verdict == "unstable"
    assert row.endpoint_acc == alone.endpoint_acc
    assert row.to_dict()["untrained_pairs_excluded"] == 3
    table = stability_markdown([row])
    assert "| 10 | 10.7 | 200 | 3 | 3 |" in table and "untrained pairs excluded" in table
    # regression (no chance level): every pair counts
    assert summarize_stability([{**r, "chance": None} for r in cell], 2.0)[0].untrained == 0


def test_stability_uses_the_verdicts_one_sided_95_percent_bound():
    """Barriers 0.5, 1.0, 1.5: the one-sided 95% upper bound is 1.84 (stable at 2 points), the
    two-sided 95% interval's upper end 2.24 would have said inconclusive."""
    from ticketlab.studies.stability import barrier_interval

    bound = barrier_interval([0.5, 1.0, 1.5], test_examples=None)
    assert bound.high == pytest.approx(1.0 + 2.919986 * 0.5 / 3 ** 0.5, abs=1e-5)
    assert stability_verdict(bound, 2.0) == "stable"
    assert stability_verdict(barrier_interval([2.5, 3.0, 3.5], test_examples=None), 2.0) == "unstable"


def test_the_default_line_has_the_papers_30_points():
    import inspect

    from ticketlab.studies.stability import run_stability

    assert inspect.signature(run_stability).parameters["points"].default == 30
