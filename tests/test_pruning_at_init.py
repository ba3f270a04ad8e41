"""Pruning at initialisation: each method against an independent oracle, and end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
from ticketlab.io import load_tensors
from ticketlab.masks import Mask
from ticketlab.pruning.at_init.common import keep_top
from ticketlab.pruning.at_init.grasp import hessian_gradient
from ticketlab.pruning.at_init.snip import snip_scores
from ticketlab.pruning.at_init.synflow import synflow_scores

from conftest import tiny_config


def two_layer(bias: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4, bias=bias), nn.ReLU(), nn.Linear(4, 3, bias=bias))


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(7, 5, generator=g), torch.randint(0, 3, (7,), generator=g)


def test_snip_scores_equal_hand_computed_gradient_times_weight():
    model = two_layer()
    x, y = batch()
    scores = snip_scores(model, ["0.weight", "2.weight"], [(x, y)], F.cross_entropy)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    pre = x @ w1.T
    hidden = pre.clamp(min=0)
    p = torch.softmax(hidden @ w2.T, dim=1)
    delta = (p - F.one_hot(y, 3).float()) / x.shape[0]        # dL/dlogits of the mean cross-entropy
    grad_w2 = delta.T @ hidden
    grad_w1 = ((delta @ w2) * (pre > 0).float()).T @ x
    torch.testing.assert_close(scores["2.weight"], (grad_w2 * w2).abs())
    torch.testing.assert_close(scores["0.weight"], (grad_w1 * w1).abs())


def test_grasp_hessian_gradient_product_matches_the_explicit_hessian():
    model = two_layer()
    x, y = batch()
    names = ["0.weight", "2.weight"]
    hg = hessian_gradient(model, names, [(x, y)], F.cross_entropy)
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    sizes = [w1.numel(), w2.numel()]

    def loss_of(flat):
        a, b = flat.split(sizes)
        return F.cross_entropy(torch.relu(x @ a.view_as(w1).T) @ b.view_as(w2).T, y)

    flat = torch.cat([w1.flatten(), w2.flatten()])
    gradient = torch.autograd.functional.jacobian(loss_of, flat)
    hessian = torch.autograd.functional.hessian(loss_of, flat)
    expected = (hessian @ gradient).split(sizes)
    torch.testing.assert_close(hg["0.weight"].flatten(), expected[0], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(hg["2.weight"].flatten(), expected[1], atol=1e-6, rtol=1e-4)


def test_synflow_scores_are_conserved_at_every_hidden_neuron():
    """Tanaka et al.'s conservation law: a hidden neuron's incoming scores sum to its outgoing."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.ReLU(),
                          nn.Linear(4, 2, bias=False))
    scores = synflow_scores(model, ["0.weight", "2.weight", "4.weight"], torch.zeros(1, 6))
    torch.testing.assert_close(scores["0.weight"].sum(1), scores["2.weight"].sum(0))
    torch.testing.assert_close(scores["2.weight"].sum(1), scores["4.weight"].sum(0))
    # and the total score of every layer is the same (the network's path norm)
    totals = [scores[n].sum() for n in scores]
    torch.testing.assert_close(torch.stack(totals), totals[0].expand(3))


