"""Data that streams from the user's DataLoaders instead of living whole on the device.

For data that does not fit in memory, each split is a *factory*: a zero-argument callable
returning an iterable of ``(inputs, labels)`` batches (or dicts with ``labels``, inputs as
``data.batch`` takes them) (typically ``lambda: DataLoader(...)``).
Each epoch the training factory is called under a torch RNG seeded from (data-order seed,
epoch), so a shuffling DataLoader gives the same order in every run, and a resumed run skips
to exactly the batch an uninterrupted one would train on next. Batches move to the device as
they arrive. The all-on-device tensors (``Dataset``) stay the fast path wherever data fits.

A training loader without a length (a ``DataLoader`` over an ``IterableDataset`` that has no
``__len__``, a generator) is never counted up front, as it may never end: training reads it
as one stream of batches, calling the factory again (the next epoch's seed) whenever it ends,
and a resumed run replays the stream to its step. Such data trains for ``train.iterations``;
``train.epochs`` needs a length (ConfigError).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import torch

from ticketlab.data.batch import ModelInputs, checked, is_single, moved, split_item, take
from ticketlab.errors import ConfigError, UserCodeError
from ticketlab.seeding import derive_seed, torch_seed

BatchFactory = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def _length(loader: object) -> int | None:
    """``len(loader)``, or None where it has none (``DataLoader`` over an ``IterableDataset``
    without ``__len__`` raises TypeError)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def _pair(batch: object, split: str) -> tuple[ModelInputs, torch.Tensor]:
    """A loader's batch as ``(inputs, labels)``: a pair, a tuple ``(x1, ..., labels)`` or a dict
    with ``labels`` (``data.batch.split_item``; inputs one tensor, a tuple or a dict)."""
    where = f"the {split} loader's batch"
    x, y = split_item(batch, where)
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"{where} labels must be a tensor, got {type(y).__name__}")
    return checked(x, f"{where} inputs"), y


@dataclass(frozen=True)
class StreamingData:
    """Train/validation/test batch factories, with what is known about them up front."""

    name: str
    train: BatchFactory
    val: BatchFactory
    test: BatchFactory
    example: tuple[ModelInputs, torch.Tensor]  # the first training batch (CPU): tracing, probing, task
    batches_per_epoch: int | None  # None: the training loader has no length (a stream)
    test_size: int
    num_classes: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_factories(cls, splits: dict[str, BatchFactory]) -> "StreamingData":
        """Check each factory once (it yields pairs) and count the training batches per epoch."""
        try:
            first = _pair(next(iter(splits["train"]())), "train")
            per_epoch = _length(splits["train"]())
            test_size = sum(_pair(b, "test")[1].shape[0] for b in splits.get("test", splits["val"])())
        except (ConfigError, UserCodeError):
            raise
        except StopIteration:
            raise ConfigError("the train loader yields no batches") from None
        except Exception as exc:  # noqa: BLE001 - the user's loader
            raise UserCodeError(f"the data loader failed: {type(exc).__name__}: {exc}") from exc
        labels = first[1]
        classes = int(labels.max()) + 1 if not torch.is_floating_point(labels) and labels.numel() else 1
        return cls("stream", splits["train"], splits["val"], splits.get("test", splits["val"]),
                   (moved(first[0], "cpu"), first[1].cpu()), None if per_epoch is None else max(1, per_epoch),
                   test_size, classes)

    # The parts of the Dataset interface the engine uses.
    @property
    def input_shape(self) -> tuple[int, ...]:
        if not is_single(self.example[0]):
            raise ConfigError("the built-in models take one input tensor, and this data has several inputs; "
                              "give your own model (model='package.module:factory' or run(model=...))")
        return tuple(self.example[0].shape[1:])

    def sample(self, n: int) -> tuple[ModelInputs, torch.Tensor]:
        return take(self.example[0], slice(0, n)), self.example[1][:n]

    def train_targets(self) -> torch.Tensor:
        return self.example[1]

    def test_examples(self) -> int:
        return self.test_size

    def to(self, device: torch.device | str) -> "StreamingData":
        return replace(self, device=torch.device(device))

    # Iteration.
    def _moved(self, batches: Iterable, split: str) -> Iterator[tuple[ModelInputs, torch.Tensor]]:
        for batch in batches:
            x, y = _pair(batch, split)
            yield moved(x, self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def epoch(self, data_seed: int, epoch: int, skip: int = 0) -> Iterator[tuple[ModelInputs, torch.Tensor]]:
        """Epoch ``epoch``'s training batches in this seed's order, the first ``skip`` left out."""
        # A DataLoader draws its shuffling seed lazily, at the first batch: fetch it in the block.
        with torch_seed(derive_seed(data_seed, "epoch", epoch)):
            iterator = iter(self.train())
            head = next(iterator, None)
        batches = itertools.chain([] if head is None else [head], iterator)
        return self._moved(itertools.islice(batches, skip, None), "train")

    def stream(self, data_seed: int, skip: int = 0) -> Iterator[tuple[ModelInputs, torch.Tensor]]:
        """Training batches as one stream for a loader without a length: epoch after epoch
        (each in its seed's order) chained, the first ``skip`` batches left out."""

        def epochs() -> Iterator:
            for epoch in itertools.count():
                with torch_seed(derive_seed(data_seed, "epoch", epoch)):
                    iterator = iter(self.train())
                    head = next(iterator, None)
                if head is None:
                    raise ConfigError(f"the train loader yielded no batches in epoch {epoch}")
                yield head
                yield from iterator

        return self._moved(itertools.islice(epochs(), skip, None), "train")

    def split(self, name: str) -> Iterator[tuple[ModelInputs, torch.Tensor]]:
        return self._moved((self.val if name == "val" else self.test)(), name)
