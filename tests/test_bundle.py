"""Ticket bundles and ``ticketlab verify``: a bundle re-trains to its claim; a bundle whose mask
or claim was altered fails before anything trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli, tiny_config
from safetensors.torch import load, save

from ticketlab.api import run
from ticketlab.bundle.pack import BundleError, _content_sha256, make_bundle, read_bundle, tensors_sha256
from ticketlab.bundle.verification import verify

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """A two-seed experiment to level 1 and its level-1 bundle (trained once for the module)."""
    from ticketlab.config import RunOptions

    root = tmp_path_factory.mktemp("bundle")
    result = run(tiny_config(levels=1, seeds=2), RunOptions(root=str(root / "experiments"), device="cpu", threads=1,
                                                            workers=1, progress=False))
    return result, make_bundle(result.directory, 1, root / "ticket.safetensors")


def _rewrite(path: Path, out: Path, tensors=None, doc=None, rehash: bool = False) -> Path:
    """A copy of a bundle with tensors or description changed (and, with ``rehash``, its hashes
    recomputed, as a forger would)."""
    data = path.read_bytes()
    flat = load(data)
    header = json.loads(data[8: 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    original = json.loads(header["ticketlab_bundle"])
    flat = {**flat, **(tensors or {})}
    doc = doc or original
    if rehash:
        doc = {**doc, "tensors_sha256": tensors_sha256(flat)}
        header = {"ticketlab_bundle": json.dumps(doc, sort_keys=True), "sha256": _content_sha256(doc)}
    else:
        header = {**header, "ticketlab_bundle": json.dumps(doc, sort_keys=True)}
    out.write_bytes(save(flat, metadata=header))
    return out


def test_bundle_describes_the_ticket_and_its_claim(bundled):
    result, path = bundled
    bundle = read_bundle(path)
    doc = bundle.doc
    assert doc["level"] == 1 and doc["experiment"] == result.directory.name
    assert [r["seed"] for r in bundle.replicates] == [0, 1]
    records = {r["replicate"]: r for r in result.select("ticket", 1)}
    for claimed in bundle.replicates:
        assert claimed["test_acc_at_early_stop"] == records[claimed["replicate"]]["test_acc_at_early_stop"]
        assert bundle.mask(claimed["replicate"]).equals(result.mask(1, claimed["replicate"]))
    assert doc["claim"]["interval"]["has_interval"] and doc["claim"]["verdict"]["label"]
    assert set(doc["environment"]) >= {"torch", "python", "ticketlab", "platform", "device"}
    assert len(doc["data"]["fingerprint"]) == 16 and doc["data"]["builtin"]


def test_verify_retrains_the_ticket_exactly(bundled, tmp_path):
    _, path = bundled
    outcome = verify(path, controls=["random"], workdir=tmp_path / "work")
    assert outcome.mode == "exact"
    assert outcome.passed, [c for c in outcome.checks if c.ok is False]
    assert any("weights" in c.what and c.ok for c in outcome.checks)
    assert any(c.what.startswith("control random") for c in outcome.checks)


def test_a_tampered_mask_fails_before_training(bundled, tmp_path, capsys):
    _, path = bundled
    flat = load(path.read_bytes())
    name = next(k for k in flat if k.startswith("r0/mask/"))
    flipped = flat[name].clone()
    flipped.view(-1)[torch.argmin(flipped.view(-1))] = 1  # revive one pruned weight
    tampered = _rewrite(path, tmp_path / "mask.safetensors", {name: flipped})
    with pytest.raises(BundleError, match="altered: its weights or masks"):
        read_bundle(tampered)
    # a forger who recomputes the hashes is caught by the mask's sparsity against the claim
    forged = _rewrite(path, tmp_path / "forged.safetensors", {name: flipped}, rehash=True)
    code, out, err = cli(["verify", str(forged)], capsys)
    assert code == 2 and "inconsistent" in err and "mask keeps" in err and "Traceback" not in err


def test_a_tampered_claim_fails_before_training(bundled, tmp_path, capsys):
    _, path = bundled
    doc = json.loads(json.dumps(read_bundle(path).doc))
    doc["claim"]["replicates"][0]["test_acc_at_early_stop"] += 0.01
    code, _, err = cli(["verify", str(_rewrite(path, tmp_path / "claim.safetensors", doc=doc))], capsys)
    assert code == 2 and "altered: its description" in err
    code, _, err = cli(["verify", str(_rewrite(path, tmp_path / "forged.safetensors", doc=doc, rehash=True))], capsys)
    assert code == 2 and "claimed mean and interval are not those" in err


def test_a_consistent_but_false_claim_fails_verification(bundled, tmp_path, capsys):
    """A forger who rewrites the claim, its interval and the hashes is caught by scoring the
    bundled weights (before training) or, for numbers only training gives, by re-training."""
    from ticketlab.evidence.stats import mean_ci

    _, path = bundled
    doc = json.loads(json.dumps(read_bundle(path).doc))
    for record in doc["claim"]["replicates"]:
        record["test_acc_at_early_stop"] = min(1.0, record["test_acc_at_early_stop"] + 0.01)
    values = [r["test_acc_at_early_stop"] for r in doc["claim"]["replicates"]]
    doc["claim"]["interval"] = mean_ci(values, bounds=(0.0, 1.0)).to_dict()
    outcome = verify(_rewrite(path, tmp_path / "false.safetensors", doc=doc, rehash=True))
    assert not outcome.passed and all("bundled early_stop weights" in c.what for c in outcome.checks)

    doc = json.loads(json.dumps(read_bundle(path).doc))
    doc["claim"]["replicates"][1]["final_val_acc"] += 0.01
    code, out, err = cli(["verify", str(_rewrite(path, tmp_path / "final.safetensors", doc=doc, rehash=True))],
                         capsys)
    assert code == 1 and "MISMATCH" in out and "failed verification" in err
    assert out.count("MISMATCH") == 1 and "replicate 1 final_val_acc" in out


def test_verify_in_a_fresh_process_from_the_cli(bundled, tmp_path, capsys):
    result, _ = bundled
    out = tmp_path / "t.safetensors"
    code, printed, err = cli(["bundle", str(result.directory), "--level", "1", "--out", str(out)], capsys)
    assert code == 0 and str(out) in printed, err
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    checked = subprocess.run([sys.executable, "-m", "ticketlab", "verify", str(out)], env=env, cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verified" in checked.stdout and "(exact)" in checked.stdout and "claim: level 1" in checked.stdout


def _default_environment() -> dict[str, str]:
    """This process's environment without the thread limits the test script sets: what a user has."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**env, "PYTHONPATH": SRC}


