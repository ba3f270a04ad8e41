"""Damaged results are detected, named in one line, and recomputed by a re-run.

Every kind of file the store writes is damaged in each way that happens in practice (cut
short, one bit flipped, edited by hand), then read by ``show``, ``report`` and ``check``
(one line naming the file, exit 2; ``check`` lists it and exits 1) and by ``run`` (set aside,
recomputed to the same bytes, with a warning).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import ticketlab
from ticketlab.cli import main
from ticketlab.config import RunOptions
from ticketlab.experiment.audit import scan
from ticketlab.errors import IntegrityWarning
from ticketlab.store.layout import Store
from ticketlab.experiment.unit import Unit
from ticketlab.experiment.runner import run_unit
from ticketlab.experiment.level_masks import ensure_level_mask
from ticketlab.experiment.environment import environment

from conftest import cli, interrupted_level_1_ticket, tiny_config

CONFIG = dict(model="mlp_16", levels=1, controls=["reinit"], rewind_iteration=10,
              train={"iterations": 40, "eval_every": 10, "checkpoint_every": 500, "batch_size": 32})
RUN_ARGS = ["--dataset", "digits", "--model", "mlp_16", "--levels", "1", "--controls", "reinit",
            "--rewind-iteration", "10", "--iterations", "40", "--eval-every", "10", "--batch-size", "32",
            "--no-progress", "--no-report", "--device", "cpu", "--workers", "1"]
UNIT = "replicate_0/level_01/ticket/"
FILES = [
    "config.json", "replicate_0/init.safetensors", "replicate_0/rewind.safetensors",
    "replicate_0/level_00/mask.safetensors", "replicate_0/level_01/mask.safetensors",
    UNIT + "mask.safetensors", UNIT + "start.safetensors", UNIT + "final.safetensors", UNIT + "metrics.jsonl",
    UNIT + "summary.json", UNIT + "manifest.json", "replicate_0/level_01/reinit/final.safetensors",
    "replicate_0/level_00/ticket/final.safetensors",
]


def _options(root: Path) -> RunOptions:
    return RunOptions(root=str(root), device="cpu", threads=1, workers=1, progress=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One finished experiment (with a rewind file), copied by each test."""
    root = tmp_path_factory.mktemp("pristine")
    directory = ticketlab.run(tiny_config(**CONFIG), _options(root)).directory
    assert directory.name == tiny_config(**CONFIG).experiment_name()
    main(["run", *RUN_ARGS, "--out", str(root)])  # the CLI flags name this same experiment
    assert [p.name for p in root.iterdir()] == [directory.name]
    return directory


@pytest.fixture
def experiment(pristine, tmp_path) -> Path:
    copy = tmp_path / "experiments" / pristine.name
    shutil.copytree(pristine, copy)
    return copy


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x04
    path.write_bytes(bytes(data))


def _edit(path: Path) -> None:
    """What a person editing the file would do: change a value, keep it well-formed."""
    if path.suffix == ".safetensors":
        data = bytearray(path.read_bytes())
        data[-4:] = b"\x00\x00\x80\x7f"  # the last float becomes +inf: still a valid file
        path.write_bytes(bytes(data))
        return
    if path.name == "metrics.jsonl":
        lines = path.read_text().splitlines()
        record = json.loads(lines[-1])
        record["test_acc"] = 0.999
        lines[-1] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n")
        return
    record = json.loads(path.read_text())
    if path.name == "config.json":
        record["config"]["seed"] = 7  # part of the identity (levels is not: a chain may be extended)
    elif path.name == "summary.json":
        record["final_test_acc"] = 0.999
    else:  # manifest.json
        entry = record["files"]["final.safetensors"]
        entry["sha256"] = "0" * 64
    path.write_text(json.dumps(record))


