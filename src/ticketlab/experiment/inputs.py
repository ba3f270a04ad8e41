"""The user's objects as one value every process can rebuild: model factory, data and task.

A built-in experiment names its model and dataset, and each process looks them up. A user's
experiment passes Python objects (a factory, tensors, a ``torch.utils.data.Dataset``, a task)
or import paths (``"package.module:factory"``). Objects travel to worker processes and Ray
tasks *by value* with cloudpickle, as Ray itself does, so a factory defined in ``__main__``,
in a notebook cell or in a script read from standard input works everywhere. The config
records an import path when the object has one (``python:<name>`` otherwise), and the
experiment's name covers a *fingerprint* of the data and of the model, so changed inputs never
reuse old results. Reading results (``show``, ``report``, ``Result.load``) never needs any of it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from ticketlab.data import Dataset, load_dataset
from ticketlab.data.batch import ModelInputs, checked, map_inputs, moved, named_tensors, rows, split_item, stack_items, token_ids
from ticketlab.errors import ConfigError, UserCodeError
from ticketlab.plugins import object_label
from ticketlab.seeding import torch_seed
from ticketlab.train.task import Task

if TYPE_CHECKING:
    from ticketlab.data.stream import StreamingData

ModelFactory = Callable[[], nn.Module]
TrainFunction = Callable[[nn.Module, Any], None]  # the user's loop: fn(model, unit) (train.user_loop)


@dataclass
class Inputs:
    """What a unit builds its training from. ``data`` is CPU tensors; each process moves it once.
    ``train_fn`` is the user's own training loop (None: ticketlab's), carried with the rest."""

    model_factory: ModelFactory
    data: "Dataset | StreamingData"
    task: Task
    train_fn: TrainFunction | None = None
    _moved: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def on(self, device: torch.device) -> "Dataset | StreamingData":
        """The data on ``device``, moved once per process (the copies are not pickled)."""
        key = str(device)
        if key not in self._moved:
            self._moved[key] = self.data.to(device)
        return self._moved[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_moved": {}}

    def build(self, seed: int, device: torch.device | str = "cpu") -> nn.Module:
        """A new model from the factory, its initialisation drawn from ``seed``."""
        with torch_seed(seed), user_code("the model factory"):
            model = self.model_factory()
        if not isinstance(model, nn.Module):
            raise UserCodeError(f"the model factory returned {type(model).__name__}, not a torch.nn.Module")
        return model.to(device)


class user_code:
    """Turn an exception raised in the user's code into one line naming the component."""

    def __init__(self, component: str, unit: object | None = None, active: bool = True) -> None:
        self.component, self.unit, self.active = component, unit, active

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if not self.active or exc is None or isinstance(exc, (UserCodeError, ConfigError, KeyboardInterrupt)):
            return False
        if not isinstance(exc, Exception):
            return False
        where = f" in {self.unit}" if self.unit is not None else ""
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserCodeError(f"{self.component} failed{where}: {type(exc).__name__}: {message}") from exc


# ---------------------------------------------------------------------------- data
def _as_tensors(split: Any, name: str) -> tuple[ModelInputs, torch.Tensor]:
    """(inputs, labels) from a split as users have it (stacked once): an ``(inputs, labels)``
    pair, a tuple ``(x1, ..., labels)`` or a dict with ``labels`` of tensors (inputs one tensor,
    a tuple or a dict: ``data.batch``), or a map-style dataset of such items (a torch Dataset,
    a Hugging Face dataset: anything with ``len`` and integer indexing)."""
    if isinstance(split, (tuple, list, dict)):
        x, y = split_item(split, f"data[{name!r}]")
    elif hasattr(split, "__getitem__") and hasattr(split, "__len__"):
        try:
            count = len(split)
            items = [split[i] for i in range(count)]
        except Exception as exc:  # noqa: BLE001 - the user's Dataset
            raise UserCodeError(f"the {name} dataset could not be read item by item: "
                                f"{type(exc).__name__}: {exc}") from exc
        if not items:
            raise ConfigError(f"data[{name!r}] is empty")
        try:
            x, y = stack_items(items, f"the {name} dataset")
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - items that do not stack
            raise UserCodeError(f"the {name} dataset's items could not be stacked into tensors: "
                                f"{type(exc).__name__}: {exc}") from exc
    else:
        raise ConfigError(f"data[{name!r}] must be an (inputs, labels) pair of tensors, a dict of tensors with "
                          f"'labels', or a dataset of such items, got {type(split).__name__}")
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"data[{name!r}] labels must be a tensor, got {type(y).__name__}")
    x = checked(x, f"data[{name!r}] inputs")
    if rows(x) != y.shape[0]:
        raise ConfigError(f"data[{name!r}] has {rows(x)} inputs but {y.shape[0]} labels")
    if y.shape[0] == 0:
        raise ConfigError(f"data[{name!r}] is empty")
    for part, tensor in named_tensors(x, "inputs"):
        check_finite(tensor, name, part)
    return map_inputs(lambda t: t.detach().cpu(), x), y.detach().cpu()