def _ticketlab(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ticketlab", *args], env=_default_environment(), cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_run_bundle_verify_in_a_default_environment(tmp_path, threads):
    """Where the bundle was made, with no OMP_NUM_THREADS (torch then uses every core), verify
    re-trains under the threads the run used (``--threads``, recorded per unit) and passes exactly."""
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny_config(levels=1, train={"iterations": 150}).to_dict()))
    made = _ticketlab(["run", str(config), "--out", "e", "--device", "cpu", "--no-progress", "--no-report",
                       "--threads", str(threads), "--workers", "1"], tmp_path)
    assert made.returncode == 0, made.stderr
    experiment = next((tmp_path / "e").iterdir())
    assert json.loads((experiment / "replicate_0" / "level_01" / "ticket" / "summary.json").read_text())["numerics"]["threads"] \
        == threads
    bundled = _ticketlab(["bundle", str(experiment), "--level", "1", "--out", "t.safetensors"], tmp_path)
    assert bundled.returncode == 0, bundled.stderr
    checked = _ticketlab(["verify", "t.safetensors"], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "MISMATCH" not in checked.stdout and "(exact)" in checked.stdout


def test_a_late_rewinding_ticket_carries_its_rewind_point(options, tmp_path):
    result = run(tiny_config(levels=1, rewind_iteration=50), options)
    path = make_bundle(result.directory, 1, tmp_path / "rewind.safetensors")
    assert "rewind" in read_bundle(path).tensors[0]
    outcome = verify(path)
    assert outcome.mode == "exact" and outcome.passed, [c for c in outcome.checks if c.ok is False]


def test_bundle_of_a_missing_level_is_one_line(bundled, tmp_path, capsys):
    result, _ = bundled
    code, _, err = cli(["bundle", str(result.directory), "--level", "5", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "no finished ticket at level 5" in err


def test_elsewhere_the_claim_is_checked_against_its_interval(bundled, tmp_path):
    """A bundle measured with another torch build is checked by interval, not bit for bit."""
    _, path = bundled
    doc = json.loads(json.dumps(read_bundle(path).doc))
    doc["environment"]["torch"] = "0.0.0-elsewhere"
    outcome = verify(_rewrite(path, tmp_path / "elsewhere.safetensors", doc=doc, rehash=True))
    assert outcome.mode == "interval" and "torch 0.0.0-elsewhere" in outcome.mode_reason
    assert outcome.passed and any("interval" in c.what and c.ok for c in outcome.checks)


def test_a_ticket_on_user_data_needs_that_data(bundled, tmp_path, capsys):
    _, path = bundled
    doc = json.loads(json.dumps(read_bundle(path).doc))
    doc["data"].update(builtin=False, dataset="python:mine")
    code, _, err = cli(["verify", str(_rewrite(path, tmp_path / "user.safetensors", doc=doc, rehash=True))], capsys)
    assert code == 2 and "the user's own data (python:mine" in err and "data=" in err


def test_a_ticket_on_user_data_and_model_verifies_with_them(tmp_path):
    from user_code import models

    from ticketlab.config import RunOptions

    config = {"levels": 1, "train": {"iterations": 60, "eval_every": 20, "batch_size": 32}}
    options = RunOptions(root=str(tmp_path / "e"), device="cpu", workers=1, progress=False)
    result = run(config, options, model="user_code.models:WithDropout", data=models.classification_data())
    path = make_bundle(result.directory, 1, tmp_path / "user.safetensors")
    assert not read_bundle(path).doc["data"]["builtin"]
    outcome = verify(path, data=models.classification_data())
    assert outcome.mode == "exact" and outcome.passed, [c for c in outcome.checks if c.ok is False]
    with pytest.raises(BundleError, match="not the data the ticket was trained on"):
        verify(path, data=models.classification_data(seed=1))


def _relabelled(path: Path, out: Path, level: int | None = None, seed: int | None = None,
                config: dict | None = None, plan: bool = True) -> Path:
    """A bundle whose level, replicate 0's claimed seed or config was edited (a config's new base
    seed also relabels every claimed seed), with its experiment name and hashes recomputed as a
    forger would."""
    from ticketlab.config import Config

    doc = json.loads(json.dumps(read_bundle(path).doc))
    if level is not None:
        doc["level"] = level
    if not plan:  # as an older bundle, without the experiment's parameter plan
        del doc["plan"]
    if seed is not None:
        doc["claim"]["replicates"][0]["seed"] = seed
    if config is not None:
        doc["config"].update(config)
        doc["experiment"] = Config.from_dict(doc["config"]).experiment_name()
        for record in doc["claim"]["replicates"]:
            record["seed"] = doc["config"]["seed"] + record["replicate"]
    return _rewrite(path, out, doc=doc, rehash=True)


def test_an_edited_seed_is_refused_in_one_line(bundled, tmp_path, capsys):
    _, path = bundled
    code, out, err = cli(["verify", str(_relabelled(path, tmp_path / "seed.safetensors", seed=5))], capsys)
    assert code == 2 and "replicate 0 claims seed 5" in err and "verified" not in out
    assert len(err.strip().splitlines()) == 1
    # a config whose base seed was changed with the claim's: that seed draws other initial weights
    code, out, err = cli(["verify", str(_relabelled(path, tmp_path / "base.safetensors", config={"seed": 7}))], capsys)
    assert code == 2 and "initial weights are not the ones seed 7 draws" in err and "verified" not in out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("edit", [{"level": 0}, {"level": 2, "config": {"levels": 2}}, {"level": 3},
                                  {"level": 2, "config": {"levels": 2}, "plan": False}])
def test_an_edited_level_is_refused_in_one_line(bundled, tmp_path, capsys, edit):
    _, path = bundled
    code, out, err = cli(["verify", str(_relabelled(path, tmp_path / "level.safetensors", **edit))], capsys)
    assert code == 2 and f"claims level {edit['level']}" in err and "verified" not in out, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _without(doc: dict, *path: str) -> dict:
    """A deep copy of ``doc`` with the key at ``path`` removed."""
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return doc


def _with(doc: dict, value, *path) -> dict:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def test_a_rewritten_description_is_one_line_not_a_traceback(bundled, tmp_path, capsys):
    """Descriptions rewritten with their hashes recomputed: every missing key, wrong type or
    malformed tensor name is refused in one line, exit 2, before anything trains."""
    _, path = bundled
    doc = read_bundle(path).doc
    cases = {
        "no claim": (_without(doc, "claim"), None, "has no 'claim'"),
        "level as text": (_with(doc, "1", "level"), None, "['level'] is str, not int"),
        "replicate as text": (_with(doc, ["r0"], "claim", "replicates"), None, "replicates[0] is not an object"),
        "no replicates": (_with(doc, [], "claim", "replicates"), None, "names no replicate"),
        "interval without n": (_without(doc, "claim", "interval", "n"), None, "claim.interval has no 'n'"),
        "seed as float": (_with(doc, 0.5, "claim", "replicates", 0, "seed"), None, "is float, not int"),
        "bad config": (_with(doc, -1, "config", "levels"), None, "its config is invalid"),
        "environment as list": (_with(doc, [], "environment"), None, "is list, not dict"),
        "no rewind steps": (_without(doc, "rewind_steps"), None, "has no 'rewind_steps'"),
        "tensor without parts": (doc, {"junk": torch.zeros(1)}, "tensor 'junk' is not named"),
        "mask of another shape": (doc, {"r0/mask/" + next(iter(read_bundle(path).mask(0))): torch.ones(3, dtype=torch.uint8)},
                                  "fits none of its weights"),
        "rewind without its step": (doc, {"r0/rewind/x": torch.zeros(1)}, "rewind point and its iteration"),
    }
    for name, (description, tensors, expected) in cases.items():
        forged = _rewrite(path, tmp_path / f"{name.replace(' ', '_')}.safetensors", tensors=tensors, doc=description,
                          rehash=True)
        code, out, err = cli(["verify", str(forged)], capsys)
        assert code == 2 and expected in err and "Traceback" not in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)


def test_verify_into_a_file_workdir_or_with_negative_seeds_is_one_line(bundled, tmp_path, capsys):
    _, path = bundled
    code, _, err = cli(["verify", str(path), "--seeds", "-1"], capsys)
    assert code == 2 and "--seeds must be" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    code, _, err = cli(["verify", str(path), "--workdir", str(tmp_path / "file")], capsys)
    assert code == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["directory", "proc", "file_as_folder"])
def test_bundle_to_an_unusable_out_is_one_line_and_writes_nothing(bundled, tmp_path, capsys, where):
    result, _ = bundled
    (tmp_path / "existing").mkdir()
    (tmp_path / "plain").write_text("x")
    out = {"directory": tmp_path / "existing", "proc": Path("/proc/ticket.safetensors"),
           "file_as_folder": tmp_path / "plain" / "ticket.safetensors"}[where]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = cli(["bundle", str(result.directory), "--level", "1", "--out", str(out)], capsys)
    assert code == 2 and "--out" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and not Path("/proc/ticket.safetensors").exists()


def test_a_full_disk_while_bundling_is_one_line(bundled, tmp_path, capsys, monkeypatch):
    import errno

    import ticketlab.bundle.pack

    result, _ = bundled

    def full(path, data, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(ticketlab.bundle.pack, "write_bytes_atomic", full)
    out = tmp_path / "t.safetensors"
    code, _, err = cli(["bundle", str(result.directory), "--level", "1", "--out", str(out)], capsys)
    assert code == 2 and "No space left on device" in err and "nothing was written" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_ticket_resumed_under_other_threads_is_checked_by_interval(tmp_path):
    """No one thread count re-trains a unit whose two halves trained under different ones: its
    summary says ``mixed``, and verify checks it by interval instead of failing bit for bit."""
    from conftest import interrupted_level_1_ticket

    from ticketlab.config import RunOptions

    config = tiny_config(levels=1, train={"iterations": 200})
    store, paths = interrupted_level_1_ticket(config, tmp_path, crash_at=150)
    assert paths.checkpoint.is_file()
    try:
        result = run(config, RunOptions(root=str(tmp_path), device="cpu", threads=2, workers=1, progress=False))
    finally:
        torch.set_num_threads(1)
    numerics = result.select("ticket", 1)[0]["numerics"]
    assert numerics["threads"] == 2 and numerics["mixed"]
    assert "mixed" not in result.select("ticket", 0)[0]["numerics"]
    outcome = verify(make_bundle(result.directory, 1, tmp_path / "mixed.safetensors"))
    assert outcome.mode == "interval" and "replicate(s) 0 resumed under other threads" in outcome.mode_reason
    assert torch.get_num_threads() == 1  # verify restores the caller's settings
