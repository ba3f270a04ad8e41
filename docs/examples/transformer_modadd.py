"""A Transformer written here, on modular addition (a + b) mod p, pruned globally.

Demonstrates:

* a model built from ``nn.TransformerEncoder``, whose attention is ``nn.MultiheadAttention``:
  its packed query/key/value projection ``self_attn.in_proj_weight`` is not a Linear weight,
  yet it is pruned by default because of its *role* (``attention``), as are ``out_proj``, the
  feed-forward Linears and the head; the token embedding, the positional table and the
  LayerNorms are not;
* training options for this task: AdamW with ``weight_decay = 1.0`` (what makes a Transformer
  generalise on modular arithmetic rather than memorise), warm-up and a learning-rate step;
* ``prune.strategy = "global"``: one magnitude threshold over all pruned tensors, which suits
  this task, whose layers need very different sparsities (layerwise pruning removes the same
  fraction from each and falls behind its random control here).

Inputs are the three token ids ``[a, b, =]`` (``=`` is token p); the label is (a + b) mod p.

Run::

    python docs/examples/transformer_modadd.py            # 3 levels, about 2.5 minutes on one CPU thread
    python docs/examples/transformer_modadd.py --quick
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from _report import command_line, run_example, splits

P = 29


class ReLU(nn.Module):
    """A ReLU that ``TransformerEncoderLayer`` does not recognise: it keeps eval mode off the fused
    "fast path", so training and evaluation compute the same function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class ModAddTransformer(nn.Module):
    def __init__(self, p: int = P, d_model: int = 64, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(p + 1, d_model)  # operands 0..p-1 and "=" (token p)
        self.pos = nn.Parameter(torch.randn(3, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, activation=ReLU(),
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(h[:, -1])  # read the answer at the "=" token


def modadd_data(p: int = P, seed: int = 0) -> dict:
    """All p*p pairs, shuffled with a seeded permutation, split 80 / 10 / 10 %."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)  # int64 token ids
    y = (a + b) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return splits(x, y, train=int(0.8 * p * p), val=int(0.9 * p * p) - int(0.8 * p * p))


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)

    train = {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 1.0, "batch_size": 256, "iterations": 1000,
             "warmup_iterations": 50, "milestones": [750], "eval_every": 100}
    config = {"levels": 3, "seeds": 1, "controls": ["reinit", "random"],
              "prune": {"strategy": "global", "rate": 0.5}, "train": train}
    if args.quick:
        config.update(levels=1, train={**train, "iterations": 40, "warmup_iterations": 5, "milestones": [],
                                       "eval_every": 20})

    result = run_example(config, args, model=ModAddTransformer, data=modadd_data())
    return result


if __name__ == "__main__":
    main()
