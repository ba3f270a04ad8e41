"""Batches as users have them: a data version in the config, streams without a length,
the model's own loss, and the causal-LM convention refused rather than learnt."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.config import Config
from ticketlab.errors import ConfigError, UserCodeError
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


# ---------------------------------------------------------------------------- streams without a length
class Stream(torch.utils.data.IterableDataset):
    """Examples one by one, shuffled each pass from torch's RNG, and no ``__len__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        for i in torch.randperm(len(self.y)).tolist():
            yield self.x[i], self.y[i]


def _streams(seed: int = 0):
    from torch.utils.data import DataLoader, TensorDataset

    splits = models.classification_data(seed=seed)
    (x, y) = splits.pop("train")
    return {"train": lambda: DataLoader(Stream(x, y), batch_size=32),
            **{name: (lambda x=x, y=y: DataLoader(TensorDataset(x, y), batch_size=64)) for name, (x, y) in splits.items()}}


STREAMED = {"levels": 1, "seeds": 1, "controls": ["random"], "data": {"version": "s1"},
            "train": {"iterations": 40, "eval_every": 20, "checkpoint_every": 20, "batch_size": 32, "lr": 0.01}}


def test_an_iterable_dataset_without_len_trains_for_iterations(tmp_path):
    from ticketlab.experiment.inputs import user_dataset

    assert user_dataset(_streams()).batches_per_epoch is None  # never counted: a stream may not end
    result = ticketlab.run(STREAMED, opts(tmp_path), model=models.WithDropout, data=_streams())
    assert all(r["status"] == "ok" for r in result.runs) and result.runs[0]["final_test_acc"] > 0.5
    again = ticketlab.run(STREAMED, opts(tmp_path / "again"), model=models.WithDropout, data=_streams())
    assert again.metrics(1) == result.metrics(1)  # each pass seeded: the same batches every run


def test_a_stream_restarts_when_it_ends_and_a_resume_replays_it_to_its_step():
    from ticketlab.experiment.inputs import user_dataset
    from ticketlab.train.loop import TrainingBatches

    data = user_dataset(_streams())  # 420 examples: 14 batches a pass, so 40 steps read three passes
    straight = TrainingBatches(data, 32, [7])
    batches = [straight.batch_at(step) for step in range(40)]
    assert sum(b[1].shape[0] for b in batches) == 38 * 32 + 2 * 4  # each pass ends in a batch of 4
    resumed = TrainingBatches(data, 32, [7])
    for step in range(25, 40):
        x, y = resumed.batch_at(step)
        assert torch.equal(x, batches[step][0]) and torch.equal(y, batches[step][1])
    assert not torch.equal(batches[0][1], batches[14][1])  # the next pass, in the next epoch's order


def test_epochs_with_a_stream_without_len_is_one_config_error_before_anything_is_written(tmp_path):
    config = {**STREAMED, "train": {**STREAMED["train"], "iterations": None, "epochs": 2}}
    with pytest.raises(ConfigError, match=r"^train.epochs needs a train loader with a length.*train.iterations"):
        ticketlab.run(config, opts(tmp_path / "out"), model=models.WithDropout, data=_streams())
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- the causal-LM convention
def _copying(split):
    x, _ = split
    return (x, x.clone())  # Hugging Face's labels = input_ids, unshifted


@pytest.mark.parametrize("how", ["in memory", "streamed"])
def test_labels_equal_to_the_inputs_are_one_config_error_before_anything_is_written(tmp_path, how):
    from torch.utils.data import DataLoader, TensorDataset

    data = {name: _copying(split) for name, split in models.sequence_data().items()}
    config = {"levels": 1, **({"data": {"version": "v1"}} if how == "streamed" else {}),
              "train": {"iterations": 20, "eval_every": 10, "batch_size": 32}}
    if how == "streamed":
        data = {name: (lambda x=x, y=y: DataLoader(TensorDataset(x, y), batch_size=32)) for name, (x, y) in data.items()}
    with pytest.raises(ConfigError, match=r"^data 'train.*labels equal the inputs .*labels = input_ids.*"
                                          r"learn to copy its input: give the next tokens as labels.*Task\(loss='model'\)"):
        ticketlab.run(config, opts(tmp_path / "out"), model=models.TinyGPT, data=data)
    assert not (tmp_path / "out").exists()


def test_shifted_labels_a_custom_loss_and_autoencoders_pass_the_copy_check():
    from ticketlab.experiment.inputs import check_not_copying
    from ticketlab.train.task import Task

    x, y = models.sequence_data()["train"]
    check_not_copying(x, y, "train", Task(kind="classification"))  # the next tokens: fine
    check_not_copying(x, x.clone(), "train", Task(loss=lambda pred, target: pred.sum()))  # a loss that may shift
    floats = torch.randn(8, 4)
    check_not_copying(floats, floats.clone(), "train", Task(kind="regression"))  # an autoencoder
    with pytest.raises(ConfigError, match="labels equal the inputs"):
        check_not_copying(x, x.clone(), "train", Task(kind="classification"))


# ---------------------------------------------------------------------------- the command line
def streamed_splits():
    """``--dataset test_user_batches:streamed_splits``: length-less streamed data from an import path."""
    return _streams()


