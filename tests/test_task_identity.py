"""The training task (loss, score, metric) is part of an experiment's identity and of its bundle:
a changed loss is a new experiment, never the old one's results, and a bundle made with a custom
task says so when verified without it."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from conftest import cli

import ticketlab
from ticketlab.bundle.pack import BundleError, make_bundle, read_bundle
from ticketlab.errors import ConfigError
from ticketlab.bundle.verification import verify
from user_code import models

SHORT = {"levels": 1, "train": {"iterations": 60, "eval_every": 20, "batch_size": 32}}
LABELS = torch.tensor([0, 1, 2, 1])
TARGETS = torch.tensor([0.5, 1.5, -0.2])


def opts(tmp_path):
    return ticketlab.RunOptions(root=str(tmp_path / "e"), device="cpu", progress=False, workers=1)


def _fingerprint(task: ticketlab.Task, labels: torch.Tensor = LABELS) -> str | None:
    identity = task.identity(labels)
    return identity[1] if identity else None


def test_the_default_task_adds_nothing_to_the_identity():
    assert _fingerprint(ticketlab.Task()) is None
    assert _fingerprint(ticketlab.Task("classification")) is None  # what auto decides for these labels
    assert _fingerprint(ticketlab.Task("regression"), TARGETS) is None
    assert _fingerprint(ticketlab.Task("regression")) is not None  # regression on class labels is not


def test_a_changed_loss_score_or_metric_changes_the_identity():
    fingerprints = [
        _fingerprint(ticketlab.Task(loss=F.l1_loss), TARGETS),
        _fingerprint(ticketlab.Task(loss=F.mse_loss), TARGETS),
        _fingerprint(ticketlab.Task(loss=lambda p, t: (p - t).abs().mean()), TARGETS),
        _fingerprint(ticketlab.Task(loss=lambda p, t: (p - t).pow(2).mean()), TARGETS),
        _fingerprint(ticketlab.Task(loss=F.l1_loss, metric="mae"), TARGETS),
        _fingerprint(ticketlab.Task(loss=torch.nn.CrossEntropyLoss(label_smoothing=0.1))),
        _fingerprint(ticketlab.Task(loss=torch.nn.CrossEntropyLoss(label_smoothing=0.2))),
        _fingerprint(ticketlab.Task(loss=functools.partial(F.cross_entropy, label_smoothing=0.1))),
        _fingerprint(ticketlab.Task(score=lambda p, t: -(p - t).abs().mean()), TARGETS),
    ]
    assert None not in fingerprints and len(set(fingerprints)) == len(fingerprints)


def _scaled_loss(scale: float):
    return lambda p, t: scale * (p - t).abs().mean()


def test_code_fingerprints_follow_the_code_and_the_values_it_reads():
    same_code = [ticketlab.Task(loss=lambda p, t: (p - t).abs().mean()) for _ in range(2)]
    assert _fingerprint(same_code[0], TARGETS) == _fingerprint(same_code[1], TARGETS)
    assert _fingerprint(ticketlab.Task(loss=_scaled_loss(1.0)), TARGETS) != \
        _fingerprint(ticketlab.Task(loss=_scaled_loss(2.0)), TARGETS)
    # a user's version names the task instead of its code
    assert _fingerprint(ticketlab.Task(loss=_scaled_loss(1.0), version="v1"), TARGETS) == \
        _fingerprint(ticketlab.Task(loss=_scaled_loss(2.0), version="v1"), TARGETS)
    assert _fingerprint(ticketlab.Task(loss=F.l1_loss, version="v1"), TARGETS) != \
        _fingerprint(ticketlab.Task(loss=F.l1_loss, version="v2"), TARGETS)


def test_a_changed_loss_is_a_new_experiment_not_the_old_results(tmp_path):
    data = models.regression_data()
    plain = ticketlab.run(SHORT, opts(tmp_path), model=models.Regressor, data=data)
    default = ticketlab.run(SHORT, opts(tmp_path), model=models.Regressor, data=data, task=ticketlab.Task())
    assert default.directory == plain.directory and plain.config.task is None  # names of default tasks unchanged
    l1 = ticketlab.run(SHORT, opts(tmp_path), model=models.Regressor, data=data,
                       task=ticketlab.Task(loss=F.l1_loss, metric="l1"))
    huber = ticketlab.run(SHORT, opts(tmp_path), model=models.Regressor, data=data,
                          task=ticketlab.Task(loss=F.smooth_l1_loss, metric="huber"))
    assert len({plain.directory, l1.directory, huber.directory}) == 3
    assert {r["metric"] for r in huber.runs} == {"huber"} and "smooth_l1_loss" in huber.config.task
    with pytest.raises(ConfigError, match="custom task.*task="):
        ticketlab.run(huber.config, opts(tmp_path), model=models.Regressor, data=data)


def test_verify_of_a_custom_task_bundle_needs_that_task(tmp_path, capsys):
    data = models.regression_data()
    task = ticketlab.Task(loss=F.l1_loss, score=lambda p, t: -(p - t).abs().mean(), metric="neg_mae")
    result = ticketlab.run({**SHORT, "model": "user_code.models:Regressor"}, opts(tmp_path), data=data, task=task)
    path = make_bundle(result.directory, 1, tmp_path / "task.safetensors")
    assert read_bundle(path).config.task_fingerprint == result.config.task_fingerprint
    with pytest.raises(ConfigError, match="made with a custom task .*task=") as refused:
        verify(path, data=data)
    assert "\n" not in str(refused.value)
    with pytest.raises(BundleError, match="not the one the ticket was trained with"):
        verify(path, data=data, task=ticketlab.Task(loss=F.mse_loss, metric="neg_mae"))
    outcome = verify(path, data=data, task=task)
    assert outcome.mode == "exact" and outcome.passed, [c for c in outcome.checks if c.ok is False]


def test_a_custom_task_on_built_in_data_bundles_and_says_what_verify_needs(tmp_path, capsys):
    from ticketlab.experiment.environment import environment

    task = ticketlab.Task(loss=functools.partial(F.cross_entropy, label_smoothing=0.1))
    result = ticketlab.run({**SHORT, "model": "mlp_64_32", "data": {"dataset": "digits"}}, opts(tmp_path), task=task)
    path = make_bundle(result.directory, 1, tmp_path / "digits.safetensors")
    code, out, err = cli(["verify", str(path)], capsys)
    assert code == 2 and "made with a custom task (loss=partial(torch.nn.functional:cross_entropy))" in err
    assert "task=" in err and len(err.strip().splitlines()) == 1 and "MISMATCH" not in out
    # commands that rebuild a stored experiment from its config (stability) refuse its task in one line;
    # its model and data (export, FLOPs) are still available
    env = environment(result.config)
    assert env.build(0, "cpu") is not None and env.data.num_classes == 10
    with pytest.raises(ConfigError, match="custom task"):
        env.task
    assert verify(path, task=task).passed
