"""The README's promises, each run the way the README says a user runs it (marked ``readme``;
part of the default run): the install is the lock, the demo command works end to end, a ticket
bundled here verifies here in a default environment, and an export of a user model with a dict
output reloads in a fresh process. Kill-and-resume is ``test_engine.py::
test_resume_after_kill_equals_uninterrupted_run`` (also marked ``readme``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.readme

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _default_env() -> dict[str, str]:
    """The environment a user's shell has: none of the thread limits the test script sets."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


def _ticketlab(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ticketlab", *args], cwd=cwd, env=_default_env(),
                          capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, f"ticketlab {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done


def _locked() -> dict[str, str]:
    text = (ROOT / "requirements" / "lock.txt").read_text()
    return {name.lower().replace("_", "-"): version for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def test_the_lock_satisfies_the_package_ranges_and_is_what_is_installed():
    """setup.sh installs with requirements/lock.txt; the lock must satisfy pyproject's ranges
    (or the install would fail) and be exactly what this run has (or a green run proves nothing
    about the lock)."""
    locked = _locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        if name == "torch":  # installed first by setup.sh at $TORCH_VERSION, not from the lock
            assert requirement.specifier.contains("2.13.0")
            continue
        assert name in locked, f"{name} is a requirement but not in the lock: run scripts/lock.sh"
        assert requirement.specifier.contains(locked[name], prereleases=True), (name, locked[name])
    installed = {name: metadata.version(name) for name in locked if name != "setuptools"}
    assert {n: v for n, v in installed.items() if v != locked[n]} == {}


def test_the_demo_command_ends_with_its_verdict_table_and_report(tmp_path):
    """scripts/demo.sh, the README's first command, with its install step skipped (this run is
    already that install) and its output directory moved."""
    env = {**_default_env(), "TICKETLAB_SKIP_SETUP": "1"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--out", str(tmp_path), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "matching" in out  # the verdict column (matching, not matching, ...)
    assert "lower bound of ticket - dense" in out  # the criterion it was judged by
    (experiment,) = tmp_path.iterdir()
    assert (experiment / "report" / "report.html").is_file()
    assert str(experiment.name) in out  # the report's path is printed


def test_a_bundle_verifies_exactly_on_the_machine_that_made_it(tmp_path):
    """The README's "Verify a ticket" commands, in a default environment (default torch threads)."""
    _ticketlab("run", "--dataset", "digits", "--model", "mlp_64_32", "--levels", "2", "--seeds", "2",
               "--iterations", "300", "--eval-every", "50", "--no-progress", "--no-report", "--out", "exp", cwd=tmp_path)
    (experiment,) = (tmp_path / "exp").iterdir()
    _ticketlab("bundle", str(experiment), "--level", "2", "--out", "ticket.safetensors", cwd=tmp_path)
    done = _ticketlab("verify", "ticket.safetensors", cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "exact" in done.stdout and "MISMATCH" not in done.stdout


FRESH_RELOAD = """
import sys, torch
from ticketlab.export.ticket import load_torch_prune
from ticketlab.io import load_tensors
from user_code.models import DictHead
exported, weights, mask = sys.argv[1:4]
model = load_torch_prune(exported, DictHead())
reference = DictHead()
state = {name: value * load_tensors(mask).get(name, torch.ones_like(value)) for name, value in load_tensors(weights).items()}
reference.load_state_dict(state)
reference.eval()
x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    gap = (model(x)["logits"] - reference(x)["logits"]).abs().max().item()
print(f"gap {gap}")
sys.exit(0 if gap < 1e-5 else 1)
"""


def test_an_export_of_a_user_model_with_a_dict_output_reloads_in_a_fresh_process(tmp_path):
    _ticketlab("run", "--dataset", "digits", "--model", "user_code.models:DictHead", "--levels", "2",
               "--iterations", "200", "--eval-every", "50", "--no-progress", "--no-report", "--out", "exp", cwd=tmp_path)
    (experiment,) = (tmp_path / "exp").iterdir()
    _ticketlab("export", str(experiment), "--level", "2", "--format", "torch-prune", "--out", "pruned.safetensors",
               cwd=tmp_path)
    level = experiment / "replicate_0" / "level_02"
    done = subprocess.run([sys.executable, "-c", FRESH_RELOAD, str(tmp_path / "pruned.safetensors"),
                           str(level / "ticket" / "final.safetensors"), str(level / "mask.safetensors")],
                          cwd=tmp_path, env=_default_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