def user_dataset(data: Any, num_classes: int | None = None) -> "Dataset | StreamingData":
    """Data from the user's ``{"train": ..., "val": ..., "test": ...}`` (``val`` drives early
    stopping; without ``test`` the validation split is also reported as the test split).

    Each split is an ``(inputs, labels)`` pair of tensors (inputs may be a tuple or a dict of
    tensors; a dict with ``labels`` is its own pair), or a map-style dataset of such items (a
    torch ``Dataset``, a Hugging Face dataset), stacked once into tensors: the all-on-device
    fast path. For data that does not fit in memory, a split is a zero-argument factory
    returning an iterable of such batches, e.g. ``lambda: DataLoader(...)`` (streamed).
    """
    from ticketlab.data.stream import StreamingData

    if isinstance(data, (Dataset, StreamingData)):
        return data
    if not isinstance(data, dict) or "train" not in data or "val" not in data:
        raise ConfigError("data must be a dict with 'train' and 'val' (and 'test') splits, each (inputs, labels), "
                          "a torch Dataset, or a function returning a DataLoader")
    unknown = sorted(set(data) - {"train", "val", "test"})
    if unknown:
        raise ConfigError(f"data has an unknown split {unknown[0]!r}; use train, val and test")
    factories = [callable(v) and not isinstance(v, torch.utils.data.Dataset) and not hasattr(v, "__getitem__")
                 for v in data.values()]
    if any(factories):
        if not all(factories):
            raise ConfigError("give every split as a loader factory, or none: streaming and in-memory splits do not mix")
        return StreamingData.from_factories(data)
    x_train, y_train = _as_tensors(data["train"], "train")
    x_val, y_val = _as_tensors(data["val"], "val")
    x_test, y_test = _as_tensors(data.get("test", data["val"]), "test")
    if num_classes is None:
        num_classes = int(y_train.max()) + 1 if not torch.is_floating_point(y_train) and y_train.numel() else 1
    return Dataset("user", x_train, y_train, x_val, y_val, x_test, y_test, num_classes)


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    """A contiguous tensor's bytes; 0-dim tensors (BatchNorm's ``num_batches_tracked``) included."""
    return tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def data_fingerprint(data: Dataset, version: str | None = None) -> str:
    """SHA-256 of every tensor's dtype, shape and bytes (or of the user's version string:
    streamed data cannot be hashed without reading it all, so it needs one)."""
    digest = hashlib.sha256()
    if version is not None:
        digest.update(f"version:{version}".encode())
        return digest.hexdigest()[:16]
    if not isinstance(data, Dataset):
        raise ConfigError("streamed data needs a version (data.version = '...' in the config, --data-version, or "
                          "run(data_version='...')): a name for this version of the data, so changed data is a new experiment")
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    return _tensors_digest(digest, {key: tensor for name in names for key, tensor in named_tensors(getattr(data, name), name)})


