"""Export one ticket of an experiment directory, check it, and measure it against the dense model.

This is ``ticketlab export``: rebuild the model, load the chosen weights (the final ones by
default; a ``weights`` path lets early-stopped weights be exported the same way), apply the
level's mask, write the chosen format under a temporary name, **load the written file into a
fresh model** (built by the model factory, never a copy of the trained one) and check its
outputs against the masked dense model on real validation examples -- every tensor of a dict,
``ModelOutput`` or tuple output -- and only then rename it into place. The report then gives file size,
parameters, nonzeros and FLOPs per example beside the dense model's.

FLOPs are counted as the export executes them: the sparse format skips pruned weights, the
structured format runs its smaller dense layers, and the torch-prune and masked ONNX formats
run the full dense layers (their zeros are multiplied like any other weight).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ticketlab.data.batch import call, is_single, moved, take
from ticketlab.errors import ConfigError, StoreError, TicketlabError
from ticketlab.export import FORMATS, check_format  # noqa: F401  (FORMATS: read here before it moved)
from ticketlab.export._files import filled, read_export, write_export
from ticketlab.export.outputs import for_inference, output_tensors
from ticketlab.evidence.flops import dense_and_sparse_flops
from ticketlab.export.prune_interop import apply_mask, to_torch_prune
from ticketlab.masks import Mask

TOLERANCE = 1e-5
TORCH_PRUNE_KIND = "ticketlab-torch-prune"


@dataclass(frozen=True)
class Footprint:
    """What one model costs: file bytes, parameters stored, nonzero parameters, FLOPs per example."""

    file_bytes: int
    parameters: int
    nonzeros: int
    flops: int


@dataclass(frozen=True)
class ExportReport:
    format: str
    path: Path
    dense: Footprint
    exported: Footprint
    max_abs_diff: float  # of the reloaded export's outputs against the masked dense model (checked <= 1e-5 x output scale)
    removed: dict[str, Any] | None = None  # the structured export's units before/after
    loaded: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)  # the reloaded export

    def rows(self) -> list[tuple[str, int, int, float]]:
        """(measure, dense, export, dense/export) rows for printing."""
        out = []
        for field in ("file_bytes", "parameters", "nonzeros", "flops"):
            d, e = getattr(self.dense, field), getattr(self.exported, field)
            out.append((field.replace("_", " "), d, e, d / e if e else float("inf")))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def _counts(tensors: list[torch.Tensor]) -> tuple[int, int]:
    floats = [t for t in tensors if t.is_floating_point()]
    return sum(t.numel() for t in floats), sum(int(torch.count_nonzero(t)) for t in floats)


def _state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Float parameters and buffers, sparse ones by their stored values, masks left out."""
    out = []
    for name, tensor in model.state_dict().items():
        if name.endswith("_mask"):
            continue
        out.append(tensor.values() if tensor.layout == torch.sparse_csr else tensor)
    return out


def dense_footprint(model: nn.Module, example: torch.Tensor) -> Footprint:
    from ticketlab.weights import state_of

    params, nonzeros = _counts(list(state_of(model).values()))
    size = len(safetensors_bytes({k: v.contiguous() for k, v in state_of(model).items()}))
    return Footprint(size, params, nonzeros, dense_and_sparse_flops(model, {}, example)[0])


def export_model(
    model: nn.Module, mask: Mask, fmt: str, out: str | Path, example: torch.Tensor,
    model_spec: dict[str, Any] | None = None, factory: Callable[[], nn.Module] | None = None,
) -> ExportReport:
    """Export ``model`` (its weights loaded, not yet masked; left unchanged) as ``fmt`` to ``out``.

    The file is written under a temporary name beside ``out`` and renamed into place only after
    it has been loaded back into a *fresh* model and reproduces the masked model's outputs: a
    failed export leaves nothing behind. ``factory`` builds that fresh model (the experiment's
    model factory); without it a registry model is built by name, and any other model is a copy
    whose parameters are all NaN, so that nothing the export failed to carry can pass unseen.
    """
    check_format(fmt)
    out = _target(out)
    model = for_inference(copy.deepcopy(model))
    dense = dense_footprint(model, example)
    masked = for_inference(apply_mask(copy.deepcopy(model), mask))
    with torch.no_grad():
        reference = output_tensors(call(masked, example))
    if not reference:
        raise ConfigError(f"{type(model).__name__} returns no tensor (nor a dict, ModelOutput or tuple holding "
                          f"one) to check the export against")
    fresh = _fresh_builder(model, model_spec, factory)
    with staged(out) as tmp:
        written = _WRITERS[fmt](model, masked, mask, tmp, example, model_spec, fresh)
        diff = _check(written.run, example, reference, fmt, out)
        size = tmp.stat().st_size
    exported = Footprint(size, written.parameters, written.nonzeros, written.flops)
    return ExportReport(fmt, out, dense, exported, diff, written.removed, written.run)


