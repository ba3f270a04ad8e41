"""What is pruned is decided by role: real model shapes that broke selection by layer type."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.config import PruneConfig
from ticketlab.errors import ConfigError
from ticketlab.masks import Mask
from ticketlab.pruning.magnitude import magnitude_prune
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


# ---------------------------------------------------------------- recurrent weights, raw parameters


class Tagger(nn.Module):
    """An embedding, a two-layer bidirectional LSTM, a GRU cell's worth of recurrence and a head:
    the head is a few percent of the parameters, as in the issue's LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(32, 12, batch_first=True)
        self.cell = nn.RNNCell(12, 12)
        self.head = nn.Linear(12, 5)

    def forward(self, tokens):
        h, _ = self.lstm(self.embed(tokens))
        h, _ = self.gru(h)
        return self.head(self.cell(h[:, -1]))


def test_recurrent_weights_are_a_role_pruned_by_default():
    model = Tagger()
    plan = plan_parameters(model, PruneConfig(), trace=lambda m: m(torch.randint(0, 20, (2, 5))))
    recurrent = [n for n, _ in model.named_parameters() if ".weight_" in n]
    assert len(recurrent) == 2 * 2 * 2 + 2 + 2  # LSTM: layers x directions x (ih, hh); GRU; cell
    assert all(plan.roles[n] == ("recurrent",) for n in recurrent)
    biases = [n for n, _ in model.named_parameters() if ".bias" in n]
    assert all(plan.roles[n] == ("bias",) for n in biases) and "lstm.bias_ih_l1_reverse" in biases
    assert set(plan.pruned) == set(recurrent) | {"head.weight"}
    assert plan.output == "head.weight"


class RawMLP(nn.Module):
    """Raw parameters through ``F.linear``, ``@`` and ``+``, named to mislead: the output layer is
    defined first, a bias is named like a weight, and ``gain_bias`` is a scale, not a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.w_out = nn.Parameter(torch.randn(3, 8) * 0.1)
        self.w1 = nn.Parameter(torch.randn(16, 4) * 0.1)
        self.b1 = nn.Parameter(torch.zeros(16))
        self.w2 = nn.Parameter(torch.randn(16, 8) * 0.1)
        self.shift_weight = nn.Parameter(torch.zeros(8))
        self.gain_bias = nn.Parameter(torch.ones(3))
        self.bias_out = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        h = torch.relu(F.linear(x, self.w1, self.b1))
        h = torch.relu(h @ self.w2 + self.shift_weight)
        return F.linear(h, self.w_out, bias=self.bias_out) * self.gain_bias


def test_raw_parameters_get_roles_from_what_the_forward_pass_does_with_them():
    model = RawMLP()
    x = torch.randn(2, 4)
    plan = plan_parameters(model, PruneConfig(), trace=lambda m: m(x))
    assert {n: plan.roles[n] for n in ("w_out", "w1", "w2")} == {n: ("linear",) for n in ("w_out", "w1", "w2")}
    assert {n: plan.roles[n] for n in ("b1", "shift_weight", "bias_out")} == {n: ("bias",) for n in ("b1", "shift_weight", "bias_out")}
    assert plan.roles["gain_bias"] == ("other",)  # multiplied, not added: not a bias, whatever its name
    assert plan.pruned == ("w_out", "w1", "w2")
    assert plan.output == "w_out"  # the last weight whose result reaches the output, not the first
    # with biases pruned too, the output layer is still the weight, not the bias added after it
    with_bias = plan_parameters(model, PruneConfig(roles=("linear", "bias")), trace=lambda m: m(x))
    assert with_bias.output == "w_out" and "bias_out" in with_bias.pruned
    # the same on the meta device, where tracing costs nothing
    with torch.device("meta"):
        meta = RawMLP()
    meta_plan = plan_parameters(meta, PruneConfig(), trace=lambda m: m(x.to("meta")))
    assert meta_plan.roles == plan.roles and meta_plan.output == "w_out"


def test_output_layer_is_the_last_weight_reaching_the_output_not_the_last_run():
    """A weight computed after the output layer but not feeding the output (an auxiliary branch)
    is not the output layer."""

    class AuxiliaryLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 8)
            self.head = nn.Linear(8, 3)
            self.aux = nn.Linear(8, 2)

        def forward(self, x):
            h = torch.relu(self.body(x))
            logits = self.head(h)
            self.last_aux = self.aux(h)  # e.g. an auxiliary loss's input
            return logits

    plan = plan_parameters(AuxiliaryLast(), PruneConfig(), trace=lambda m: m(torch.randn(2, 4)))
    assert plan.output == "head.weight"


# ---------------------------------------------------------------- a narrow selection is said at the start


class SequenceClassifier(nn.Module):
    """Each 4-feature example read as a sequence of 4 scalars by an LSTM: the head is ~3% of it."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 24, batch_first=True)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        out, _ = self.lstm(x.unsqueeze(-1))
        return self.head(out[:, -1])


def _run_warnings(tmp_path, roles: list[str] | None) -> list[str]:
    """The SelectionNote lines a short run of SequenceClassifier emits under ``roles``."""
    import warnings

    import ticketlab
    from ticketlab.roles import SelectionNote
    from user_code.models import classification_data

    prune = {"roles": roles} if roles else {}
    config = {"levels": 1, "prune": prune, "train": {"iterations": 20, "eval_every": 10, "batch_size": 32}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ticketlab.run(config, ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1),
                      model=SequenceClassifier, data=classification_data())
    return [str(w.message) for w in caught if issubclass(w.category, SelectionNote)]


def test_a_run_pruning_under_a_tenth_of_the_model_says_so_in_one_line(tmp_path):
    from ticketlab.roles import pruned_fraction

    model = SequenceClassifier()
    plan = plan_parameters(model, PruneConfig(roles=("linear",)), trace=lambda m: m(torch.randn(2, 4)))
    fraction = pruned_fraction(plan)
    head = model.head.weight.numel()
    assert fraction == pytest.approx(head / sum(p.numel() for p in model.parameters()))
    (note,) = _run_warnings(tmp_path / "narrow", ["linear"])
    assert "\n" not in note and f"{100 * fraction:.1f}%" in note
    assert "recurrent" in note and "prune.roles" in note
    # the default roles prune the LSTM too: nothing to say
    assert _run_warnings(tmp_path / "default", None) == []


def test_an_experiment_written_under_the_old_default_roles_still_reads_as_itself(tmp_path):
    """Before ``recurrent`` was a default role, a config at default roles stored the old tuple in
    its full part and nothing in its canonical part; it must not read as edited now."""
    import json

    from ticketlab.config import LEGACY_DEFAULT_ROLES, Config
    from ticketlab.store.layout import Store

    config = Config.from_dict({"model": "mlp_64_32", "data": {"dataset": "digits"}})
    store = Store.for_config(config, str(tmp_path))
    store.write_config(config)
    record = json.loads(store.config_path.read_text())
    assert "prune" not in record["canonical"] or "roles" not in record["canonical"]["prune"]
    record["config"]["prune"]["roles"] = list(LEGACY_DEFAULT_ROLES)  # as the old code wrote it
    store.config_path.write_text(json.dumps(record))
    again = Store(store.directory).read_config()
    assert again.canonical_dict() == config.canonical_dict() and again.prune.roles == config.prune.roles
    Store(store.directory).write_config(config)  # the same command resumes it
