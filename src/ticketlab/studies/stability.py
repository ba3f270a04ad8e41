"""Instability analysis (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket
hypothesis"): is a (sparse) network's training outcome determined by iteration k?

For a replicate, a level L (its ticket mask; level 0 is the dense network) and a rewinding
point k: the dense run's weights and optimizer state at iteration k are masked, and two copies
train from there to the end with *different data orders*. The copies' weights are interpolated
along the straight line between them at N points, each evaluated on the test set. The **error
barrier** is the highest error on that line minus the mean of the two endpoints' errors (the
paper's "instability"); a network is **stable** at k when the barrier is within a threshold
(the paper's 2 percentage points): the two copies found the same linearly connected minimum.
Frankle et al. found that IMP subnetworks match the dense network exactly where they are stable.

Every (replicate, level, k) is an idempotent unit under ``<experiment>/stability/``: the dense
weights at k, each copy's final weights and the interpolation result are written atomically and
reused, so a killed analysis continues where it stopped and a new k or level only adds work.
The masks are the experiment's own, found with its ``rewind_iteration``; re-using them at other
k asks "is *this* mask stable from k", not "is the mask IMP finds with rewinding to k stable"
(run one experiment per k, ``--rewind-iteration k``, for the latter).

Batch-norm running statistics are buffers and are interpolated with the weights, not
recomputed (the paper's LeNet and the built-in MLPs have none).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from scipy import stats as _sps

from ticketlab.config import Config
from ticketlab.errors import ConfigError
from ticketlab.evidence.stats import Interval, mean_ci, quantization_sd
from ticketlab.experiment.environment import Environment, environment, replicate_seed
from ticketlab.experiment.names import resolve_names
from ticketlab.io import save_tensors, write_json_atomic
from ticketlab.seeding import derive_seed
from ticketlab.store.checkpoint import (
    MODEL_PREFIX,
    OPTIM_PREFIX,
    load_training_state,
    seeded_rng,
    split_prefixed,
)
from ticketlab.store.layout import Store
from ticketlab.studies.stability_files import (
    load_result_verified,
    load_tensors_verified,
    recorded_results,
    remove_stale_temporaries,
)
from ticketlab.train.evaluation import evaluate_stored_weights
from ticketlab.train.events import Events
from ticketlab.train.loop import run_loop
from ticketlab.train.optim import (
    load_optimizer_state,
    make_optimizer,
    mask_optimizer_state_,
    optimizer_state_tensors,
)
from ticketlab.train.state import TrainState
from ticketlab.train.steppers.dense import SingleStepper
from ticketlab.weights import load_state, state_of

THRESHOLD = 2.0  # percentage points of test error: Frankle et al. 2020's "stable"
POINTS = 30  # interpolation points on the line, endpoints included, as in Frankle et al. (2020)
BOUND_CONFIDENCE = 0.95  # one-sided, as every verdict's bound (evidence.verdicts)
Weights = dict[str, torch.Tensor]


class _Silent(Events):
    """Loop events of an analysis training: nothing is recorded but the final weights."""


def train_from(env: Environment, weights: Weights, optimizer_state: Weights, masks: dict[str, torch.Tensor] | None,
               start: int, end: int, data_seed: int, rng_seed: int) -> tuple[Weights, Weights]:
    """Train ``weights`` from iteration ``start`` to ``end`` with the experiment's optimizer and
    schedule and the data order of ``data_seed``; (weights, optimizer state) at ``end``. The same
    loop and stepper as the experiment's units, evaluating only where the loop must."""
    model = env.build(0)
    load_state(model, weights)
    optimizer = make_optimizer(model.parameters(), env.config.train, env.device)
    if optimizer_state:
        load_optimizer_state(optimizer, model, optimizer_state)
    if masks is not None:
        masks = {n: m.to(env.device, torch.float32) for n, m in masks.items()}
    stepper = SingleStepper(model, optimizer, env.task, env.data, masks)
    train = dataclasses.replace(env.config.train, eval_every=end + 1, checkpoint_every=end + 1)
    state = TrainState(start)
    with seeded_rng({"seed": torch.tensor(rng_seed)}, env.device):
        run_loop(stepper, env.data, train, [state], [_Silent()], end, [data_seed])
    if state.diverged:
        raise ConfigError(f"a stability copy diverged ({state.diverged}); the barrier is undefined there")
    return state_of(model), optimizer_state_tensors(optimizer, model)


