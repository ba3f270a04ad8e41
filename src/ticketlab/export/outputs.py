"""What an export is compared on: a model's output tensors, and the model set up for inference.

Its own module because both the export check (``ticket.py``) and the ONNX writer
(``onnx_export.py``) need it, and neither should import the other for it."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn


def output_tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a model's output, in order: the tensor itself, or every tensor held by a
    dict / ``ModelOutput`` / tuple / list (nested). Anything else (a KV-cache object, None, a
    string) is not an output to compare and is left out."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        items: Any = output.values()
    elif isinstance(output, (tuple, list)):
        items = output
    else:
        return []
    return [tensor for item in items for tensor in output_tensors(item)]


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` in eval mode, with a Hugging Face model's KV cache off (``config.use_cache``):
    the cache is an object, not an output, and the ONNX exporter cannot trace it."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "use_cache", None):
        config.use_cache = False
    return model.eval()
