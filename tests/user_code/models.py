"""Models a user might bring, importable as ``user_code.models:<factory>``."""

from __future__ import annotations

import torch
from torch import nn


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class WithDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.1), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


class TinyGPT(nn.Module):
    """Next-token model with tied input/output embeddings (as GPT-2 ties wte and lm_head)."""

    def __init__(self, vocab: int = 13, width: int = 16) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.block = nn.Linear(width, width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, tokens):
        return self.lm_head(torch.relu(self.block(self.wte(tokens))))


def regression_data(n: int = 600, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(n, generator=g)
    cut = [int(0.7 * n), int(0.85 * n)]
    return {"train": (x[: cut[0]], y[: cut[0]]), "val": (x[cut[0] : cut[1]], y[cut[0] : cut[1]]),
            "test": (x[cut[1] :], y[cut[1] :])}


def classification_data(n: int = 600, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    cut = [int(0.7 * n), int(0.85 * n)]
    return {"train": (x[: cut[0]], y[: cut[0]]), "val": (x[cut[0] : cut[1]], y[cut[0] : cut[1]]),
            "test": (x[cut[1] :], y[cut[1] :])}


def sequence_data(n: int = 400, length: int = 6, vocab: int = 13, seed: int = 0):
    """Predict the next token of a counting sequence: token t is followed by t + 1 (mod vocab)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    seq = (start + torch.arange(length + 1)) % vocab
    x, y = seq[:, :-1], seq[:, 1:]
    return {"train": (x[:300], y[:300]), "val": (x[300:350], y[300:350]), "test": (x[350:], y[350:])}


def broken_factory():
    raise ValueError("width must be positive")


class DictHead(nn.Module):
    """A classifier for 8x8 digits whose forward returns a dict, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU())
        self.head = nn.Linear(48, 10)

    def forward(self, x):
        hidden = self.body(x)
        return {"logits": self.head(hidden), "hidden": hidden}
