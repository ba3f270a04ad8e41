"""Every script in docs/examples runs (``--quick``) and prunes what it says it prunes."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from ticketlab.io import load_tensors

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


@pytest.fixture
def run_example(tmp_path, monkeypatch, capsys):
    """Run ``docs/examples/<name>.py --quick --out tmp`` in this process; return (result, plan, printed)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python docs/examples/x.py` would, for `_report`

    def run(name: str):
        module = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")
        result = module["main"](["--quick", "--out", str(tmp_path)])
        printed = capsys.readouterr().out
        config = result.config
        assert len(result.runs) == 1 + config.levels * (1 + len(config.controls))
        assert all(r["status"] == "ok" for r in result.runs)
        assert {r["arm"] for r in result.runs} == {"ticket", "reinit", "random"}
        last = max(result.levels())
        assert last >= 1 and all(r["percent_remaining"] < 100 for r in result.select(level=last))
        assert "what was pruned" in printed and f"at the last level ({last})" in printed
        return result, result.store.json(result.store.plan_path), printed

    return run


def test_cnn_batchnorm_prunes_convs_and_head_not_batchnorm(run_example):
    result, plan, _ = run_example("cnn_batchnorm")
    params, pruned = plan["parameters"], set(plan["pruned"])
    norms = [n for n, p in params.items() if p["roles"] == ["norm"]]
    convs = [n for n, p in params.items() if p["roles"] == ["conv"]]
    assert len(norms) == 2 and len(convs) == 2
    assert not pruned & set(norms)  # BatchNorm scales stay dense
    assert pruned == set(convs) | {"head.weight"} and plan["output"] == "head.weight"
    assert set(result.mask(1)) == pruned


def test_hf_bert_prunes_linear_weights_not_embeddings(run_example):
    pytest.importorskip("transformers")
    _, plan, _ = run_example("hf_bert")
    pruned = set(plan["pruned"])
    for layer in range(2):
        prefix = f"bert.encoder.layer.{layer}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "intermediate.dense", "output.dense"):
            assert f"{prefix}{part}.weight" in pruned
    embeddings = [n for n in plan["parameters"] if "embeddings" in n]
    assert len(embeddings) >= 3 and not pruned & set(embeddings)
    assert not any("LayerNorm" in n or n.endswith("bias") for n in pruned)
    assert plan["output"] == "classifier.weight"


def test_transformer_modadd_prunes_in_proj_weight_globally(run_example):
    result, plan, printed = run_example("transformer_modadd")
    assert result.config.prune.strategy == "global" and result.config.train.optimizer == "adamw"
    assert "encoder.layers.0.self_attn.in_proj_weight" in plan["pruned"]
    assert plan["parameters"]["encoder.layers.0.self_attn.in_proj_weight"]["roles"] == ["attention"]
    assert "embed.weight" not in plan["pruned"] and "pos" not in plan["pruned"]
    assert "in_proj_weight" in printed
    mask = result.mask(1)["encoder.layers.0.self_attn.in_proj_weight"]
    assert 0 < mask.float().mean() < 1


def test_regression_mlp_is_scored_by_r2(run_example):
    result, plan, printed = run_example("regression_mlp")
    assert {r["metric"] for r in result.runs} == {"r2"}
    assert result.select(arm="ticket", level=0)[0]["final_test_acc"] > 0.2  # R², well above predicting the mean
    assert "r2 on the test set" in printed
    assert plan["pruned"] == ["net.0.weight", "net.2.weight", "net.4.weight"]


def test_tiny_gpt_tied_embedding_has_one_mask(run_example):
    result, plan, printed = run_example("tiny_gpt")
    assert plan["aliases"] == {"lm_head.weight": "tok.weight"}
    assert plan["output"] == "tok.weight" and "tok.weight" in plan["pruned"]
    assert set(plan["parameters"]["tok.weight"]["roles"]) == {"embedding", "linear"}
    assert "lm_head.weight" not in plan["parameters"] and "pos.weight" not in plan["pruned"]
    assert "block.self_attn.in_proj_weight" in plan["pruned"]
    mask = result.mask(1)
    assert "tok.weight" in mask and "lm_head.weight" not in mask
    final = load_tensors(result.final_weights_path(1))
    assert "lm_head.weight" not in final and torch.all(final["tok.weight"][~mask["tok.weight"]] == 0)
    assert "tied: lm_head.weight = tok.weight" in printed


def test_plain_loop_trains_with_the_users_loop_and_reports(run_example):
    result, plan, printed = run_example("plain_loop")
    assert {r["stepper"] for r in result.runs} == {"user"} and result.config.train_loop
    assert result.select(arm="ticket", level=1)[0]["start_step"] == 20  # rewound to iteration k
    assert "verdicts (ticket against" in printed and "no verdict" in printed  # one seed in --quick
    assert (result.directory / "report" / "report.html").is_file() and "report:" in printed
    mask = result.mask(1)
    final = load_tensors(result.final_weights_path(1))
    assert mask and all(torch.all(final[n][~m] == 0) for n, m in mask.items())


def _trained_by_the_users_loop(result, steps_of_ticket: list[int]) -> None:
    """Every unit trained by the training function, the ticket evaluated where the framework
    evaluated it, and its stored final weights exactly zero where pruned."""
    assert {r["stepper"] for r in result.runs} == {"user"} and result.config.train_loop
    assert [r["step"] for r in result.metrics(1)] == steps_of_ticket
    mask = result.mask(1)
    final = load_tensors(result.final_weights_path(1))
    assert mask and all(torch.all(final[n][~m] == 0) for n, m in mask.items())


def test_lightning_cnn_trains_through_the_callback(run_example):
    pytest.importorskip("lightning", reason="the Lightning example needs lightning (pip install lightning)")
    result, plan, _ = run_example("lightning_cnn")
    assert result.select(arm="ticket", level=1)[0]["start_step"] == 20  # rewound to iteration k
    _trained_by_the_users_loop(result, [40])  # the module's validation at the unit's last step
    assert [r["step"] for r in result.metrics(0)] == [20, 40]
    assert "head.weight" in plan["pruned"] and not any("features.1" in n for n in plan["pruned"])


def test_hf_trainer_trains_through_the_callback(run_example):
    pytest.importorskip("transformers", reason="the Trainer example needs transformers (pip install transformers)")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (pip install accelerate)")
    result, plan, _ = run_example("hf_trainer")
    _trained_by_the_users_loop(result, [10, 20])  # the Trainer's own evaluations (eval_steps = eval_every)
    assert "bert.encoder.layer.0.attention.self.query.weight" in plan["pruned"]
