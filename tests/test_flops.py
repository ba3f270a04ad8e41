"""FLOPs per forward pass, against hand counts: what the comparison's cost column rests on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ticketlab.evidence.flops import forward_flops


def test_conv_and_linear_flops_match_hand_counts_and_scale_with_density():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5, bias=False))
    flops = forward_flops(model, torch.zeros(1, 3, 8, 8))
    conv = 2 * (4 * 3 * 3 * 3) * (6 * 6)  # each of 4x6x6 outputs: 27 multiply-adds
    linear = 2 * (4 * 6 * 6) * 5
    assert flops.per_weight == {"0.weight": conv, "3.weight": linear}
    assert flops.total == conv + linear
    assert flops.at_density({"0.weight": 0.25, "3.weight": 1.0}) == pytest.approx(conv / 4 + linear)


def test_attention_projections_count_once_per_token_and_the_model_is_untouched():
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    model = nn.Sequential(layer).eval()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    flops = forward_flops(model, torch.zeros(2, 5, 8))  # 2 sequences of 5 tokens
    tokens = 10
    assert flops.per_weight["0.self_attn.in_proj_weight"] == 2 * 3 * 8 * 8 * tokens
    assert flops.per_weight["0.self_attn.out_proj.weight"] == 2 * 8 * 8 * tokens
    assert flops.per_weight["0.linear1.weight"] == 2 * 8 * 16 * tokens
    assert flops.total >= sum(flops.per_weight.values())
    assert not model.training and all(torch.equal(before[n], t) for n, t in model.state_dict().items())
