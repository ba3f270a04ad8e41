"""Sparse export: the pruned weights as CSR in safetensors, and a loader that runs sparse matmuls.

File layout (see ``_files``): each pruned weight ``W`` is stored as three tensors,
``<name>.crow_indices``, ``<name>.col_indices`` and ``<name>.values``, of ``W`` viewed as a
matrix (``shape[0]`` rows; a conv kernel's other dimensions flattened into columns), with
indices in the smallest integer type that holds them -- at a few percent of weights remaining
the indices, not the values, would otherwise dominate the file. Everything else (biases,
unpruned weights, embeddings) is stored dense. The JSON record describes the architecture:

* a *chain* (``ticketlab.export.chain``: LeNet, ``mlp_*``, ``conv*``, any plain Sequential):
  the layer list itself, so the loader needs nothing but the file;
* any other model (the Transformer, a user's model): its registry name and data shape; the
  loader builds it from ticketlab's model registry (or takes the user's module) and swaps each
  pruned ``nn.Linear`` for a :class:`SparseLinear`.

What runs sparse: Linear layers (CSR ``@`` dense). Convolutions are stored as CSR but run as
dense masked kernels (PyTorch has no sparse convolution on CPU), and so do the projections
inside ``nn.MultiheadAttention``, which reads its weights directly rather than calling them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ticketlab.errors import ConfigError, StoreError
from ticketlab.export._files import read_export, recorded_model, write_export
from ticketlab.export.chain import ChainNet, build_layer, describe_input, is_weighted, ops_of

KIND = "ticketlab-sparse"
_PARTS = ("crow_indices", "col_indices", "values")


def _smallest_int(values: torch.Tensor) -> torch.Tensor:
    top = int(values.max()) if values.numel() else 0
    for dtype in (torch.int16, torch.int32):
        if top <= torch.iinfo(dtype).max:
            return values.to(dtype)
    return values.to(torch.int64)


def csr_parts(weight: torch.Tensor, keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """The kept entries of ``weight`` (viewed as ``shape[0]`` rows) as compact CSR arrays."""
    matrix = weight.detach().reshape(weight.shape[0], -1).cpu()
    kept = keep.reshape(matrix.shape).cpu().bool()
    crow = torch.zeros(matrix.shape[0] + 1, dtype=torch.int64)
    crow[1:] = kept.sum(dim=1).cumsum(0)
    col = kept.nonzero()[:, 1]  # row-major order, as CSR wants
    return {"crow_indices": _smallest_int(crow), "col_indices": _smallest_int(col),
            "values": matrix[kept].contiguous()}


def csr_tensor(parts: Mapping[str, torch.Tensor], shape: list[int]) -> torch.Tensor:
    """A torch sparse CSR matrix from stored parts; StoreError when they do not describe ``shape``."""
    rows, cols = shape[0], (int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1)
    crow, col, values = (parts[p] for p in _PARTS)
    index = torch.int32 if values.numel() < 2**31 else torch.int64
    if crow.numel() != rows + 1 or col.numel() != values.numel() or (col.numel() and int(col.max()) >= cols):
        raise StoreError(f"sparse weight of shape {shape} has inconsistent CSR indices")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow.to(index), col.to(index), values, (rows, cols), check_invariants=True)


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` a sparse CSR matrix: the work is proportional to W's nonzeros.

    Computed as ``(W @ x^T)^T`` -- sparse times dense, the product PyTorch's CPU kernels are
    fastest at (``x @ W^T`` with a sparse right operand is several times slower) -- over the
    last dimension of ``x`` (any leading dimensions, like ``nn.Linear``); one example goes
    through ``torch.mv``, which has the least per-call overhead.

    For a batch in the usual batch-major layout, ``x^T`` is built by gathering only the input
    features some stored weight reads: one pass that both transposes and drops the inputs
    pruning removed entirely (IMP prunes MNIST's border pixels away); at a few percent of
    weights remaining that copy is otherwise a large part of the layer's time. Between two
    sparse layers the activations stay in the features-by-batch layout, so no copy is made.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        columns = weight.col_indices().long()
        live = torch.unique(columns)
        compact = torch.full((self.in_features,), -1, dtype=columns.dtype)
        compact[live] = torch.arange(live.numel())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            narrow = torch.sparse_csr_tensor(weight.crow_indices(), compact[columns].to(weight.col_indices().dtype),
                                             weight.values(), (self.out_features, live.numel()),
                                             check_invariants=False)  # derived from a checked CSR
        self.register_buffer("live", live, persistent=False)
        self.register_buffer("narrow", narrow, persistent=False)

    def weight_counts(self) -> tuple[int, int]:
        """(dense weights, stored nonzeros), for ``ticketlab.evidence.flops``."""
        return self.out_features * self.in_features, int(self.weight.values().numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] == 1:  # one example: a sparse matrix-vector product has the least overhead
            out = torch.mv(self.weight, flat[0]).unsqueeze(0)
            if self.bias is not None:
                out = out + self.bias
        else:
            rows = flat.t()  # features x batch: contiguous (free) when the previous layer was a SparseLinear
            weight = self.weight
            if not rows.is_contiguous():  # a copy is needed anyway: copy only the inputs a weight reads
                rows, weight = _gather_rows(rows, self.live), self.narrow
            if self.bias is not None:  # bias added by the kernel
                out = torch.addmm(self.bias.unsqueeze(1), weight, rows).t()
            else:
                out = torch.sparse.mm(weight, rows).t()
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight_counts()[1]}"


def _gather_rows(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` as a contiguous tensor, for a strided (transposed) ``rows``.

    On CPU, outside autograd, numpy's fancy indexing does this gather-and-transpose about twice
    as fast as torch's index kernels (bench/export.py); elsewhere torch's indexing is used.
    """
    if rows.device.type == "cpu" and not rows.requires_grad and rows.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(rows.numpy()[index.numpy()])
    return rows[index]