DAMAGE = {"truncate": _truncate, "flip": _flip, "edit": _edit}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", FILES)
def test_show_report_check_name_the_damaged_file(experiment, name, damage, capsys):
    DAMAGE[damage](experiment / name)
    named = UNIT if name.endswith("manifest.json") else name  # a damaged manifest discredits some file of its unit
    for command in ("show", "report"):
        code, out, err = cli([command, str(experiment)], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (command, err)
        assert named in lines[0] and "damaged" in lines[0], lines[0]
    code, out, err = cli(["check", str(experiment)], capsys)
    if name == "config.json":
        assert code == 2 and "config.json" in err and len(err.strip().splitlines()) == 1
    else:
        assert code == 1, out + err
        assert f"damaged: {named}" in out, out
    with pytest.raises(ticketlab.StoreError, match="damaged"):
        ticketlab.Result.load(experiment)


def _bytes_of_results(directory: Path) -> dict[str, bytes]:
    """Everything but the wall-clock-bearing summaries, manifests and set-aside files."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.suffix in (".safetensors", ".jsonl")}


@pytest.mark.parametrize("name", FILES)
def test_run_sets_damage_aside_and_recomputes_the_same_bytes(experiment, name, capsys):
    before = _bytes_of_results(experiment)
    _flip(experiment / name)
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(experiment.parent)], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings and all(line.startswith("warning: ") for line in err.strip().splitlines()), err
    damaged = experiment / name if not name.endswith("manifest.json") else experiment / (UNIT + "final.safetensors")
    assert damaged.with_name(damaged.name + ".damaged").exists() or name.endswith("manifest.json")
    assert _bytes_of_results(experiment) == before
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 0 and "0 damaged" in out, out + err


def test_damaged_checkpoint_is_set_aside_and_the_unit_restarts(tmp_path):
    config = tiny_config(**{**CONFIG, "train": {**CONFIG["train"], "checkpoint_every": 20}})
    clean = ticketlab.run(config, _options(tmp_path / "clean"))
    store, paths = interrupted_level_1_ticket(config, tmp_path / "crashed", crash_at=30)  # checkpoint at 20
    _flip(paths.checkpoint)
    with pytest.warns(IntegrityWarning, match="checkpoint.safetensors.*restarts this unit from its start"):
        ticketlab.run(config, _options(tmp_path / "crashed"))
    assert paths.checkpoint.with_name("checkpoint.safetensors.damaged").is_file()
    assert _bytes_of_results(store.directory) == _bytes_of_results(clean.directory)


def test_finished_unit_without_manifest_is_damaged(experiment, capsys):
    (experiment / UNIT / "manifest.json").unlink()
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 1 and f"damaged: {UNIT}manifest.json: missing or unreadable" in out


def test_legacy_experiment_is_read_with_one_warning(experiment, capsys):
    """The previous store format (no manifests, no format in config.json) stays readable."""
    for manifest in experiment.rglob("manifest.json"):
        manifest.unlink()
    record = json.loads((experiment / "config.json").read_text())
    del record["format"]
    (experiment / "config.json").write_text(json.dumps(record))
    for metrics in experiment.rglob("metrics.jsonl"):  # the old writer put NaN in the step-0 train loss
        metrics.write_text(metrics.read_text().replace('"train_loss": null', '"train_loss": NaN', 1))
    assert "NaN" in (experiment / UNIT / "metrics.jsonl").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in experiment.rglob("*") if p.is_file() and p.name != ".lock"}
    for command in (["show", str(experiment)], ["check", str(experiment)],
                    ["run", *RUN_ARGS, "--out", str(experiment.parent)]):
        code, out, err = cli(command, capsys)
        lines = err.strip().splitlines()
        assert code == 0, err
        assert len(lines) == 1 and lines[0].startswith("warning: ") and "no checksums" in lines[0], err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing recomputed or rewritten
    assert not list(experiment.rglob("manifest.json"))


def test_leftover_temporary_files_are_removed_when_the_unit_runs_again(experiment, capsys):
    leftovers = [experiment / UNIT / ".checkpoint.safetensors.abc123_x.tmp",
                 experiment / "replicate_0" / ".rewind.safetensors.q9z8y7.tmp"]
    for path in leftovers:
        path.write_bytes(b"\x00" * 1000)
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(experiment.parent)], capsys)
    assert code == 0, err
    assert not any(path.exists() for path in leftovers)
    assert not list(experiment.rglob("*.tmp"))


def test_metrics_are_strict_json(experiment):
    for path in experiment.rglob("metrics.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line, parse_constant=lambda name: pytest.fail(f"{path}: {name} is not JSON"))
    first = json.loads((experiment / UNIT / "metrics.jsonl").read_text().splitlines()[0])
    assert first["train_loss"] is None  # nothing trained yet at the first evaluation


def test_config_json_without_config_key_is_one_line(experiment, capsys):
    record = json.loads((experiment / "config.json").read_text())
    del record["config"]
    (experiment / "config.json").write_text(json.dumps(record))
    code, out, err = cli(["show", str(experiment)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "config.json is damaged" in err


def test_edited_config_advice_does_not_repeat(experiment, capsys):
    """An edited config.json is named as damaged; the run rewrites it, after which all is clean."""
    _edit(experiment / "config.json")
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(experiment.parent)], capsys)
    assert code == 0 and "config.json was damaged" in err, err
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(experiment.parent)], capsys)
    assert code == 0 and err.strip() == "", err
    code, out, err = cli(["show", str(experiment)], capsys)
    assert code == 0 and err.strip() == ""


# ---------------------------------------------------------------------------- both ways, and identity
def _one_line_refusal(command: list[str], capsys) -> str:
    code, out, err = cli(command, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (command, out, err)
    assert "ticketlab check" in lines[0], lines[0]
    return lines[0]


def _damage_is_reported_refused_and_recomputed(experiment, named: str, capsys) -> None:
    """``check`` names ``named``; ``show`` and ``bundle`` refuse in one line; ``run`` recomputes
    the same bytes, after which ``check`` is clean."""
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 1 and f"damaged: {named}" in out, out + err
    _one_line_refusal(["show", str(experiment)], capsys)
    _one_line_refusal(["bundle", str(experiment), "--level", "1", "--out", str(experiment.parent / "b.safetensors")],
                      capsys)
    assert not (experiment.parent / "b.safetensors").exists()
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(experiment.parent)], capsys)
    assert code == 0, err
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 0 and "0 damaged" in out, out + err


def test_a_deleted_summary_is_damage_not_a_missing_seed(experiment, capsys):
    before = _bytes_of_results(experiment)
    (experiment / UNIT / "summary.json").unlink()
    _damage_is_reported_refused_and_recomputed(experiment, UNIT + "summary.json", capsys)
    assert _bytes_of_results(experiment) == before


def test_a_deleted_unit_folder_is_damage(experiment, capsys):
    before = _bytes_of_results(experiment)
    shutil.rmtree(experiment / "replicate_0/level_01/reinit")
    _damage_is_reported_refused_and_recomputed(experiment, "replicate_0/level_01/reinit", capsys)
    assert _bytes_of_results(experiment) == before


def test_a_deleted_level_folder_is_damage(experiment, capsys):
    before = _bytes_of_results(experiment)
    shutil.rmtree(experiment / "replicate_0/level_01")
    _damage_is_reported_refused_and_recomputed(experiment, "replicate_0/level_01/", capsys)
    assert _bytes_of_results(experiment) == before


def test_a_control_folder_copied_over_another_unit_is_damage(experiment, capsys):
    before = _bytes_of_results(experiment)
    shutil.rmtree(experiment / UNIT)
    shutil.copytree(experiment / "replicate_0/level_01/reinit", experiment / UNIT)
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 1 and f"damaged: {UNIT}summary.json: holds replicate 0 level 1 reinit" in out, out + err
    _damage_is_reported_refused_and_recomputed(experiment, UNIT + "summary.json", capsys)
    assert _bytes_of_results(experiment) == before


def test_an_unlisted_file_where_one_is_recorded_is_damage(experiment, capsys):
    """The other way round: a file present without a manifest entry."""
    manifest = experiment / UNIT / "manifest.json"
    record = json.loads(manifest.read_text())
    del record["files"]["start.safetensors"]
    manifest.write_text(json.dumps(record))
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 1 and f"damaged: {UNIT}start.safetensors: no checksum recorded" in out, out + err


# ---------------------------------------------------------------------------- the experiment's own files
@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", ["parameters.json", "manifest.json"])
def test_top_level_files_are_checked_and_recomputed(experiment, name, damage, capsys):
    """A damaged parameters.json or top-level manifest is reported, and a re-run (even with a
    damaged mask beside it, which used to leave the run stuck) rewrites it."""
    before = _bytes_of_results(experiment)
    plan = (experiment / "parameters.json").read_bytes()
    if damage == "edit":
        record = json.loads((experiment / name).read_text())
        if name == "manifest.json":
            record["files"]["parameters.json"]["sha256"] = "0" * 64
        else:
            record["output"] = "something else"
        (experiment / name).write_text(json.dumps(record))
    else:
        DAMAGE[damage](experiment / name)
    _flip(experiment / "replicate_0/level_01/mask.safetensors")
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 1 and ("damaged: parameters.json" in out or "manifest.json" in out), out + err
    _one_line_refusal(["show", str(experiment)], capsys)
    code, out, err = cli(["run", *RUN_ARGS, "--out", str(experiment.parent)], capsys)
    assert code == 0, err
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 0 and "0 damaged" in out, out + err
    assert (experiment / "parameters.json").read_bytes() == plan
    assert _bytes_of_results(experiment) == before
    shutil.rmtree(experiment / "replicate_0/level_01/reinit")  # the index of finished units was rebuilt
    code, out, err = cli(["check", str(experiment)], capsys)
    assert code == 1 and "damaged: replicate_0/level_01/reinit" in out, out + err


# ---------------------------------------------------------------------------- the gap between rename and manifest
class _Killed(BaseException):
    """A kill: nothing after it runs (not an Exception, so no handler turns it into an error)."""


def _kill_at_renaming(monkeypatch, name: str, nth: int, renamed: bool) -> None:
    """Make the ``nth`` rename of a file called ``name`` into place the last thing the process
    does (``renamed``), or kill it just before that rename."""
    import ticketlab.io as io

    real, seen = os.replace, []

    def replace(source, target):
        if Path(target).name == name:
            seen.append(target)
            if len(seen) == nth and not renamed:
                raise _Killed
        real(source, target)
        if len(seen) == nth and Path(target).name == name:
            raise _Killed

    monkeypatch.setattr(io.os, "replace", replace)


@pytest.mark.parametrize("renamed", [True, False], ids=["after-rename", "before-rename"])
@pytest.mark.parametrize("name,nth", [("checkpoint.safetensors", 2), ("checkpoint.safetensors", 1),
                                      ("early_stop.safetensors", 2), ("summary.json", 1), ("final.safetensors", 1)])
def test_a_kill_between_rename_and_manifest_is_no_damage(tmp_path, monkeypatch, capsys, name, nth, renamed):
    config = tiny_config(**{**CONFIG, "train": {**CONFIG["train"], "checkpoint_every": 10}})
    clean = ticketlab.run(config, _options(tmp_path / "clean"))
    store = Store.for_config(config, tmp_path / "killed")
    store.write_config(config)
    run_unit(config, str(store.directory), Unit(0, 0, "ticket"), "cpu")
    ensure_level_mask(environment(config), store, 0, 1)
    with monkeypatch.context() as patch:
        _kill_at_renaming(patch, name, nth, renamed)
        with pytest.raises(_Killed):
            run_unit(config, str(store.directory), Unit(0, 1, "ticket"), "cpu")
    assert scan(store, config) == []  # what `show` and `check` see during a live run in that gap
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntegrityWarning)
        ticketlab.run(config, _options(tmp_path / "killed"))
    assert not list(store.directory.rglob("*.damaged*"))
    assert not [m for m in store.directory.rglob("manifest.json") if "pending" in json.loads(m.read_text())]
    assert _bytes_of_results(store.directory) == _bytes_of_results(clean.directory)
    code, out, err = cli(["check", str(store.directory)], capsys)
    assert code == 0 and "0 damaged" in out, out + err


def test_a_reader_accepts_a_file_replaced_while_it_read(tmp_path, monkeypatch):
    """A live run replaces a file between a reader's reading it and reading its manifest."""
    import ticketlab.store.integrity as integrity
    from ticketlab.io import write_bytes_atomic

    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"old", checksum=True)
    real, calls = integrity.read_bytes, []

    def read_then_replace(p):
        data = real(p)
        calls.append(p)
        if len(calls) == 1:
            write_bytes_atomic(path, b"new!", checksum=True)
        return data

    monkeypatch.setattr(integrity, "read_bytes", read_then_replace)
    assert integrity.verified_bytes(path, legacy=False) == b"new!"


