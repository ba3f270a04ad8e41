"""Bad input refused at the boundary: one line on stderr, exit code 2, nothing written.

Issue 18's cases: numeric flags out of range (``verify --seeds -1``, thread counts), a
``--transfer-from`` source that does not fit the new experiment (refused before the new
experiment's directory exists), and labels that are NaN, infinite or out of range (refused
before training, instead of surfacing later as a "divergence" blamed on the learning rate).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import ticketlab
from ticketlab.config import RunOptions
from ticketlab.errors import ConfigError

from conftest import refused_in_one_line, snapshot

QUICK = ["--iterations", "20", "--eval-every", "10", "--no-progress", "--no-report", "--device", "cpu",
         "--workers", "1"]
BASE = ["--dataset", "digits", "--model", "mlp_16", "--levels", "1", *QUICK]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A small finished experiment (digits, 2 levels): transfer source and bundle origin."""
    root = tmp_path_factory.mktemp("source")
    config = {"model": "mlp_16", "levels": 2, "data": {"dataset": "digits"},
              "train": {"iterations": 20, "eval_every": 10}}
    result = ticketlab.run(config, RunOptions(root=str(root), device="cpu", workers=1, progress=False))
    return result.directory


# ---------------------------------------------------------------------------- numeric flags
def test_verify_refuses_negative_seeds(source, tmp_path, capsys):
    from ticketlab.bundle.pack import make_bundle

    bundle = make_bundle(source, 1, tmp_path / "t.ticket.safetensors")
    work = tmp_path / "work"
    refused_in_one_line(["verify", str(bundle), "--seeds", "-1", "--workdir", str(work)], work, "--seeds", capsys)


@pytest.mark.parametrize("threads", ["0", "100000"])
def test_run_refuses_thread_counts_torch_cannot_use(threads, tmp_path, capsys):
    out = tmp_path / "out"
    refused_in_one_line(["run", *BASE, "--threads", threads, "--out", str(out)], out, "threads must be between 1 and", capsys)


@pytest.mark.parametrize("command", ["stability", "bench"])
def test_reading_commands_refuse_zero_threads(command, source, capsys):
    extra = ["--level", "1"] if command == "bench" else []
    refused_in_one_line([command, str(source), *extra, "--threads", "0"], source, "--threads must be between 1 and", capsys)


def test_thread_limit_is_the_core_count_locally_and_wide_on_ray():
    cores = os.cpu_count() or 1
    RunOptions(threads=cores).validate()
    with pytest.raises(ConfigError, match="CPU core"):
        RunOptions(threads=cores + 1).validate()
    RunOptions(threads=cores + 1, executor="ray").validate()  # another machine may have more cores


# ---------------------------------------------------------------------------- transfer sources
TRANSFER_MISMATCHES = {
    "other-seed": (["--seed", "1"], "seed 0 there, 1 here"),
    "other-model": (["--model", "mlp_32"], "model 'mlp_16' there, 'mlp_32' here"),
    "other-input-shape": (["--dataset", "mnist1d"], "dataset 'digits' there, 'mnist1d' here"),
    "more-levels": (["--levels", "3"], "has no level-3 mask for replicate 0"),
    "more-seeds": (["--seeds", "2"], "has no level-1 mask for replicate 1"),
    "other-roles": (["--roles", "linear,bias"], "masks cover other parameters than this experiment prunes"),
}


@pytest.mark.parametrize("case", sorted(TRANSFER_MISMATCHES))
def test_mismatched_transfer_source_is_refused_before_any_write(case, source, tmp_path, capsys):
    flags, fragment = TRANSFER_MISMATCHES[case]
    out = tmp_path / "out"
    before = snapshot(source)
    refused_in_one_line(["run", "--transfer-from", str(source), *flags, *QUICK, "--out", str(out)], out, fragment, capsys)
    assert not out.exists()  # not even the root folder: nothing of the new experiment
    assert snapshot(source) == before


def test_an_unfinished_transfer_source_is_refused_before_any_write(source, tmp_path, capsys):
    import shutil

    unfinished = tmp_path / source.name
    shutil.copytree(source, unfinished)
    (unfinished / "replicate_0" / "level_02" / "mask.safetensors").unlink()
    out = tmp_path / "out"
    refused_in_one_line(["run", "--transfer-from", str(unfinished), *QUICK, "--out", str(out)], out,
             "has no level-2 mask for replicate 0", capsys)
    assert not out.exists()


