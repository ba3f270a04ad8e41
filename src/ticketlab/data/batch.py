"""Model inputs as users have them: one tensor, a tuple of tensors, or a dict of named tensors.

Built-in datasets feed a model one tensor (``model(x)``). Users' models often take several
(``model(image, mask)``) or named ones (a Hugging Face model's ``input_ids`` and
``attention_mask``: ``model(**batch)``). Everywhere the engine touches inputs (slicing a batch
out of the split, moving it to the device, fingerprinting it, calling the model) it goes
through these few functions, so the three shapes of input travel the same path: every tensor
in one input shares its first (example) dimension, and a batch is the same rows of each.

Labels always travel apart from the inputs. ``split_item`` takes them out of what users hand
over: an ``(inputs, labels)`` pair, a tuple ``(x1, x2, ..., labels)``, or a dict with a
``labels`` (or ``label``) entry, the Hugging Face convention.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Union

import torch

from ticketlab.errors import ConfigError

#: One tensor, a tuple of tensors, or a dict of named tensors (each with examples first).
ModelInputs = Union[torch.Tensor, tuple, dict]

LABEL_KEYS = ("labels", "label")


def is_single(x: ModelInputs) -> bool:
    """Whether ``x`` is one tensor: the fast paths (stacked replicates, sparse kernels) need it."""
    return isinstance(x, torch.Tensor)


def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], x: ModelInputs) -> ModelInputs:
    """``fn`` applied to every tensor of ``x``, the structure kept."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {name: fn(value) for name, value in x.items()}
    return tuple(fn(value) for value in x)


def named_tensors(x: ModelInputs, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every tensor of ``x``: ``prefix`` for one tensor, ``prefix.key``
    for a dict entry, ``prefix.i`` for a tuple's i-th (file keys, fingerprints, messages)."""
    if isinstance(x, torch.Tensor):
        yield prefix, x
        return
    items = x.items() if isinstance(x, dict) else enumerate(x)
    for key, value in items:
        yield f"{prefix}.{key}" if prefix else str(key), value


def rows(x: ModelInputs) -> int:
    """The number of examples in ``x`` (the first dimension of its tensors)."""
    first = next(named_tensors(x))[1]
    return int(first.shape[0])


def take(x: ModelInputs, index: torch.Tensor | slice) -> ModelInputs:
    """The examples ``index`` selects from every tensor of ``x``."""
    if isinstance(x, torch.Tensor):
        return x[index]
    return map_inputs(lambda t: t[index], x)


def moved(x: ModelInputs, device: torch.device | str, non_blocking: bool = False) -> ModelInputs:
    """``x`` with every tensor on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=non_blocking)
    return map_inputs(lambda t: t.to(device, non_blocking=non_blocking), x)


def device_of(x: ModelInputs) -> torch.device:
    return next(named_tensors(x))[1].device


def call(model: Callable[..., Any], x: ModelInputs, **kwargs: Any) -> Any:
    """``model`` on ``x``: ``model(x)``, ``model(*x)`` for a tuple, ``model(**x)`` for a dict."""
    if isinstance(x, torch.Tensor):
        return model(x, **kwargs)
    if isinstance(x, dict):
        return model(**x, **kwargs)
    return model(*x, **kwargs)


def token_ids(x: ModelInputs) -> torch.Tensor:
    """The tensor a causal LM's labels would copy: ``input_ids`` of a dict, else the first tensor."""
    if isinstance(x, dict) and "input_ids" in x:
        return x["input_ids"]
    return next(named_tensors(x))[1]


def checked(x: Any, where: str) -> ModelInputs:
    """``x`` as model inputs, or ConfigError saying what ``where`` holds instead: a tensor, or a
    non-empty tuple or dict (string keys) of tensors sharing their first dimension."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            raise ConfigError(f"{where} is a 0-dimensional tensor; inputs need examples along the first dimension")
        return x
    if isinstance(x, list):
        x = tuple(x)
    if isinstance(x, dict) and not all(isinstance(key, str) for key in x):
        raise ConfigError(f"{where} is a dict with non-string keys; name each input with a string (model(**inputs))")
    if not isinstance(x, (tuple, dict)) or not x:
        raise ConfigError(f"{where} must be a tensor, a tuple of tensors or a dict of tensors, got {type(x).__name__}")
    tensors = list(named_tensors(x))
    for name, value in tensors:
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{where} entry {name!r} is {type(value).__name__}, not a tensor")
        if value.dim() == 0:
            raise ConfigError(f"{where} entry {name!r} is 0-dimensional; inputs need examples along the first dimension")
    counts = {name: int(value.shape[0]) for name, value in tensors}
    if len(set(counts.values())) > 1:
        raise ConfigError(f"{where} entries have different numbers of examples ({counts}); every input needs one row "
                          "per example")
    return x


def split_item(item: Any, where: str) -> tuple[Any, Any]:
    """``(inputs, labels)`` from one batch or one dataset item as users have them: a pair
    ``(inputs, labels)`` (inputs a tensor, tuple or dict), a tuple ``(x1, ..., xn, labels)``, or
    a dict of inputs with a ``labels`` (or ``label``) entry. Nothing is checked but the shape."""
    if isinstance(item, dict):
        key = next((k for k in LABEL_KEYS if k in item), None)
        if key is None:
            raise ConfigError(f"{where} is a dict without 'labels' (keys: {', '.join(map(str, item))}); give the "
                              "labels under 'labels', as Hugging Face datasets do, or an (inputs, labels) pair")
        return {k: v for k, v in item.items() if k != key}, item[key]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        if len(item) == 2:
            return item[0], item[1]
        return tuple(item[:-1]), item[-1]
    raise ConfigError(f"{where} must be an (inputs, labels) pair, a tuple (inputs..., labels) or a dict with "
                      f"'labels', got {type(item).__name__}")


def stack_items(items: list[Any], where: str) -> tuple[ModelInputs, torch.Tensor]:
    """Map-style dataset items (pairs, tuples or dicts, see ``split_item``) stacked into one
    ``(inputs, labels)`` of tensors: what the all-on-device fast path trains from."""
    pairs = [split_item(item, f"{where} item {i}") for i, item in enumerate(items)]
    first = pairs[0][0]
    labels = torch.stack([torch.as_tensor(y) for _, y in pairs])
    if isinstance(first, dict):
        return {key: torch.stack([torch.as_tensor(x[key]) for x, _ in pairs]) for key in first}, labels
    if isinstance(first, (tuple, list)):
        return tuple(torch.stack([torch.as_tensor(x[i]) for x, _ in pairs]) for i in range(len(first))), labels
    return torch.stack([torch.as_tensor(x) for x, _ in pairs]), labels