def version_of(config: Any, data_version: str | None = None) -> str | None:
    """The data's version: ``run(data_version=...)`` or the config's ``data.version``; given
    both, they must agree (ConfigError), so neither silently overrides the other."""
    configured = config.data.version
    if data_version is not None and configured is not None and data_version != configured:
        raise ConfigError(f"data_version={data_version!r} and the config's data.version={configured!r} disagree; "
                          "give one, or the same in both")
    return data_version if data_version is not None else configured


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of parameter and buffer names, shapes, dtypes and values (the initial weights)."""
    from ticketlab.weights import state_of

    return _tensors_digest(hashlib.sha256(), state_of(model))


def _tensors_digest(digest: "hashlib._Hash", tensors: dict[str, torch.Tensor]) -> str:
    """``digest`` updated with each tensor's name, dtype, shape and bytes, as 16 hex digits."""
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(_raw_bytes(tensor))
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------- built-ins
def builtin_factory(model: str, input_shape: tuple[int, ...], num_classes: int) -> ModelFactory:
    from ticketlab.models import build_model

    return functools.partial(build_model, model, input_shape, num_classes)


def import_factory(path: str) -> ModelFactory:
    from ticketlab.plugins import import_object

    factory = import_object(path, "model")
    if not callable(factory):
        raise ConfigError(f"model {path!r} is not callable; give a function or class that returns an nn.Module")
    return factory


def named_dataset(dataset: str, data_dir: str | None, split_seed: int) -> Dataset:
    """A built-in dataset, or ``"package.module:function"`` returning the splits ``run(data=...)`` takes."""
    if ":" not in dataset:
        return load_dataset(dataset, data_dir, split_seed, "cpu")
    from ticketlab.plugins import import_object

    loader = import_object(dataset, "dataset")
    with user_code(f"the dataset function {dataset}"):
        splits = loader()
    return user_dataset(splits)


@functools.lru_cache(maxsize=4)
def builtin_inputs(model: str, dataset: str, data_dir: str | None, split_seed: int) -> Inputs:
    """Inputs of an experiment that names its model and dataset (built in or import paths)."""
    for kind, name in (("model", model), ("data", dataset)):
        if name.startswith("python:"):
            raise ConfigError(f"this experiment's {kind} was given as a Python object ({name}); "
                              f"pass it again (ticketlab.run(..., {kind}=...)) to run or resume it")
    data = named_dataset(dataset, data_dir, split_seed)
    factory = import_factory(model) if ":" in model else builtin_factory(model, data.input_shape, data.num_classes)
    return Inputs(factory, data, Task().bind(data.train_targets()))


