"""ONNX export of an exported (structured) or dense-masked network, and a runner for checking it.

``onnx`` and ``onnxruntime`` are optional (``pip install 'ticketlab[export]'``); without them
these functions raise ConfigError with that one line. The TorchScript-based exporter
(``dynamo=False``) is used: it needs no ``onnxscript`` and handles every built-in model, the
Transformer's attention included. The batch dimension is dynamic.

Attention is exported through its math path: ``nn.MultiheadAttention``'s inference fast path
(``aten::_native_multi_head_attention``) has no ONNX form, so it is switched off while tracing,
and a Hugging Face model's KV cache (an object, not a tensor) is off (``config.use_cache``).
A model the exporter still cannot handle is refused in one line naming the operator; what the
exporter prints meanwhile (a graph dump of the failing trace) is captured, not shown.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ticketlab.data.batch import ModelInputs, call
from ticketlab.errors import ConfigError
from ticketlab.export.outputs import for_inference, output_tensors
from ticketlab.io import write_bytes_atomic

OPSET = 17


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"the ONNX export needs the {module!r} package: pip install 'ticketlab[export]'") from None


def onnx_input_names(example: ModelInputs) -> list[str]:
    """The graph's input names: ``input`` for one tensor, a dict's keys, ``input_<i>`` for a tuple."""
    if isinstance(example, torch.Tensor):
        return ["input"]
    if isinstance(example, dict):
        return list(example)
    return [f"input_{i}" for i in range(len(example))]


def export_onnx(model: nn.Module, example_input: ModelInputs, path: str | Path) -> None:
    """Write ``model`` (eval mode, weights as they are) to ``path`` as ONNX, atomically; every
    tensor of a dict / ``ModelOutput`` / tuple output becomes one ONNX output, in order. A model
    of several inputs (a tuple: positional; a dict: keyword) gets one graph input per tensor."""

    _require("onnx")
    buffer = io.BytesIO()
    model = for_inference(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        count = len(output_tensors(call(model, example_input)))
        names = ["logits"] if count == 1 else [f"output_{i}" for i in range(count)]
        inputs = onnx_input_names(example_input)
        axes = {name: {0: "batch"} for name in [*inputs, *names]}
        if isinstance(example_input, dict):
            args, kwargs = (), dict(example_input)
        else:
            args, kwargs = (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input), None
        try:
            with _math_attention(), _captured_stderr():
                torch.onnx.export(model, args, buffer, kwargs=kwargs, input_names=inputs, output_names=names,
                                  dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        except Exception as exc:  # noqa: BLE001 - the exporter's own error types, on the user's model
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"ONNX cannot express {type(model).__name__}: {first}; "
                              f"use --format sparse or torch-prune") from None
    write_bytes_atomic(path, buffer.getvalue())


@contextlib.contextmanager
def _math_attention():
    """``nn.MultiheadAttention`` on its math path (the fast path's fused op has no ONNX form)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None:
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


@contextlib.contextmanager
def _captured_stderr():
    """Send what is written to stderr (Python's and the C++ side's file descriptor 2) to a
    temporary file that is dropped: the exporter prints a whole graph before it raises."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2: nothing to capture
            yield
            return
        try:
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class OnnxRunner:
    """An onnxruntime session on one thread, called like the torch module it came from."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The output tensor, or, for a model with several outputs, all of them in order; called
        like the module: positional inputs in order, keyword inputs by name."""
        feed = dict(zip(self.inputs, args)) | kwargs
        arrays = {name: np.ascontiguousarray(t.detach().cpu().numpy()) for name, t in feed.items() if name in self.inputs}
        outs = [torch.from_numpy(out) for out in self.session.run(None, arrays)]
        return outs[0] if len(outs) == 1 else tuple(outs)
