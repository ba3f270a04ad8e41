"""Shared fixtures. Tests run torch with one thread: on a shared 2-core machine two threads
can collapse when another process competes, and results must not depend on thread count."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from ticketlab.cli import main  # noqa: E402
from ticketlab.config import Config, RunOptions  # noqa: E402
from ticketlab.store.layout import Store, UnitPaths  # noqa: E402
from ticketlab.experiment.unit import Unit
from ticketlab.experiment.runner import run_unit
from ticketlab.experiment.level_masks import ensure_level_mask
from ticketlab.experiment.environment import environment  # noqa: E402

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _lock_mismatches() -> list[str]:
    """Installed distributions whose version differs from requirements/lock.txt."""
    if not LOCK.is_file():
        return ["requirements/lock.txt missing"]
    wrong = []
    for name, locked in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", LOCK.read_text(), re.M):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "absent"
        if installed != locked:
            wrong.append(f"{name} {installed} (lock {locked})")
    return wrong


def _environment_lines() -> list[str]:
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("torch", "numpy", "scipy", "scikit-learn", "safetensors", "mlxtend")
    )
    mismatches = _lock_mismatches()
    return [
        f"cpu: {_cpu_model()} ({torch.backends.cpu.get_cpu_capability()} kernels)",
        f"versions: {versions}",
        "lock: installed versions match requirements/lock.txt" if not mismatches
        else "lock: differs from requirements/lock.txt: " + "; ".join(mismatches),
    ]


def pytest_sessionstart(session) -> None:
    """The machine and versions this run had, at the top of the log even under -q: numbers a
    training trajectory produces move with both, so a red run elsewhere starts from knowing
    what differed."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for line in _environment_lines():
            reporter.write_line(line)


def tiny_raw(**changes) -> dict:
    """A real but fast experiment as plain data: sklearn digits, a small MLP, a few hundred
    iterations (tables in ``changes`` update the defaults' tables)."""
    raw: dict = {
        "model": "mlp_64_32",
        "levels": 2,
        "data": {"dataset": "digits"},
        "train": {"iterations": 300, "eval_every": 50, "checkpoint_every": 100, "batch_size": 32},
    }
    for key, value in changes.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return raw


def tiny_config(**changes) -> Config:
    """:func:`tiny_raw` as a validated Config."""
    return Config.from_dict(tiny_raw(**changes))


@pytest.fixture
def options(tmp_path) -> RunOptions:
    return RunOptions(root=str(tmp_path / "experiments"), device="cpu", threads=1, workers=1, progress=False)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(path) -> dict[str, bytes] | None:
    """Every file under ``path`` with its bytes (None if ``path`` does not exist)."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"" for p in sorted(path.rglob("*"))}


def refused_in_one_line(args: list[str], watched, fragment: str, capsys) -> str:
    """Run the CLI; assert one ``error:`` line containing ``fragment``, exit 2, and nothing under
    ``watched`` written or changed. Returns the line."""
    before = snapshot(watched)
    code, _, err = cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert snapshot(watched) == before
    return lines[0]


def interrupted_level_1_ticket(config: Config, root, crash_at: int, stepper: str = "auto") -> tuple[Store, UnitPaths]:
    """Train level 0, then crash level 1's ticket at its first evaluation at or after ``crash_at``
    (after a checkpoint), as a killed run would leave it."""
    store = Store.for_config(config, root)
    store.write_config(config)
    run_unit(config, str(store.directory), Unit(0, 0, "ticket"), "cpu")
    ensure_level_mask(environment(config), store, 0, 1)

    class Crash(Exception):
        pass

    def crash(unit, step, end):
        if step >= crash_at:
            raise Crash

    with pytest.raises(Crash):
        run_unit(config, str(store.directory), Unit(0, 1, "ticket"), "cpu", progress=crash, stepper=stepper)
    return store, store.unit(0, 1, "ticket")


# ---------------------------------------------------------------------------- processes tests start
# A test that starts a run leaves no process behind, and the session proves it (issue 18): the
# pytest process adopts every orphan of its descendants (PR_SET_CHILD_SUBREAPER), so a worker
# whose run was killed stays findable, and at the end of the session any descendant still alive
# is killed and fails the session by name.
import ctypes  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
RUN_MARK = "TICKETLAB_TEST_RUN"  # in the environment of a run a test starts, inherited by its processes


def _proc_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid`` from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name in parentheses may hold spaces
    return fields[0], int(fields[1])


def process_line(pid: int) -> str:
    """``pid`` and its command line, for a failure message."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = "?"
    return f"{pid}: {command.strip()[:160]}"


def live_descendants(root: int) -> list[int]:
    """Every process below ``root`` that is not a zombie (an exited child not yet reaped)."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for pid in _proc_pids():
        stat = _stat(pid)
        if stat is not None:
            states[pid] = stat[0]
            children.setdefault(stat[1], []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if states.get(pid) != "Z":
            found.append(pid)
    return sorted(found)


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries ``RUN_MARK=mark`` (a run, its fork server and workers)."""
    needle = f"{RUN_MARK}={mark}".encode()
    found = []
    for pid in _proc_pids():
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if (_stat(pid) or ("Z",))[0] != "Z":
                    found.append(pid)
        except OSError:
            pass
    return sorted(found)


def wait_until_gone(find, seconds: float) -> list[int]:
    """Poll ``find()`` until it returns no process or ``seconds`` pass; the last answer."""
    deadline = time.monotonic() + seconds
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_processes(pids: list[int]) -> None:
    """SIGKILL ``pids`` (only processes this session started) and reap those that are our children."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not our child: whoever is its parent reaps it
            pass


class RunProcesses:
    """The environment to start runs with, marked so that every process they create is found."""

    def __init__(self) -> None:
        self.mark = uuid.uuid4().hex
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", RUN_MARK: self.mark}

    def alive(self) -> list[int]:
        return marked_processes(self.mark)


@pytest.fixture
def run_processes():
    """Start subprocess runs with ``run_processes.env``; at teardown, any of their processes still
    alive (after a grace period for a normal exit) is killed and fails the test."""
    runs = RunProcesses()
    yield runs
    left = wait_until_gone(runs.alive, 10.0)
    if left:
        lines = [process_line(pid) for pid in left]
        kill_processes(left)
        pytest.fail("the test left processes of its runs alive:\n" + "\n".join(lines))


def _own_helpers() -> set[int]:
    """This process's multiprocessing helpers, stopped or spared at the end: the fork server of
    in-process runs (stopped here) and the resource tracker (it ends when this process does)."""
    from multiprocessing import forkserver, resource_tracker

    server = getattr(forkserver, "_forkserver", None)
    if getattr(server, "_forkserver_pid", None) is not None and hasattr(server, "_stop"):
        server._stop()
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    return {pid for pid in (getattr(tracker, "_pid", None),) if pid is not None}


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session():
    """Fail the session if any process it started (or an orphan of one) is still alive at its end."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield
    if not sys.platform.startswith("linux"):
        return
    spared = _own_helpers()
    left = wait_until_gone(lambda: [p for p in live_descendants(os.getpid()) if p not in spared], 10.0)
    if left:
        lines = [process_line(pid) for pid in left]
        kill_processes(left)
        pytest.fail("processes started by the tests outlived them (killed now):\n" + "\n".join(lines))