def errors_along_line(env: Environment, a: Weights, b: Weights, points: int) -> list[float]:
    """Test error (percent: 100 x (1 - the task's score)) at ``points`` evenly spaced points
    between ``a`` (alpha = 0) and ``b`` (alpha = 1)."""
    errors = []
    for alpha in torch.linspace(0.0, 1.0, points).tolist():
        mixed = {n: torch.lerp(a[n].float(), b[n].float(), alpha).to(a[n].dtype) if a[n].is_floating_point() else a[n]
                 for n in a}
        errors.append(100.0 * (1.0 - evaluate_stored_weights(env, mixed, splits=("test",))["test_acc"]))
    return errors


def error_barrier(errors: Sequence[float]) -> float:
    """max over the line minus the mean of the endpoints (>= 0 up to the endpoints themselves)."""
    return max(errors) - (errors[0] + errors[-1]) / 2.0


class StabilityUnits:
    """The analysis' files in ``<experiment>/stability`` and how each is made (once)."""

    def __init__(self, store: Store, env: Environment, points: int = POINTS):
        self.store, self.env, self.points = store, env, points
        self.root = store.directory / "stability"
        self.end = env.end()

    def dense_at(self, replicate: int, k: int) -> tuple[Weights, Weights]:
        """The dense run's weights and optimizer state at iteration ``k``: the initial weights at
        0, the experiment's own rewind point, or the dense run replayed to k (its data order and
        random stream), saved for reuse."""
        store, config = self.store, self.env.config
        if k == 0:
            return store.tensors(store.init_path(replicate)), {}
        if k == config.rewind_iteration and store.rewind_path(replicate).is_file():
            weights, optimizer_state, _ = load_training_state(store, store.rewind_path(replicate))
            return weights, optimizer_state
        path = self.root / f"replicate_{replicate}" / f"dense_k{k}.safetensors"
        tensors = load_tensors_verified(path, self.root)
        if tensors is None:
            seed = replicate_seed(config, replicate)
            weights, optimizer_state = train_from(
                self.env, store.tensors(store.init_path(replicate)), {}, None, 0, k,
                derive_seed(seed, "data"), derive_seed(seed, "rng", 0, "ticket"))
            tensors = {**{MODEL_PREFIX + n: t for n, t in weights.items()},
                       **{OPTIM_PREFIX + n: t for n, t in optimizer_state.items()}}
            save_tensors(tensors, path, checksum=True)
            tensors = load_tensors_verified(path, self.root)  # what later runs will read, exactly
        return split_prefixed(tensors, MODEL_PREFIX), split_prefixed(tensors, OPTIM_PREFIX)

    def result(self, replicate: int, level: int, k: int) -> dict:
        """The interpolation of one (replicate, level, k): two copies trained, then the line."""
        if k >= self.end:
            raise ConfigError(f"rewinding point k={k} must be below the training length ({self.end} iterations)")
        folder = self.root / f"replicate_{replicate}" / f"level_{level:02d}" / f"k_{k}"
        done = folder / "result.json"
        record = load_result_verified(done, self.root, replicate, level, k, self.points)
        if record is not None:
            return record
        mask_path = self.store.level_mask_path(replicate, level)
        if not mask_path.is_file():
            raise ConfigError(f"replicate {replicate} has no level-{level} mask yet; run the experiment that far first")
        mask = self.store.mask(mask_path)
        weights, optimizer_state = self.dense_at(replicate, k)
        optimizer_state = {n: t.clone() for n, t in optimizer_state.items()}
        mask_optimizer_state_(optimizer_state, mask.tensors)
        seed = replicate_seed(self.env.config, replicate)
        finals = []
        for copy in (0, 1):
            path = folder / f"copy_{copy}.safetensors"
            final = load_tensors_verified(path, self.root)
            if final is None:
                final, _ = train_from(self.env, mask.applied_to(weights), optimizer_state,
                                      mask.tensors if level > 0 else None, k, self.end,
                                      derive_seed(seed, "stability-data", level, k, copy),
                                      derive_seed(seed, "stability-rng", level, k, copy))
                save_tensors(final, path, checksum=True)
                final = load_tensors_verified(path, self.root)
            finals.append(final)
        errors = errors_along_line(self.env, finals[0], finals[1], self.points)
        record = {
            "replicate": replicate, "seed": seed, "level": level, "k": k,
            "percent_remaining": 100.0 * mask.fraction_remaining(),
            "test_examples": self.env.data.test_examples(),
            "chance": 1.0 / self.env.data.num_classes if self.env.task.kind == "classification" else None,
            "alphas": torch.linspace(0.0, 1.0, self.points).tolist(),
            "errors": errors, "barrier": error_barrier(errors),
            "endpoint_test_acc": [1.0 - errors[0] / 100.0, 1.0 - errors[-1] / 100.0],
        }
        write_json_atomic(done, record, checksum=True)
        return record


