"""A ticket bundle: one level's ticket as a single self-describing ``.safetensors`` file.

Everything a reviewer needs to re-train the ticket and check the claim, without the study:

* tensors, per replicate ``r`` of the experiment:
  ``r<r>/init/<param>`` (the replicate's initial weights), ``r<r>/mask/<param>`` (the level's
  mask, uint8), ``r<r>/early_stop/<param>`` and ``r<r>/final/<param>`` (the trained ticket at
  its early-stopping iteration and at the end) and, with late rewinding, ``r<r>/rewind/...``
  (the dense run's weights and optimizer state at the rewind iteration);
* metadata ``ticketlab_bundle``: one JSON document with the config, the data's fingerprint,
  the claim (each replicate's measured metrics with its seed, the numerics it trained under,
  and the level's mean, interval and verdict), the environment that measured it (torch, Python
  and ticketlab versions, platform, device) and ``tensors_sha256``, the hash of the tensors'
  names, dtypes, shapes and bytes; metadata ``sha256``: the hash of that document and the
  tensors together.

A single file rather than a folder so that it can be mailed, attached or uploaded as is;
safetensors so that opening it never executes code. The hashes detect damage and naive edits
(a changed mask or claim), not a forger who recomputes them: that is what re-training
(``ticketlab verify``) and the consistency checks in :func:`read_bundle` are for. Those checks
bind the description's labels to what is verified: a replicate's seed is the config's, the
level is the one whose weight counts the masks keep (:func:`check_level`), and ``verify``
re-draws the initial weights from the seeds. Reading validates the description's schema
first (:func:`validate_description`), so a rewritten one is a one-line error, not a crash.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from ticketlab.api import Result
from ticketlab.config import Config
from ticketlab.errors import StoreError, TicketlabError
from ticketlab.evidence.stats import mean_ci
from ticketlab.io import metadata_from_bytes, read_bytes, write_bytes_atomic
from ticketlab.masks import Mask

FORMAT = 1
METRIC = "test_acc_at_early_stop"
#: The per-replicate numbers a bundle claims and ``verify`` re-measures.
CLAIMED = ("early_stop_step", "test_acc_at_early_stop", "val_acc_at_early_stop", "val_loss_at_early_stop",
           "final_step", "final_test_acc", "final_val_acc")
PARTS = ("init", "mask", "early_stop", "final", "rewind")


class BundleError(StoreError):
    """A bundle that cannot be trusted or used (damaged, altered, inconsistent)."""


@dataclass(frozen=True)
class Bundle:
    """A read and checked bundle: its description and, per replicate, its tensors by part."""

    path: Path
    doc: dict[str, Any]
    tensors: dict[int, dict[str, dict[str, torch.Tensor]]]  # replicate -> part -> name -> tensor

    @property
    def config(self) -> Config:
        return Config.from_dict(self.doc["config"])

    @property
    def level(self) -> int:
        return int(self.doc["level"])

    @property
    def replicates(self) -> list[dict[str, Any]]:
        return self.doc["claim"]["replicates"]

    def mask(self, replicate: int) -> Mask:
        return Mask.from_stored(self.tensors[replicate]["mask"])


def environment_record(device: str) -> dict[str, str]:
    """What produced the numbers: a bit-for-bit comparison is only meaningful within one of these."""
    import ticketlab

    return {"torch": torch.__version__, "python": platform.python_version(), "ticketlab": ticketlab.__version__,
            "platform": platform.platform(), "machine": platform.machine(), "device": device}


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _doc_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, allow_nan=False).encode()


def _content_sha256(doc: dict[str, Any]) -> str:
    return hashlib.sha256(_doc_bytes(doc)).hexdigest()  # the doc includes tensors_sha256


# ---------------------------------------------------------------------------- writing
def make_bundle(experiment: str | Path, level: int, out: str | Path | None = None) -> Path:
    """Write level ``level``'s ticket of the experiment in ``experiment`` as one bundle file.

    Every replicate whose ticket at that level finished (and did not diverge) is included; the
    claim is their metrics, and the level's mean, interval and verdict as ``show`` prints them.
    """
    result = Result.load(experiment)
    store, config = result.store, result.config
    if config.retrain != "rewind" and level > 0:
        raise BundleError(f"{experiment} retrains with {config.retrain!r}: its tickets start from the previous "
                          "level's trained weights, which a bundle does not carry; bundle a weight-rewinding experiment")
    out = Path(out) if out else Path(f"{config.experiment_name()}-level{level:02d}.ticket.safetensors")
    check_writable(out)
    records = sorted((r for r in result.select("ticket", level) if r.get("status", "ok") == "ok"),
                     key=lambda r: r["replicate"])
    if not records:
        raise BundleError(f"{experiment} has no finished ticket at level {level} (levels: {result.levels()})")
    tensors: dict[str, torch.Tensor] = {}
    for record in records:
        r = record["replicate"]
        paths = store.unit(r, level, "ticket")
        if not paths.early_stop.is_file():
            raise BundleError(f"{paths.directory} has no early-stopped weights (trained by an older ticketlab); "
                              "run the experiment again with this version to bundle it")
        parts = {"init": store.tensors(store.init_path(r)), "early_stop": store.tensors(paths.early_stop),
                 "final": store.tensors(paths.final),
                 "mask": {n: m.to(torch.uint8) for n, m in store.mask(store.level_mask_path(r, level)).items()}}
        if config.rewind_iteration > 0 and level > 0:
            parts["rewind"] = store.tensors(store.rewind_path(r))
        for part, values in parts.items():
            tensors.update({f"r{r}/{part}/{name}": value for name, value in values.items()})

    rewind_steps = {}
    if config.rewind_iteration > 0 and level > 0:
        rewind_steps = {str(rec["replicate"]): json.loads(store.tensors_and_metadata(
            store.rewind_path(rec["replicate"]))[1].get("state", "{}")).get("step") for rec in records}
    doc = {
        "format": FORMAT,
        "experiment": config.experiment_name(),
        "level": level,
        "config": config.to_dict(),
        "data": {"dataset": config.data.dataset, "fingerprint": _data_fingerprint(config),
                 "builtin": ":" not in config.data.dataset},
        "claim": claim_of(result, records, level),
        "environment": environment_record(records[0].get("device", "cpu")),
        "rewind_steps": rewind_steps,
        "plan": _plan_record(store),
        "tensors_sha256": tensors_sha256(tensors),
    }
    metadata = {"ticketlab_bundle": _doc_bytes(doc).decode(), "sha256": _content_sha256(doc)}
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    try:
        write_bytes_atomic(out, data)  # removes its temporary file when the write fails
    except OSError as exc:  # a full disk, a quota, a device gone: the user's environment, in one line
        raise BundleError(f"cannot write the bundle {out} ({len(data) / 2**20:.1f} MiB): "
                          f"{exc.strerror or exc}; nothing was written") from None
    return out


def check_writable(out: Path) -> None:
    """BundleError (before anything is read or written) unless ``out`` can become a file: not a
    directory, below a directory (or folders that can be made) where a file can be created.
    The probe is a temporary file in the nearest existing folder, removed at once."""
    import tempfile

    if out.is_dir():
        raise BundleError(f"--out {out} is a directory; give a file name, e.g. {out / 'ticket.safetensors'}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise BundleError(f"--out {out}: {folder} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BundleError(f"--out {out}: cannot create a file in {folder} ({exc.strerror or exc})") from None


def _plan_record(store) -> dict[str, Any] | None:
    """What the level's weight counts depend on besides the config: the pruned parameters in
    model order and the output layer (``output_rate``), as the experiment recorded them."""
    plan = store.parameter_plan()
    return {"pruned": list(plan.pruned), "output": plan.output} if plan is not None else None


def _data_fingerprint(config: Config) -> str:
    """The fingerprint of the data the ticket was trained on: the config's for the user's data
    (recorded by ``run``), else computed from the built-in dataset."""
    from ticketlab.experiment.inputs import data_fingerprint, named_dataset

    if config.data.fingerprint:
        return config.data.fingerprint
    data = config.data  # the built-in dataset itself: no model or task is needed to hash it
    return data_fingerprint(named_dataset(data.dataset, data.data_dir, data.split_seed))


def claim_of(result: Result, records: list[dict[str, Any]], level: int) -> dict[str, Any]:
    """The level's claim: every replicate's measured numbers and seed, their mean and interval
    of ``test_acc_at_early_stop``, and the verdict against dense (when the level has one)."""
    values = [r[METRIC] for r in records]
    interval = mean_ci(values, bounds=(0.0, 1.0))
    verdict = None
    table = result.verdicts() if level > 0 else None
    if table is not None and any(row.level == level for row in table):
        row = table.row(level)
        verdict = {"label": row.label, "reason": row.reason, "dense": row.dense.to_dict(),
                   "criteria": table.criteria.statements()}
    return {
        "metric": METRIC,
        "percent_remaining": records[0]["percent_remaining"],
        "test_examples": records[0].get("test_examples"),
        "replicates": [{"replicate": r["replicate"], "seed": r["seed"], "percent_remaining": r["percent_remaining"],
                        "precision": r.get("precision", "fp32"), "training": r.get("training", "sequential"),
                        "stepper": r.get("stepper", "dense"),
                        # the settings it trained under (threads, determinism flags), which verify
                        # re-trains under (None: an older experiment, which trained under the defaults)
                        "numerics": r.get("numerics"),
                        **{k: r[k] for k in CLAIMED}} for r in records],
        "interval": interval.to_dict(),
        "verdict": verdict,
    }


# ---------------------------------------------------------------------------- the description's schema
TENSOR_KEY = re.compile(r"r(?P<replicate>[0-9]+)/(?P<part>" + "|".join(PARTS) + r")/(?P<name>.+)")
_NUMBER = (int, float)
_INT = (int,)
_TEXT = (str,)
_OPTIONAL_NUMBER = (int, float, type(None))
#: key -> accepted types, per object of the description (keys that ``make_bundle`` always writes).
_SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "bundle": {"format": _INT, "experiment": _TEXT, "level": _INT, "config": (dict,), "data": (dict,),
               "claim": (dict,), "environment": (dict,), "rewind_steps": (dict,), "tensors_sha256": _TEXT},
    "data": {"dataset": _TEXT, "fingerprint": _TEXT, "builtin": (bool,)},
    "claim": {"metric": _TEXT, "percent_remaining": _NUMBER, "replicates": (list,), "interval": (dict,),
              "verdict": (dict, type(None)), "test_examples": (int, type(None))},
    "interval": {"mean": _OPTIONAL_NUMBER, "low": _OPTIONAL_NUMBER, "high": _OPTIONAL_NUMBER, "n": _INT,
                 "confidence": _NUMBER, "has_interval": (bool,)},
    "replicate": {"replicate": _INT, "seed": _INT, "percent_remaining": _NUMBER, "precision": _TEXT,
                  "training": _TEXT, "stepper": _TEXT, "early_stop_step": _INT, "final_step": _INT,
                  **{k: _OPTIONAL_NUMBER for k in CLAIMED if not k.endswith("_step")}, METRIC: _NUMBER},
    "environment": {"torch": _TEXT, "machine": _TEXT, "device": _TEXT},
}


def _check_fields(value: dict[str, Any], kind: str, where: str, path: Path) -> None:
    """BundleError naming the first key of ``value`` that is missing or of the wrong type."""
    for key, types in _SCHEMA[kind].items():
        if key not in value:
            raise BundleError(f"{path} is not a valid ticket bundle: {where} has no {key!r}")
        item = value[key]
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BundleError(f"{path} is not a valid ticket bundle: {where}[{key!r}] is {type(item).__name__}, "
                              f"not {wanted}")


def validate_description(doc: dict[str, Any], path: Path) -> None:
    """BundleError (one line) unless the description has every key ``make_bundle`` writes,
    each of its type, and a valid config: checked once, here, so nothing after it meets a
    missing key or a string where a number belongs (a rewritten description with recomputed
    hashes is bad input, not a crash)."""
    _check_fields(doc, "bundle", "the description", path)
    for kind in ("data", "claim", "environment"):
        _check_fields(doc[kind], kind, kind, path)
    claim = doc["claim"]
    _check_fields(claim["interval"], "interval", "claim.interval", path)
    if not claim["replicates"]:
        raise BundleError(f"{path} is not a valid ticket bundle: its claim names no replicate")
    for i, record in enumerate(claim["replicates"]):
        if not isinstance(record, dict):
            raise BundleError(f"{path} is not a valid ticket bundle: claim.replicates[{i}] is not an object")
        _check_fields(record, "replicate", f"claim.replicates[{i}]", path)
        if not isinstance(record.get("numerics"), (dict, type(None))):
            raise BundleError(f"{path} is not a valid ticket bundle: claim.replicates[{i}]['numerics'] is not an object")
    if claim["metric"] != METRIC:
        raise BundleError(f"{path} is not a valid ticket bundle: it claims {claim['metric']!r}; bundles claim {METRIC}")
    if claim["verdict"] is not None and not isinstance(claim["verdict"].get("label"), str):
        raise BundleError(f"{path} is not a valid ticket bundle: claim.verdict has no label")
    plan = doc.get("plan")  # absent from older bundles: verify traces the model instead
    if plan is not None and not (isinstance(plan, dict) and isinstance(plan.get("pruned"), list)
                                 and all(isinstance(n, str) for n in plan["pruned"])
                                 and isinstance(plan.get("output"), (str, type(None)))):
        raise BundleError(f"{path} is not a valid ticket bundle: plan must hold the pruned names and the output layer")
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
               for k, v in doc["rewind_steps"].items()):
        raise BundleError(f"{path} is not a valid ticket bundle: rewind_steps must map replicates to iterations")
    try:
        Config.from_dict(doc["config"])
    except TicketlabError as exc:
        raise BundleError(f"{path} is not a valid ticket bundle: its config is invalid ({exc})") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{path} is not a valid ticket bundle: its config is invalid "
                          f"({type(exc).__name__}: {exc})") from None


def _check_shapes(bundle: Bundle, r: int) -> None:
    """BundleError unless replicate ``r``'s weight parts hold the same names, shapes and dtypes,
    its mask is 0/1 over some of those weights, and a rewind point has its iteration."""
    parts, where = bundle.tensors[r], bundle.path
    layout = {n: (t.shape, t.dtype) for n, t in parts["init"].items()}
    for part in ("early_stop", "final"):
        if {n: (t.shape, t.dtype) for n, t in parts[part].items()} != layout:
            raise BundleError(f"{where} is inconsistent: replicate {r}'s {part} weights do not have the names, "
                              "shapes and dtypes of its initial weights")
    for name, keep in parts["mask"].items():
        if name not in layout or keep.shape != layout[name][0]:
            raise BundleError(f"{where} is inconsistent: replicate {r}'s mask {name!r} fits none of its weights")
        if keep.dtype != torch.uint8 or bool((keep > 1).any()):
            raise BundleError(f"{where} is inconsistent: replicate {r}'s mask {name!r} is not a 0/1 uint8 mask")
    if ("rewind" in parts) != (str(r) in bundle.doc["rewind_steps"]):
        raise BundleError(f"{where} is inconsistent: replicate {r}'s rewind point and its iteration "
                          "(rewind_steps) do not come together")


# ---------------------------------------------------------------------------- binding
def _check_identity(bundle: Bundle) -> None:
    """BundleError when the description's labels are not those its config derives: the
    experiment's name, the level's range and each replicate's seed (``seed + replicate``, as
    training derives its data order from it), so an edited seed or level is refused, not printed."""
    config, where = bundle.config, bundle.path
    if bundle.doc["experiment"] not in (config.experiment_name(), config.legacy_experiment_name()):  # older bundles
        raise BundleError(f"{where} is inconsistent: it names experiment {bundle.doc['experiment']}, its config is "
                          f"experiment {config.experiment_name()}")
    if not 0 <= bundle.level <= config.levels:
        raise BundleError(f"{where} is inconsistent: it claims level {bundle.level}, its config has levels "
                          f"0 to {config.levels}")
    for record in bundle.replicates:
        r = record["replicate"]
        if not 0 <= r < config.replicates or record["seed"] != config.seed + r:
            raise BundleError(f"{where} is inconsistent: replicate {r} claims seed {record['seed']}, its config "
                              f"gives replicate {r} seed {config.seed + r} (of {config.replicates} replicate(s))")


#: Methods whose level-L masks keep exactly IMP's level-L counts (``pruning.count_to_prune``).
IMP_COUNTED = ("magnitude", "oneshot")


def imp_kept(config: Config, sizes: dict[str, int], output: str | None, level: int) -> dict[str, int] | int:
    """How many weights IMP's level ``level`` keeps under ``config.prune``: per layer when
    layerwise; when global, in all layers together (excluded layers keep all theirs)."""
    import re

    from ticketlab.pruning.magnitude import count_to_prune, layer_rates

    prune = config.prune
    if prune.strategy == "global":
        excluded = {n for n in sizes if any(re.search(p, n) for p in prune.global_exclude)}
        total = sum(v for n, v in sizes.items() if n not in excluded)
        for _ in range(level):
            total -= count_to_prune(prune.rate, total)
        return total + sum(sizes[n] for n in excluded)
    rates = layer_rates(list(sizes), prune, output)
    remaining = dict(sizes)
    for _ in range(level):
        remaining = {n: k - count_to_prune(rates[n], k) for n, k in remaining.items()}
    return remaining


def check_level(bundle: Bundle, names: list[str], output: str | None) -> None:
    """BundleError when a mask does not keep the weights the claimed level keeps (methods with
    IMP's counts): the level is re-derived from the masks, so it cannot be relabelled.
    ``names``: the prunable parameters in model order, ``output``: the output layer's weight."""
    config = bundle.config
    if config.prune.method not in IMP_COUNTED:
        return
    for record in bundle.replicates:
        r = record["replicate"]
        mask = bundle.mask(r)
        order = [n for n in names if n in mask] + [n for n in mask if n not in names]
        sizes = {n: mask[n].numel() for n in order}
        kept = {n: int(mask[n].sum()) for n in order}
        expected = imp_kept(config, sizes, output, bundle.level)
        found = sum(kept.values()) if isinstance(expected, int) else kept
        if found != expected:
            total = expected if isinstance(expected, int) else sum(expected.values())
            raise BundleError(f"{bundle.path} is inconsistent: it claims level {bundle.level}, whose masks keep "
                              f"{total} weights, but replicate {r}'s mask keeps {sum(kept.values())} (the mask "
                              "is not that level's)")


# ---------------------------------------------------------------------------- reading
def read_bundle(path: str | Path) -> Bundle:
    """Read a bundle and check it before anything trains: its hashes (altered tensors or
    description), and that the claim agrees with itself and with the tensors (each mask's
    sparsity is the claimed one, pruned weights are zero, the interval is of the values)."""
    path = Path(path)
    data = read_bytes(path)
    try:
        flat = load(data)
    except Exception as exc:  # safetensors' own error types
        raise BundleError(f"{path} is not a ticket bundle (not a safetensors file: {exc})") from None
    metadata = metadata_from_bytes(data, path)
    if "ticketlab_bundle" not in metadata:
        raise BundleError(f"{path} is not a ticket bundle (no ticketlab_bundle description); "
                          "make one with `ticketlab bundle EXPERIMENT --level L`")
    try:
        doc = json.loads(metadata["ticketlab_bundle"])
    except ValueError as exc:
        raise BundleError(f"{path} is damaged (its description is not JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{path} is not a valid ticket bundle: its description is {type(doc).__name__}, not an object")
    if doc.get("format") != FORMAT:
        raise BundleError(f"{path} is a bundle of format {doc.get('format')!r}; this ticketlab reads format {FORMAT}")
    if tensors_sha256(flat) != doc.get("tensors_sha256"):
        raise BundleError(f"{path} was altered: its weights or masks do not match the bundle's tensors_sha256; "
                          "ask its author for the original")
    if _content_sha256(doc) != metadata.get("sha256"):
        raise BundleError(f"{path} was altered: its description (config or claim) does not match the bundle's "
                          "sha256; ask its author for the original")
    validate_description(doc, path)
    tensors: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
    for key, value in flat.items():
        match = TENSOR_KEY.fullmatch(key)
        if match is None:
            raise BundleError(f"{path} is not a valid ticket bundle: tensor {key!r} is not named "
                              f"r<replicate>/<{'|'.join(PARTS)}>/<parameter>")
        tensors.setdefault(int(match["replicate"]), {}).setdefault(match["part"], {})[match["name"]] = value
    bundle = Bundle(path, doc, tensors)
    check_consistent(bundle)
    return bundle


def check_consistent(bundle: Bundle) -> None:
    """BundleError when the claim contradicts itself or the tensors (see :func:`read_bundle`)."""
    claim, where = bundle.doc["claim"], bundle.path
    claimed = [r["replicate"] for r in claim["replicates"]]
    if len(set(claimed)) != len(claimed) or set(claimed) != set(bundle.tensors):
        raise BundleError(f"{where} is inconsistent: the claim names replicates {claimed}, "
                          f"the tensors hold {sorted(bundle.tensors)}")
    _check_identity(bundle)
    for r in claimed:
        missing = [p for p in ("init", "mask", "early_stop", "final") if p not in bundle.tensors[r]]
        if missing:
            raise BundleError(f"{where} is inconsistent: replicate {r} lacks its {', '.join(missing)} tensors")
        _check_shapes(bundle, r)
    if bundle.doc.get("plan") is not None:
        check_level(bundle, bundle.doc["plan"]["pruned"], bundle.doc["plan"]["output"])
    for record in claim["replicates"]:
        r = record["replicate"]
        parts = bundle.tensors[r]
        mask = bundle.mask(r)
        percent = 100.0 * mask.fraction_remaining()
        if abs(percent - record["percent_remaining"]) > 1e-9 or abs(percent - claim["percent_remaining"]) > 1e-9:
            raise BundleError(f"{where} is inconsistent: replicate {r}'s mask keeps {percent:.4f}% of the weights, "
                              f"the claim says {record['percent_remaining']:.4f}%")
        for part in ("early_stop", "final"):
            weights = parts[part]
            if any(n not in weights or bool((weights[n][~m] != 0).any()) for n, m in mask.items()):
                raise BundleError(f"{where} is inconsistent: replicate {r}'s {part} weights are nonzero where "
                                  "its mask prunes them (the mask is not the one they were trained with)")
    values = [r[claim["metric"]] for r in claim["replicates"]]
    interval = mean_ci(values, bounds=(0.0, 1.0)).to_dict()
    if any(interval[k] != claim["interval"].get(k) for k in ("mean", "low", "high", "n")):
        raise BundleError(f"{where} is inconsistent: the claimed mean and interval are not those of the "
                          "claimed per-replicate values")
