"""The experiment as a graph of training units, and the loop that schedules it.

Per replicate, level 0 trains the dense network; the ticket of level L needs level L's mask,
which is pruned from level L-1's trained ticket; each control of level L needs that same
mask. So a level's controls start as soon as its mask exists, in parallel with the next
ticket. The scheduler is the same for every executor: it submits the units whose inputs
exist, tickets first (they are the critical path), and makes the next mask when a ticket
finishes. Resuming is running the graph again: finished units return their stored summary.
"""

from __future__ import annotations

from typing import Callable, Protocol

from ticketlab.config import Config
from ticketlab.store import Store
from ticketlab.units import Unit, ensure_level_mask


class Executor(Protocol):
    """Runs units somewhere; the scheduler keeps at most ``capacity`` of them in flight."""

    capacity: int

    def submit(self, unit: Unit) -> None: ...

    def wait(self) -> list[tuple[Unit, dict]]:
        """Block until at least one submitted unit finishes; return the finished ones."""
        ...

    def close(self) -> None: ...


def all_units(config: Config) -> list[Unit]:
    """Every unit of the experiment, in a sensible serial order (replicate, level, arm)."""
    units = []
    for replicate in range(config.seeds):
        units.append(Unit(replicate, 0, "ticket"))
        for level in range(1, config.levels + 1):
            units.append(Unit(replicate, level, "ticket"))
            if config.has_controls(level):
                units.extend(Unit(replicate, level, arm) for arm in config.controls)
    return units


def _priority(unit: Unit) -> tuple[int, int, int]:
    return (unit.arm != "ticket", unit.level, unit.replicate)


def run_graph(
    config: Config,
    store: Store,
    executor: Executor,
    on_done: Callable[[Unit, dict], None] | None = None,
) -> list[dict]:
    """Run every unit of ``config`` not yet done; return all summaries in ``all_units`` order."""
    units = all_units(config)
    pending = set(units)
    summaries: dict[Unit, dict] = {}
    in_flight = 0

    def ready(unit: Unit) -> bool:
        return unit.level == 0 or store.level_mask_path(unit.replicate, unit.level).is_file()

    for unit in units:  # a resumed run may already have tickets whose next mask is missing
        if unit.arm == "ticket" and 0 < unit.level + 1 <= config.levels and store.unit(
            unit.replicate, unit.level, "ticket"
        ).done():
            ensure_level_mask(config, store, unit.replicate, unit.level + 1)

    try:
        while pending or in_flight:
            for unit in sorted((u for u in pending if ready(u)), key=_priority):
                if in_flight >= executor.capacity:
                    break
                executor.submit(unit)
                pending.discard(unit)
                in_flight += 1
            if not in_flight:
                raise RuntimeError(f"experiment graph is stuck with {len(pending)} units whose inputs never appear")
            for unit, summary in executor.wait():
                in_flight -= 1
                summaries[unit] = summary
                if unit.arm == "ticket" and unit.level < config.levels:
                    ensure_level_mask(config, store, unit.replicate, unit.level + 1)
                if on_done:
                    on_done(unit, summary)
    finally:
        executor.close()
    return [summaries[u] for u in units]