@dataclass
class _Written:
    """What one format's writer produced: the reloaded export and its counts."""

    run: Callable[[torch.Tensor], Any]
    parameters: int
    nonzeros: int
    flops: int
    removed: dict[str, Any] | None = None


def _write_sparse(model, masked, mask, path, example, spec, fresh) -> _Written:
    from ticketlab.export.sparse import load_sparse, save_sparse

    save_sparse(masked, mask, path, example, spec)
    loaded = load_sparse(path, model=fresh())
    params, nonzeros = _counts(_state_tensors(loaded))
    return _Written(loaded, params, nonzeros, dense_and_sparse_flops(loaded, None, example)[1])


def _write_structured(model, masked, mask, path, example, spec, fresh) -> _Written:
    from ticketlab.export.structured import load_structured, save_structured, structured_model

    net, removed = structured_model(masked, mask, example)
    save_structured(net, path, example, spec, removed)
    loaded = load_structured(path, fresh())
    params, nonzeros = _counts(_state_tensors(loaded))
    return _Written(loaded, params, nonzeros, _executed_flops(loaded, example), removed)


def _write_torch_prune(model, masked, mask, path, example, spec, fresh) -> _Written:
    pruned = to_torch_prune(copy.deepcopy(model), mask)
    save_torch_prune(pruned, path, spec, example)
    loaded = load_torch_prune(path, fresh())
    if not torch_prune_mask(path, loaded).equals(mask):
        raise TicketlabError("torch-prune export: the masks read back differ from the ticket's (a bug)")
    params = _counts(_state_tensors(pruned))[0]
    nonzeros = _counts(_state_tensors(masked))[1]
    return _Written(loaded, params, nonzeros, dense_footprint(model, example).flops)


def _write_onnx(model, masked, mask, path, example, spec, fresh) -> _Written:
    from ticketlab.export.onnx_export import OnnxRunner, export_onnx
    from ticketlab.export.structured import structured_model

    removed = None
    try:  # the smaller structured network where there is one, else the dense-masked model
        source, removed = structured_model(masked, mask, example)
    except ConfigError:
        source = masked
    export_onnx(source, example, path)
    params, nonzeros = _counts(_state_tensors(source))
    return _Written(OnnxRunner(path), params, nonzeros, _executed_flops(source, example), removed)


_WRITERS = {"sparse": _write_sparse, "structured": _write_structured, "torch-prune": _write_torch_prune,
            "onnx": _write_onnx}


def _check(run: Callable[[torch.Tensor], Any], example: torch.Tensor, reference: list[torch.Tensor],
           fmt: str, out: Path) -> float:
    """The largest difference between the reloaded export's outputs and the masked model's;
    TicketlabError when it exceeds 1e-5 of the outputs' scale or the outputs do not correspond."""
    with torch.no_grad():
        got = output_tensors(call(run, example))
    shapes = [tuple(t.shape) for t in reference]
    if [tuple(t.shape) for t in got] != shapes:
        raise TicketlabError(f"the {fmt} export for {out} does not reproduce the masked model: it returns tensors "
                             f"of shapes {[tuple(t.shape) for t in got]}, the model {shapes}; please report this")
    diff = max(float((g.float() - r.float()).abs().max()) if r.numel() else 0.0 for g, r in zip(got, reference))
    # 1e-5 of the outputs' scale: sparse and folded sums add in another order, and logits of
    # real data reach ~10-20, where float32 rounding alone is ~1e-6.
    scale = max([1.0] + [float(r.abs().max()) for r in reference if r.numel() and r.is_floating_point()])
    allowed = TOLERANCE * scale
    if not diff <= allowed:
        raise TicketlabError(f"the {fmt} export for {out} does not reproduce the masked model: outputs differ by "
                             f"{diff:.3g} (> {allowed:.3g}); please report this with the experiment")
    return diff


