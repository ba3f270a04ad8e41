"""Sequential seeds (``seeds = "auto"``): train seeds look by look until every level is decided.

A fixed number of seeds is either too few (levels end "no verdict" or on the wrong side of a
bound that more seeds would have cleared) or too many (levels decided after three seeds keep
training). Here the experiment is a group-sequential design (:class:`ticketlab.evidence.
sequential.Design`), fixed and stored with the experiment before its first look: after the
seeds of each look have trained, every pruned level is judged by :meth:`Design.decide` on its
paired ``ticket - dense`` differences, and the next look's seeds are trained only while some
level is undecided, and only as deep as the deepest undecided level (IMP reaches a level through
every level before it, so shallower decided levels keep training in the new seeds; deeper
decided ones do not).

What is *not* cut: the controls. Their verdict is a Holm-adjusted family over every level and
control, not a sequential test, so stopping a control at a level decided for the ticket would
leave that family with unequal, data-chosen seeds; controls train wherever their level trains.

Everything here is a function of the stored design and the finished units, so resuming a killed
run replays the looks from disk and continues at the look it was in, and ``Result`` reads the
same decisions back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ticketlab.config import Config
from ticketlab.errors import ConfigError
from ticketlab.evidence.sequential import Decision, Design, bind_design, holm_family
from ticketlab.experiment.schedule import all_units, blocked, diverged_levels
from ticketlab.experiment.unit import Unit
from ticketlab.io import write_json_atomic
from ticketlab.store.layout import Store

DESIGN_FILE = "design.json"


def design_for(config: Config, margin_points: float, alpha: float, test_examples: int, min_seeds: int) -> Design:
    """The design a sequential ``config`` asks for, with the verdict margin (points) and alpha.

    Its sd floor is the accuracy's rounding error (one test example, ``resolution / sqrt(6)``),
    the same floor the verdicts use. A first look below ``min_seeds`` is refused: its decision
    would contradict the evidence floor every table applies.
    """
    looks = config.looks()
    if looks[0] < min_seeds:
        raise ConfigError(f"the first look is at {looks[0]} seeds, below --min-seeds {min_seeds}: no verdict "
                          "could be given there; start sequential.looks at min_seeds or more")
    s = config.sequential
    return Design(looks=looks, alpha=alpha, margin=margin_points, spending=s.spending, futility=s.futility,
                  sd_floor=100.0 / test_examples / 6 ** 0.5)


def design_path(store: Store):
    return store.directory / DESIGN_FILE


def stored_design(store: Store) -> Design | None:
    """The design stored at the experiment's first run (None before it, or for a fixed experiment)."""
    path = design_path(store)
    return Design.from_dict(store.json(path)) if path.is_file() else None


def bind(store: Store, requested: Design) -> Design:
    """The experiment's design: stored at the first run, and a changed one refused (ConfigError)."""
    path = design_path(store)
    stored = store.json(path) if path.is_file() else None
    design = bind_design(stored, requested)
    if stored is None:
        write_json_atomic(path, design.to_dict(), checksum=True)
    return design


# --------------------------------------------------------------------------
# replaying the looks from finished units
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """Where a sequential experiment stands.

    ``look`` is the 0-based look whose seeds are being (or were last) trained; ``decisions``
    each pruned level's decision at the last look whose seeds have all finished; ``next_units``
    the units of the look in progress, some perhaps done already (empty once ``finished``: every
    level decided, or the final look judged).
    """

    look: int
    decisions: dict[int, Decision]
    next_units: list[Unit]
    finished: bool
    seeds: int  # replicates started so far

    def decided_at(self, level: int) -> int | None:
        decision = self.decisions.get(level)
        return None if decision is None or not decision.stopped else decision.look


def _differences(runs: Sequence[Mapping[str, Any]], level: int, replicates: int) -> list[float] | None:
    """Ticket - dense at ``level`` in points, in replicate order, over the first ``replicates``;
    None when a pair is missing or diverged (such a level cannot be judged at a look)."""
    cells = {(r["replicate"], r["level"]): r for r in runs if r["arm"] == "ticket"}
    out = []
    for replicate in range(replicates):
        dense, ticket = cells.get((replicate, 0)), cells.get((replicate, level))
        if dense is None or ticket is None or "diverged" in (dense.get("status"), ticket.get("status")):
            return None
        out.append(100.0 * (float(ticket["test_acc_at_early_stop"]) - float(dense["test_acc_at_early_stop"])))
    return out


def _judge(design: Design, runs: Sequence[Mapping[str, Any]], level: int, seeds: int,
           before: Decision | None) -> Decision | None:
    """A level's decision with the seeds it has: its own at this look when it trained them all,
    else the one it had (a level deeper than every undecided one is not trained further; a
    diverged pair closes the level before this is asked, see :func:`_broken`)."""
    differences = _differences(runs, level, seeds)
    if differences is None:
        return before
    return design.decide(differences)


