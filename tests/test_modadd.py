"""Tests for the modular-addition dataset, the token Transformer and the AdamW option."""

from __future__ import annotations

import pytest
import torch

from ticketlab.config import Config, TrainConfig
from ticketlab.data import DATASETS, load_dataset
from ticketlab.data.modadd import P, make_modadd, split_sizes
from ticketlab.errors import ConfigError
from ticketlab.masks import prunable_names
from ticketlab.models import build_model
from ticketlab.train.optim import make_optimizer
from ticketlab.experiment.environment import environment

MODEL = "transformer_modadd"


def _rows(x: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(r) for r in x.tolist()]


def test_modadd_covers_every_pair_once_with_correct_labels():
    d = load_dataset("modadd", split_seed=0)
    assert "modadd" in DATASETS and d.num_classes == P and d.input_shape == (3,)
    assert d.x_train.dtype == torch.int64 and d.y_train.dtype == torch.int64
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == split_sizes(P * P)
    x = torch.cat([d.x_train, d.x_val, d.x_test])
    y = torch.cat([d.y_train, d.y_val, d.y_test])
    rows = _rows(x)
    assert len(rows) == len(set(rows)) == P * P
    assert set(rows) == {(a, b, P) for a in range(P) for b in range(P)}
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % P)
    assert int(x.max()) == P  # the "=" token; vocabulary p + 1


def test_modadd_split_is_deterministic_per_split_seed():
    a, b, c = (load_dataset("modadd", split_seed=s) for s in (3, 3, 4))
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.x_train, c.x_train)


def test_modadd_small_modulus_and_no_data_dir(tmp_path):
    d = make_modadd(5, split_seed=0, fractions=(0.6, 0.2, 0.2))
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 25
    with pytest.raises(ConfigError, match="no --data-dir"):
        load_dataset("modadd", data_dir=tmp_path)


def test_transformer_builds_on_meta_and_cpu_with_attention_weights():
    config = Config.from_dict({"model": MODEL, "data": {"dataset": "modadd"}})
    d = load_dataset("modadd")
    meta = environment(config).meta_model()
    assert next(meta.parameters()).device.type == "meta"
    torch.manual_seed(0)
    model = build_model(MODEL, d.input_shape, d.num_classes)
    names = [n for n, _ in model.named_parameters()]
    assert names == [n for n, _ in meta.named_parameters()]
    assert any(n.endswith("self_attn.in_proj_weight") for n in names)
    assert "embed.weight" in names
    logits = model(d.x_test[:17])
    assert logits.shape == (17, P)
    # by role: attention projections (in_proj_weight, out_proj), the feed-forward and the head;
    # not the embeddings, norms or biases
    pruned = prunable_names(model, config.prune)
    assert any(n.endswith("self_attn.in_proj_weight") for n in pruned)
    assert any(n.endswith("self_attn.out_proj.weight") for n in pruned) and "head.weight" in pruned
    assert not any("embed" in n or "norm" in n or "bias" in n for n in pruned)


def test_transformer_train_and_eval_modes_agree_exactly():
    d = load_dataset("modadd")
    torch.manual_seed(1)
    model = build_model(MODEL, d.input_shape, d.num_classes)
    model.train()
    train_out = model(d.x_val)
    model.eval()
    with torch.no_grad():
        eval_out = model(d.x_val)
    assert torch.equal(train_out, eval_out)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 1)])
def test_transformer_refuses_non_token_inputs(shape):
    with pytest.raises(ConfigError) as excinfo:
        build_model(MODEL, shape, 10)
    assert "\n" not in str(excinfo.value) and "token" in str(excinfo.value)


def test_sized_transformer_pattern():
    model = build_model("transformer_32_2", (3,), 7)
    assert len(model.encoder.layers) == 2 and model.embed.embedding_dim == 32
    assert model(torch.tensor([[1, 2, 7]])).shape == (1, 7)


def test_adamw_is_decoupled_weight_decay():
    p = torch.nn.Parameter(torch.ones(3))
    train = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5)
    opt = make_optimizer([p], train, torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW)
    p.grad = torch.zeros(3)
    opt.step()  # zero gradient: only the decoupled decay acts, w <- w * (1 - lr * wd)
    assert torch.allclose(p.detach(), torch.full((3,), 0.95))
    assert Config.from_dict({"train": {"optimizer": "adamw"}}).train.optimizer == "adamw"
    with pytest.raises(ConfigError):
        Config.from_dict({"train": {"optimizer": "adamx"}})
