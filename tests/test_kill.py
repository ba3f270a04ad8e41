"""A killed run stops (issue 18): SIGKILL or SIGTERM of the run's process alone, or of its whole
process group, leaves no process of the run alive within seconds and nothing writing into its
directory after that; SIGTERM ends the CLI with one line and exit code 143, not a traceback.

The four runs start at once (module fixture), so the suite pays one start-up, not four. Each
trains far longer than the test lasts, so a surviving worker would still be writing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import RunProcesses, kill_processes, process_line, wait_until_gone

WAYS = {
    "SIGKILL pid": (signal.SIGKILL, False),
    "SIGTERM pid": (signal.SIGTERM, False),
    "SIGKILL group": (signal.SIGKILL, True),
    "SIGTERM group": (signal.SIGTERM, True),
}
GONE_WITHIN_S = 5.0
QUIET_FOR_S = 3.0


@dataclass
class Killed:
    """What one killed run left: its exit code and stderr, the processes still alive GONE_WITHIN_S
    after the kill, and the files that changed in the QUIET_FOR_S after that."""

    returncode: int
    stderr: str
    survivors: list[str]
    changed: list[str]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and modification time."""
    out = {}
    for path in directory.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                out[str(path.relative_to(directory))] = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:  # removed while listed: a change the comparison reports
            pass
    return out


def _start(root: Path, name: str, config: Path) -> tuple[subprocess.Popen, RunProcesses, Path]:
    runs = RunProcesses()
    out = root / name.replace(" ", "_")
    command = [sys.executable, "-m", "ticketlab", "run", str(config), "--workers", "2", "--no-progress",
               "--no-report", "--device", "cpu", "--out", str(out)]
    stderr = open(root / f"{out.name}.stderr", "w")  # a file, not a pipe: a survivor would hold a pipe open
    victim = subprocess.Popen(command, env=runs.env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    stderr.close()
    return victim, runs, out


def _training(out: Path) -> bool:
    """Whether a worker has started a unit (its folder exists)."""
    return any(out.glob("*/replicate_*/level_00/ticket"))


def _kill(victim: subprocess.Popen, runs: RunProcesses, out: Path, sig: int, group: bool) -> Killed:
    (os.killpg if group else os.kill)(victim.pid, sig)
    killed_at = time.monotonic()
    victim.wait(timeout=60)
    survivors = wait_until_gone(runs.alive, GONE_WITHIN_S - (time.monotonic() - killed_at))
    lines = [process_line(pid) for pid in survivors]
    before = _snapshot(out)
    time.sleep(QUIET_FOR_S)
    after = _snapshot(out)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    kill_processes(runs.alive())  # a failing run leaves nothing behind either
    stderr = (out.parent / f"{out.name}.stderr").read_text()
    return Killed(victim.returncode, stderr, lines, changed)


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict[str, Killed]:
    """Start one run per way of killing, all at once; kill each as soon as it trains."""
    root = tmp_path_factory.mktemp("killed")
    config = root / "config.json"
    config.write_text(json.dumps({
        "model": "mlp_64_32", "levels": 1, "seeds": 2, "data": {"dataset": "digits"},
        "train": {"iterations": 1_000_000, "eval_every": 20, "checkpoint_every": 20, "batch_size": 32},
    }))
    started = {way: _start(root, way, config) for way in WAYS}
    results: dict[str, Killed] = {}
    try:
        deadline = time.monotonic() + 240
        while len(results) < len(WAYS) and time.monotonic() < deadline:
            for way, (victim, runs, out) in started.items():
                if way in results:
                    continue
                if victim.poll() is not None:
                    raise AssertionError(f"{way}: the run ended before it trained: "
                                         f"{(root / f'{out.name}.stderr').read_text()[-2000:]}")
                if _training(out):
                    results[way] = _kill(victim, runs, out, *WAYS[way])
            time.sleep(0.05)
        assert len(results) == len(WAYS), f"runs not training after 240 s: {sorted(set(WAYS) - set(results))}"
    finally:
        for victim, runs, _ in started.values():
            if victim.poll() is None:
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
            kill_processes(runs.alive())
    return results


@pytest.mark.parametrize("way", list(WAYS))
def test_a_killed_run_leaves_no_process(killed, way):
    assert not killed[way].survivors, f"{way}: alive {GONE_WITHIN_S} s after the kill:\n" + \
        "\n".join(killed[way].survivors)


@pytest.mark.parametrize("way", list(WAYS))
def test_nothing_writes_into_a_killed_runs_directory(killed, way):
    assert not killed[way].changed, f"{way}: files changed after the run's processes were gone: {killed[way].changed}"


@pytest.mark.parametrize("way", list(WAYS))
def test_a_killed_run_exits_without_a_traceback(killed, way):
    sig, _ = WAYS[way]
    result = killed[way]
    if sig == signal.SIGKILL:
        assert result.returncode == -signal.SIGKILL
        return
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "terminated (SIGTERM); run the same command again to resume"
