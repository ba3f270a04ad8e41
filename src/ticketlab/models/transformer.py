"""A small Transformer for token tasks such as modular addition (``--dataset modadd``).

``transformer_modadd`` is token embedding + learned positional embedding + a PyTorch
``nn.TransformerEncoder`` + a Linear head on the last token ("=") representation. The
attention is ``nn.MultiheadAttention``, so each layer's packed query/key/value projection
is the parameter ``encoder.layers.<i>.self_attn.in_proj_weight``. ticketlab prunes only
Linear/Conv weights by default (here: ``out_proj``, ``linear1``, ``linear2``, ``head``);
prune attention too with ``[prune] include`` patterns, e.g.::

    include = ["in_proj_weight$", "out_proj\\.weight$", "linear[12]\\.weight$", "head\\.weight$"]

``transformer_<d_model>_<layers>`` builds the same architecture at another size (4 heads,
feed-forward width 4 * d_model).

Vocabulary: the constructor's ``vocab_size`` defaults to ``num_classes + 1``, which is
modadd's vocabulary (the p operand tokens plus the "=" token, id p). A dataset with another
vocabulary needs its own registration passing ``vocab_size``.

Train and evaluation modes compute the same function in the same way: PyTorch's inference
"fast path" (fused kernels used in eval mode without gradients) is disabled by the causal
float attention mask (MultiheadAttention's fast path refuses float masks) and by a ReLU that
is not ``nn.ReLU`` (TransformerEncoderLayer's fast path refuses other activations). The
causal mask leaves the "=" token, the last one, attending to every position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import ConfigError

DEFAULTS = {"d_model": 64, "num_layers": 1, "nhead": 4, "dim_feedforward": 256}


class _ReLU(nn.Module):
    """ReLU that TransformerEncoderLayer does not recognise, so it never takes its fast path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class TokenTransformer(nn.Module):
    """Embed a [N, L] batch of token ids, encode, classify from the last position: [N, classes]."""

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        num_classes: int,
        d_model: int = DEFAULTS["d_model"],
        num_layers: int = DEFAULTS["num_layers"],
        nhead: int = DEFAULTS["nhead"],
        dim_feedforward: int = DEFAULTS["dim_feedforward"],
    ) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout=0.0, activation=_ReLU(), batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos[: x.shape[1]]
        causal = torch.triu(
            torch.full((x.shape[1], x.shape[1]), float("-inf"), device=x.device, dtype=h.dtype), diagonal=1
        )
        h = self.encoder(h, mask=causal, is_causal=True)
        return self.head(h[:, -1])


def _check_tokens(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 1:
        raise ConfigError(
            f"model {name!r} takes token-id sequences (input shape (length,), e.g. --dataset modadd), "
            f"got input shape {tuple(input_shape)}"
        )


def transformer_modadd(name: str, input_shape: tuple[int, ...], num_classes: int) -> TokenTransformer:
    """The default size; vocabulary num_classes + 1 (modadd: p operands and "=")."""
    _check_tokens(name, input_shape)
    return TokenTransformer(num_classes + 1, input_shape[0], num_classes, **DEFAULTS)


def transformer_from_name(name: str, input_shape: tuple[int, ...], num_classes: int) -> TokenTransformer:
    _check_tokens(name, input_shape)
    d_model, num_layers = (int(v) for v in name.split("_")[1:])
    if d_model % DEFAULTS["nhead"]:
        raise ConfigError(f"model {name!r}: d_model must be a multiple of {DEFAULTS['nhead']} heads, got {d_model}")
    return TokenTransformer(
        num_classes + 1, input_shape[0], num_classes,
        d_model=d_model, num_layers=num_layers, nhead=DEFAULTS["nhead"], dim_feedforward=4 * d_model,
    )

