"""A network as a chain of layers, described in JSON: what the sparse and structured exports store.

Many tickets are a plain chain -- LeNet and the ``mlp_*`` family (Flatten, Linear, ReLU, ...),
the ``conv*`` family (Conv2d, ReLU, MaxPool2d, ..., Flatten, Linear, ...), any ``nn.Sequential``.
Such a network is fully described by a list of small JSON records (``{"op": "linear",
"in_features": 784, ...}``) plus its tensors, so an exported file rebuilds it with no code
from the file and no pickle: the loader maps each ``op`` to a PyTorch module it constructs.

``ops_of(model)`` gives a model's chain, or None when the model is not recognisably one (then
the exporters fall back to their per-module paths). ``ChainNet`` runs a chain, optionally
gathering a subset of input features first (the structured export drops inputs that no
surviving weight reads).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ticketlab.errors import ConfigError

Op = dict[str, Any]

# Elementwise activations by name: the exported files name them, the loader builds them.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "identity": nn.Identity,
}
_ACTIVATION_TYPES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.GELU: "gelu",
                     nn.Identity: "identity", nn.Dropout: "identity"}  # dropout: exports run in eval mode


def _sequential_parts(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """(name, module) of the layers of a model whose forward is known to be its Sequential parts in order."""
    from ticketlab.models.conv import ConvNet
    from ticketlab.models.mlp import MLP

    if type(model) is MLP:
        roots = [("layers", model.layers)]
    elif type(model) is ConvNet:
        roots = [("features", model.features), ("classifier", model.classifier)]
    elif type(model) is nn.Sequential:
        roots = [("", model)]
    else:
        return None
    parts: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if type(child) is nn.Sequential:
                walk(full, child)
            else:
                parts.append((full, child))

    for prefix, root in roots:
        walk(prefix, root)
    return parts


def _op(module: nn.Module) -> Op | None:
    """The JSON record of one layer, or None for a layer a chain cannot describe."""
    kind = type(module)
    if kind is nn.Linear:
        return {"op": "linear", "in_features": module.in_features, "out_features": module.out_features,
                "bias": module.bias is not None}
    if kind is nn.Conv2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return None
        return {"op": "conv2d", "in_channels": module.in_channels, "out_channels": module.out_channels,
                "kernel_size": list(module.kernel_size), "stride": list(module.stride),
                "padding": list(module.padding), "dilation": list(module.dilation), "groups": module.groups,
                "bias": module.bias is not None}
    if kind is nn.MaxPool2d:
        return {"op": "maxpool2d", "kernel_size": module.kernel_size, "stride": module.stride,
                "padding": module.padding, "dilation": module.dilation, "ceil_mode": module.ceil_mode}
    if kind is nn.Flatten:
        return {"op": "flatten", "start_dim": module.start_dim, "end_dim": module.end_dim}
    if kind in _ACTIVATION_TYPES:
        return {"op": _ACTIVATION_TYPES[kind]}
    return None


def ops_of(model: nn.Module) -> list[tuple[Op, str, nn.Module]] | None:
    """The model as a chain: (op, module name, module) per layer; None when it is not a known chain."""
    parts = _sequential_parts(model)
    if parts is None:
        return None
    chain = []
    for name, module in parts:
        op = _op(module)
        if op is None:
            return None
        chain.append((op, name, module))
    return chain


def is_weighted(op: Op) -> bool:
    return op["op"] in ("linear", "conv2d")


def build_layer(op: Op) -> nn.Module:
    """A fresh module for one op (weights are filled in by the caller)."""
    kind = op["op"]
    if kind == "linear":
        return nn.Linear(op["in_features"], op["out_features"], bias=op["bias"])
    if kind == "conv2d":
        return nn.Conv2d(op["in_channels"], op["out_channels"], tuple(op["kernel_size"]), tuple(op["stride"]),
                         tuple(op["padding"]), tuple(op["dilation"]), op["groups"], bias=op["bias"])
    if kind == "maxpool2d":
        return nn.MaxPool2d(op["kernel_size"], op["stride"], op["padding"], op["dilation"], ceil_mode=op["ceil_mode"])
    if kind == "flatten":
        return nn.Flatten(op["start_dim"], op["end_dim"])
    if kind in ACTIVATIONS:
        return ACTIVATIONS[kind]()
    raise ConfigError(f"unknown layer {kind!r} in an exported file (made by a newer ticketlab?)")


class ChainNet(nn.Module):
    """``body(x)``, after keeping only the input features listed in ``input_index`` (if any).

    ``input_index`` indexes the input flattened from dimension 1 (an image's pixels, for an
    MLP). Its values are in the exported file, so a caller feeding the network from another
    pipeline can skip computing the dropped inputs altogether.
    """

    def __init__(self, body: nn.Sequential, input_index: torch.Tensor | None = None) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("input_index", input_index if input_index is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_index is not None:
            x = x.flatten(1).index_select(1, self.input_index)
        return self.body(x)


def describe_input(example: Any) -> dict[str, Any]:
    """The per-example shape and dtype of ``example``; of each tensor (by name) for a model
    that takes several (a tuple or dict: ``data.batch``)."""
    from ticketlab.data.batch import is_single, named_tensors

    if is_single(example):
        return {"shape": list(example.shape[1:]), "dtype": str(example.dtype).removeprefix("torch.")}
    return {"inputs": {name: describe_input(t) for name, t in named_tensors(example)}, "kind": type(example).__name__}


def example_from(description: dict[str, Any], batch: int = 2) -> Any:
    """A zero input of the recorded per-example shape and dtype (ONNX tracing, smoke checks)."""
    if "inputs" in description:
        parts = {name: example_from(d, batch) for name, d in description["inputs"].items()}
        return tuple(parts.values()) if description.get("kind") == "tuple" else parts
    dtype = getattr(torch, description["dtype"])
    return torch.zeros(batch, *description["shape"], dtype=dtype)


