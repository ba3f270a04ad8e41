"""A Hugging Face BERT classifier (built from a config: no download, no tokenizer) on a toy text task.

Demonstrates:

* a third-party model as it is: ``BertForSequenceClassification`` is called as ``model(x)`` with
  token ids and returns a ``SequenceClassifierOutput``; ticketlab takes its ``.logits``;
* what is pruned in a Transformer by role: every Linear weight (attention query/key/value and
  output, the feed-forward layers, the pooler and the classifier, found as the output layer by
  tracing one forward pass), while the word/position/token-type embeddings, LayerNorms and
  biases stay dense.

The task: sequences of 16 tokens hold one "A" and one "B" at random places among filler
tokens; the label is whether A comes before B, which needs attention across positions.

``transformers`` is an optional extra: ``pip install transformers``.

Run::

    python docs/examples/hf_bert.py            # 3 levels, a couple of minutes on one CPU thread
    python docs/examples/hf_bert.py --quick
"""

from __future__ import annotations

import sys

import torch

from _report import command_line, run_example, splits

VOCAB, LENGTH, A, B = 50, 16, 1, 2  # token 0 is left for padding; 3.. are filler


def make_model():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=32, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def order_data(n: int = 3000, seed: int = 0) -> dict:
    """Is A before B? Filler tokens 3..VOCAB-1, with A and B at two distinct random positions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, VOCAB, (n, LENGTH), generator=g)
    positions = torch.rand(n, LENGTH, generator=g).argsort(dim=1)[:, :2]  # two distinct places
    x.scatter_(1, positions[:, :1], A)
    x.scatter_(1, positions[:, 1:], B)
    y = (positions[:, 0] < positions[:, 1]).long()
    return splits(x, y, train=int(0.7 * n), val=int(0.85 * n) - int(0.7 * n))


def main(argv: list[str] | None = None):
    args = command_line(__doc__, argv)
    try:
        import transformers  # noqa: F401
    except ImportError:
        sys.exit("this example needs Hugging Face transformers: pip install transformers")

    config = {
        "levels": 3, "seeds": 1, "controls": ["reinit", "random"],
        "prune": {"rate": 0.4},
        "train": {"iterations": 400, "eval_every": 50, "batch_size": 64, "lr": 1e-3},
    }
    if args.quick:
        config.update(levels=1, train={"iterations": 30, "eval_every": 15, "batch_size": 32, "lr": 1e-3})

    result = run_example(config, args, model=make_model, data=order_data())
    return result


if __name__ == "__main__":
    main()