@dataclass(frozen=True)
class StabilityRow:
    """The barrier of one (level, k) over replicates, and whether it is stable.

    ``barrier`` and ``endpoint_acc`` are over the trained pairs only; ``untrained`` counts the
    replicates whose pair was left out because a copy learned nothing (:func:`pair_trained`).
    When no pair trained, they are over every pair and the verdict is ``not trained``."""

    level: int
    percent_remaining: float
    k: int
    barrier: Interval  # percentage points of test error
    endpoint_acc: Interval  # the copies' test accuracy (mean of the two per replicate)
    verdict: str
    threshold: float
    untrained: int = 0  # pairs excluded: a copy did not learn

    def to_dict(self) -> dict:
        return {"level": self.level, "percent_remaining": self.percent_remaining, "k": self.k,
                "barrier": self.barrier.to_dict(), "endpoint_acc": self.endpoint_acc.to_dict(),
                "verdict": self.verdict, "threshold": self.threshold, "untrained_pairs_excluded": self.untrained}


def stability_verdict(barrier: Interval, threshold: float) -> str:
    """``stable`` when the barrier's one-sided 95% upper bound is at or below ``threshold``,
    ``unstable`` when its one-sided 95% lower bound is above it, ``inconclusive`` otherwise (the
    same one-sided bound at the same level as the matching verdicts, so a "stable" row and a
    "matching" row carry the same strength of evidence); ``no verdict`` from one seed
    (no interval): a single pair of copies says nothing about how the barrier varies. (Pairs
    that did not train are left out before this, per pair: see :func:`summarize_stability`.)"""
    if not barrier.has_interval:
        return "no verdict"
    if barrier.high <= threshold:
        return "stable"
    if barrier.low > threshold:
        return "unstable"
    return "inconclusive"


def pair_trained(record: dict, chance: float | None) -> bool:
    """Whether both copies of one replicate's pair learned: each copy's test accuracy above
    twice chance (``chance``: 1 / classes; None, as for regression, counts every pair).

    Two networks that learned nothing are trivially connected (barrier ~ 0), and a line from a
    trained copy to one that failed to train measures a failed training, not instability;
    either would bias the barrier of the cell, so such a pair is left out of it (and counted)."""
    if not chance:
        return True
    return all(acc > 2 * chance for acc in record["endpoint_test_acc"])


def barrier_interval(barriers: Sequence[float], test_examples: int | None) -> Interval:
    """Mean of the barriers with one-sided 95% bounds on each side (a two-sided 90% t-interval:
    its ends are the bounds :func:`stability_verdict` compares), the spread floored at the test
    set's resolution: identical barriers from a few seeds say the spread is below one example's
    worth of error, not that it is zero (see ``stats.quantization_sd``)."""
    two_sided = 1.0 - 2.0 * (1.0 - BOUND_CONFIDENCE)
    interval = mean_ci(barriers, confidence=two_sided, bounds=(0.0, 100.0))  # max on the line >= both ends: never below 0
    if not interval.has_interval or not test_examples:
        return interval
    floor = quantization_sd(100.0 / test_examples)
    if interval.std >= floor:
        return interval
    half = float(_sps.t.ppf(BOUND_CONFIDENCE, interval.n - 1)) * floor / math.sqrt(interval.n)
    return Interval(interval.mean, max(0.0, interval.mean - half), interval.mean + half, interval.n, floor,
                    confidence=two_sided)


def summarize_stability(records: Sequence[dict], threshold: float = THRESHOLD,
                        chance: float | None = None) -> list[StabilityRow]:
    """One row per (level, k) over the replicates' records (``chance``: for records that lack it).

    Untrained pairs are judged one by one (:func:`pair_trained`) and left out of the barrier, not
    averaged into it: a cell's mean accuracy can be well above chance while some of its pairs
    learned nothing and pull the barrier towards 0."""
    rows = []
    for level, k in sorted({(r["level"], r["k"]) for r in records}):
        cell = [r for r in records if r["level"] == level and r["k"] == k]
        trained = [r for r in cell if pair_trained(r, r.get("chance", chance))]
        used = trained or cell  # no trained pair: show every pair's numbers, make no claim
        barrier = barrier_interval([r["barrier"] for r in used], cell[0].get("test_examples"))
        accuracy = mean_ci([sum(r["endpoint_test_acc"]) / 2 for r in used], bounds=(0.0, 1.0))
        verdict = stability_verdict(barrier, threshold) if trained else "not trained"
        rows.append(StabilityRow(level, cell[0]["percent_remaining"], k, barrier, accuracy, verdict, threshold,
                                 untrained=len(cell) - len(trained)))
    return rows


