"""Batches as users have them: a data version in the config, streams without a length,
the model's own loss, and the causal-LM convention refused rather than learnt."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.config import Config
from ticketlab.errors import ConfigError
from ticketlab.experiment.inputs import prepare_inputs

from user_code import models


def opts(tmp_path, **kw):
    return ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1, **kw)


def _loaders(seed: int = 0):
    from torch.utils.data import DataLoader, TensorDataset

    splits = models.classification_data(seed=seed)
    return {name: (lambda x=x, y=y: DataLoader(TensorDataset(x, y), batch_size=32)) for name, (x, y) in splits.items()}


# ---------------------------------------------------------------------------- data.version
def test_config_data_version_names_streamed_data_like_run_data_version():
    from_config, _ = prepare_inputs({"data": {"version": "v1"}}, models.WithDropout, _loaders())
    from_api, _ = prepare_inputs({}, models.WithDropout, _loaders(), data_version="v1")
    assert from_config.data.fingerprint == from_api.data.fingerprint
    assert from_config.data.version == "v1" and from_api.data.version is None  # run(data_version=) keeps old names
    agreeing, _ = prepare_inputs({"data": {"version": "v1"}}, models.WithDropout, _loaders(), data_version="v1")
    assert agreeing.data.fingerprint == from_api.data.fingerprint
    other, _ = prepare_inputs({"data": {"version": "v2"}}, models.WithDropout, _loaders())
    assert other.data.fingerprint != from_config.data.fingerprint


def test_disagreeing_data_versions_are_one_config_error():
    with pytest.raises(ConfigError, match="data_version='v2' and the config's data.version='v1' disagree"):
        prepare_inputs({"data": {"version": "v1"}}, models.WithDropout, _loaders(), data_version="v2")


def test_streamed_data_without_a_version_names_every_way_to_give_one():
    with pytest.raises(ConfigError, match=r"data.version.*--data-version.*data_version"):
        prepare_inputs({}, models.WithDropout, _loaders())


def test_data_version_replaces_hashing_in_memory_data_too():
    a, _ = prepare_inputs({"data": {"version": "v1"}}, models.WithDropout, models.classification_data(seed=0))
    b, _ = prepare_inputs({"data": {"version": "v1"}}, models.WithDropout, models.classification_data(seed=1))
    assert a.data.fingerprint == b.data.fingerprint


def test_data_version_is_a_cli_flag_under_both_names():
    from ticketlab.cli.flags import CONFIG_FLAGS

    (flag,) = [f for f in CONFIG_FLAGS if f.key == "data.version"]
    assert set(flag.names) == {"--data.version", "--data-version"} and flag.help
    assert Config.from_dict({"data": {"version": "2024-05"}}).data.version == "2024-05"
    import typer

    from ticketlab.cli import app

    command = typer.main.get_command(app).commands["run"]
    assert {"--data.version", "--data-version"} <= {name for param in command.params for name in param.opts}
