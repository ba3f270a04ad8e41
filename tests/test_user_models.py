"""Bringing your own model, data and loss: every failure a new user hit, now a passing test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import ticketlab
from ticketlab.errors import ConfigError, UserCodeError
from ticketlab.io import load_tensors

from user_code import models

TESTS = Path(__file__).parent
SCRIPT = TESTS / "user_code" / "script_model.py"
SHORT = {"train": {"iterations": 60, "eval_every": 20, "batch_size": 32}}


def opts(tmp_path, **kw):
    return ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=kw.pop("workers", 1), **kw)


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def _show(directory: str) -> subprocess.CompletedProcess:
    """`ticketlab show` in a fresh process that has none of the user's code."""
    return subprocess.run([sys.executable, "-m", "ticketlab", "show", directory], capture_output=True, text=True,
                          cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_main_module_objects_reach_worker_processes_and_results_read_without_them(tmp_path, how):
    """Factory and data defined inside main() of a script (or a script on stdin) train in 2 worker processes."""
    if how == "file":
        done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "local"], capture_output=True, text=True,
                              env=_env(), timeout=300)
    else:
        done = subprocess.run([sys.executable, "-", str(tmp_path), "local"], input=SCRIPT.read_text(),
                              capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    directory = next(line[4:] for line in done.stdout.splitlines() if line.startswith("DIR "))
    assert float(next(line[4:] for line in done.stdout.splitlines() if line.startswith("ACC "))) > 0.6
    shown = _show(directory)
    assert shown.returncode == 0, shown.stderr
    assert "level" in shown.stdout.lower()
    result = ticketlab.Result.load(directory)  # reads files only
    assert result.config.model.startswith("python:") and result.config.model_fingerprint


def test_main_module_objects_reach_ray_workers(tmp_path):
    pytest.importorskip("ray")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "ray"], capture_output=True, text=True,
                          env={**_env(), "RAY_USAGE_STATS_ENABLED": "0"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(next(line[4:] for line in done.stdout.splitlines() if line.startswith("ACC "))) > 0.6


def test_regression_is_trained_and_scored_not_silently_zero(tmp_path):
    result = ticketlab.run({"levels": 1, "seeds": 1, **SHORT, "train": {"iterations": 300, "eval_every": 100}},
                           opts(tmp_path), model=models.Regressor, data=models.regression_data())
    dense = result.select(arm="ticket", level=0)[0]
    assert dense["metric"] == "r2"
    assert dense["final_test_acc"] > 0.8  # R² of a nearly linear target
    history = result.metrics(level=0)
    assert history[-1]["val_loss"] < history[0]["val_loss"] / 5  # (the test split is scored only where reported)


def test_regression_targets_with_cross_entropy_are_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="floating point.*regression"):
        ticketlab.run({"levels": 1, **SHORT}, opts(tmp_path), model=models.Regressor, data=models.regression_data(),
                      task=ticketlab.Task("classification"))
    assert not any(tmp_path.iterdir())


def test_user_loss_and_score(tmp_path):
    task = ticketlab.Task(loss=torch.nn.functional.l1_loss, score=lambda p, t: -(p - t).abs().mean(), metric="neg_mae")
    result = ticketlab.run({"levels": 1, **SHORT}, opts(tmp_path), model=models.Regressor,
                           data=models.regression_data(), task=task)
    assert {r["metric"] for r in result.runs} == {"neg_mae"}
    assert all(r["final_test_acc"] < 0 for r in result.runs)


def test_tied_embeddings_train_with_one_mask_and_are_stored_once(tmp_path):
    result = ticketlab.run({"levels": 2, **SHORT}, opts(tmp_path), model=models.TinyGPT, data=models.sequence_data())
    mask = result.mask(2)
    assert set(mask) == {"wte.weight", "block.weight"}  # lm_head.weight is wte.weight: one mask
    final = load_tensors(result.final_weights_path(2))
    assert "lm_head.weight" not in final and torch.all(final["wte.weight"][~mask["wte.weight"]] == 0)
    plan = result.store.json(result.store.plan_path)
    assert plan["aliases"] == {"lm_head.weight": "wte.weight"} and plan["output"] == "wte.weight"


def test_changed_data_is_a_different_experiment(tmp_path):
    config = {"levels": 0, **SHORT}
    a = ticketlab.run(config, opts(tmp_path), model=models.Regressor, data=models.regression_data(seed=0))
    b = ticketlab.run(config, opts(tmp_path), model=models.Regressor, data=models.regression_data(seed=1))
    assert a.directory != b.directory and a.config.data.fingerprint != b.config.data.fingerprint
    again = ticketlab.run(config, opts(tmp_path), model=models.Regressor, data=models.regression_data(seed=0))
    assert again.directory == a.directory
    versioned = ticketlab.run(config, opts(tmp_path), model=models.Regressor, data=models.regression_data(seed=1),
                              data_version="v1")
    assert versioned.directory not in (a.directory, b.directory)


def test_import_path_model_is_recorded_and_fingerprinted(tmp_path):
    result = ticketlab.run({"model": "user_code.models:WithDropout", "levels": 1, **SHORT}, opts(tmp_path),
                           data=models.classification_data())
    assert result.config.model == "user_code.models:WithDropout" and result.config.model_fingerprint


def test_batch_refuses_models_with_dropout_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="Dropout.*--batch 1"):
        ticketlab.run({"levels": 1, "seeds": 2, **SHORT}, opts(tmp_path, batch=2), model=models.WithDropout,
                      data=models.classification_data())
    assert not any(tmp_path.iterdir())