def _fresh_builder(model: nn.Module, spec: dict[str, Any] | None,
                   factory: Callable[[], nn.Module] | None) -> Callable[[], nn.Module]:
    """How to build the fresh model an export is loaded into for its check -- never a copy of the
    trained model, whose weights would hide anything the file fails to carry."""
    if factory is not None:
        return lambda: for_inference(factory())
    if spec and ":" not in spec.get("name", ":"):
        from ticketlab.models import build_model

        return lambda: for_inference(build_model(spec["name"], tuple(spec["input_shape"]), spec["num_classes"]))
    return lambda: for_inference(_poisoned(model))


@torch.no_grad()
def _poisoned(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every float parameter and persistent buffer set to NaN: a fresh
    instance when there is no factory to build one (an output that reads a value the export did
    not restore becomes NaN and fails the check)."""
    copied = copy.deepcopy(model)
    for tensor in copied.state_dict(keep_vars=True).values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    return copied


def _target(out: str | Path) -> Path:
    """``out`` as a path to write, refused in one line when it names a directory."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the export's file name")
    return out


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary path beside ``out``, renamed onto ``out`` when the block succeeds and removed
    (with any directories made for it) when it fails; an OSError (no space, a read-only or
    virtual filesystem) is one line."""
    made = _make_parents(out.parent)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.replace(tmp, out)
        tmp = None
    except OSError as exc:
        raise StoreError(f"cannot write the export to {out}: {exc.strerror or exc}; choose another --out") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if not out.exists():
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    directory.rmdir()


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    missing.reverse()
    try:
        for path in missing:
            path.mkdir()
    except OSError as exc:
        raise StoreError(f"cannot create {path} for the export: {exc.strerror or exc}; choose another --out") from None
    return missing


def _executed_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of a model that runs dense (every stored weight multiplied, zero or not)."""
    return dense_and_sparse_flops(model, {}, example)[0]


def save_torch_prune(model: nn.Module, path: str | Path, model_spec: dict[str, Any] | None = None,
                     example: torch.Tensor | None = None) -> None:
    """The state dict of a ``torch.nn.utils.prune``-reparametrised model (``*_orig``, ``*_mask``) as safetensors.

    Loading it needs nothing but PyTorch: build the model, ``prune.custom_from_mask`` each
    ``<p>_mask`` of the file onto ``<p>``, then ``load_state_dict(file, strict=True)``. Two
    things make that hold for every model:

    * a parameter whose module's forward never runs (``nn.MultiheadAttention``'s ``out_proj``;
      with ``example``, any module the forward does not call) would keep, after such a load,
      the stale product computed when the fresh model was reparametrised. It is stored plainly
      instead, pruned weights zero, and its mask goes into the file's record
      (:func:`torch_prune_mask` reads all the masks back);
    * tied parameters are stored under each of their names (GPT-2's ``lm_head.weight`` beside
      ``transformer.wte.weight_orig``), as a strict ``load_state_dict`` expects.
    """
    from ticketlab.export.prune_interop import hookless, reparametrised_masks

    masks = reparametrised_masks(model)
    plain = {name: _packed(masks[name]) for name in hookless(model, example)}
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in model.state_dict(keep_vars=True).items():
        tensor = value.detach()
        base = key.removesuffix("_orig").removesuffix("_mask")
        if base in plain:  # stored as the plain parameter, pruned weights zero
            if key.endswith("_orig"):
                tensors[base] = tensor * masks[base].to(tensor.dtype)
            continue
        if key.endswith("_mask"):  # the masks are 0/1: one byte each in the file instead of a float's four
            tensor = tensor.to(torch.uint8)
        elif id(value) in seen:  # a tied alias: its own copy (safetensors stores no shared tensors)
            tensor = tensor.clone()
        seen.add(id(value))
        tensors[key] = tensor
    write_export(path, tensors, TORCH_PRUNE_KIND, {"model": model_spec, "plain_masks": plain})


