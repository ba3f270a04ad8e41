"""Magnitude pruning: the paper's Pm sequence, exact counts, deterministic ties, nesting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ticketlab.config import PruneConfig
from ticketlab.masks import Mask, prunable_names
from ticketlab.models import build_model
from ticketlab.pruning.magnitude import count_to_prune, magnitude_prune
from ticketlab.arms.random import random_mask_like


def lenet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet_300_100", (1, 28, 28), 10)


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_paper_pm_sequence_for_lenet():
    """Rounds 1, 2, 3, 7, 9, 15, 16 leave 80.0, 64.1, 51.3, 21.1, 13.5, 3.6, 2.9 % (paper's figure 3)."""
    model = lenet()
    prune = PruneConfig()  # layerwise 20%, output layer 10%
    mask = Mask.ones_like(model, prunable_names(model, prune))
    expected = {1: 80.0, 2: 64.1, 3: 51.3, 7: 21.1, 9: 13.5, 15: 3.6, 16: 2.9}
    generator = torch.Generator().manual_seed(1)
    seen = {}
    for round_ in range(1, 17):
        # fresh "trained" weights each round: pruning must depend only on magnitudes and the mask
        weights = {n: torch.randn(m.shape, generator=generator) for n, m in mask.items()}
        new = magnitude_prune(weights, mask, prune)
        assert new.is_nested_in(mask)
        mask = new
        seen[round_] = round(100 * mask.fraction_remaining(), 1)
    assert {r: seen[r] for r in expected} == expected


def test_exact_counts_and_deterministic_ties():
    weights = {"w": torch.ones(1000)}  # every weight ties
    mask = Mask({"w": torch.ones(1000, dtype=torch.bool)})
    pruned = magnitude_prune(weights, mask, PruneConfig(rate=0.2, output_rate=None))
    assert int((~pruned["w"]).sum()) == 200
    # ties break by position: the first 200 entries go, every time
    assert torch.equal(pruned["w"], torch.arange(1000) >= 200)
    again = magnitude_prune(weights, mask, PruneConfig(rate=0.2, output_rate=None))
    assert pruned.equals(again)


@pytest.mark.parametrize("rate,remaining,count", [(0.2, 1000, 200), (0.2, 800, 160), (0.1, 1000, 100), (0.2, 7, 1), (0.5, 3, 2)])
def test_count_to_prune(rate, remaining, count):
    assert count_to_prune(rate, remaining) == count


def test_only_surviving_weights_are_candidates():
    """A pruned weight never returns, even if the new weights would rank it high."""
    weights = {"w": torch.tensor([100.0, 0.1, 0.2, 0.3, 0.4])}
    mask = Mask({"w": torch.tensor([False, True, True, True, True])})
    new = magnitude_prune(weights, mask, PruneConfig(rate=0.25, output_rate=None))
    assert new["w"].tolist() == [False, False, True, True, True]


def test_smallest_magnitude_is_pruned_with_sign_ignored():
    weights = {"w": torch.tensor([-5.0, 0.5, -0.1, 3.0, 0.2])}
    mask = Mask({"w": torch.ones(5, dtype=torch.bool)})
    new = magnitude_prune(weights, mask, PruneConfig(rate=0.4, output_rate=None))
    assert new["w"].tolist() == [True, True, False, True, False]


def test_layerwise_output_rate_and_overrides():
    model = lenet()
    names = prunable_names(model, PruneConfig())
    mask = Mask.ones_like(model, names)
    new = magnitude_prune(weights_of(model), mask, PruneConfig(layer_rates={r"layers\.3\.": 0.5}))
    remaining = new.remaining()
    assert remaining["layers.1.weight"] == 235200 - 47040
    assert remaining["layers.3.weight"] == 15000  # override
    assert remaining["layers.5.weight"] == 900  # output layer at 10%


def test_global_pruning_exact_total_and_exclusion():
    model = lenet()
    names = prunable_names(model, PruneConfig())
    mask = Mask.ones_like(model, names)
    prune = PruneConfig(strategy="global", rate=0.3, global_exclude=(r"layers\.5\.",))
    new = magnitude_prune(weights_of(model), mask, prune)
    ranked_total = 235200 + 30000
    assert sum(new.sizes().values()) - sum(new.remaining().values()) == round(0.3 * ranked_total)
    assert new.remaining()["layers.5.weight"] == 1000  # excluded layer untouched
    # global ranking: every surviving weight is at least as large as every pruned one
    w = weights_of(model)
    kept = torch.cat([w[n][new[n]].abs() for n in names[:2]])
    dropped = torch.cat([w[n][~new[n]].abs() for n in names[:2]])
    assert kept.min() >= dropped.max()


class Mixed(nn.Module):
    """A user module with conv, batch norm, an embedding and a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 2)


def test_prunable_names_default_and_patterns():
    model = Mixed()
    assert prunable_names(model, PruneConfig()) == ["conv.weight", "head.weight"]
    assert prunable_names(model, PruneConfig(exclude=(r"^head",))) == ["conv.weight"]
    roles = ("linear", "conv", "embedding", "bias")
    assert prunable_names(model, PruneConfig(include=(r"embed\.weight", r"head\.(weight|bias)"), roles=roles)) == [
        "embed.weight", "head.weight", "head.bias"]


@pytest.mark.parametrize("make", [random_mask_like])
def test_control_masks_match_per_layer_counts(make):
    model = lenet()
    mask = Mask.ones_like(model, prunable_names(model, PruneConfig()))
    for _ in range(3):
        mask = magnitude_prune(weights_of(model), mask, PruneConfig())
    control = make(mask, seed=7)
    assert control.remaining() == mask.remaining()
    assert not control.equals(mask)
    assert make(mask, seed=7).equals(control)  # seeded


def test_mask_roundtrip(tmp_path):
    mask = Mask({"a": torch.rand(3, 4) > 0.5, "b": torch.rand(5) > 0.5})
    mask.save(tmp_path / "m.safetensors")
    assert Mask.load(tmp_path / "m.safetensors").equals(mask)
