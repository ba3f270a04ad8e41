"""The Dataset value type: what every loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.data.batch import ModelInputs, is_single, moved, take
from ticketlab.errors import ConfigError


@dataclass(frozen=True)
class Dataset:
    """Train/validation/test splits as tensors (features float32, or int64 token ids for
    token datasets such as modadd; labels int64). A user's inputs may also be a tuple or a dict
    of tensors (``data.batch``: several inputs, Hugging Face's ``input_ids``/``attention_mask``)."""

    name: str
    x_train: ModelInputs
    y_train: torch.Tensor
    x_val: ModelInputs
    y_val: torch.Tensor
    x_test: ModelInputs
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (1, 28, 28) or (40,): what a built-in model is built for."""
        if not is_single(self.x_train):
            raise ConfigError("the built-in models take one input tensor, and this data has several inputs; "
                              "give your own model (model='package.module:factory' or run(model=...))")
        return tuple(self.x_train.shape[1:])

    def sample(self, n: int) -> tuple[ModelInputs, torch.Tensor]:
        """The first ``n`` training examples (tracing the model, probing the user's code)."""
        return take(self.x_train, slice(0, n)), self.y_train[:n]

    def train_targets(self) -> torch.Tensor:
        return self.y_train

    def test_examples(self) -> int:
        return int(self.y_test.shape[0])

    def to(self, device: torch.device | str) -> "Dataset":
        """The same dataset with every tensor moved to ``device``."""
        on_device = {f: moved(getattr(self, f), device) for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return Dataset(name=self.name, num_classes=self.num_classes, **on_device)


def refuse_data_dir(name: str, data_dir: Path | None, source: str, hint: str = "drop --data-dir") -> None:
    """Raise ConfigError when ``data_dir`` is given to a dataset that brings its own data.

    Said once so every in-memory or bundled dataset refuses --data-dir in the same words
    rather than silently ignoring a folder the user thinks is being read.
    ``source`` says where the data comes from ("ships with scikit-learn"); ``hint`` what to do.
    """
    if data_dir is not None:
        raise ConfigError(f"{name} {source} and takes no --data-dir (got {data_dir}); {hint}")