# ---------------------------------------------------------------------------- labels and inputs
def _digits_splits() -> dict[str, list[torch.Tensor]]:
    from ticketlab.data import load_dataset

    d = load_dataset("digits")
    return {"train": [d.x_train.clone(), d.y_train.clone()], "val": [d.x_val.clone(), d.y_val.clone()],
            "test": [d.x_test.clone(), d.y_test.clone()]}


def _float_labels_with(value: float):
    def spoil(splits):
        splits["train"][1] = splits["train"][1].float()
        splits["train"][1][5] = value
    return spoil


def _set(split: str, part: int, index: tuple, value) -> "callable":
    def spoil(splits):
        splits[split][part][index] = value
    return spoil


BAD_DATA = {
    "nan-label": (_float_labels_with(math.nan), "'train' labels contain NaN or infinity (example 5 is the first)"),
    "inf-label": (_float_labels_with(math.inf), "'train' labels contain NaN or infinity (example 5 is the first)"),
    "label-above-classes": (_set("val", 1, (3,), 10), "'val' labels must be class indices 0..9 (the model outputs "
                                                     "10 classes), but example 3 has label 10"),
    "negative-label": (_set("test", 1, (8,), -1), "'test' labels must be class indices 0..9"),
    "ignored-label": (_set("train", 1, (7,), -100), "example 7 has label -100"),  # cross-entropy would skip it
    "nan-input": (_set("test", 0, (4, 0, 2, 3), math.nan), "'test' inputs contain NaN or infinity (example 4 is the first)"),
}
RUN = {"model": "mlp_16", "levels": 1, "train": {"iterations": 20, "eval_every": 10}}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_labels_or_inputs_are_refused_before_training(case, tmp_path):
    spoil, fragment = BAD_DATA[case]
    splits = _digits_splits()
    spoil(splits)
    root = tmp_path / "out"
    with pytest.raises(ConfigError, match="^data ") as caught:
        ticketlab.run(RUN, RunOptions(root=str(root), device="cpu", workers=1, progress=False),
                      data={name: tuple(pair) for name, pair in splits.items()})
    assert fragment in str(caught.value)
    assert not root.exists()


def test_a_ready_made_dataset_object_is_checked_too(tmp_path):
    """A ticketlab Dataset given as ``data=`` skips the tensor-pair reader; the check still runs."""
    from ticketlab.data import load_dataset
    from ticketlab.data.base import Dataset

    d = load_dataset("digits")
    y_val = d.y_val.clone()
    y_val[0] = 12
    dataset = Dataset("mine", d.x_train, d.y_train, d.x_val, y_val, d.x_test, d.y_test, d.num_classes)
    with pytest.raises(ConfigError, match="'val' labels must be class indices 0..9"):
        ticketlab.run(RUN, RunOptions(root=str(tmp_path / "out"), device="cpu", workers=1, progress=False),
                      data=dataset)
    assert not (tmp_path / "out").exists()


def test_nan_labels_from_a_dataset_function_are_one_line_on_the_command_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "nan_labels.py").write_text(
        "import torch\n"
        "from ticketlab.data import load_dataset\n"
        "def splits():\n"
        "    d = load_dataset('digits')\n"
        "    y = d.y_train.float()\n"
        "    y[11] = float('nan')\n"
        "    return {'train': (d.x_train, y), 'val': (d.x_val, d.y_val), 'test': (d.x_test, d.y_test)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    refused_in_one_line(["run", "--dataset", "nan_labels:splits", "--model", "mlp_16", "--levels", "1", *QUICK,
              "--out", str(out)], out, "'train' labels contain NaN or infinity (example 11 is the first)", capsys)


def test_good_float_targets_still_train_as_regression(tmp_path):
    from user_code import models

    result = ticketlab.run({"levels": 0, "train": {"iterations": 20, "eval_every": 10}},
                           RunOptions(root=str(tmp_path), device="cpu", workers=1, progress=False),
                           model=models.Regressor, data=models.regression_data())
    assert result.runs[0]["status"] == "ok"


