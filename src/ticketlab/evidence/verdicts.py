"""Verdicts: is a pruned level *matching*, *winning*, and does it beat its controls?

A verdict is a scientific claim, so each one has a stated criterion, gets harder to earn with
less evidence, and looks at the controls. The criteria (defaults in :class:`Criteria`):

* **matching** (``rule="margin"``, the default): an equivalence-style, non-inferiority rule.
  With ``d_s`` = ticket accuracy - dense accuracy for seed ``s`` (paired by seed), the
  one-sided lower ``1 - alpha`` confidence bound ``mean(d) - t(1-alpha, n-1) * s_d / sqrt(n)``
  must be at least ``-margin``. Fewer seeds widen the bound, so a verdict is never easier with
  less evidence. ``rule="std"`` is Frankle et al. (2020)'s "within one standard deviation of
  the dense network": ``mean(ticket) >= mean(dense) - sd(dense)``. It is a point rule with no
  confidence statement, offered for comparison with that paper.
* **winning** (Frankle & Carbin 2019: at least dense's accuracy, no later): matching, *and*
  the one-sided upper ``1 - alpha`` bound of the mean paired difference in early-stopping
  iteration (ticket - dense) is below one evaluation interval, so ties on the evaluation grid
  count as "no later" but a consistently later ticket does not; *and* every paired run of the
  ticket and of dense reached its minimum validation loss before its last evaluation. A run
  whose validation loss is still falling at the end did not early-stop: its early-stopping
  iteration is only the training length, so the level is flagged "train longer" and never
  counts as winning.
* **beats reinit / beats random** (one column per control): the one-sided paired test of
  H1 "ticket > control" at the level, with its lower bound; the family of all (level, control)
  tests of the experiment is Holm-adjusted, and "beats" means the adjusted p < alpha.
* **the headline** "sparsest matching level" is defined so that it cannot be reached by
  scanning past a failure: levels are tested in order of decreasing density and the sequence
  stops at the first level that is not matching (a fixed-sequence procedure, which keeps the
  family-wise error of the headline at alpha without adjustment). Levels past the first
  failure keep their individual label but are marked as outside the claim; the headline
  names the level that stopped the sequence and how many levels outside the claim are
  matching on their own, so it never contradicts the table's labels.
* **evidence floor**: below ``min_seeds`` (3) paired seeds no verdict is given, only the
  numbers and the reason. Identical per-seed differences are not taken as certainty: the
  standard deviation used is at least the rounding error of the measurement (one test example
  for accuracy, one evaluation interval for the early-stopping iteration; see
  :func:`ticketlab.evidence.stats.quantization_sd`).
* a level where a ticket run diverged is labelled **diverged**, and ends the sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from ticketlab.evidence.sequential import Decision, Design, holm_family
from ticketlab.evidence.stats import (
    Interval,
    PairedBound,
    holm_adjust,
    index_runs,
    is_diverged,
    is_missing,
    jsonable,
    mean_ci,
    paired_bound,
    quantization_sd,
    sorted_seeds,
)

TICKET = "ticket"
Rule = Literal["margin", "std"]
#: Test-set size assumed when run records do not say (older stores): 1,000 examples, which
#: over-states the rounding error of larger test sets and so errs on the side of no claim.
FALLBACK_TEST_EXAMPLES = 1000


@dataclass(frozen=True)
class Criteria:
    """The stated rules a verdict is judged by (see the module docstring for the formulas)."""

    rule: Rule = "margin"
    margin: float = 0.005  # delta, as an accuracy fraction: 0.005 = 0.5 percentage points
    alpha: float = 0.05
    min_seeds: int = 3
    metric: str = "test_acc_at_early_stop"

    def __post_init__(self) -> None:
        if self.rule not in ("margin", "std"):
            raise ValueError(f"rule must be 'margin' or 'std', got {self.rule!r}")
        if not (math.isfinite(self.margin) and 0.0 <= self.margin < 1.0):
            raise ValueError(f"margin must be an accuracy fraction in [0, 1), got {self.margin}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.min_seeds < 2:
            raise ValueError(f"min_seeds must be >= 2 (a bound needs a spread), got {self.min_seeds}")
        if self.metric not in ("test_acc_at_early_stop", "final_test_acc"):
            raise ValueError(f"metric must be an accuracy metric, got {self.metric!r}")

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    def statements(self) -> list[str]:
        """The criteria as sentences with their numbers, for tables, reports and JSON."""
        conf = f"{100 * self.confidence:g}%"
        if self.rule == "margin":
            matching = (
                f"matching: the one-sided {conf} lower confidence bound of mean(ticket - dense) "
                f"accuracy, paired by seed (Student t), is >= -{100 * self.margin:g} points (delta)"
            )
        else:
            matching = (
                "matching (Frankle et al. 2020): mean ticket accuracy >= mean dense accuracy "
                "- one standard deviation of dense over seeds (a point rule, no confidence bound)"
            )
        return [
            matching,
            f"winning: matching, and the one-sided {conf} upper bound of mean(ticket - dense) "
            "early-stopping iteration is below one evaluation interval, and no paired run ended "
            "with its validation loss still falling (did not early-stop: train longer)",
            f"beats <control>: one-sided paired t-test of ticket > control, Holm-adjusted over all "
            f"levels x controls, adjusted p < {self.alpha:g}",
            "sparsest matching level: levels tested in order of density, stopping at the first one "
            "that is not matching (fixed sequence), so it is never reached by skipping a failure",
            f"no verdict with fewer than {self.min_seeds} paired seeds; zero spread is floored at "
            "the measurement's rounding error (one test example; one evaluation interval)",
        ]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}
        out["statements"] = self.statements()
        return out


@dataclass(frozen=True)
class ControlTest:
    """The ticket against one control arm at one level: ticket - control, paired by seed."""

    arm: str
    seeds: tuple[Any, ...]
    test: PairedBound
    p_holm: float | None = None

    @property
    def beats(self) -> bool | None:
        """True/False once Holm-adjusted; ``None`` when too few seeds to test."""
        if self.p_holm is None:
            return None
        return self.p_holm < self.test.alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "arm": self.arm,
            "seeds": jsonable(list(self.seeds)),
            "test": self.test.to_dict(),
            "p_holm": jsonable(self.p_holm),
            "beats": self.beats,
        }


@dataclass(frozen=True)
class LevelVerdict:
    """One pruned level judged against dense (level 0) and its controls.

    ``label`` is one of ``winning``, ``matching``, ``not matching``, ``no verdict`` (too few
    seeds, ``reason`` says why) or ``diverged``. ``accuracy`` is the paired bound of ticket -
    dense accuracy against ``-margin``; ``early_stop`` the paired bound of the early-stopping
    difference against one evaluation interval. ``in_sequence`` is False for levels past the
    first failure (outside the headline's claim).
    """

    level: int
    percent_remaining: float
    seeds: tuple[Any, ...]
    label: str
    reason: str
    ticket: Interval
    dense: Interval
    accuracy: PairedBound | None = None
    early_stop: PairedBound | None = None
    not_early_stopped: tuple[str, ...] = ()
    controls: dict[str, ControlTest] = field(default_factory=dict)
    unpaired_seeds: tuple[Any, ...] = ()
    in_sequence: bool = True
    is_sparsest_matching: bool = False
    brief: str = ""
    decision: Decision | None = None

    @property
    def achieved_margin(self) -> float | None:
        """The smallest margin delta (accuracy fraction) at which this level would be matching:
        minus the one-sided lower bound of ticket - dense. Negative when the ticket beats dense.

        A label says only which side of the stated delta the bound fell; this says how far, so a
        reader with another delta in mind, or a level just missing it, can see where it stands.
        ``None`` without a bound (fewer than 2 paired seeds, or diverged). A level judged by a
        design (sequential looks, a Holm family) reports its deciding look's bound.
        """
        if self.decision is not None and self.decision.lower_bound is not None:
            return -self.decision.lower_bound / 100.0
        if self.accuracy is None or self.accuracy.bound is None:
            return None
        return -self.accuracy.bound

    def reasons(self) -> list[str]:
        """Short clauses saying why the label is what it is, most decisive first.

        The level's own clause (``brief``: the bound against delta, too few seeds, ...) comes
        first unless the level is matching, where the bound is already in the margin column and
        what a reader needs next is whether the controls were beaten.
        """
        clauses = [part for part in self.brief.split("; ") if part]
        if not self.matching:
            return clauses
        unbeaten = [f"{arm} not beaten" for arm, test in self.controls.items() if test.beats is False]
        beaten = [arm for arm, test in self.controls.items() if test.beats]
        controls = unbeaten or ([f"beats {', '.join(beaten)}"] if beaten else [])
        return controls + clauses if unbeaten else clauses + controls

    @property
    def short_reason(self) -> str:
        """The most decisive of :meth:`reasons` (for the compact table)."""
        reasons = self.reasons()
        return reasons[0] if reasons else ""

    @property
    def matching(self) -> bool:
        return self.label in ("matching", "winning")

    @property
    def winning(self) -> bool:
        return self.label == "winning"

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: jsonable(getattr(self, f.name)) for f in fields(self) if f.name != "controls"}
        out["controls"] = {arm: test.to_dict() for arm, test in self.controls.items()}
        out["matching"], out["winning"] = self.matching, self.winning
        out["achieved_margin"], out["reasons"] = jsonable(self.achieved_margin), self.reasons()
        return out


@dataclass(frozen=True)
class VerdictTable:
    """Every pruned level's verdict, the criteria they were judged by, and the headline."""

    rows: tuple[LevelVerdict, ...]
    criteria: Criteria
    sparsest_matching_level: int | None
    eval_every: int | None
    dense_level: int = 0
    claim_levels: tuple[int, ...] = ()
    design: Design | None = None

    @property
    def family(self) -> str:
        """Which multiple-testing family the headline's claim is: ``fixed sequence`` or ``holm``."""
        return "holm" if self.claim_levels else "fixed sequence"

    def family_statement(self) -> str:
        """The claim's family, and the sequential design when there is one, in a sentence."""
        if self.claim_levels:
            text = (f"claim family: levels {', '.join(map(str, self.claim_levels))} (claim_levels, fixed in the "
                    f"config), Holm over the {len(self.claim_levels)} at alpha {self.criteria.alpha:g}"
                    + (" (group-sequential Holm)" if self.design is not None else "") + "; others judged alone")
        else:
            text = "claim family: fixed sequence from dense (levels in order of density, stop at the first not matching)"
        if self.design is not None:
            d = self.design
            futility = f"futility below {d.futility:g} conditional power (non-binding)" if d.futility else "no futility stop"
            text += (f"; sequential: looks at {', '.join(map(str, d.looks))} seeds, {d.spending.replace('_', '-')} "
                     f"spending, {futility}, fixed at the first run")
        return text

    def __iter__(self) -> Iterator[LevelVerdict]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, level: int) -> LevelVerdict:
        """The verdict of ``level`` (``KeyError`` if it has none)."""
        for r in self.rows:
            if r.level == level:
                return r
        raise KeyError(level)

    @property
    def control_arms(self) -> list[str]:
        return sorted({arm for r in self.rows for arm in r.controls})

    def headline(self) -> str:
        """One sentence or two: the sparsest matching level and what the controls say there, and,
        when the fixed sequence stopped at a failing level, which level that was and how many
        levels are matching on their own outside the claim (so the sentence agrees with a
        table whose rows label those levels matching)."""
        level = self.sparsest_matching_level
        if not self.rows:
            return "No pruned level has finished yet."
        if self.claim_levels:
            return self._family_headline()
        if level is None and all(r.label == "no verdict" for r in self.rows):
            return f"No verdict: fewer than {self.criteria.min_seeds} seeds at every level."
        stop = self.stopping_row()
        if level is None:
            assert stop is not None  # no sparsest level: the first level tested stopped the sequence
            return (f"No level is claimed matching: the fixed-sequence test stops at the first level tested, "
                    f"level {stop.level} ({stop.percent_remaining:.1f}% of weights remain), which {_why(stop, self.criteria)}"
                    + _outside_claim(self.rows) + ".")
        row = self.row(level)
        text = (f"Sparsest matching level: {level} ({row.percent_remaining:.1f}% of weights remain), "
                f"ticket {_pct(row.ticket.mean)}% vs dense {_pct(row.dense.mean)}%")
        beats = [f"{'beats' if c.beats else 'does not beat'} {arm}" for arm, c in row.controls.items()
                 if c.beats is not None]
        text += f"; there it {', '.join(beats)}." if beats else "."
        if stop is not None and any(r.matching for r in self.rows if r.level > stop.level):
            text += (f" The sequence stops at level {stop.level}, which {_why(stop, self.criteria)}"
                     + _outside_claim(self.rows) + ".")
        return text

    def _family_headline(self) -> str:
        """The headline of a Holm family: each claim level's label, and the sparsest matching one."""
        claimed = [r for r in self.rows if r.level in self.claim_levels]
        parts = "; ".join(f"level {r.level} {r.label}" for r in claimed)
        level = self.sparsest_matching_level
        if level is None:
            return f"No claim level is matching (Holm over claim levels {', '.join(map(str, self.claim_levels))}): {parts}."
        row = self.row(level)
        return (f"Sparsest matching claim level: {level} ({row.percent_remaining:.1f}% of weights remain), ticket "
                f"{_pct(row.ticket.mean)}% vs dense {_pct(row.dense.mean)}% (Holm over claim levels: {parts}).")

    def undecided_levels(self) -> list[int]:
        """Levels more seeds could decide: no verdict (too few seeds), or not matching with a mean
        difference within the margin (the bound, not the mean, fell short). Empty under a
        sequential design, which adds the seeds itself."""
        if self.design is not None:
            return []
        return [r.level for r in self.rows if r.label == "no verdict" or (
            r.label == "not matching" and r.accuracy is not None and r.accuracy.mean is not None
            and r.accuracy.mean > -self.criteria.margin)]

    def stopping_row(self) -> "LevelVerdict | None":
        """The level at which the fixed sequence stopped (the first not matching), if any."""
        return next((r for r in self.rows if not r.in_sequence), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "criteria": self.criteria.to_dict(),
            "dense_level": self.dense_level,
            "eval_every": self.eval_every,
            "sparsest_matching_level": self.sparsest_matching_level,
            "claim_levels": list(self.claim_levels),
            "family": self.family,
            "family_statement": self.family_statement(),
            "design": self.design.to_dict() if self.design is not None else None,
            "headline": self.headline(),
            "rows": [r.to_dict() for r in self.rows],
        }


