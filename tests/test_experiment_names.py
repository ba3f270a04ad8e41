"""Experiment directories: the method in the name, a user-chosen name outside the identity, the
legacy name still found, and ``levels`` outside the identity so a chain extends in place (issue 21)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

import ticketlab
from ticketlab.api import Result
from ticketlab.config import Config
from ticketlab.errors import ConfigError
from ticketlab.experiment.schedule import all_units
from ticketlab.store.layout import Store

from conftest import cli, refused_in_one_line, tiny_config

TINY = {"model": "mlp_32_16", "train": {"iterations": 100, "eval_every": 50, "checkpoint_every": 100}}


def _files(directory: Path, parts: list[str]) -> dict[str, tuple[bytes, int]]:
    """Bytes and modification time of every file under ``directory``/``part``, for each part."""
    out = {}
    for part in parts:
        root = directory / part
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(directory))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return out


def _as_legacy(directory: Path, config: Config) -> Path:
    """Rename an experiment to the name, and rewrite its config.json as, ticketlab wrote before
    the method was in the name and ``levels`` in the hash."""
    record = json.loads((directory / "config.json").read_text())
    legacy = directory.with_name(config.legacy_experiment_name())
    record["canonical"], record["name"] = config.legacy_canonical_dict(), legacy.name
    (directory / "config.json").write_text(json.dumps(record))
    return directory.rename(legacy)


def test_directory_names_carry_the_method_and_the_users_name_outside_the_identity():
    config = tiny_config(**TINY)
    assert config.experiment_name() == f"digits-mlp_32_16-magnitude-{config.digest()}"
    named = config.replace(name="width-study")
    assert named.experiment_name() == f"width-study-{config.digest()}"
    assert named.canonical_dict() == config.canonical_dict()
    assert config.replace(levels=7).digest() == config.digest()  # levels are not the identity either
    assert tiny_config(**TINY, prune={"method": "oneshot"}).experiment_name().startswith("digits-mlp_32_16-oneshot-")
    with pytest.raises(ConfigError, match="name must be"):
        config.replace(name="../elsewhere")
    fewer = tiny_config(**TINY, levels=1, controls=["random"], control_levels=[1, 3])  # a view of a longer chain
    assert fewer.digest() == fewer.replace(levels=3).digest() and fewer.has_controls(1)
    assert [(u.level, u.arm) for u in all_units(fewer)] == [(0, "ticket"), (1, "ticket"), (1, "random")]


def test_a_name_given_later_resumes_the_same_experiment(options):
    config = tiny_config(**TINY, levels=0)
    first = ticketlab.run(config.replace(name="baseline"), options)
    assert first.directory.name == f"baseline-{config.digest()}" and first.config.name == "baseline"
    before = _files(first.directory, ["replicate_0"])
    again = ticketlab.run(config, options)  # no name: found by its hash
    renamed = ticketlab.run(config.replace(name="other"), options)
    assert again.directory == renamed.directory == first.directory
    assert _files(first.directory, ["replicate_0"]) == before
    assert Result.load(first.directory).config.name == "baseline"  # the first name stays


def test_an_experiment_under_its_legacy_name_is_found_resumed_and_extended(options):
    config = tiny_config(**TINY, levels=1)
    legacy = _as_legacy(ticketlab.run(config, options).directory, config)
    assert legacy.name == config.legacy_experiment_name() != config.experiment_name()
    before = _files(legacy, ["replicate_0"])
    resumed = ticketlab.run(config, options)
    assert resumed.directory == legacy and _files(legacy, ["replicate_0"]) == before
    extended = ticketlab.run(config.replace(levels=2), options)  # its legacy hash covered levels=1
    assert extended.directory == legacy and extended.levels() == [0, 1, 2]
    assert [p.name for p in legacy.parent.iterdir()] == [legacy.name]
    assert Result.load(legacy).levels() == [0, 1, 2]
    assert Store(legacy).read_config().levels == 2


def test_extending_levels_trains_only_the_new_levels_and_fewer_levels_delete_nothing(options, capsys):
    config = tiny_config(**TINY, levels=2, controls=["random"])
    first = ticketlab.run(config, options)
    kept = ["replicate_0/init.safetensors", "replicate_0/level_00", "replicate_0/level_01", "replicate_0/level_02"]
    before = _files(first.directory, kept)
    trained = set()
    extended = ticketlab.run(config.replace(levels=4), options, progress=lambda unit, step, end: trained.add(unit))
    assert extended.directory == first.directory
    assert _files(first.directory, kept) == before  # bytes and mtimes of levels 0-2
    assert extended.levels() == [0, 1, 2, 3, 4] and len(extended.select("random")) == 4
    assert {(u.level, u.arm) for u in trained} == {(3, "ticket"), (3, "random"), (4, "ticket"), (4, "random")}
    assert {3, 4} <= {row.level for row in extended.verdicts()}

    everything = _files(first.directory, ["replicate_0"])
    shrunk = ticketlab.run(config.replace(levels=1), options)
    assert shrunk.levels() == [0, 1] and _files(first.directory, ["replicate_0"]) == everything
    assert Result.load(first.directory).levels() == [0, 1, 2, 3, 4]
    code, out, _ = cli(["show", str(first.directory), "--markdown"], capsys)
    assert code == 0 and [line.split("|")[1].strip() for line in out.splitlines()[2:7]] == ["0", "1", "2", "3", "4"]


def test_a_bad_name_in_a_config_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('name = "no spaces please"\nmodel = "mlp_32_16"\n[data]\ndataset = "digits"\n')
    refused_in_one_line(["run", str(path), "--out", str(tmp_path / "out")], tmp_path / "out", "name must be", capsys)


def test_name_flag_names_the_directory(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('model = "mlp_32_16"\nlevels = 0\n[data]\ndataset = "digits"\n[train]\niterations = 40\n'
                    "eval_every = 20\n")
    code, out, err = cli(["run", str(path), "--name", "my-study", "--out", str(tmp_path / "out"), "--workers", "1",
                          "--device", "cpu", "--no-report"], capsys)
    assert code == 0, err
    (directory,) = (tmp_path / "out").iterdir()
    assert directory.name == f"my-study-{Config.from_dict(tomllib.loads(path.read_text())).digest()}"
