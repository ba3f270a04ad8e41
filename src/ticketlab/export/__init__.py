"""Ship a ticket: its masked weights in the formats other tools run.

* :mod:`~ticketlab.export.prune_interop` -- ``torch.nn.utils.prune``'s ``weight_orig``/``weight_mask``
  format, both ways, and plain in-place masking;
* :mod:`~ticketlab.export.sparse` -- pruned layers as CSR in safetensors, and a loader that runs
  sparse matmuls;
* :mod:`~ticketlab.export.structured` -- units and channels that pruning left dead removed, giving
  a smaller dense network;
* :mod:`~ticketlab.export.onnx_export` -- the structured (or dense-masked) network as ONNX;
* :mod:`~ticketlab.evidence.flops` -- weight-multiply FLOPs per example, dense against sparse;
* :mod:`~ticketlab.export.ticket` -- all of it for one ticket of an experiment directory (the CLI's
  ``ticketlab export``), with the size/parameters/nonzeros/FLOPs report.

Nothing here is imported by training; the optional ``onnx``/``onnxruntime`` packages are needed
only by the ONNX export (``pip install ticketlab[export]``).
"""

from ticketlab.errors import ConfigError
from ticketlab.evidence.flops import dense_and_sparse_flops
from ticketlab.export.prune_interop import apply_mask, from_torch_prune, to_torch_prune

__all__ = ["FORMATS", "check_format", "apply_mask", "to_torch_prune", "from_torch_prune", "dense_and_sparse_flops"]

#: The formats ``ticketlab export --format`` writes: the one list, read by the CLI's help and by
#: :func:`check_format` (the API's check, made before an experiment is loaded).
FORMATS: tuple[str, ...] = ("sparse", "structured", "onnx", "torch-prune")


def check_format(fmt: str) -> None:
    """ConfigError naming the choices unless ``fmt`` is one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