def verdict_table(
    runs: Iterable[Mapping[str, Any]],
    criteria: Criteria | None = None,
    eval_every: int | None = None,
    can_win: bool = True,
    *,
    decisions: Mapping[int, Decision] | None = None,
    design: Design | None = None,
    claim_levels: Sequence[int] = (),
) -> VerdictTable:
    """Judge every pruned level of an experiment's run records (see the module docstring).

    ``runs`` are per-unit summary records (``level``, ``arm``, ``seed``, accuracies,
    ``early_stop_step``, optionally ``final_step``, ``test_examples`` and ``status``).
    ``eval_every`` is the evaluation interval, the resolution of early-stopping iterations;
    when ``None`` it is inferred as the greatest common divisor of the recorded steps.
    ``can_win=False`` (learning-rate rewinding, fine-tuning) judges matching only: a network that
    retrains from trained weights early-stops sooner than the dense run trained from scratch by
    construction, so an earlier early stop says nothing about it.
    ``decisions`` (a sequential ``design``'s, per level) replace the matching rule at the levels
    they cover. ``claim_levels`` makes the headline's claim a Holm family of those levels
    (:func:`ticketlab.evidence.sequential.holm_family`; one look at the common seeds unless
    ``decisions`` are given) instead of the fixed sequence over every level.
    Raises ``ValueError`` when there is no dense (level-0 ticket) run.
    """
    criteria = criteria or Criteria()
    runs = list(runs)
    cells = index_runs(runs)
    dense_cell = cells.get((0, TICKET))
    if not dense_cell:
        raise ValueError("no dense runs (level 0 ticket): nothing to judge against")
    grid = eval_every or _infer_grid(runs)
    acc_floor = quantization_sd(1.0 / _test_examples(runs))
    es_floor = quantization_sd(float(grid)) if grid else 0.0

    levels = sorted({level for (level, arm) in cells if arm == TICKET and level != 0})
    claim = tuple(sorted(claim_levels))
    if claim and decisions is None:
        decisions = _holm_decisions(cells, dense_cell, claim, criteria, acc_floor)
    looks = len(design.looks) if design is not None else 1
    drafts = [_judge_level(level, cells, dense_cell, criteria, grid, acc_floor, es_floor,
                           (decisions or {}).get(level), looks) for level in levels]
    if not can_win:
        drafts = [_matching_only(d) for d in drafts]
    drafts = _holm_controls(drafts, criteria.min_seeds)
    rows, sparsest = _claim(drafts, claim)
    return VerdictTable(
        rows=tuple(LevelVerdict(**r, is_sparsest_matching=r["level"] == sparsest) for r in rows),
        criteria=criteria,
        sparsest_matching_level=sparsest,
        eval_every=grid,
        claim_levels=claim,
        design=design,
    )


