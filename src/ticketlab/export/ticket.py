"""Export one ticket of an experiment directory, check it, and measure it against the dense model.

This is ``ticketlab export``: rebuild the model, load the chosen weights (the final ones by
default; a ``weights`` path lets early-stopped weights be exported the same way), apply the
level's mask, write the chosen format, **load the written file back** and check its outputs
against the masked dense model on real validation examples. The report then gives file size,
parameters, nonzeros and FLOPs per example beside the dense model's.

FLOPs are counted as the export executes them: the sparse format skips pruned weights, the
structured format runs its smaller dense layers, and the torch-prune and masked ONNX formats
run the full dense layers (their zeros are multiplied like any other weight).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.export._files import read_export, write_export
from ticketlab.flops import dense_and_sparse_flops
from ticketlab.export.prune_interop import apply_mask, from_torch_prune, to_torch_prune
from ticketlab.masks import Mask

FORMATS = ("sparse", "structured", "onnx", "torch-prune")
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
    model_spec: dict[str, Any] | None = None,
) -> ExportReport:
    """Export ``model`` (its weights loaded, not yet masked; left unchanged) as ``fmt`` to ``out``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    out = Path(out)
    model = copy.deepcopy(model).eval()
    dense = dense_footprint(model, example)
    masked = apply_mask(copy.deepcopy(model), mask).eval()
    with torch.no_grad():
        reference = masked(example)
    removed = None
    if fmt == "sparse":
        from ticketlab.export.sparse import load_sparse, save_sparse

        save_sparse(masked, mask, out, example, model_spec)
        loaded = load_sparse(out, model=_fresh(model) if model_spec and ":" in model_spec.get("name", "") else None)
        run: Callable[[torch.Tensor], torch.Tensor] = loaded
        params, nonzeros = _counts(_state_tensors(loaded))
        flops = dense_and_sparse_flops(loaded, None, example)[1]
    elif fmt == "structured":
        from ticketlab.export.structured import load_structured, save_structured, structured_model

        net, removed = structured_model(masked, mask, example)
        save_structured(net, out, example, model_spec, removed)
        user_model = _fresh(model) if model_spec and ":" in model_spec.get("name", "") else None
        run = loaded = load_structured(out, user_model)
        params, nonzeros = _counts(_state_tensors(loaded))
        flops = _executed_flops(loaded, example)
    elif fmt == "torch-prune":
        pruned = to_torch_prune(copy.deepcopy(model), mask)
        save_torch_prune(pruned, out, model_spec)
        run = load_torch_prune(out, _fresh(model))
        if not from_torch_prune(run).equals(mask):
            raise TicketlabError("torch-prune export: the masks read back differ from the ticket's (a bug)")
        params = _counts(_state_tensors(pruned))[0]
        nonzeros = _counts(_state_tensors(masked))[1]  # weight_orig keeps the pruned values
        flops = dense.flops
    else:
        from ticketlab.export.onnx_export import OnnxRunner, export_onnx
        from ticketlab.export.structured import structured_model

        try:  # the smaller structured network where there is one, else the dense-masked model
            source, removed = structured_model(masked, mask, example)
        except ConfigError:
            source = masked
        export_onnx(source, example, out)
        run = OnnxRunner(out)
        params, nonzeros = _counts(_state_tensors(source))
        flops = _executed_flops(source, example)
    with torch.no_grad():
        diff = float((run(example) - reference).abs().max())
    # 1e-5 of the outputs' scale: sparse and folded sums add in another order, and logits of
    # real data reach ~10-20, where float32 rounding alone is ~1e-6.
    allowed = TOLERANCE * max(1.0, float(reference.abs().max()))
    if not diff <= allowed:
        raise TicketlabError(f"the {fmt} export at {out} does not reproduce the masked model: outputs differ by "
                             f"{diff:.3g} (> {allowed:.3g}); please report this with the experiment")
    exported = Footprint(out.stat().st_size, params, nonzeros, flops)
    return ExportReport(fmt, out, dense, exported, diff, removed, run)


def _executed_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of a model that runs dense (every stored weight multiplied, zero or not)."""
    return dense_and_sparse_flops(model, {}, example)[0]


def _fresh(model: nn.Module) -> nn.Module:
    """A copy of the architecture to load an export into (its weights get replaced)."""
    return copy.deepcopy(model)


def save_torch_prune(model: nn.Module, path: str | Path, model_spec: dict[str, Any] | None = None) -> None:
    """The state dict of a ``torch.nn.utils.prune``-reparametrised model (``*_orig``, ``*_mask``) as safetensors."""
    from ticketlab.weights import state_of

    # The masks are 0/1: one byte each in the file instead of a float's four.
    tensors = {k: v.to(torch.uint8) if k.endswith("_mask") else v for k, v in state_of(model).items()}
    write_export(path, tensors, TORCH_PRUNE_KIND, {"model": model_spec})


def load_torch_prune(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a torch-prune export into ``model`` (a fresh instance of the architecture), in eval mode.

    The masks are applied first (with placeholder weights), then the state dict fills
    ``*_orig`` and ``*_mask`` -- the order ``torch.nn.utils.prune`` needs.
    """
    from ticketlab.weights import load_state

    tensors, _ = read_export(path, TORCH_PRUNE_KIND)
    masks = {name[: -len("_mask")]: t.bool() for name, t in tensors.items() if name.endswith("_mask")}
    to_torch_prune(model, masks)
    load_state(model, tensors)
    return model.eval()


def load_ticket(experiment: str | Path, level: int, replicate: int = 0, examples: int = 64,
                weights: str | Path | None = None) -> tuple[nn.Module, Mask, torch.Tensor, dict[str, Any]]:
    """(model holding the ticket's weights, its mask, ``examples`` real validation inputs, the
    model's spec) for level ``level`` of an experiment; one-line errors for what is missing.

    ``weights``: a safetensors file of the model's weights; default the ticket's final weights.
    """
    from ticketlab.api import Result
    from ticketlab.units import environment
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
    load_state(model, result.store.tensors(path) if weights is None else _read_weights(path))
    spec = {"name": result.config.model, "input_shape": list(env.data.input_shape),
            "num_classes": env.data.num_classes}
    return model, result.mask(level, replicate), env.data.x_val[:examples].cpu(), spec


def export_ticket(
    experiment: str | Path, level: int, fmt: str, out: str | Path, replicate: int = 0,
    weights: str | Path | None = None, examples: int = 64,
) -> ExportReport:
    """Export the ticket of ``level`` (replicate ``replicate``) of an experiment directory."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    model, mask, example, spec = load_ticket(experiment, level, replicate, examples, weights)
    return export_model(model, mask, fmt, out, example, spec)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from ticketlab.io import load_tensors

    return load_tensors(path)
