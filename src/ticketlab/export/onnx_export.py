"""ONNX export of an exported (structured) or dense-masked network, and a runner for checking it.

``onnx`` and ``onnxruntime`` are optional (``pip install 'ticketlab[export]'``); without them
these functions raise ConfigError with that one line. The TorchScript-based exporter
(``dynamo=False``) is used: it needs no ``onnxscript`` and handles every built-in model, the
Transformer's attention included. The batch dimension is dynamic.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.io import write_bytes_atomic

OPSET = 17


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"the ONNX export needs the {module!r} package: pip install 'ticketlab[export]'") from None


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path) -> None:
    """Write ``model`` (eval mode, weights as they are) to ``path`` as ONNX, atomically."""
    _require("onnx")
    buffer = io.BytesIO()
    model = model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(model, (example_input,), buffer, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    write_bytes_atomic(path, buffer.getvalue())


class OnnxRunner:
    """An onnxruntime session on one thread, called like the torch module it came from."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {self.input: np.ascontiguousarray(x.numpy())})
        return torch.from_numpy(out)
