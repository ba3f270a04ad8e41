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
from ticketlab.store import Store, UnitPaths  # noqa: E402
from ticketlab.units import Unit, ensure_level_mask, environment, run_unit  # noqa: E402

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


def tiny_config(**changes) -> Config:
    """A real but fast experiment: sklearn digits, a small MLP, a few hundred iterations."""
    raw = {
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
    return Config.from_dict(raw)


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