def _claim(drafts: list[dict[str, Any]], claim: tuple[int, ...]) -> tuple[list[dict[str, Any]], int | None]:
    """Which levels are inside the headline's claim, and its sparsest matching level.

    Without ``claim`` levels: the fixed sequence, in order of decreasing density, up to the first
    level that is not matching. With them: exactly those levels (a Holm family, each standing
    on its own), the sparsest of them that is matching.
    """
    if claim:
        rows = [d | {"in_sequence": d["level"] in claim} for d in drafts]
        matching = [d["level"] for d in rows if d["in_sequence"] and d["label"] in ("matching", "winning")]
        return rows, (max(matching) if matching else None)
    sparsest, in_sequence = None, True
    rows = []
    for draft in drafts:  # levels in order of decreasing density
        in_sequence = in_sequence and draft["label"] in ("matching", "winning")
        if in_sequence:
            sparsest = draft["level"]
        rows.append(draft | {"in_sequence": in_sequence})
    return rows, sparsest


def _holm_decisions(cells: Mapping[tuple[int, str], Mapping[Any, Mapping[str, Any]]],
                    dense_cell: Mapping[Any, Mapping[str, Any]], claim: tuple[int, ...], criteria: Criteria,
                    acc_floor: float) -> dict[int, Decision]:
    """Holm over the claim levels at one look: the seeds every claim level shares with dense.

    With fewer than two shared seeds (or fewer than ``min_seeds``) there is nothing to decide:
    the levels keep their own "no verdict"."""
    metric = criteria.metric
    dense_ok = _usable(dense_cell, metric)
    usable = {level: _usable(cells.get((level, TICKET), {}), metric) for level in claim}
    shared = set(dense_ok)
    for ok in usable.values():
        shared &= set(ok)
    seeds = sorted_seeds(shared)
    if len(seeds) < max(2, criteria.min_seeds) or criteria.rule != "margin":
        return {}
    design = Design(looks=(len(seeds),), alpha=criteria.alpha, margin=100.0 * criteria.margin, futility=None,
                    sd_floor=100.0 * acc_floor)
    differences = {level: [100.0 * (usable[level][s][metric] - dense_ok[s][metric]) for s in seeds] for level in claim}
    return {int(level): decision for level, decision in holm_family(design, differences).items()}


