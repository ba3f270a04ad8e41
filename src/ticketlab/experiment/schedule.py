"""The experiment as a graph of training units, and the loop that schedules it.

Per replicate, level 0 trains the dense network; every unit of level L needs level L's mask;
what *that* mask needs is declared by the pruning method (``PruningMethod.needs``): IMP needs
level L-1's trained ticket, so its levels form a chain and a level's controls start as soon as
its mask exists, in parallel with the next ticket; a method that prunes at initialisation
needs no training, so all its masks exist at once and all levels train in parallel. The
scheduler knows nothing else about the method. It is the same for every executor: it makes
every mask whose inputs exist, submits the units whose mask exists, tickets first (they are
the critical path). Resuming is running the graph again: finished units return their stored
summary.

The order is deterministic (never a set's or a hash's): ready units are taken by priority,
then in ``all_units`` order, so the same command forms the same batches (``--batch``) and
gives bit-identical results. A ticket that diverged has no next mask: its replicate's later
levels are *blocked* and are not trained.
"""

from __future__ import annotations

from typing import Callable, Protocol

from ticketlab.config import Config
from ticketlab.experiment.environment import Environment
from ticketlab.experiment.level_masks import ensure_level_mask, level_mask_inputs_ready
from ticketlab.experiment.unit import Unit
from ticketlab.store.layout import Store


class Executor(Protocol):
    """Runs units somewhere; the scheduler keeps at most ``capacity`` of them in flight."""

    capacity: int

    def submit(self, unit: Unit) -> None: ...

    def wait(self) -> list[tuple[Unit, dict]]:
        """Block until at least one submitted unit finishes; return the finished ones."""
        ...

    def close(self) -> None: ...


def all_units(config: Config, replicates: range | None = None, top_level: int | None = None) -> list[Unit]:
    """Every unit of the experiment, in a sensible serial order (replicate, level, arm).

    ``replicates`` and ``top_level`` narrow it to some replicates and the levels up to one (a
    sequential experiment's look trains new seeds only as deep as a level is still undecided).
    """
    units = []
    for replicate in replicates if replicates is not None else range(config.replicates):
        units.append(Unit(replicate, 0, "ticket"))
        for level in range(1, (config.levels if top_level is None else top_level) + 1):
            if not config.trains(level):
                continue
            units.append(Unit(replicate, level, "ticket"))
            if config.has_controls(level):
                units.extend(Unit(replicate, level, arm) for arm in config.controls)
    return units


def diverged_levels(summaries: list[dict]) -> dict[int, int]:
    """Replicate -> the lowest level whose ticket diverged."""
    out: dict[int, int] = {}
    for s in summaries:
        if s.get("arm") == "ticket" and s.get("status", "ok") != "ok":
            out[s["replicate"]] = min(s["level"], out.get(s["replicate"], s["level"]))
    return out


def blocked(unit: Unit, diverged: dict[int, int]) -> bool:
    """True when ``unit`` needs a mask pruned from a diverged ticket."""
    return unit.level > diverged.get(unit.replicate, unit.level)


def run_graph(
    env: Environment,
    store: Store,
    executor: Executor,
    on_done: Callable[[Unit, dict], None] | None = None,
    units: list[Unit] | None = None,
) -> list[dict]:
    """Run every unit of ``units`` (default: all of ``config``'s) not yet done; return the
    summaries in that order (units blocked by a diverged ticket have none)."""
    config = env.config
    units = all_units(config) if units is None else units
    depth: dict[int, int] = {}  # replicate -> its deepest level to run: the masks to make
    for unit in units:
        depth[unit.replicate] = max(unit.level, depth.get(unit.replicate, 0))
    index = {unit: i for i, unit in enumerate(units)}
    pending = dict.fromkeys(units)  # ordered, unlike a set
    summaries: dict[Unit, dict] = {}
    diverged: dict[int, int] = {}
    in_flight = 0

    def priority(unit: Unit) -> tuple[int, int, int, int]:
        return (unit.arm != "ticket", unit.level, unit.replicate, index[unit])

    def ready(unit: Unit) -> bool:
        """Its mask exists, and under late rewinding its rewind point (recaptured after damage)."""
        if unit.level == 0:
            return True
        rewind = config.rewind_iteration == 0 or store.rewind_path(unit.replicate).is_file()
        return rewind and store.level_mask_path(unit.replicate, unit.level).is_file()

    trained_tickets: set[tuple[int, int]] = set()  # (replicate, level) of tickets finished without diverging

    def ticket_ok(replicate: int, level: int) -> bool:
        return (replicate, level) in trained_tickets

    def make_masks() -> None:
        """Every missing mask whose inputs (as the method declares them) now exist."""
        for replicate, top in depth.items():
            for level in range(1, top + 1):
                if level > diverged.get(replicate, level):
                    break
                if not config.trains(level):
                    continue
                if not store.level_mask_path(replicate, level).is_file():
                    if not level_mask_inputs_ready(config, store, replicate, level, ticket_ok):
                        break
                    ensure_level_mask(env, store, replicate, level)

    def ticket_finished(unit: Unit, summary: dict) -> None:
        if summary.get("status", "ok") == "ok":
            trained_tickets.add((unit.replicate, unit.level))
        else:
            diverged[unit.replicate] = min(unit.level, diverged.get(unit.replicate, unit.level))
            for other in [u for u in pending if blocked(u, diverged)]:
                del pending[other]

    for unit in units:  # a resumed run may already have diverged tickets
        paths = store.unit(unit.replicate, unit.level, "ticket")
        if unit.arm == "ticket" and unit in pending and paths.done():
            ticket_finished(unit, store.summary(paths))

    try:
        while pending or in_flight:
            make_masks()
            for unit in sorted((u for u in pending if ready(u)), key=priority):
                if in_flight >= executor.capacity:
                    break
                executor.submit(unit)
                del pending[unit]
                in_flight += 1
            if not in_flight:
                raise RuntimeError(f"experiment graph is stuck with {len(pending)} units whose inputs never appear")
            for unit, summary in sorted(executor.wait(), key=lambda done: index[done[0]]):
                in_flight -= 1
                summaries[unit] = summary
                if unit.arm == "ticket":
                    ticket_finished(unit, summary)
                if on_done:
                    on_done(unit, summary)
    finally:
        executor.close()
    return [summaries[u] for u in units if u in summaries]