def load_torch_prune(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a torch-prune export into ``model`` (a fresh instance of the architecture), in eval mode.

    The masks are applied first (with placeholder weights), then the state dict fills
    ``*_orig`` and ``*_mask`` -- the order ``torch.nn.utils.prune`` needs.
    """
    tensors, _ = read_export(path, TORCH_PRUNE_KIND)
    masks = {name[: -len("_mask")]: t.bool() for name, t in tensors.items() if name.endswith("_mask")}
    to_torch_prune(model, masks)
    return filled(model, tensors, path)


def torch_prune_mask(path: str | Path, model: nn.Module) -> Mask:
    """The ticket's whole mask from a torch-prune export loaded into ``model``: the model's
    ``*_mask`` buffers plus the masks of the weights stored plainly (see :func:`save_torch_prune`)."""
    from ticketlab.export.prune_interop import reparametrised_masks

    _, record = read_export(path, TORCH_PRUNE_KIND)
    plain = {name: _unpacked(entry) for name, entry in (record.get("plain_masks") or {}).items()}
    return Mask({**reparametrised_masks(model), **plain})


def _packed(keep: torch.Tensor) -> dict[str, Any]:
    """A bool mask as JSON: its shape and its bits, packed, in base64."""
    import base64

    import numpy as np

    bits = np.packbits(keep.flatten().numpy().astype(np.uint8))
    return {"shape": list(keep.shape), "bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def _unpacked(entry: dict[str, Any]) -> torch.Tensor:
    import base64

    import numpy as np

    try:
        shape = [int(n) for n in entry["shape"]]
        count = int(np.prod(shape)) if shape else 1
        bits = np.unpackbits(np.frombuffer(base64.b64decode(entry["bits"]), dtype=np.uint8))[:count]
        return torch.from_numpy(bits.astype(bool)).reshape(shape)
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise StoreError("a torch-prune export's recorded mask is damaged") from None


def load_ticket(experiment: str | Path, level: int, replicate: int = 0, examples: int = 64,
                weights: str | Path | None = None) -> tuple[nn.Module, Mask, torch.Tensor, dict[str, Any]]:
    """(model holding the ticket's weights, its mask, ``examples`` real validation inputs, the
    model's spec) for level ``level`` of an experiment; one-line errors for what is missing.

    ``weights``: a safetensors file of the model's weights; default the ticket's final weights.
    """
    return _load_ticket(experiment, level, replicate, examples, weights)[:4]


def _load_ticket(experiment: str | Path, level: int, replicate: int, examples: int,
                 weights: str | Path | None) -> tuple[nn.Module, Mask, torch.Tensor, dict[str, Any], Callable[[], nn.Module]]:
    """:func:`load_ticket`'s values and the experiment's model factory (a fresh model per call)."""
    from ticketlab.api import Result
    from ticketlab.experiment.environment import environment
    from ticketlab.weights import load_state

    result = Result.load(experiment)
    runs = result.select(arm="ticket", level=level)
    if not runs:
        raise ConfigError(f"{experiment} has no finished ticket at level {level}; levels: "
                          f"{', '.join(map(str, sorted({r['level'] for r in result.select(arm='ticket')})))}")
    if not any(r["replicate"] == replicate for r in runs):
        raise ConfigError(f"{experiment} has no finished ticket at level {level} for replicate {replicate}; "
                          f"replicates: {', '.join(str(r['replicate']) for r in runs)}")
    env = environment(result.config)
    model = env.build(0, "cpu").eval()
    path = Path(weights) if weights is not None else result.final_weights_path(level, replicate)
    tensors = result.store.tensors(path) if weights is None else _read_weights(path)
    try:
        load_state(model, tensors)
    except RuntimeError as exc:  # another model's weights: wrong names or shapes
        raise ConfigError(f"--weights {path} are not weights of this experiment's model {result.config.model!r} "
                          f"({str(exc).splitlines()[0]})") from None
    single = is_single(env.data.x_train)
    spec = {"name": result.config.model, "input_shape": list(env.data.input_shape) if single else None,
            "num_classes": env.data.num_classes}
    example = moved(take(env.data.x_val, slice(0, examples)), "cpu")
    return model, result.mask(level, replicate), example, spec, lambda: env.build(0, "cpu")


def export_ticket(
    experiment: str | Path, level: int, fmt: str, out: str | Path, replicate: int = 0,
    weights: str | Path | None = None, examples: int = 64,
) -> ExportReport:
    """Export the ticket of ``level`` (replicate ``replicate``) of an experiment directory,
    checked by loading it into a model freshly built by the experiment's model factory."""
    check_format(fmt)
    _target(out)  # refused before the experiment is loaded
    model, mask, example, spec, factory = _load_ticket(experiment, level, replicate, examples, weights)
    return export_model(model, mask, fmt, out, example, spec, factory)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from ticketlab.io import load_tensors

    return load_tensors(path)