def _judge_level(
    level: int,
    cells: Mapping[tuple[int, str], Mapping[Any, Mapping[str, Any]]],
    dense_cell: Mapping[Any, Mapping[str, Any]],
    criteria: Criteria,
    grid: int | None,
    acc_floor: float,
    es_floor: float,
    decision: Decision | None = None,
    looks: int = 1,
) -> dict[str, Any]:
    """The fields of one level's :class:`LevelVerdict` (controls not yet Holm-adjusted).

    A ``decision`` (a sequential design's, or a Holm family's) replaces the margin rule."""
    ticket_cell = cells[(level, TICKET)]
    metric = criteria.metric
    ticket_ok, dense_ok = _usable(ticket_cell, metric), _usable(dense_cell, metric)
    seeds = sorted_seeds(set(ticket_ok) & set(dense_ok))
    t = np.array([ticket_ok[s][metric] for s in seeds], dtype=float)
    dn = np.array([dense_ok[s][metric] for s in seeds], dtype=float)
    pct = [float(r["percent_remaining"]) for r in ticket_cell.values() if not is_missing(r["percent_remaining"])]
    base: dict[str, Any] = dict(
        level=level,
        percent_remaining=float(np.mean(pct)) if pct else math.nan,
        seeds=tuple(seeds),
        ticket=mean_ci(t, criteria.confidence, bounds=(0.0, 1.0)),
        dense=mean_ci(dn, criteria.confidence, bounds=(0.0, 1.0)),
        unpaired_seeds=tuple(sorted_seeds(set(ticket_ok) ^ set(dense_ok))),
        controls=_control_tests(level, cells, ticket_ok, criteria, acc_floor),
    )
    diverged = [s for s, r in ticket_cell.items() if is_diverged(r)]
    diverged += [s for s, r in dense_cell.items() if is_diverged(r)]
    if diverged:
        return base | dict(label="diverged", brief="diverged",
                           reason=f"training diverged (non-finite loss or weights) for seed(s) {sorted_seeds(set(diverged))}")
    accuracy = paired_bound(t, dn, side="lower", null=-criteria.margin, alpha=criteria.alpha, sd_floor=acc_floor)
    if len(seeds) < criteria.min_seeds:  # the bound is shown (with 2+ seeds), no claim is made
        return base | dict(label="no verdict", accuracy=accuracy if accuracy.bound is not None else None,
                           brief=f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} < min {criteria.min_seeds}",
                           reason=(f"{len(seeds)} paired seed(s): a verdict needs at least {criteria.min_seeds}; "
                                   "the numbers are shown, no claim is made"))

    if decision is not None:
        if not decision.stopped:
            return base | dict(label="no verdict", accuracy=accuracy, decision=decision,
                               brief=f"undecided at look {decision.look + 1 if decision.look is not None else 1}",
                               reason=decision.reason)
        matching, reason = decision.status == "matching", decision.reason
        brief = _decision_brief(decision, criteria.margin, looks)
        base = base | dict(decision=decision)
    elif criteria.rule == "margin":
        matching = accuracy.accepted
        reason = (f"lower {100 * criteria.confidence:g}% bound of ticket - dense {_pts(accuracy.bound)} points "
                  f"{'>=' if matching else '<'} -{100 * criteria.margin:g} (delta)")
        brief = _bound_brief(accuracy.bound, criteria.margin, matching)
    else:
        dense_sd = float(np.std(dn, ddof=1))
        matching = float(np.mean(t)) >= float(np.mean(dn)) - dense_sd
        reason = (f"ticket mean {_pct(float(np.mean(t)))}% {'>=' if matching else '<'} dense mean "
                  f"{_pct(float(np.mean(dn)))}% - 1 sd ({_pts(dense_sd)} points)")
        brief = f"mean {'≥' if matching else '<'} dense − 1 sd"
    if not matching:
        return base | dict(label="not matching", reason=reason, brief=brief, accuracy=accuracy)

    t_es = np.array([float(ticket_ok[s]["early_stop_step"]) for s in seeds])
    d_es = np.array([float(dense_ok[s]["early_stop_step"]) for s in seeds])
    early_stop = paired_bound(t_es, d_es, side="upper", null=float(grid or 0), alpha=criteria.alpha, sd_floor=es_floor)
    late = tuple(
        f"{arm} seed {s}" for arm, cell in (("dense", dense_ok), ("ticket", ticket_ok)) for s in seeds
        if _ended_at_last_step(cell[s])
    )
    if late:
        return base | dict(label="matching", accuracy=accuracy, early_stop=early_stop, not_early_stopped=late,
                           brief=f"{brief}; train longer",
                           reason=f"{reason}; not winning: did not early-stop ({', '.join(late)}): train longer")
    winning = grid is not None and early_stop.accepted
    es_text = (f"upper {100 * criteria.confidence:g}% bound of ticket - dense early-stop iteration "
               f"{_num(early_stop.bound)} {'<' if winning else '>='} one evaluation interval ({grid})")
    return base | dict(label="winning" if winning else "matching", accuracy=accuracy, early_stop=early_stop,
                       brief=brief + ("" if winning else "; stops later than dense"),
                       reason=f"{reason}; {'winning' if winning else 'not winning'}: {es_text}")


