"""What is pruned is decided by role: real model shapes that broke selection by layer type."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ticketlab.config import PruneConfig
from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.pruning import magnitude_prune
from ticketlab.roles import plan_parameters
from ticketlab.weights import load_state, state_of

from user_code.models import TinyGPT


class Conv1D(nn.Module):
    """The shape of Hugging Face's GPT-2 ``Conv1D``: a linear layer with a [in, out] weight."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], -1)


class HeadFirst(nn.Module):
    """The output layer is *defined* first and the norm's weight ends in 'weight'."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.body = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.mlp = Conv1D(8, 8)

    def forward(self, x):
        h = self.norm(self.body(x)).unsqueeze(1)
        h = self.attn(h, h, h, need_weights=False)[0].squeeze(1)
        return self.head(self.mlp(h))


def test_roles_select_conv1d_and_attention_but_not_norms():
    model = HeadFirst()
    plan = plan_parameters(model, PruneConfig())
    assert set(plan.pruned) == {"head.weight", "body.weight", "attn.in_proj_weight", "attn.out_proj.weight", "mlp.weight"}
    assert plan.roles["attn.in_proj_weight"] == ("attention",)
    assert plan.roles["mlp.weight"] == ("linear",)
    assert plan.roles["norm.weight"] == ("norm",)
    # the README's old example: include = ["weight$"] must not prune BatchNorm scales
    with_pattern = plan_parameters(model, PruneConfig(include=("weight$",)))
    assert "norm.weight" not in with_pattern.pruned and "attn.in_proj_weight" in with_pattern.pruned
    # norms on request
    assert "norm.weight" in plan_parameters(model, PruneConfig(roles=("linear", "norm"))).pruned


def test_include_pattern_matching_only_unselected_roles_is_an_error():
    with pytest.raises(ConfigError, match="role.*norm.*prune.roles"):
        plan_parameters(HeadFirst(), PruneConfig(include=(r"^norm\.weight$",)))


def test_output_layer_is_traced_not_the_last_defined():
    model = HeadFirst().eval()
    x = torch.randn(2, 4)
    plan = plan_parameters(model, PruneConfig(), trace=lambda m: m(x))
    assert plan.output == "head.weight"
    assert plan_parameters(model, PruneConfig()).output == "mlp.weight"  # without a trace: last defined
    # and on the meta device, where tracing costs nothing
    with torch.device("meta"):
        meta = HeadFirst().eval()
    assert plan_parameters(meta, PruneConfig(), trace=lambda m: m(x.to("meta"))).output == "head.weight"
    # the output rate goes to the traced output layer
    mask = Mask({n: torch.ones(plan.shapes[n], dtype=torch.bool) for n in plan.pruned})
    weights = {n: torch.randn(plan.shapes[n]) for n in plan.pruned}
    new = magnitude_prune(weights, mask, PruneConfig(rate=0.5, output_rate=0.1), output=plan.output)
    assert new.layer_fractions()["head.weight"] == pytest.approx(1 - round(0.1 * 24) / 24)
    assert new.layer_fractions()["mlp.weight"] == pytest.approx(0.5)


def test_output_layer_can_be_named():
    plan = plan_parameters(HeadFirst(), PruneConfig(output_layer="body"))
    assert plan.output == "body.weight"
    with pytest.raises(ConfigError, match="output_layer"):
        plan_parameters(HeadFirst(), PruneConfig(output_layer="norm"))


def test_tied_weights_share_one_mask_and_are_stored_once():
    model = TinyGPT(vocab=11, width=8)
    tokens = torch.randint(0, 11, (2, 5))
    plan = plan_parameters(model, PruneConfig(), trace=lambda m: m(tokens))
    assert plan.aliases == {"lm_head.weight": "wte.weight"}
    assert set(plan.roles["wte.weight"]) == {"embedding", "linear"}
    assert plan.pruned == ("wte.weight", "block.weight") and plan.output == "wte.weight"
    mask = Mask.ones_like(model, plan.pruned)  # crashed with KeyError before roles
    state = state_of(model)
    assert "lm_head.weight" not in state
    from safetensors.torch import save

    save({k: v.contiguous() for k, v in state.items()})  # shared tensors used to be refused here
    other = TinyGPT(vocab=11, width=8)
    load_state(other, {k: v.clone() for k, v in state.items()})
    assert other.lm_head.weight is other.wte.weight and torch.equal(other.wte.weight, model.wte.weight)
    mask.apply_(other)