def test_keep_top_is_global_exact_and_stable():
    like = Mask({"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(30, dtype=torch.bool)})
    scores = {"a": torch.arange(10.0), "b": torch.zeros(30)}
    kept = keep_top(scores, like, 10)
    assert int(kept["a"].sum()) + int(kept["b"].sum()) == 10
    # 9 positive scores, then the first of the 31 tied zeros by position: a[0], never b
    assert bool(kept["a"].all()) and int(kept["b"].sum()) == 0


def imp_masks(tmp_path=None):
    """IMP's masks for the same tiny config (two levels; the counts do not depend on the weights)."""
    from ticketlab.config import PruneConfig
    from ticketlab.pruning.magnitude import magnitude_prune

    mask = Mask({"layers.1.weight": torch.ones(64, 64, dtype=torch.bool), "layers.3.weight": torch.ones(32, 64, dtype=torch.bool),
                 "layers.5.weight": torch.ones(10, 32, dtype=torch.bool)})
    masks = [mask]
    for _ in range(2):
        weights = {n: torch.randn(m.shape) for n, m in masks[-1].items()}
        masks.append(magnitude_prune(weights, masks[-1], PruneConfig(), output="layers.5.weight"))
    return masks


@pytest.mark.parametrize("method", ["snip", "grasp", "synflow", "magnitude_init", "random_init"])
def test_method_at_init_reaches_imp_sparsities_with_every_mask_made_before_training(tmp_path, method):
    config = tiny_config(levels=2, controls=["random", "reinit"], prune={"method": method},
                         train={"iterations": 40, "eval_every": 20})
    result = ticketlab.run(config, ticketlab.RunOptions(root=str(tmp_path), device="cpu", progress=False, workers=1))
    # exactly as many weights as IMP keeps at each level (layerwise 20%, output layer 10%)
    imp_counts = [sum(m.remaining().values()) for m in (imp_masks(tmp_path))]
    assert [sum(result.mask(level).remaining().values()) for level in range(3)] == imp_counts
    assert all(r["status"] == "ok" for r in result.runs)
    if method == "magnitude_init":  # keeps exactly the largest initial weights
        init = load_tensors(result.store.init_path(0))
        mask = result.mask(2)
        kept = torch.cat([init[n][mask[n]].abs() for n in mask])
        dropped = torch.cat([init[n][~mask[n]].abs() for n in mask])
        assert kept.min() >= dropped.max()


def test_ticket_levels_train_only_the_chosen_sparsities_at_imps_counts(tmp_path):
    """A sweep at a few sparsities: the chosen levels (and the dense run) train, with exactly the
    masks of the full sweep; no other level trains."""
    full = ticketlab.run(tiny_config(levels=3, prune={"method": "magnitude_init"}, train={"iterations": 40, "eval_every": 20}),
                         ticketlab.RunOptions(root=str(tmp_path / "full"), device="cpu", progress=False, workers=1))
    config = tiny_config(levels=3, ticket_levels=[1, 3], controls=["random"], control_levels=[3],
                         prune={"method": "magnitude_init"}, train={"iterations": 40, "eval_every": 20})
    sweep = ticketlab.run(config, ticketlab.RunOptions(root=str(tmp_path / "sweep"), device="cpu", progress=False, workers=1))
    trained = sorted((r["level"], r["arm"]) for r in sweep.runs)
    assert trained == [(0, "ticket"), (1, "ticket"), (3, "random"), (3, "ticket")]
    assert not sweep.store.unit(0, 2, "ticket").directory.exists()
    for level in (1, 3):
        assert torch.equal(torch.cat([m.flatten() for m in sweep.mask(level).values()]),
                           torch.cat([m.flatten() for m in full.mask(level).values()]))


def test_ticket_levels_are_refused_for_a_chained_method():
    from ticketlab.experiment.names import resolve_names

    with pytest.raises(ticketlab.ConfigError, match="chain"):
        resolve_names(tiny_config(levels=3, ticket_levels=[3]))


AT_INIT = ["snip", "grasp", "synflow", "magnitude_init", "random_init"]
HEAD = r"^layers\.5\."


def imp_counts(prune: dict, levels: int) -> list[dict[str, int]]:
    """IMP's per-layer kept counts at each level under ``prune`` (counts never depend on the weights)."""
    from ticketlab.config import PruneConfig
    from ticketlab.pruning.magnitude import magnitude_prune

    config = PruneConfig(**prune)
    masks = [imp_masks(None)[0]]
    for _ in range(levels):
        weights = {n: torch.randn(m.shape) for n, m in masks[-1].items()}
        masks.append(magnitude_prune(weights, masks[-1], config, output="layers.5.weight"))
    return [m.remaining() for m in masks]


def at_init_counts(tmp_path, method: str, prune: dict, levels: int) -> list[dict[str, int]]:
    """The per-layer kept counts of ``method``'s masks at levels 0..levels (no training needed)."""
    from ticketlab.store.layout import Store
    from ticketlab.experiment.level_masks import ensure_level_mask
    from ticketlab.experiment.environment import environment

    config = tiny_config(levels=levels, prune={"method": method, **prune})
    store = Store.for_config(config, str(tmp_path / method))
    store.write_config(config)
    env = environment(config)
    for level in range(levels + 1):
        ensure_level_mask(env, store, 0, level)
    return [store.mask(store.level_mask_path(0, level)).remaining() for level in range(levels + 1)]


@pytest.mark.parametrize("method", AT_INIT)
def test_methods_at_init_keep_an_excluded_layer_whole_as_global_imp_does(tmp_path, method):
    """The excluded head keeps every weight at every level, as IMP's; the other layers are ranked
    together (their split is the method's choice, as it is IMP's by magnitude) to IMP's total."""
    prune = {"strategy": "global", "global_exclude": [HEAD]}
    imp, ours = imp_counts(prune, 3), at_init_counts(tmp_path, method, prune, 3)
    assert all(counts["layers.5.weight"] == 320 for counts in imp)  # IMP never prunes the excluded head
    assert [c["layers.5.weight"] for c in ours] == [c["layers.5.weight"] for c in imp]
    assert [sum(c.values()) for c in ours] == [sum(c.values()) for c in imp]


@pytest.mark.parametrize("method", AT_INIT)
def test_methods_at_init_keep_imps_count_in_every_layer_a_layer_rate_pins(tmp_path, method):
    pinned = {"strategy": "layerwise", "layer_rates": {r"^layers\.1\.": 0.5, r"^layers\.3\.": 0.3, HEAD: 0.05}}
    assert at_init_counts(tmp_path / "all", method, pinned, 2) == imp_counts(pinned, 2)
    # one layer pinned: that layer exactly as IMP; the others ranked together, IMP's total between them
    partial = {"strategy": "layerwise", "layer_rates": {r"^layers\.3\.": 0.6}}
    imp, ours = imp_counts(partial, 2), at_init_counts(tmp_path / "one", method, partial, 2)
    assert [c["layers.3.weight"] for c in ours] == [c["layers.3.weight"] for c in imp]
    assert [sum(c.values()) for c in ours] == [sum(c.values()) for c in imp]


def level_1_mask(tmp_path, prune: dict):
    """Level 1's mask of a tiny experiment (no training: made from the initial weights)."""
    from ticketlab.experiment.environment import environment
    from ticketlab.experiment.level_masks import ensure_level_mask
    from ticketlab.store.layout import Store

    config = tiny_config(levels=1, prune=prune)
    store = Store.for_config(config, str(tmp_path / str(len(list(tmp_path.iterdir())))))
    store.write_config(config)
    ensure_level_mask(environment(config), store, 0, 1)
    return store.mask(store.level_mask_path(0, 1))


def test_snip_and_grasp_score_as_their_references_by_default(tmp_path, monkeypatch):
    """One batch of 100 examples with the model in eval mode (prune.scoring = "reference"), and
    GraSP's logits divided by T = 200; "training" keeps the run's own 8 batches in training mode."""
    import ticketlab.pruning.at_init.grasp as grasp
    import ticketlab.pruning.at_init.snip as snip

    seen = []

    def spy(real):
        def scores(model, names, batches, loss):
            seen.append((model.training, [len(y) for _, y in batches], loss))
            return real(model, names, batches, loss)
        return scores

    monkeypatch.setattr(snip, "snip_scores", spy(snip.snip_scores))
    monkeypatch.setattr(grasp, "hessian_gradient", spy(grasp.hessian_gradient))
    level_1_mask(tmp_path, {"method": "snip"})
    assert seen[-1][:2] == (False, [100])
    level_1_mask(tmp_path, {"method": "snip", "scoring": "training"})
    assert seen[-1][:2] == (True, [tiny_config().train.batch_size] * 8)
    level_1_mask(tmp_path, {"method": "grasp"})
    training, sizes, loss = seen[-1]
    assert (training, sizes) == (False, [100])
    logits, target = torch.randn(5, 10), torch.randint(0, 10, (5,))
    assert torch.allclose(loss(logits, target), F.cross_entropy(logits / 200.0, target))
    assert not level_1_mask(tmp_path, {"method": "grasp", "grasp_temperature": 1.0}).equals(
        level_1_mask(tmp_path, {"method": "grasp"}))