def _matching_only(draft: dict[str, Any]) -> dict[str, Any]:
    """A draft judged for matching only (``can_win=False``): winning becomes matching, and the
    early stop, which says nothing about a network retrained from trained weights, is left out."""
    if draft["label"] not in ("matching", "winning"):
        return draft
    brief = draft["brief"].replace("; stops later than dense", "")
    reason = draft["reason"].split("; ")[0] + "; not judged for winning: retrained from trained weights, not rewound"
    return draft | {"label": "matching", "brief": brief, "reason": reason if draft["label"] == "winning" else draft["reason"]}


def _decision_brief(decision: Decision, margin: float, looks: int) -> str:
    """A design's decision in a few characters, with the look that made it when there are several."""
    where = f"look {decision.look + 1}: " if looks > 1 and decision.look is not None else ""
    if decision.status == "not_matching" and "futility" in decision.reason:
        return f"{where}futility (cp {decision.conditional_power:.2f})"
    bound = None if decision.lower_bound is None else decision.lower_bound / 100.0
    return where + _bound_brief(bound, margin, decision.status == "matching")


def _bound_brief(bound: float | None, margin: float, matching: bool) -> str:
    """The margin rule in a few characters: "beats dense" when even the lower bound is above
    dense, else "bound -0.56 < -0.5" (points)."""
    if matching and bound is not None and bound > 0:
        return f"beats dense by ≥ {100 * bound:.2f}"
    return f"bound {signed_points(bound)} {'≥' if matching else '<'} −{100 * margin:g}"


