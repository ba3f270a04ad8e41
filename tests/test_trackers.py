"""TensorBoard and MLflow get every training's curves, per-layer sparsity and the verdict table,
rebuilt from the store at each run (so a resumed run is complete and has no training twice)."""

from __future__ import annotations

import importlib.util

import pytest

import ticketlab

from conftest import refused_in_one_line, tiny_config

SHORT = {"iterations": 40, "eval_every": 20}
needs = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("mlflow") is None,
                           reason="the tensorboard and mlflow extras are not installed")


@needs
def test_trackers_get_every_curve_the_store_has(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    options = ticketlab.RunOptions(root=str(tmp_path), device="cpu", workers=1, progress=False,
                                   trackers=("tensorboard", "mlflow"))
    result = ticketlab.run(tiny_config(levels=1, seeds=2, controls=["random"], train=SHORT), options)
    run = result.select("random", 1)[1]
    events = EventAccumulator(str(result.directory / "tensorboard" / "replicate_1" / "level_01" / "random")).Reload()
    val_loss = events.Scalars("val_loss")
    assert [e.step for e in val_loss] == [r["step"] for r in result.metrics(1, 1, "random")]
    assert [e.value for e in val_loss] == pytest.approx([r["val_loss"] for r in result.metrics(1, 1, "random")])
    assert {f"percent_remaining/{layer}" for layer in run["layer_percent_remaining"]} <= set(events.Tags()["scalars"])

    client = MlflowClient((result.directory / "mlruns").resolve().as_uri())
    (experiment,) = [e for e in client.search_experiments() if e.name == result.directory.name]
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 + len(result.runs)  # the experiment's run and one nested run per training
    child = next(r for r in runs if r.data.params.get("arm") == "random" and r.data.params.get("replicate") == "1")
    history = client.get_metric_history(child.info.run_id, "val_acc")
    assert [m.value for m in history] == pytest.approx([r["val_acc"] for r in result.metrics(1, 1, "random")])
    parent = next(r for r in runs if "arm" not in r.data.params)
    assert "verdicts.md" in [a.path for a in client.list_artifacts(parent.info.run_id)]

    again = ticketlab.run(tiny_config(levels=1, seeds=2, controls=["random"], train=SHORT), options)  # a re-run
    assert len(client.search_runs([experiment.experiment_id])) == 1 + len(again.runs)  # rebuilt, not doubled


def test_an_unknown_tracker_is_one_line(tmp_path, capsys):
    refused_in_one_line(["run", "--dataset", "digits", "--model", "mlp_16", "--levels", "0", "--trackers", "wandb",
                         "--out", str(tmp_path / "out")], tmp_path / "out", "trackers must be", capsys)
