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


class TwoInputs(nn.Module):
    """A model of two inputs, ``forward(left, right)``: fed from tuples ``(left, right, labels)``."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Linear(4, 16), nn.Linear(4, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, left, right):
        return self.head(torch.relu(self.left(left) + self.right(right)))


class MaskedBag(nn.Module):
    """Hugging Face's calling convention: ``forward(input_ids, attention_mask)`` -> ``{"logits"}``,
    the mean of the embeddings of the tokens the attention mask keeps."""

    def __init__(self, vocab: int = 13, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.classifier = nn.Linear(width, 2)

    def forward(self, input_ids, attention_mask):
        keep = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * keep).sum(1) / keep.sum(1).clamp(min=1)
        return {"logits": self.classifier(torch.relu(self.mix(pooled)))}


def two_input_data(n: int = 600, seed: int = 0):
    """Splits of ``(left, right, labels)`` tuples: the label needs both inputs."""
    g = torch.Generator().manual_seed(seed)
    left, right = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
    y = (left[:, 0] > 0).long() + (right[:, 1] > 0).long()
    cut = [0, int(0.7 * n), int(0.85 * n), n]
    return {name: (left[a:b], right[a:b], y[a:b]) for name, a, b in zip(("train", "val", "test"), cut, cut[1:])}


def token_data(n: int = 600, length: int = 8, vocab: int = 13, seed: int = 0):
    """Hugging Face-style splits, dicts of ``input_ids``, ``attention_mask`` and ``labels``: the
    label says whether token 1 occurs among the tokens the mask keeps (padding is token 1 too)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (n, length), generator=g)
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    mask = (torch.arange(length) < lengths[:, None]).long()
    marked = torch.rand(n, generator=g) < 0.5
    where = (torch.rand(n, generator=g) * (lengths - 1)).long()
    ids[marked, where[marked]] = 1
    ids[mask == 0] = 1  # padding: only the attention mask tells it from a real token 1
    cut = [0, int(0.7 * n), int(0.85 * n), n]
    return {name: {"input_ids": ids[a:b], "attention_mask": mask[a:b], "labels": marked[a:b].long()}
            for name, a, b in zip(("train", "val", "test"), cut, cut[1:])}