# ---------------------------------------------------------------------------- canonical zeros
def test_pruned_weights_are_stored_as_positive_zero(tmp_path):
    from ticketlab.io import save_tensors

    weights = torch.tensor([-1.5, -2.0, 3.0, -0.25])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    masked = weights * mask  # -2.0 * 0 = -0.0: the sign bit survives masking by multiplication
    assert torch.signbit(masked).tolist() == [True, True, False, True]
    save_tensors({"w": masked}, tmp_path / "a.safetensors")
    save_tensors({"w": weights.masked_fill(mask == 0, 0.0)}, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_no_stored_tensor_holds_negative_zero(experiment):
    from safetensors.torch import load_file

    for path in experiment.rglob("*.safetensors"):
        for name, tensor in load_file(path).items():
            if tensor.is_floating_point():
                assert not bool((torch.signbit(tensor) & (tensor == 0)).any()), (path, name)


def _negative_zeros(directory: Path) -> list[str]:
    from safetensors.torch import load_file

    return [f"{p}:{n}" for p in sorted(directory.rglob("*.safetensors")) for n, t in load_file(p).items()
            if t.is_floating_point() and bool((torch.signbit(t) & (t == 0)).any())]


def test_a_resumed_snip_unit_writes_the_bytes_of_an_uninterrupted_one(tmp_path):
    config = tiny_config(**{**CONFIG, "rewind_iteration": 0, "prune": {"method": "snip"},
                            "train": {**CONFIG["train"], "checkpoint_every": 10}})
    clean = ticketlab.run(config, _options(tmp_path / "clean"))
    store, _ = interrupted_level_1_ticket(config, tmp_path / "crashed", crash_at=30)
    ticketlab.run(config, _options(tmp_path / "crashed"))
    assert _bytes_of_results(store.directory) == _bytes_of_results(clean.directory)
    assert _negative_zeros(store.directory) == [] and _negative_zeros(clean.directory) == []


def test_damage_found_in_a_worker_reaches_the_run_intact():
    import pickle

    from ticketlab.store.integrity import DamagedFileError

    error = DamagedFileError(Path("x/mask.safetensors"), "checksum mismatch", "run it again")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, DamagedFileError) and str(again) == str(error) and again.path == error.path
