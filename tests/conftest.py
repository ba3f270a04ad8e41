"""Shared fixtures. Tests run torch with one thread: on a shared 2-core machine two threads
can collapse when another process competes, and results must not depend on thread count."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from ticketlab.cli import main  # noqa: E402
from ticketlab.config import Config, RunOptions  # noqa: E402
from ticketlab.store import Store, UnitPaths  # noqa: E402
from ticketlab.units import Unit, ensure_level_mask, environment, run_unit  # noqa: E402


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