def run_stability(directory: str | Path, levels: Sequence[int], ks: Sequence[int], points: int = POINTS,
                  replicates: Sequence[int] | None = None, threshold: float = THRESHOLD, device: str = "cpu",
                  progress: Callable[[str], None] | None = None) -> list[StabilityRow]:
    """Run (or resume) the analysis of an experiment for every replicate x level x k; write
    ``stability/stability.json`` and the barrier-vs-k plot; return the rows."""
    store = Store(directory)
    config: Config = store.read_config()
    if points < 3:
        raise ConfigError(f"--points must be >= 3 (the two endpoints and at least one point between), got {points}")
    if not math.isfinite(threshold) or threshold < 0:
        raise ConfigError(f"--threshold must be a non-negative number of percentage points, got {threshold}")
    bad = [level for level in levels if not 0 <= level <= config.levels]
    if bad:
        raise ConfigError(f"levels {bad} are outside the experiment's 0..{config.levels}")
    if any(k < 0 for k in ks):
        raise ConfigError(f"rewinding points must be >= 0, got {list(ks)}")
    if config.model.startswith("python:") or config.data.dataset.startswith("python:"):
        raise ConfigError("this experiment's model or data were Python objects; run the analysis with "
                          "ticketlab.studies.stability.run_stability in the process that has them (not from the command line)")
    resolve_names(config)
    env = environment(config, device)
    units = StabilityUnits(store, env, points)
    chosen = list(range(config.replicates)) if replicates is None else list(replicates)
    with Store(units.root) as _analysis_lock:  # one analysis at a time: it removes stale temporaries
        remove_stale_temporaries(units.root)
        records = []
        for replicate in chosen:
            for level in levels:
                for k in ks:
                    if progress:
                        progress(f"replicate {replicate}, level {level}, k={k}")
                    records.append(units.result(replicate, level, k))
        chance = 1.0 / env.data.num_classes if env.task.kind == "classification" else None
        rows = summarize_stability(records, threshold, chance)
        all_records = recorded_results(units.root)
        write_json_atomic(units.root / "stability.json",
                          {"threshold": threshold, "points": points, "rows": [r.to_dict() for r in rows],
                           "records": all_records}, checksum=True)
        from ticketlab.report.stability_figure import barrier_figure

        barrier_figure(summarize_stability([r for r in all_records if len(r["errors"]) == points], threshold,
                                           chance), units.root / "barrier_vs_k.png")
    return rows


def stability_markdown(rows: Sequence[StabilityRow]) -> str:
    """The analysis as a markdown table, with its criterion stated under it."""
    def interval(iv: Interval, scale: float = 1.0, digits: int = 2) -> str:
        if iv.mean is None:
            return "-"
        if not iv.has_interval:
            return f"{iv.mean * scale:.{digits}f} (1 seed)"
        return f"{iv.mean * scale:.{digits}f} [{iv.low * scale:.{digits}f}, {iv.high * scale:.{digits}f}]"

    lines = ["| level | % remaining | k | seeds | untrained pairs excluded | error barrier (pts) [one-sided 95% bounds] | "
             "copies' test acc (%) [95% CI] | verdict |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        seeds = r.barrier.n if r.verdict != "not trained" else 0
        lines.append(f"| {r.level} | {r.percent_remaining:.1f} | {r.k} | {seeds} | {r.untrained} | {interval(r.barrier)} | "
                     f"{interval(r.endpoint_acc, 100.0)} | {r.verdict} |")
    if rows:
        lines.append("")
        lines.append(f"Barrier: highest test error on the line between two copies trained from iteration k with "
                     f"different data orders, minus the mean of the copies' errors. stable: the one-sided 95% upper "
                     f"bound over seeds is at or below {rows[0].threshold:g} points; unstable: the one-sided 95% "
                     "lower bound is above it; inconclusive: neither; no verdict: one seed. A seed's pair is left out "
                     "(untrained pairs excluded) when a copy's test accuracy is at most twice chance: a barrier "
                     "between networks that did not learn says nothing; not trained: no pair learned.")
    return "\n".join(lines)