def test_the_finiteness_check_is_exact_when_a_sum_overflows():
    from ticketlab.experiment.inputs import _all_finite

    assert _all_finite(torch.full((10,), 3e38))  # the sum overflows; every value is finite
    assert not _all_finite(torch.tensor([1.0, math.inf, -math.inf]))
    assert not _all_finite(torch.tensor([[1.0], [math.nan]]))


# ---------------------------------------------------------------------------- unusable --out
def _dangling_link(tmp_path: Path) -> Path:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere" / "x")
    return link / "sub"


def _link_loop(tmp_path: Path) -> Path:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    return tmp_path / "a" / "sub"


OUT_PATHS = {
    "empty": (lambda tmp_path: "", "--out (root) is empty"),
    "blank": (lambda tmp_path: "  ", "--out (root) is empty"),
    "name-too-long": (lambda tmp_path: str(tmp_path / ("n" * 300)), "has 300 bytes, more than the 255"),
    "path-too-long": (lambda tmp_path: str(tmp_path.joinpath(*["d" * 200] * 21)), "is too long"),
    "dangling-link": (lambda tmp_path: str(_dangling_link(tmp_path)), "is a symbolic link to nothing"),
    "link-loop": (lambda tmp_path: str(_link_loop(tmp_path)), "is a symbolic link to nothing"),
}


@pytest.mark.parametrize("case", sorted(OUT_PATHS))
def test_unusable_out_paths_are_one_line_before_any_write(case, tmp_path, capsys, monkeypatch):
    make, fragment = OUT_PATHS[case]
    monkeypatch.chdir(tmp_path)  # an empty --out must not write into the current folder either
    out = make(tmp_path)
    refused_in_one_line(["run", *BASE, "--out", out], tmp_path, fragment, capsys)


def test_dev_shm_is_an_ordinary_folder_for_out(tmp_path):
    from ticketlab.experiment.preflight import check_out_dir

    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    check_out_dir(Path("/dev/shm/ticketlab-test-out"), "digits-mlp_16-0123456789ab")  # no error: tmpfs holds files
    with pytest.raises(ConfigError, match="cannot hold files"):
        check_out_dir(Path("/dev/ticketlab-test-out"))


def test_a_nan_target_deep_in_streamed_data_is_named_as_a_possible_cause(tmp_path):
    """Streamed data is checked on its first batch only (reading it all would cost an epoch), so
    a NaN target later on still diverges; the message then points at the data, not only the rate."""
    from torch.utils.data import DataLoader, TensorDataset

    from user_code import models

    splits = models.regression_data()
    x, y = splits["train"]
    y = y.clone()
    y[100:] = math.nan  # the first batches are clean, every later one is not
    data = {"train": lambda: DataLoader(TensorDataset(x, y), batch_size=32),
            **{name: (lambda x=sx, y=sy: DataLoader(TensorDataset(x, y), batch_size=64))
               for name, (sx, sy) in splits.items() if name != "train"}}
    result = ticketlab.run({"levels": 0, "train": {"iterations": 20, "eval_every": 10, "batch_size": 32}},
                           RunOptions(root=str(tmp_path), device="cpu", workers=1, progress=False),
                           model=models.Regressor, data=data, data_version="nan-later")
    (record,) = result.diverged()
    assert "with streamed data (checked on its first batch only)" in record["message"]


def test_a_nan_target_in_the_first_streamed_batch_is_refused_before_training(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from user_code import models

    splits = models.regression_data()
    x, y = splits["train"]
    y = y.clone()
    y[3] = math.inf
    data = {name: (lambda x=sx, y=sy: DataLoader(TensorDataset(x, y), batch_size=32))
            for name, (sx, sy) in {**splits, "train": (x, y)}.items()}
    with pytest.raises(ConfigError, match=r"'train \(first batch\)' labels contain NaN or infinity \(example 3"):
        ticketlab.run({"levels": 0, "train": {"iterations": 20, "eval_every": 10, "batch_size": 32}},
                      RunOptions(root=str(tmp_path / "out"), device="cpu", workers=1, progress=False),
                      model=models.Regressor, data=data, data_version="inf-first")
    assert not (tmp_path / "out").exists()
