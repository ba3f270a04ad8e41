"""Property tests (hypothesis): mask invariants and exact pruning counts on arbitrary layers."""

from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from ticketlab.config import PruneConfig
from ticketlab.masks import Mask
from ticketlab.pruning.magnitude import count_to_prune, layer_rates, magnitude_prune
from ticketlab.arms.random import random_mask_like

rates = st.floats(min_value=0.01, max_value=0.99, allow_nan=False)


@st.composite
def layers(draw) -> tuple[dict[str, torch.Tensor], Mask]:
    """1-4 layers of random shapes, random weights (with ties and zeros), and a random starting mask."""
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    weights, keep = {}, {}
    for i in range(n):
        shape = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
        values = torch.randn(shape, generator=generator)
        if draw(st.booleans()):  # ties: round to a coarse grid
            values = (values * 2).round() / 2
        weights[f"layer{i}.weight"] = values
        keep[f"layer{i}.weight"] = torch.rand(shape, generator=generator) < draw(st.floats(0.0, 1.0))
    return weights, Mask(keep)


@settings(max_examples=150, deadline=None)
@given(layers(), rates, st.one_of(st.none(), rates), st.sampled_from(["layerwise", "global"]))
def test_pruning_is_nested_and_removes_exact_counts(data, rate, output_rate, strategy):
    weights, mask = data
    prune = PruneConfig(strategy=strategy, rate=rate, output_rate=output_rate)
    new = magnitude_prune(weights, mask, prune)
    assert new.is_nested_in(mask)  # a pruned weight never returns
    before, after = mask.remaining(), new.remaining()
    if strategy == "layerwise":
        per_layer = layer_rates(list(mask), prune)
        for name in mask:
            assert before[name] - after[name] == count_to_prune(per_layer[name], before[name])
    else:
        total = sum(before.values())
        assert total - sum(after.values()) == count_to_prune(rate, total)
    for name in mask:  # only the smallest survivors go: every removed |w| <= every kept |w| (layerwise)
        removed = mask[name] & ~new[name]
        if strategy == "layerwise" and removed.any() and new[name].any():
            assert weights[name].abs()[removed].max() <= weights[name].abs()[new[name]].min()


@settings(max_examples=100, deadline=None)
@given(layers(), rates)
def test_pruning_is_deterministic_and_iterates_nested(data, rate):
    weights, mask = data
    prune = PruneConfig(rate=rate)
    first = magnitude_prune(weights, mask, prune)
    assert first.equals(magnitude_prune(weights, mask, prune))
    second = magnitude_prune(weights, first, prune)
    assert second.is_nested_in(first) and second.is_nested_in(mask)


@settings(max_examples=100, deadline=None)
@given(layers(), st.integers(0, 2**31 - 1))
def test_pruned_weights_are_exactly_zero_and_survivors_unchanged(data, seed):
    weights, mask = data
    masked = mask.applied_to(weights)
    for name in mask:
        assert torch.all(masked[name][~mask[name]] == 0)
        assert torch.equal(masked[name][mask[name]], weights[name][mask[name]])
    # applying twice is applying once (re-masking after every step cannot drift)
    again = mask.applied_to(masked)
    assert all(torch.equal(again[n], masked[n]) for n in masked)


@settings(max_examples=100, deadline=None)
@given(layers(), st.integers(0, 2**31 - 1))
def test_control_masks_keep_exact_per_layer_counts(data, seed):
    _, mask = data
    for make in (random_mask_like,):
        control = make(mask, seed)
        assert control.remaining() == mask.remaining() and control.sizes() == mask.sizes()
        assert control.equals(make(mask, seed))  # a pure function of the seed
