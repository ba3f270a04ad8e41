"""Masks: which weights of which parameters survive.

A :class:`Mask` maps parameter names to boolean tensors of the parameter's shape. It is a
value: pruning returns a new mask, and ``is_nested_in`` checks the IMP invariant that a
pruned weight never returns. Masks are stored as safetensors (uint8), never pickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn

from ticketlab.config import PruneConfig
from ticketlab.io import load_tensors, save_tensors

def prunable_names(model: nn.Module, prune: PruneConfig) -> list[str]:
    """Names of the parameters IMP prunes, in the model's parameter order (by role: see
    ``ticketlab.roles``); ConfigError when nothing is selected."""
    from ticketlab.roles import plan_parameters

    return list(plan_parameters(model, prune).pruned)


@dataclass(frozen=True)
class Mask(Mapping[str, torch.Tensor]):
    """Parameter name -> bool tensor (True = weight kept)."""

    tensors: dict[str, torch.Tensor]

    @classmethod
    def ones_like(cls, model: nn.Module, names: Iterable[str]) -> "Mask":
        params = dict(model.named_parameters())
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    # ------------------------------------------------------------------ counting
    def remaining(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self.tensors.items()}

    def sizes(self) -> dict[str, int]:
        return {n: m.numel() for n, m in self.tensors.items()}

    def fraction_remaining(self) -> float:
        """Fraction of prunable weights kept, over all prunable parameters."""
        total = sum(self.sizes().values())
        return sum(self.remaining().values()) / total if total else 1.0

    def layer_fractions(self) -> dict[str, float]:
        return {n: int(m.sum()) / m.numel() for n, m in self.tensors.items()}

    def is_nested_in(self, other: "Mask") -> bool:
        """True when every weight this mask keeps is also kept by ``other``."""
        return self.keys() == other.keys() and all(
            not bool((self[n] & ~other[n]).any()) for n in self.tensors
        )

    def equals(self, other: "Mask") -> bool:
        return self.keys() == other.keys() and all(torch.equal(self[n], other[n]) for n in self.tensors)

    # ------------------------------------------------------------------ applying
    def to(self, device: torch.device | str) -> "Mask":
        return Mask({n: m.to(device) for n, m in self.tensors.items()})

    def float_tensors(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        return {n: m.to(dtype) for n, m in self.tensors.items()}

    def applied_to(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A copy of the state dict ``weights`` with the pruned entries zeroed."""
        return {n: w * self[n].to(w.dtype) if n in self.tensors else w for n, w in weights.items()}

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        params = dict(model.named_parameters())
        for name, keep in self.tensors.items():
            params[name].mul_(keep.to(params[name].dtype))

    # ------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> None:
        save_tensors({n: m.to(torch.uint8).cpu() for n, m in self.tensors.items()}, path, checksum=True)

    @classmethod
    def load(cls, path: str | Path) -> "Mask":
        """An unverified load; experiments read masks through ``Store.mask`` (checksummed)."""
        return cls.from_stored(load_tensors(path))

    @classmethod
    def from_stored(cls, tensors: dict[str, torch.Tensor]) -> "Mask":
        return cls({n: t.bool() for n, t in tensors.items()})