def signed_points(x: float | None) -> str:
    """An accuracy fraction as signed points with a true minus sign ("−0.56", "+0.12")."""
    return "n/a" if x is None else f"{100 * x:+.2f}".replace("-", "−")


def _control_tests(
    level: int,
    cells: Mapping[tuple[int, str], Mapping[Any, Mapping[str, Any]]],
    ticket_ok: Mapping[Any, Mapping[str, Any]],
    criteria: Criteria,
    acc_floor: float,
) -> dict[str, ControlTest]:
    """Ticket - control for each control arm trained at ``level`` (unadjusted)."""
    tests = {}
    for (lvl, arm) in sorted(cells):
        if lvl != level or arm == TICKET:
            continue
        control_ok = _usable(cells[(lvl, arm)], criteria.metric)
        shared = sorted_seeds(set(ticket_ok) & set(control_ok))
        test = paired_bound(
            [ticket_ok[s][criteria.metric] for s in shared],
            [control_ok[s][criteria.metric] for s in shared],
            side="lower", null=0.0, alpha=criteria.alpha, sd_floor=acc_floor,
        )
        tests[arm] = ControlTest(arm=arm, seeds=tuple(shared), test=test)
    return tests


def _holm_controls(drafts: list[dict[str, Any]], min_seeds: int) -> list[dict[str, Any]]:
    """Holm-adjust every (level, control) test with at least ``min_seeds`` pairs, as one family.

    Tests with fewer pairs make no claim (``beats`` stays ``None``) and do not enlarge the family.
    """
    family = [
        (i, arm, test) for i, draft in enumerate(drafts) for arm, test in draft["controls"].items()
        if test.test.p_value is not None and test.test.n >= min_seeds
    ]
    adjusted = holm_adjust([test.test.p_value for _, _, test in family])
    out = [dict(d, controls=dict(d["controls"])) for d in drafts]
    for (i, arm, test), p in zip(family, adjusted):
        out[i]["controls"][arm] = ControlTest(arm=test.arm, seeds=test.seeds, test=test.test, p_holm=p)
    return out


