"""``Result.model``: a stored unit's network as a ready, masked ``nn.Module`` (issue 21)."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.api import Result
from ticketlab.errors import ConfigError
from ticketlab.experiment.environment import environment

from conftest import tiny_config
from user_code import models

SHORT = {"train": {"iterations": 60, "eval_every": 20, "batch_size": 32}}


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def _zero_where_pruned(model: torch.nn.Module, mask) -> bool:
    params = dict(model.named_parameters())
    return all(torch.all(params[name][~keep.bool()] == 0) for name, keep in mask.items())


def test_builtin_model_reproduces_the_stored_test_accuracy(tmp_path, options):
    config = tiny_config(model="mlp_32_16", levels=1, controls=["random"],
                         train={"iterations": 100, "eval_every": 50, "checkpoint_every": 100})
    result = ticketlab.run(config, options)
    data = environment(result.config).data
    for level, arm in [(0, "ticket"), (1, "ticket"), (1, "random")]:
        (record,) = [r for r in result.select(arm, level)]
        model = result.model(level, arm=arm)
        assert not model.training
        assert _zero_where_pruned(model, result.mask(level, arm=arm))
        assert _accuracy(model, data.x_test, data.y_test) == pytest.approx(record["test_acc_at_early_stop"], abs=1e-6)
        final = Result.load(result.directory).model(level, arm=arm, weights="final")
        assert _accuracy(final, data.x_test, data.y_test) == pytest.approx(record["final_test_acc"], abs=1e-6)
    with pytest.raises(ConfigError, match="weights must be"):
        result.model(1, weights="best")
    with pytest.raises(ConfigError, match="has not finished"):
        result.model(1, arm="reinit")


def test_tied_python_object_model_stays_tied_and_needs_the_object_again(tmp_path):
    def tiny_gpt():  # a local function has no import path: recorded as python:tiny_gpt
        return models.TinyGPT()

    options = ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1)
    result = ticketlab.run({"levels": 2, **SHORT}, options, model=tiny_gpt, data=models.sequence_data())
    assert result.config.model.startswith("python:")
    model = result.model(2)  # run's Result keeps the model it was given
    assert model.lm_head.weight is model.wte.weight
    assert _zero_where_pruned(model, result.mask(2))
    assert torch.count_nonzero(model.wte.weight) == result.mask(2).remaining()["wte.weight"]
    x, y = models.sequence_data()["test"]
    (record,) = result.select("ticket", 2)
    assert _accuracy(model, x, y) == pytest.approx(record["test_acc_at_early_stop"], abs=1e-6)

    loaded = Result.load(result.directory)
    with pytest.raises(ConfigError, match=r"given as a Python object.*model=") as error:
        loaded.model(2)
    assert "\n" not in str(error.value)
    again = Result.load(result.directory, model=tiny_gpt).model(2)
    assert torch.equal(again.wte.weight, model.wte.weight) and again.lm_head.weight is again.wte.weight
    with pytest.raises(ConfigError, match="does not fit the weights"):
        loaded.model(2, model=models.Regressor)


def test_import_path_model_is_rebuilt_from_its_name(tmp_path):
    options = ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1)
    result = ticketlab.run({"model": "user_code.models:TinyGPT", "levels": 1, **SHORT}, options,
                           data=models.sequence_data())
    model = Result.load(result.directory).model(1)  # the data was a Python object; the model is named
    assert isinstance(model, models.TinyGPT) and model.lm_head.weight is model.wte.weight