def test_the_cli_streams_length_less_data_named_by_data_version(tmp_path, capsys):
    from conftest import cli

    base = ["run", "--dataset", "test_user_batches:streamed_splits", "--model", "user_code.models:WithDropout",
            "--levels", "1", "--controls", "random", "--eval-every", "10", "--batch-size", "32", "--device", "cpu",
            "--no-progress", "--no-report", "--out", str(tmp_path / "out")]
    code, _, err = cli(base + ["--iterations", "20"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--data-version" in err, err
    code, _, err = cli(base + ["--iterations", "none", "--epochs", "1", "--data-version", "s1"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        "error: train.epochs needs a train loader with a length, and this one has no len() "
        "(an IterableDataset without __len__); give train.iterations instead"], err
    assert not (tmp_path / "out").exists()
    code, out, err = cli(base + ["--iterations", "20", "--data.version", "s1"], capsys)
    assert code == 0, err


def test_a_killed_unit_on_a_length_less_stream_resumes_to_the_same_numbers(tmp_path):
    from ticketlab.experiment.runner import run_unit
    from ticketlab.experiment.unit import Unit
    from ticketlab.io import update_manifest

    config = {**STREAMED, "controls": [], "train": {**STREAMED["train"], "checkpoint_every": 10}}
    straight = ticketlab.run(config, opts(tmp_path), model=models.WithDropout, data=_streams())
    store = straight.store
    unit = store.unit(0, 1, "ticket")
    names = ("summary.json", "final.safetensors", "metrics.jsonl")
    for name in names:
        (unit.directory / name).unlink()
    update_manifest(unit.directory, {n: None for n in names})

    class Crash(Exception):
        pass

    def crash(unit, step, end):
        if step >= 25:  # past a checkpoint in the second pass over the stream
            raise Crash

    config_obj, inputs = prepare_inputs(config, models.WithDropout, _streams())
    with pytest.raises(Crash):
        run_unit(config_obj, str(store.directory), Unit(0, 1, "ticket"), "cpu", progress=crash, inputs=inputs)
    assert unit.checkpoint.is_file()
    resumed = run_unit(config_obj, str(store.directory), Unit(0, 1, "ticket"), "cpu", inputs=inputs)
    assert resumed["final_test_acc"] == straight.select("ticket", 1)[0]["final_test_acc"]
    assert store.jsonl(unit.metrics) == straight.metrics(1)


# ---------------------------------------------------------------------------- the model's own loss
class ShiftingLM(torch.nn.Module):
    """A causal LM in Hugging Face's convention: ``forward(input_ids, labels=None)`` returns a
    dict with ``logits`` and, given labels (= input_ids), the loss of each next token."""

    def __init__(self, vocab: int = 13, width: int = 16) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, width)
        self.mix = torch.nn.Linear(width, width)
        self.lm_head = torch.nn.Linear(width, vocab)

    def forward(self, input_ids, labels=None):
        logits = self.lm_head(torch.relu(self.mix(self.wte(input_ids))))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        return out


class NoLoss(ShiftingLM):
    def forward(self, input_ids, labels=None):
        return super().forward(input_ids)  # logits only, labels or not


def _lm_data():
    return {name: (x, x.clone()) for name, (x, _) in models.sequence_data().items()}  # labels = input_ids


LM = {"levels": 1, "controls": ["random"], "train": {"iterations": 150, "eval_every": 50, "batch_size": 32, "lr": 0.02}}


def test_the_models_own_loss_trains_a_causal_lm_given_labels_equal_to_the_inputs(tmp_path):
    result = ticketlab.run(LM, opts(tmp_path), model=ShiftingLM, data=_lm_data(), task=ticketlab.Task(loss="model"))
    assert all(r["status"] == "ok" for r in result.runs)
    dense = result.select("ticket", 0)[0]
    assert dense["final_test_acc"] > 0.9  # next-token accuracy: t is followed by t + 1, which a copy never gets
    assert "loss=model" in result.config.task


def test_the_models_own_loss_refuses_what_it_cannot_do_in_one_line(tmp_path):
    task = ticketlab.Task(loss="model")
    with pytest.raises(ConfigError, match=r"^--batch cannot train Task\(loss='model'\).*--batch 1$"):
        ticketlab.run({**LM, "seeds": 2}, opts(tmp_path / "a", batch=2), model=ShiftingLM, data=_lm_data(), task=task)
    with pytest.raises(ConfigError, match=r"^Task\(loss='model'\) needs the model to return a loss"):
        ticketlab.run(LM, opts(tmp_path / "b"), model=NoLoss, data=_lm_data(), task=task)
    with pytest.raises(UserCodeError, match=r"^the model's forward pass failed: TypeError: .*'labels'"):
        ticketlab.run(LM, opts(tmp_path / "b"), model=models.TinyGPT, data=_lm_data(), task=task)
    with pytest.raises(ConfigError, match="takes a function loss"):
        ticketlab.Task(loss="mse")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_models_own_score_shifts_only_when_the_labels_are_the_inputs():
    task = ticketlab.Task(loss="model").bind(torch.zeros(3, dtype=torch.long))
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    logits = torch.nn.functional.one_hot(tokens, 8).float()  # predicts each position's own token
    assert task.model_score({"logits": logits}, tokens, tokens) == 0.0  # as next tokens: all wrong
    assert task.model_score({"logits": logits}, tokens + 1, tokens) == 1.0  # token labels, unshifted: all right
    shifted = torch.nn.functional.one_hot(tokens + 1, 8).float()
    ignored = tokens.clone()
    assert task.model_score({"logits": shifted}, tokens, tokens) == 1.0
    ignored[0, 2] = -100
    assert task.model_score({"logits": shifted}, ignored, ignored) == 1.0  # -100 is left out


def test_pruning_methods_that_compute_a_loss_refuse_the_models_own_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^Task\(loss='model'\) is the model's own loss.*\(snip, grasp\) need Task"):
        ticketlab.run({**LM, "prune": {"method": "snip"}}, opts(tmp_path), model=ShiftingLM, data=_lm_data(),
                      task=ticketlab.Task(loss="model"))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before the experiment's folder