def load_init_weights(path: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Initial weights from ``path`` (safetensors, or a state dict loaded with ``weights_only=True``:
    no code runs), checked name by name against ``model`` (which may live on ``meta``)."""
    from ticketlab.roles import tied_aliases
    from ticketlab.weights import state_of

    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            weights = load_file(path)
        else:
            weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise ConfigError(f"init_weights {path!r} cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ConfigError(f"init_weights {path!r} is not a state dict of tensors")
    expected = state_of(model)
    aliases = tied_aliases(model)  # a full state_dict lists tied tensors under every name
    weights = {k: v for k, v in weights.items() if k not in aliases}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        what = f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which the model does not"
        raise ConfigError(f"init_weights {path!r} does not fit the model: it {what}")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ConfigError(f"init_weights {path!r}: {name} has shape {list(tensor.shape)}, "
                              f"the model's is {list(expected[name].shape)}")
    return {k: weights[k].to(expected[k].dtype).clone() for k in expected}


def prepare_inputs(config: Any, model: Any = None, data: Any = None, task: Task | None = None,
                   data_version: str | None = None, train: TrainFunction | None = None) -> tuple[Any, Inputs | None]:
    """The config with the user's objects recorded (labels, fingerprints) and their Inputs.

    Returns ``(config, None)`` for a purely built-in experiment, which every process rebuilds
    from names. Nothing is written; errors are ConfigError or UserCodeError.
    """
    from ticketlab.config import Config
    from ticketlab.experiment.names import resolve_names

    raw = config.to_dict() if isinstance(config, Config) else dict(config or {})
    if model is not None:
        raw["model"] = model if isinstance(model, str) else object_label(model)
    if data is not None:
        raw["data"] = {**raw.get("data", {}), "dataset": f"python:{getattr(data, 'name', None) or 'data'}"}
    config = Config.from_dict(raw)
    resolve_names(config)
    if task is None and config.task_fingerprint is not None:
        raise ConfigError(f"this experiment was trained with a custom task ({config.task}); pass the same task "
                          "again (ticketlab.run(..., task=ticketlab.Task(...))) to run or resume it")
    _check_train_function(config, train)
    user_model = model is not None or ":" in config.model
    user_data = data is not None or ":" in config.data.dataset
    if not (user_model or user_data or task is not None or config.init_weights or train is not None):
        return config, None
    if data is not None:
        dataset = user_dataset(data)
    else:
        dataset = named_dataset(config.data.dataset, config.data.data_dir, config.data.split_seed)
    if model is None:
        factory = import_factory(config.model) if ":" in config.model else builtin_factory(
            config.model, dataset.input_shape, dataset.num_classes)
    elif isinstance(model, str):
        factory = import_factory(model) if ":" in model else builtin_factory(model, dataset.input_shape, dataset.num_classes)
    elif callable(model):
        factory = model
    else:
        raise ConfigError(f"model must be a built-in name, an import path or a callable returning an nn.Module, "
                          f"got {type(model).__name__}")
    if task is not None and not isinstance(task, Task):
        raise ConfigError(f"task must be a ticketlab.Task, got {type(task).__name__}")
    inputs = Inputs(factory, dataset, (task or Task()).bind(dataset.train_targets()), train)
    changes: dict[str, Any] = {}
    if train is not None:
        from ticketlab.train.task import code_identity

        changes["train_loop"] = code_identity(train)
    if user_model or config.init_weights:
        built = inputs.build(0, "cpu")
        if config.init_weights:
            from ticketlab.weights import load_state

            load_state(built, load_init_weights(config.init_weights, built))
        changes["model_fingerprint"] = model_fingerprint(built)
    if user_data:
        changes["data"] = {"fingerprint": data_fingerprint(dataset, version_of(config, data_version))}
    if task is not None:  # a changed loss or score is another experiment (the default names none)
        identity = task.identity(dataset.train_targets())
        changes["task"], changes["task_fingerprint"] = identity if identity else (None, None)
    return (config.replace(**changes) if changes else config), inputs


def _check_train_function(config: Any, train: TrainFunction | None) -> None:
    """ConfigError when ``train`` is not a function, or a stored experiment trained by the user's
    loop is resumed without it (ticketlab's loop would train its remaining units differently)."""
    if train is not None and not callable(train):
        raise ConfigError(f"train must be a function train(model, unit), got {type(train).__name__}")
    if train is None and config.train_loop is not None:
        raise ConfigError(f"this experiment was trained by your training function ({config.train_loop.split('@')[0]}); "
                          "pass it again (ticketlab.run(..., train=...)) to run or resume it")


def _splits(data: "Dataset | StreamingData") -> list[tuple[str, ModelInputs, torch.Tensor]]:
    """Every split held in memory as (name, inputs, labels); streamed data shows its first batch
    only (reading all of it up front would cost an epoch)."""
    if isinstance(data, Dataset):
        return [("train", data.x_train, data.y_train), ("val", data.x_val, data.y_val),
                ("test", data.x_test, data.y_test)]
    x, y = data.sample(len(data.example[1]))
    return [("train (first batch)", x, y)]


def _first_bad(bad: torch.Tensor) -> int:
    """The index of the first example flagged in ``bad`` (any element of the example)."""
    return int(bad.reshape(bad.shape[0], -1).any(1).nonzero()[0, 0]) if bad.dim() else 0


def _all_finite(values: torch.Tensor) -> bool:
    """Whether a floating tensor holds no NaN or infinity. Its sum is non-finite whenever one
    element is (and, rarely, when finite values overflow it: then every element is tested); a
    sum reads the tensor once without a mask as large as the data, 30x faster on CIFAR-10."""
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def check_finite(values: torch.Tensor, split: str, what: str) -> None:
    """ConfigError naming the first example of ``split`` whose ``what`` holds NaN or infinity."""
    if torch.is_floating_point(values) and not _all_finite(values):
        row = _first_bad(~torch.isfinite(values))
        raise ConfigError(f"data {split!r} {what} contain NaN or infinity (example {row} is the first); "
                          "remove or fix those examples before training")


def check_not_copying(x: ModelInputs, y: torch.Tensor, split: str, task: Task) -> None:
    """ConfigError when token labels equal the inputs (Hugging Face's ``labels = input_ids``,
    which its causal-LM models shift internally): ticketlab's cross-entropy compares each
    position's output with its own label, so the model would silently learn to copy its input.
    A custom loss (which may shift) and float data (an autoencoder reconstructs its input) pass."""
    x = token_ids(x)
    if (task.kind == "classification" and task.loss is None and x.shape == y.shape and x.dim() >= 2
            and not torch.is_floating_point(x) and not torch.is_floating_point(y) and torch.equal(x, y)):
        raise ConfigError(f"data {split!r} labels equal the inputs (Hugging Face's labels = input_ids, which its "
                          "models shift internally); ticketlab's loss compares each output with its own label, so "
                          "the model would learn to copy its input: give the next tokens as labels (inputs "
                          "ids[:, :-1], labels ids[:, 1:]), or use Task(loss='model') when the model shifts "
                          "labels internally and returns its loss")


def check_data(data: "Dataset | StreamingData", task: Task, outputs: int | None) -> None:
    """ConfigError naming the split and example when inputs or labels cannot train: NaN or
    infinite values anywhere, or (classification with the default loss) labels that are not
    class indices 0..outputs-1 of the model's ``outputs`` classes, or token labels equal to the
    inputs (``check_not_copying``).

    Without it such data trains on: a NaN label makes the loss NaN and the unit is reported as
    diverged ("lower the learning rate"), a label above the classes fails mid-run, and a label
    of -100 is silently ignored by cross-entropy. One vectorised pass per split, once per run,
    before anything is written.
    """
    for split, x, y in _splits(data):
        for part, tensor in named_tensors(x, "inputs"):
            check_finite(tensor, split, part)
        check_finite(y, split, "labels")
        check_not_copying(x, y, split, task)
        if task.kind != "classification" or task.loss is not None or torch.is_floating_point(y) or not y.numel():
            continue  # float labels under classification: Task.check says so; a custom loss reads its own labels
        if y.dtype == torch.bool or y.is_complex():
            raise ConfigError(f"data {split!r} labels are {y.dtype}; classification needs integer class indices")
        low, high = int(y.min()), int(y.max())
        if low < 0 or (outputs is not None and high >= outputs):
            bad = y < 0 if low < 0 else y >= outputs
            row = _first_bad(bad)
            label = int(y.reshape(y.shape[0], -1)[row][bad.reshape(y.shape[0], -1)[row]][0])
            limit = f"0..{outputs - 1} (the model outputs {outputs} classes)" if outputs is not None else "0 or more"
            raise ConfigError(f"data {split!r} labels must be class indices {limit}, but example {row} has label "
                              f"{label}; fix the labels or the model's number of outputs")


def probe(inputs: Inputs, config: Any, device: torch.device) -> None:
    """Build the model and run one forward and backward pass on one batch, before anything is
    written: the user's factory, model, data and loss fail here as one line, not mid-experiment."""
    model = inputs.build(0, device)
    model.train()
    x, y = inputs.data.sample(config.train.batch_size)
    x, y = moved(x, device), y.to(device)
    from ticketlab.train.task import prediction

    with user_code("the model's forward pass"):
        output = inputs.task.output_of(model, x, y)
    pred = prediction(output)
    check_data(inputs.data, inputs.task, pred.shape[-1] if pred.dim() >= 2 else None)  # every split, first
    inputs.task.check(pred.detach(), y)
    with user_code("the loss"):
        loss = inputs.task.loss_from(output, y)
    if loss.dim() != 0:
        raise ConfigError(f"the loss must be a scalar (the batch mean), got shape {list(loss.shape)}")
    with user_code("the backward pass"):
        loss.backward()