def _family(design: Design, runs: Sequence[Mapping[str, Any]], claim: list[int], seeds: int) -> dict[int, Decision]:
    """The claim levels judged together (group-sequential Holm) at a look; while any of them is
    open every one trains the new seeds, so they share their seeds. A claim level that cannot be
    judged (a diverged pair) leaves the family: it is labelled diverged, never matching."""
    differences = {level: d for level in claim if (d := _differences(runs, level, seeds)) is not None}
    return {int(level): d for level, d in holm_family(design, differences).items()} if differences else {}


def _broken(runs: Sequence[Mapping[str, Any]], levels: list[int], seeds: int) -> set[int]:
    """Levels that a diverged ticket in the first ``seeds`` replicates left without a pair (that
    level and every deeper one of its replicate): no look can judge them, so they are closed, and
    the verdict table labels them from their runs (diverged, or judged on the seeds they have)."""
    diverged = diverged_levels(list(runs))
    first = min((level for replicate, level in diverged.items() if replicate < seeds), default=None)
    return set() if first is None else {level for level in levels if level >= first}


def _judge_look(config: Config, design: Design, runs: Sequence[Mapping[str, Any]], levels: list[int], seeds: int,
                before: dict[int, Decision]) -> dict[int, Decision]:
    """Every level's decision once a look's seeds have finished: ``claim_levels`` as one Holm
    family while any of them is open (then kept), every other level on its own."""
    broken = _broken(runs, levels, seeds)
    levels = [level for level in levels if level not in broken]
    claim = [level for level in config.claim_levels if level in levels]
    family_open = not before or any(c in before and not before[c].stopped for c in claim)
    alone = [level for level in levels if level not in claim]
    decisions = {level: d for level in alone if (d := _judge(design, runs, level, seeds, before.get(level)))}
    if claim and family_open:
        decisions |= _family(design, runs, claim, seeds)
    elif claim:
        decisions |= {level: before[level] for level in claim if level in before}
    return dict(sorted(decisions.items()))


def replay(config: Config, design: Design, runs: Sequence[Mapping[str, Any]],
           done: Callable[[Unit], bool]) -> Replay:
    """Walk the design's looks over the finished units (``done``) and their records (``runs``)."""
    levels = [level for level in range(1, config.levels + 1) if config.trains(level)]
    decisions: dict[int, Decision] = {}
    started, top = 0, config.levels
    for look, seeds in enumerate(design.looks):
        units = all_units(config, range(started, seeds), top_level=top)
        started = seeds
        diverged = diverged_levels(list(runs))
        wanted = [unit for unit in units if not blocked(unit, diverged)]
        if not all(done(unit) for unit in wanted):  # the scheduler skips those done; their tickets feed masks
            return Replay(look, decisions, wanted, False, seeds)
        decisions = _judge_look(config, design, runs, levels, seeds, decisions)
        open_levels = [level for level in levels if level in decisions and not decisions[level].stopped]
        if not open_levels:
            return Replay(look, decisions, [], True, seeds)
        claim = [level for level in config.claim_levels if level in levels]
        top = max(open_levels + (claim if set(claim) & set(open_levels) else []))
    return Replay(len(design.looks) - 1, decisions, [], True, started)  # unreachable: the final look decides


def finished_runs(store: Store, config: Config) -> list[dict]:
    """The summaries of every finished unit, in ``all_units`` order."""
    paths = (store.unit(u.replicate, u.level, u.arm) for u in all_units(config))
    return [store.summary(p) for p in paths if p.done()]


def state_of(store: Store, config: Config, runs: Sequence[Mapping[str, Any]]) -> Replay | None:
    """Where a stored sequential experiment stands (None before its design is stored)."""
    design = stored_design(store)
    if design is None:
        return None
    done = {(r["replicate"], r["level"], r["arm"]) for r in runs}
    return replay(config, design, runs, lambda u: (u.replicate, u.level, u.arm) in done)


def run_looks(config: Config, design: Design, store: Store, read_runs: Callable[[], list[dict]],
              run_units: Callable[[list[Unit]], None]) -> Replay:
    """Train look after look until :func:`replay` says the experiment is finished."""
    tried: int | None = None
    while True:
        runs = read_runs()
        state = replay(config, design, runs, lambda u: store.unit(u.replicate, u.level, u.arm).done())
        if state.finished:
            return state
        if state.look == tried:
            raise RuntimeError(f"look {state.look + 1} did not finish its units")  # a bug, not input
        tried = state.look
        run_units(state.next_units)