def _usable(cell: Mapping[Any, Mapping[str, Any]], metric: str) -> dict[Any, Mapping[str, Any]]:
    """The runs of a cell that finished with the metric and early-stop step present."""
    return {
        seed: run for seed, run in cell.items()
        if not is_diverged(run) and not is_missing(run.get(metric)) and not is_missing(run.get("early_stop_step"))
    }


def _ended_at_last_step(run: Mapping[str, Any]) -> bool:
    """True when the minimum validation loss was at the final evaluation (still falling)."""
    final = run.get("final_step")
    return final is not None and int(final) > 0 and int(run["early_stop_step"]) >= int(final)


def _infer_grid(runs: Sequence[Mapping[str, Any]]) -> int | None:
    """The evaluation interval as the gcd of the recorded early-stop steps (None if all are 0)."""
    steps = [int(r["early_stop_step"]) for r in runs if not is_missing(r.get("early_stop_step"))]
    grid = 0
    for step in steps:
        grid = math.gcd(grid, step)
    return grid or None


def _test_examples(runs: Sequence[Mapping[str, Any]]) -> int:
    sizes = [int(r["test_examples"]) for r in runs if r.get("test_examples")]
    return min(sizes) if sizes else FALLBACK_TEST_EXAMPLES


def _why(row: LevelVerdict, criteria: Criteria) -> str:
    """Why ``row`` ends the fixed sequence, as the end of a clause ("which ...")."""
    if row.label == "diverged":
        return "diverged"
    if row.label == "no verdict":
        return f"has no verdict (fewer than {criteria.min_seeds} paired seeds)"
    return "is not matching"


def _outside_claim(rows: Sequence[LevelVerdict]) -> str:
    """"; K of the M levels outside the claim are matching on their own", or nothing: the
    levels from the one that stopped the sequence on keep their individual labels."""
    outside = [r for r in rows if not r.in_sequence]
    matching = sum(r.matching for r in outside)
    if not matching:
        return ""
    return (f"; {matching} of the {len(outside)} levels outside the claim "
            f"{'are' if matching != 1 else 'is'} matching on {'their' if matching != 1 else 'its'} own")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"
