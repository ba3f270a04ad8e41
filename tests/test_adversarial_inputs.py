"""Malformed input of every kind: one line on stderr, exit code 2, nothing written.

Each case is a command line (config files and data files are made in ``tmp_path`` first).
"Nothing written" means the ``--out`` folder is exactly as before: absent, or unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ticketlab.cli import main

from conftest import cli, refused_in_one_line, snapshot

BASE = ["--dataset", "digits", "--model", "mlp_16", "--levels", "1", "--iterations", "20", "--eval-every", "10",
        "--no-progress", "--no-report", "--device", "cpu", "--workers", "1"]


def _toml(tmp_path: Path, text: str | bytes, name: str = "c.toml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


CONFIG_FILES = {
    "non-utf8": (b'model = "mlp_16"\n# caf\xe9\n', "not UTF-8"),
    "nan-lr": ('[train]\nlr = nan\n', "train.lr must be a finite number"),
    "inf-lr": ('[train]\nlr = inf\n', "train.lr must be a finite number"),
    "overflow-lr": ('[train]\nlr = 1e309\n', "train.lr must be a finite number"),
    "nan-rate": ('[prune]\nrate = nan\n', "prune.rate must be a finite number"),
    "inf-momentum": ('[train]\nmomentum = -inf\n', "train.momentum must be a finite number"),
    "nan-layer-rate": ('[prune.layer_rates]\n"x" = nan\n', "must be a finite number"),
    "not-a-table": ('train = 3\n', "train must be a table"),
    "unknown-key": ('levls = 2\n', "unknown key levls"),
    "both-lengths": ('[train]\niterations = 10\nepochs = 1\n', "exactly one of"),
    "include-nothing": ('[prune]\ninclude = ["^nothing$"]\n', "matches prune.roles and the include/exclude patterns"),
    "rewind-beyond-epochs": ('rewind_iteration = 500\n[train]\nepochs = 1\nbatch_size = 256\n', "must be below the training length"),
    "huge-model": ('model = "mlp_4000000000"\n', "parameters and needs about"),
    "huge-levels": ('levels = 100000000\n', "more than 1,000,000"),
    "huge-seeds": ('seeds = 10000000\n', "more than 1,000,000"),
    "seed-beyond-64-bits": ('[data]\nsplit_seed = 100000000000000000000000\n', "must be below 2**63"),
}
JSON_FILES = {
    "json-nan": ('{"train": {"lr": NaN}}', "train.lr must be a finite number"),
    "json-list": ('[1, 2]', "must hold a table/object"),
    "json-broken": ('{"levels": ', "not valid JSON"),
}
FLAGS = {
    "lr-nan": (["--lr", "nan"], "train.lr must be a finite number"),
    "lr-inf": (["--lr", "inf"], "train.lr must be a finite number"),
    "lr-1e309": (["--lr", "1e309"], "train.lr must be a finite number"),
    "rate-nan": (["--rate", "nan"], "prune.rate must be a finite number"),
    "output-rate-inf": (["--output-rate", "inf"], "prune.output_rate must be a finite number"),
    "rewind-beyond": (["--rewind-iteration", "20"], "rewind_iteration (20) must be below"),
    "levels-huge": (["--levels", "100000000"], "more than 1,000,000"),
    "model-huge": (["--model", "mlp_4000000000"], "parameters and needs about"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
def test_malformed_config_files(case, tmp_path, capsys):
    text, fragment = CONFIG_FILES[case]
    out = tmp_path / "out"
    config = _toml(tmp_path, text)
    args = ["run", config, "--dataset", "digits", "--no-progress", "--no-report", "--device", "cpu", "--out", str(out)]
    if case not in ("both-lengths", "rewind-beyond-epochs"):
        args += ["--iterations", "20"]
    if case != "huge-model":
        args += ["--model", "mlp_16"]
    refused_in_one_line(args, out, fragment, capsys)


@pytest.mark.parametrize("case", sorted(JSON_FILES))
def test_malformed_json_config_files(case, tmp_path, capsys):
    text, fragment = JSON_FILES[case]
    out = tmp_path / "out"
    refused_in_one_line(["run", _toml(tmp_path, text, "c.json"), *BASE, "--out", str(out)], out, fragment, capsys)


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_malformed_flags(case, tmp_path, capsys):
    flags, fragment = FLAGS[case]
    out = tmp_path / "out"
    refused_in_one_line(["run", *BASE, *flags, "--out", str(out)], out, fragment, capsys)


def _out_is_a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("keep me\n")
    return path


def _out_under_a_file(tmp_path: Path) -> Path:
    return _out_is_a_file(tmp_path) / "sub"


OUT_DIRS = {
    "is-a-file": (_out_is_a_file, "is a file, not a folder"),
    "under-a-file": (_out_under_a_file, "is a file, not a folder"),
    "in-proc": (lambda tmp_path: Path("/proc/ticketlab-out"), "cannot hold files"),
    "in-sys": (lambda tmp_path: Path("/sys/ticketlab-out"), "cannot hold files"),
}


@pytest.mark.parametrize("case", sorted(OUT_DIRS))
def test_unusable_out_folders(case, tmp_path, capsys):
    make, fragment = OUT_DIRS[case]
    out = make(tmp_path)
    watched = out.parent if out.parent.is_file() else out  # the file must stay as it was
    refused_in_one_line(["run", *BASE, "--out", str(out)], watched, fragment, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_out_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        refused_in_one_line(["run", *BASE, "--out", str(folder / "x")], folder, "not writable", capsys)
    finally:
        folder.chmod(0o755)


DATA_DIRS = {
    "empty-mnist-dir": ("mnist", {}, "mnist"),
    "garbage-idx": ("mnist", {"train-images-idx3-ubyte": b"\x00\x00\x08\x03garbage",
                              "train-labels-idx1-ubyte": b"junk", "t10k-images-idx3-ubyte": b"",
                              "t10k-labels-idx1-ubyte": b""}, "truncated idx header"),
    "empty-cifar-dir": ("cifar10", {}, "cifar"),
}


@pytest.mark.parametrize("case", sorted(DATA_DIRS))
def test_malformed_data_files(case, tmp_path, capsys):
    dataset, files, fragment = DATA_DIRS[case]
    data = tmp_path / "data"
    data.mkdir()
    for name, content in files.items():
        (data / name).write_bytes(content)
    out = tmp_path / "out"
    args = ["run", "--dataset", dataset, "--data-dir", str(data), "--model", "mlp_16", "--iterations", "20",
            "--no-progress", "--no-report", "--device", "cpu", "--out", str(out)]
    before = snapshot(out)
    code, _, err = cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0].lower()
    assert snapshot(out) == before


def test_epochs_from_a_config_file_runs(tmp_path, capsys):
    config = _toml(tmp_path, 'model = "mlp_16"\nlevels = 0\n[data]\ndataset = "digits"\n'
                             '[train]\nepochs = 1\nbatch_size = 128\neval_every = 5\n')
    main(["run", config, "--out", str(tmp_path / "out"), "--no-progress", "--no-report", "--device", "cpu",
          "--workers", "1"])
    assert "dense" in capsys.readouterr().out


@pytest.mark.parametrize("raw", [
    {"levels": 7, "seeds": 2, "controls": ["random", "reinit"]},
    {"levels": 7, "seeds": 2, "controls": ["random"], "control_levels": [3, 5]},
    {"levels": 7, "seeds": 3, "controls": [], "ticket_levels": [2, 7], "prune": {"method": "snip"}},
    {"levels": 7, "seeds": 1, "controls": ["random", "reinit"], "ticket_levels": [1, 3, 7], "control_levels": [3, 7],
     "prune": {"method": "snip"}},
])
def test_the_training_count_is_the_level_by_level_count(raw):
    """unit_count counts from the level lists (so refusing 10^8 levels is instant); it must equal
    counting every level's trainings one by one."""
    from ticketlab.config import Config
    from ticketlab.experiment.preflight import unit_count

    config = Config.from_dict(raw)
    one_by_one = 1 + sum(config.trains(level) + len(config.controls) * config.has_controls(level)
                         for level in range(1, config.levels + 1))
    assert unit_count(config) == config.seeds * one_by_one
