"""A tiny GPT with tied input/output embeddings, trained on next-token prediction.

Demonstrates:

* language-model outputs: the model returns logits [N, T, vocab] for labels [N, T] (the next
  token at every position), and the default classification loss and accuracy handle them;
* tied weights: ``lm_head.weight`` IS ``tok.weight`` (as in GPT-2). ticketlab sees one tensor
  under two names: ``tok.weight`` is its canonical name, ``lm_head.weight`` an alias recorded in
  ``parameters.json``; it has both roles (embedding and linear), so it is pruned as the output
  layer, with ONE mask that both uses share;
* a causal ``nn.TransformerEncoderLayer``, whose attention ``in_proj_weight`` is pruned too.

The language: sequences of 10 tokens counting up modulo 16 with a step of 1, 2 or 3 chosen per
sequence (e.g. 5 7 9 11 ...). After two tokens the rest is predictable; only the first
prediction is a guess (one step in three), so the best possible accuracy is about 0.93.

Run::

    python docs/examples/tiny_gpt.py            # 4 levels, about a minute on one CPU thread
    python docs/examples/tiny_gpt.py --quick
"""

from __future__ import annotations

import torch
from torch import nn

from _report import command_line, run_example, splits

VOCAB, LENGTH = 16, 10


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = VOCAB, length: int = LENGTH, width: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(length, width)
        self.block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True,
                                                norm_first=True)
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.tok.weight  # tied: one tensor, two names

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        h = self.tok(tokens) + self.pos(torch.arange(length, device=tokens.device))
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=h.dtype)
        h = self.block(h, src_mask=causal, is_causal=True)
        return self.lm_head(self.norm(h))  # [N, T, vocab]


def counting_data(n: int = 2000, seed: int = 0) -> dict:
    """Inputs are tokens 0..T-1 of each sequence, labels tokens 1..T (the next token)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    step = torch.randint(1, 4, (n, 1), generator=g)
    seq = (start + step * torch.arange(LENGTH + 1)) % VOCAB
    x, y = seq[:, :-1], seq[:, 1:]
    return splits(x, y, train=int(0.7 * n), val=int(0.85 * n) - int(0.7 * n))


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)

    config = {
        "levels": 4, "seeds": 1, "controls": ["reinit", "random"],
        "prune": {"rate": 0.4},
        "train": {"iterations": 400, "eval_every": 50, "batch_size": 64, "lr": 3e-3},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 30, "eval_every": 15, "batch_size": 64, "lr": 3e-3})

    result = run_example(config, args, model=TinyGPT, data=counting_data())
    plan = result.store.json(result.store.plan_path)
    mask = result.mask(max(result.levels()))
    print(f"tied: {plan['aliases']}; masks stored for: {sorted(mask)}")
    return result


if __name__ == "__main__":
    main()