def save_sparse(
    model: nn.Module, mask: Mapping[str, torch.Tensor], path: str | Path, example_input: torch.Tensor,
    model_spec: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` (its weights loaded) with the ``mask``-ed weights as CSR to ``path``.

    ``model_spec`` (``{"name", "input_shape", "num_classes"}``) is needed only for a model that
    is not a chain: it is how the loader rebuilds the architecture.
    """
    params = dict(model.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    csr: dict[str, list[int]] = {}

    def put(key: str, name: str) -> None:
        tensor = params[name] if name in params else dict(model.named_buffers())[name]
        if name in mask:
            for part, value in csr_parts(tensor, mask[name]).items():
                tensors[f"{key}.{part}"] = value
            csr[key] = list(tensor.shape)
        else:
            tensors[key] = tensor.detach().cpu()

    chain = ops_of(model)
    record: dict[str, Any] = {"input": describe_input(example_input)}
    if chain is not None:
        record["chain"] = [op for op, _, _ in chain]
        for index, (op, name, _) in enumerate(chain):
            if is_weighted(op):
                put(f"{index}.weight", f"{name}.weight")
                if op["bias"]:
                    put(f"{index}.bias", f"{name}.bias")
    else:
        if model_spec is None:
            raise ConfigError("this model is not a plain chain of layers; the sparse export needs its model "
                              "name and data shape (model_spec) to rebuild it")
        from ticketlab.weights import state_of

        record["model"] = model_spec
        for name in state_of(model):
            put(name, name)
    unknown = set(mask) - set(params)
    if unknown:
        raise ConfigError(f"the mask names {sorted(unknown)[:3]}, which are not parameters of this model")
    record["csr"] = csr
    write_export(path, tensors, KIND, record)


def _weight(tensors: dict[str, torch.Tensor], csr: dict[str, list[int]], key: str) -> torch.Tensor:
    """The tensor stored under ``key``, densified to its shape if stored as CSR."""
    if key in csr:
        return csr_tensor({p: tensors[f"{key}.{p}"] for p in _PARTS}, csr[key]).to_dense().reshape(csr[key])
    try:
        return tensors[key]
    except KeyError:
        raise StoreError(f"the export has no tensor {key!r}") from None


def load_sparse(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The network of a sparse export, in eval mode, its pruned Linear layers running on CSR.

    Reads only tensors and JSON. A chain rebuilds from the file alone; another model is built
    from ticketlab's registry by name, or pass ``model`` (a freshly built instance of the same
    architecture, e.g. for a model given as an import path): its weights are replaced.
    """
    tensors, record = read_export(path, KIND)
    csr = record["csr"]
    if "chain" in record:
        layers = []
        for index, op in enumerate(record["chain"]):
            layer = build_layer(op)
            if is_weighted(op):
                key = f"{index}.weight"
                bias = _weight(tensors, csr, f"{index}.bias") if op["bias"] else None
                if op["op"] == "linear" and key in csr:
                    layer = SparseLinear(csr_tensor({p: tensors[f"{key}.{p}"] for p in _PARTS}, csr[key]), bias)
                else:
                    _fill(layer, {"weight": _weight(tensors, csr, key), **({"bias": bias} if bias is not None else {})})
            layers.append(layer)
        return ChainNet(nn.Sequential(*layers)).eval()
    return _sparsify(recorded_model(record["model"], model), tensors, csr).eval()


@torch.no_grad()
def _fill(module: nn.Module, values: dict[str, torch.Tensor]) -> None:
    for name, value in values.items():
        target = getattr(module, name)
        if tuple(target.shape) != tuple(value.shape):
            raise StoreError(f"stored {name} has shape {tuple(value.shape)}, the layer {tuple(target.shape)}")
        target.copy_(value)


def _sparsify(model: nn.Module, tensors: dict[str, torch.Tensor], csr: dict[str, list[int]]) -> nn.Module:
    """Load the stored weights into ``model``, then swap each CSR-stored Linear for a SparseLinear."""
    from ticketlab.weights import load_state

    stored = {key.rsplit(".", 1)[0] if key.endswith(".values") else key for key in tensors
              if not key.endswith((".crow_indices", ".col_indices"))}
    load_state(model, {key: _weight(tensors, csr, key) for key in stored})
    for module_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{module_name}.{child_name}" if module_name else child_name
            # MultiheadAttention reads out_proj.weight itself: that Linear must stay a Linear.
            if isinstance(child, nn.Linear) and not isinstance(module, nn.MultiheadAttention):
                key = f"{full}.weight"
                if key in csr:
                    weight = csr_tensor({p: tensors[f"{key}.{p}"] for p in _PARTS}, csr[key])
                    setattr(module, child_name, SparseLinear(weight, child.bias.detach() if child.bias is not None else None))
    return model