def test_start_from_given_initial_weights(tmp_path):
    torch.manual_seed(123)
    given = {k: v.clone() for k, v in models.Regressor().state_dict().items()}
    path = tmp_path / "init.safetensors"
    save_file(given, str(path))
    result = ticketlab.run({"levels": 1, "seeds": 2, "controls": ["reinit"], "init_weights": str(path), **SHORT},
                           opts(tmp_path / "out"), model=models.Regressor, data=models.regression_data())
    for replicate in (0, 1):
        init = load_tensors(result.store.init_path(replicate))
        assert all(torch.equal(init[k], given[k]) for k in given)
    reinit = load_tensors(result.store.unit(0, 1, "reinit").start)  # the control draws from the factory
    assert not torch.equal(reinit["net.0.weight"], given["net.0.weight"])
    bad = tmp_path / "bad.safetensors"
    save_file({"net.0.weight": torch.zeros(3, 3)}, str(bad))
    with pytest.raises(ConfigError, match="does not fit the model"):
        ticketlab.run({"levels": 1, "init_weights": str(bad), **SHORT}, opts(tmp_path / "out2"),
                      model=models.Regressor, data=models.regression_data())


def test_errors_in_user_code_are_one_line_and_write_nothing(tmp_path):
    with pytest.raises(UserCodeError, match="^the model factory failed: ValueError: width must be positive$"):
        ticketlab.run({"levels": 1, **SHORT}, opts(tmp_path), model=models.broken_factory,
                      data=models.classification_data())

    def wrong_input(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.layer(x)

    with pytest.raises(UserCodeError, match="^the model's forward pass failed: RuntimeError"):
        ticketlab.run({"levels": 1, **SHORT}, opts(tmp_path), model=Bad, data=models.classification_data())
    assert not any(tmp_path.iterdir())


def test_cli_reports_user_code_errors_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ticketlab", "run", "--model", "user_code.models:broken_factory",
                           "--dataset", "digits", "--levels", "1", "--out", str(tmp_path), "--no-progress"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: the model factory failed: ValueError: width must be positive"], done.stderr


def _loaders(seed: int = 0):
    """Splits as DataLoader factories: the streamed path for data that does not fit in memory."""
    from torch.utils.data import DataLoader, TensorDataset

    splits = models.classification_data(seed=seed)
    return {name: (lambda x=x, y=y, shuffle=(name == "train"): DataLoader(TensorDataset(x, y), batch_size=32,
                                                                         shuffle=shuffle, drop_last=shuffle))
            for name, (x, y) in splits.items()}


def test_streamed_loaders_train_resume_exactly_and_need_a_data_version(tmp_path):
    config = {"levels": 1, "seeds": 1, "controls": ["random"],
              "train": {"iterations": 50, "eval_every": 10, "checkpoint_every": 20, "batch_size": 32, "lr": 0.01}}
    with pytest.raises(ConfigError, match="data_version"):
        ticketlab.run(config, opts(tmp_path / "x"), model=models.WithDropout, data=_loaders())
    streamed = ticketlab.run(config, opts(tmp_path / "a"), model=models.WithDropout, data=_loaders(), data_version="v1")
    assert all(r["status"] == "ok" for r in streamed.runs) and streamed.runs[0]["final_test_acc"] > 0.5
    again = ticketlab.run(config, opts(tmp_path / "b"), model=models.WithDropout, data=_loaders(), data_version="v1")
    assert streamed.metrics(1) == again.metrics(1)  # seeded epochs: the same batches every run
    # killed after a checkpoint and resumed: the run skips to exactly the batch it would have seen
    from ticketlab.experiment.unit import Unit
    from ticketlab.experiment.runner import run_unit

    class Crash(Exception):
        pass

    def crash(unit, step, end):
        if step >= 30:
            raise Crash

    store = again.store
    level_1 = store.unit(0, 1, "ticket")
    for name in ("summary.json", "final.safetensors", "metrics.jsonl"):
        (level_1.directory / name).unlink()
    from ticketlab.io import update_manifest

    update_manifest(level_1.directory, {n: None for n in ("summary.json", "final.safetensors", "metrics.jsonl")})
    from ticketlab.experiment.inputs import prepare_inputs

    config_obj, user_inputs = prepare_inputs(config, models.WithDropout, _loaders(), None, "v1")
    with pytest.raises(Crash):
        run_unit(config_obj, str(store.directory), Unit(0, 1, "ticket"), "cpu", progress=crash, inputs=user_inputs)
    assert level_1.checkpoint.is_file()
    resumed = run_unit(config_obj, str(store.directory), Unit(0, 1, "ticket"), "cpu", inputs=user_inputs)
    assert resumed["final_test_acc"] == streamed.select("ticket", 1)[0]["final_test_acc"]
    assert store.jsonl(level_1.metrics) == streamed.metrics(1)


def test_models_with_batchnorm_are_fingerprinted():
    """BatchNorm's 0-dim ``num_batches_tracked`` buffer once made model_fingerprint raise."""
    from ticketlab.experiment.inputs import model_fingerprint

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    torch.manual_seed(0)
    b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    assert model_fingerprint(a) == model_fingerprint(b)
    b[1].num_batches_tracked += 1
    assert model_fingerprint(a) != model_fingerprint(b)


@pytest.mark.parametrize("name,content", [("junk.safetensors", b"not a safetensors file"), ("junk.pt", b"\x80\x04junk")])
def test_unreadable_init_weights_are_one_line_errors_before_writing(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="init_weights .* cannot be read"):
        ticketlab.run({"levels": 1, "init_weights": str(path), **SHORT}, opts(tmp_path / "out"),
                      model=models.Regressor, data=models.regression_data())
    assert not (tmp_path / "out").exists()
