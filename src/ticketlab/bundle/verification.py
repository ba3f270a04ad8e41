"""``verify``: re-train a bundled ticket and check its claim.

The bundle is read and checked first (hashes, self-consistency: see ``bundle.read_bundle``),
then the data is checked against the bundle's fingerprint, and only then is anything
trained: each claimed replicate's ticket, from the bundle's initial weights (or rewind
point) and mask, with the bundle's config, so the same seeds give the same batches, and under
the numerics it was trained under (torch threads, determinism flags: ``ticketlab.experiment.numerics``),
whatever this process's own are.

Two ways a claim can hold:

* **exact**: where the bundle was measured with the same torch version, device type and CPU
  architecture, by sequential training (stacked ``--batch`` training differs in the last bits),
  training is deterministic, so every claimed number must come back bit for bit, and the
  re-trained weight files must equal the bundle's;
* **interval**: elsewhere, floating-point results differ in the last bits and trajectories
  drift, so the re-trained mean of the claimed metric must lie in the claimed interval (with
  one replicate, which has no interval, within one accuracy point).

Controls and extra seeds are more evidence, printed beside the claim; they do not decide it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ticketlab.bundle.pack import (
    CLAIMED,
    METRIC,
    Bundle,
    BundleError,
    check_level,
    environment_record,
    read_bundle,
)
from ticketlab.errors import ConfigError
from ticketlab.evidence.stats import mean_ci
from ticketlab.experiment.numerics import applied

ONE_SEED_TOLERANCE = 0.01  # one accuracy point, for a claim of one replicate (no interval)


@dataclass
class Check:
    """One compared quantity: what was claimed, what was measured, whether it matched."""

    what: str
    claimed: Any
    measured: Any
    ok: bool | None  # None: evidence only, not part of the claim


@dataclass
class Verification:
    bundle: Bundle
    mode: str  # "exact" or "interval"
    mode_reason: str
    checks: list[Check] = field(default_factory=list)
    workdir: Path | None = None

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks)


def _mode(bundle: Bundle, device: torch.device) -> tuple[str, str]:
    claimed = bundle.doc["environment"]
    here = environment_record(str(device))
    differs = [f"{k} {claimed.get(k)} here {here[k]}" for k in ("torch", "machine")
               if claimed.get(k) != here[k]]
    if torch.device(claimed.get("device", "cpu")).type != device.type:
        differs.append(f"device {claimed.get('device')} here {device}")
    if any(r.get("training") == "stacked" for r in bundle.replicates):
        differs.append("trained stacked (--batch), re-trained sequentially")
    mixed = [str(r["replicate"]) for r in bundle.replicates if (r.get("numerics") or {}).get("mixed")]
    if mixed:
        differs.append(f"replicate(s) {', '.join(mixed)} resumed under other threads or determinism flags")
    if differs:
        return "interval", "measured elsewhere (" + "; ".join(differs) + ")"
    return "exact", f"same torch {here['torch']}, {here['machine']} and {device.type} as the bundle"


def verify(bundle_path: str | Path, controls: list[str] | None = None, seeds: int = 0,
           workdir: str | Path | None = None, device: str = "cpu", *, model: Any = None, data: Any = None,
           task: Any = None, data_version: str | None = None, train: Any = None) -> Verification:
    """Re-train the ticket of the bundle at ``bundle_path`` and compare with its claim.

    ``controls``: control arms (``random``, ``reinit``, ...) trained on the same replicates;
    ``seeds``: that many new replicates run through IMP to the bundle's level from scratch.
    ``workdir`` keeps the re-trained experiment (default: a temporary folder, removed).
    ``model``/``data``/``task`` are the user's objects for a ticket trained on them, and
    ``train`` the user's training function for one trained by it (``run(train=...)``).
    """
    from ticketlab.experiment.environment import (
        environment,
        parameter_plan,
        resolve_device,
    )

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 0:
        raise ConfigError(f"--seeds must be a number of new seeds >= 0 (0: none), got {seeds!r}")
    if workdir is not None:
        _check_workdir(Path(workdir))
    bundle = read_bundle(bundle_path)
    config = bundle.config
    if not bundle.doc["data"]["builtin"] and data is None:
        raise ConfigError(
            f"{bundle_path} was trained on the user's own data ({bundle.doc['data']['dataset']}, fingerprint "
            f"{bundle.doc['data']['fingerprint']}); verify it from Python with "
            "ticketlab.bundle.verify(bundle, data=...) passing the same data")
    if config.model.startswith("python:") and model is None:
        raise ConfigError(f"{bundle_path} was trained with the user's own model ({config.model}); verify it from "
                          "Python with ticketlab.bundle.verify(bundle, model=...) passing the same model")
    if config.task_fingerprint is not None and task is None:
        raise ConfigError(f"{bundle_path} was made with a custom task ({config.task}); verify it from Python with "
                          "ticketlab.bundle.verify(bundle, task=ticketlab.Task(...)) passing the same task")
    if config.train_loop is not None and train is None:
        raise ConfigError(f"{bundle_path} was trained by the user's own training function ({config.train_loop}); "
                          "verify it from Python with ticketlab.bundle.verify(bundle, train=...) "
                          "passing the same function")
    inputs = None
    if data is not None or model is not None or task is not None or train is not None or ":" in config.model:
        from ticketlab.experiment.inputs import prepare_inputs

        config, inputs = prepare_inputs(config, model, data, task, data_version, train)
        _check_task(bundle, config)
    torch_device = resolve_device(device)
    env = environment(config, torch_device, inputs)
    _check_data(bundle, env, data_version)
    if bundle.doc.get("plan") is None:  # an older bundle: its level is checked against a trace of the model
        plan = parameter_plan(env)
        check_level(bundle, list(plan.pruned), plan.output)
    mode, reason = _mode(bundle, torch_device)
    if mode == "exact":
        _check_init(bundle, env)
    result = Verification(bundle, mode, reason)
    _score_bundled_weights(result, env)
    if not result.passed:  # the weights are not the ones claimed: no need to train
        return result
    with tempfile.TemporaryDirectory(prefix="ticketlab-verify-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        result.workdir = Path(workdir) if workdir else None
        store = _seeded_store(bundle, config, env, root / "ticket")
        records = _retrain(bundle, config, store, str(torch_device), inputs, controls or [])
        _compare(result, records, store)
        _control_evidence(result, records, controls or [])
        if seeds > 0:
            _seed_evidence(result, config, seeds, root / "seeds", str(torch_device), model, data, task, train,
                           data_version)
    return result


def _check_workdir(workdir: Path) -> None:
    """ConfigError (one line, before anything is read or trained) unless ``workdir`` is or can
    become a folder this process writes into."""
    import os

    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is a file, not a folder; give a folder to keep the re-trained "
                          "experiment in (or omit it)")
    folder = workdir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir {workdir}: {folder} is not a folder this process can write into")


def _check_task(bundle: Bundle, config) -> None:
    """BundleError when the task given is not the one the ticket was trained with (its
    identity, as in the experiment's name): re-training with another loss proves nothing."""
    made = bundle.config
    if config.task_fingerprint != made.task_fingerprint:
        raise BundleError(f"the task given ({config.task or 'the default'}, fingerprint {config.task_fingerprint}) "
                          f"is not the one the ticket was trained with ({made.task or 'the default'}, fingerprint "
                          f"{made.task_fingerprint}); verification needs the same task")


def _check_init(bundle: Bundle, env) -> None:
    """BundleError when a replicate's initial weights are not the ones its seed draws: the
    claimed seed is bound to the weights. Only where the bundle was measured (exact mode):
    another torch build may draw other numbers from the same seed. Skipped for experiments
    that start from given weights (``init_weights``), which no seed draws."""
    from ticketlab.experiment.environment import initial_weights

    if bundle.config.init_weights:
        return
    for record in bundle.replicates:
        r = record["replicate"]
        if not _same_tensors(initial_weights(env, r), bundle.tensors[r]["init"]):
            raise BundleError(f"{bundle.path} is inconsistent: replicate {r}'s initial weights are not the ones "
                              f"seed {record['seed']} draws (the seed or the weights were changed)")


def _check_data(bundle: Bundle, env, data_version: str | None) -> None:
    from ticketlab.experiment.inputs import data_fingerprint, version_of

    claimed = bundle.doc["data"]["fingerprint"]
    here = env.config.data.fingerprint
    if here is None:
        here = data_fingerprint(env.data, version_of(env.config, data_version))
    if here != claimed:
        raise BundleError(f"the data here (fingerprint {here}) is not the data the ticket was trained on "
                          f"({bundle.doc['data']['dataset']}, fingerprint {claimed}); verification needs the same data")


def _score_bundled_weights(result: Verification, env) -> None:
    """The bundle's early-stopped weights must score the claimed test accuracy (a cheap check,
    before training, that the weights are the ones the claim is about); elsewhere, where the
    last bits of a forward pass may differ, within one test example."""
    from ticketlab.train.evaluation import evaluate_stored_weights

    bundle = result.bundle
    resolution = 1.0 / (bundle.doc["claim"].get("test_examples") or env.data.test_examples())
    for claimed in bundle.replicates:
        r = claimed["replicate"]
        with applied(claimed.get("numerics")):
            measured = evaluate_stored_weights(env, bundle.tensors[r]["early_stop"])["test_acc"]
        ok = measured == claimed[METRIC] if result.mode == "exact" else abs(measured - claimed[METRIC]) <= resolution + 1e-9
        result.checks.append(Check(f"replicate {r} bundled early_stop weights: test accuracy", claimed[METRIC],
                                   measured, ok))


def claim_line(bundle: Bundle) -> str:
    """The claim in one line: level, sparsity, mean and interval, verdict."""
    claim = bundle.doc["claim"]
    interval, verdict = claim["interval"], claim.get("verdict")
    spread = (f"{100 * interval['confidence']:g}% CI [{interval['low']:.4f}, {interval['high']:.4f}]"
              if interval.get("has_interval") else interval.get("note") or "no interval")
    judged = f"; verdict against dense: {verdict['label']}" if verdict else ""
    return (f"claim: level {bundle.level} ({claim['percent_remaining']:.2f}% of weights) reaches {claim['metric']} "
            f"{interval['mean']:.4f} ({spread}, {interval['n']} seed(s)){judged}")


def _seeded_store(bundle: Bundle, config, env, directory: Path):
    """An experiment folder holding the bundle's inputs (initial weights, rewind points, level
    masks) where ``run_unit`` finds them, so that it trains the ticket as the study did."""
    from ticketlab.experiment.environment import parameter_plan
    from ticketlab.io import save_tensors, write_json_atomic
    from ticketlab.store.layout import Store

    store = Store(directory)
    store.write_config(config)
    write_json_atomic(store.plan_path, parameter_plan(env).to_json(), checksum=True)
    for r, parts in bundle.tensors.items():
        save_tensors(parts["init"], store.init_path(r), checksum=True)
        if "rewind" in parts:
            import json

            step = bundle.doc["rewind_steps"][str(r)]
            save_tensors(parts["rewind"], store.rewind_path(r), metadata={"state": json.dumps({"step": step})},
                         checksum=True)
        bundle.mask(r).save(store.level_mask_path(r, bundle.level))
    return store


def _retrain(bundle: Bundle, config, store, device: str, inputs, controls: list[str]) -> dict[tuple[int, str], dict]:
    from ticketlab.experiment.runner import run_unit
    from ticketlab.experiment.unit import Unit

    records = {}
    for record in bundle.replicates:
        for arm in ["ticket", *controls]:
            unit = Unit(record["replicate"], bundle.level, arm)
            # the ticket re-trains on the path it was trained on (dense or sparse arithmetic differ
            # in the last bits); controls on the dense path
            stepper = record.get("stepper", "dense") if arm == "ticket" else "dense"
            with applied(record.get("numerics")):  # the threads and flags it trained under: the same bits
                records[(unit.replicate, arm)] = run_unit(config, str(store.directory), unit, device,
                                                          inputs=inputs, precision=record.get("precision", "fp32"),
                                                          stepper=stepper)
    return records


def _compare(result: Verification, records: dict, store) -> None:
    bundle = result.bundle
    measured = []
    for claimed in bundle.replicates:
        r = claimed["replicate"]
        record = records[(r, "ticket")]
        if record.get("status", "ok") != "ok":
            result.checks.append(Check(f"replicate {r} (seed {claimed['seed']})", "trains", record["message"], False))
            continue
        measured.append(record[METRIC])
        if result.mode == "exact":
            for key in CLAIMED:
                result.checks.append(Check(f"replicate {r} {key}", claimed[key], record[key],
                                           claimed[key] == record[key]))
            paths = store.unit(r, bundle.level, "ticket")
            for part in ("early_stop", "final"):
                same = _same_tensors(store.tensors(getattr(paths, part)), bundle.tensors[r][part])
                result.checks.append(Check(f"replicate {r} {part} weights", "bundle's", "identical" if same else "differ",
                                           same))
        else:
            result.checks.append(Check(f"replicate {r} {METRIC}", claimed[METRIC], record[METRIC], None))
    if result.mode == "interval" and measured:
        interval = bundle.doc["claim"]["interval"]
        mean = sum(measured) / len(measured)
        if interval.get("has_interval"):
            low, high = interval["low"], interval["high"]
            what = f"mean {METRIC} in the claimed {100 * interval['confidence']:g}% interval"
        else:
            low, high = interval["mean"] - ONE_SEED_TOLERANCE, interval["mean"] + ONE_SEED_TOLERANCE
            what = f"mean {METRIC} within one point (one seed: no interval)"
        result.checks.append(Check(what, f"[{low:.4f}, {high:.4f}]", f"{mean:.4f}", low <= mean <= high))


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _control_evidence(result: Verification, records: dict, controls: list[str]) -> None:
    for arm in controls:
        pairs = [(records[(r, "ticket")].get(METRIC), records[(r, arm)].get(METRIC)) for r, a in records if a == arm]
        pairs = [(t, c) for t, c in pairs if t is not None and c is not None]
        if not pairs:
            continue
        ticket = sum(t for t, _ in pairs) / len(pairs)
        control = sum(c for _, c in pairs) / len(pairs)
        wins = sum(t > c for t, c in pairs)
        result.checks.append(Check(f"control {arm}: ticket - control ({wins}/{len(pairs)} seeds ticket ahead)",
                                   f"ticket {ticket:.4f}", f"{arm} {control:.4f} ({100 * (ticket - control):+.2f} pts)",
                                   None))


def _seed_evidence(result: Verification, config, seeds: int, root: Path, device: str, model, data, task, train,
                   data_version) -> None:
    """New replicates (seeds after the study's) through IMP to the bundle's level."""
    from ticketlab.api import run
    from ticketlab.config import RunOptions

    level = result.bundle.level
    fixed = {"max_seeds": None, "sequential": {"looks": [], "spending": "obrien_fleming", "futility": 0.1},
             "claim_levels": []}  # a fixed number of new seeds, whatever design the study had
    fresh = config.replace(seed=config.seed + config.replicates, seeds=seeds, levels=max(level, 1), controls=[],
                           ticket_levels=[], **fixed)
    new = run(fresh, RunOptions(root=str(root), device=device, workers=1, threads=torch.get_num_threads(),
                                progress=False), model=model, data=data, task=task, data_version=data_version,
                train=train)
    values = [r[METRIC] for r in new.select("ticket", level) if r.get(METRIC) is not None]
    interval = mean_ci(values, bounds=(0.0, 1.0))
    claimed = result.bundle.doc["claim"]["interval"]
    span = (f"[{claimed['low']:.4f}, {claimed['high']:.4f}]" if claimed.get("has_interval")
            else f"{claimed['mean']:.4f}")
    result.checks.append(Check(f"{seeds} new seed(s) through IMP to level {level}: mean {METRIC}", span,
                               f"{interval.mean:.4f}" if interval.mean is not None else "-", None))
