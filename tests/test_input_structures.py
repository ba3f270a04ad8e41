"""Inputs as users have them: several inputs (tuples), named inputs (dicts, Hugging Face's
``input_ids`` / ``attention_mask`` / ``labels``), datasets of dict items, loaders yielding
dicts, through training, controls, ``result.model``, export and bundles; and what cannot be
done with them refused in one line before anything is written."""

from __future__ import annotations

import pytest
import torch

import ticketlab
from ticketlab.data.batch import call, named_tensors, split_item, take
from ticketlab.errors import ConfigError

from user_code import models

CONFIG = {"levels": 2, "controls": ["random"],
          "train": {"iterations": 150, "eval_every": 50, "batch_size": 32, "lr": 0.01}}


def opts(path, **kw):
    return ticketlab.RunOptions(root=str(path), device="cpu", progress=False, workers=1, **kw)


class ItemDataset:
    """A Hugging Face-style dataset: ``len`` and integer indexing giving one dict per example
    (not a torch Dataset: ``datasets.Dataset`` is not one either)."""

    def __init__(self, split: dict[str, torch.Tensor]) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split["labels"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: values[i] for name, values in self.split.items()}


class TupleItems(torch.utils.data.Dataset):
    """A torch Dataset whose items are ``(left, right, label)``."""

    def __init__(self, split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split[-1])

    def __getitem__(self, i: int):
        return tuple(t[i] for t in self.split)


def _unit_numbers(result):
    return {(r["replicate"], r["level"], r["arm"]): (r["early_stop_step"], r["test_acc_at_early_stop"],
                                                     r["final_test_acc"]) for r in result.runs}


# ---------------------------------------------------------------------------- the structures themselves
def test_split_item_takes_labels_out_of_every_shape_users_hand_over():
    x, y = torch.zeros(3, 2), torch.arange(3)
    assert split_item((x, y), "b")[1] is y
    inputs, labels = split_item((x, x + 1, y), "b")
    assert isinstance(inputs, tuple) and len(inputs) == 2 and labels is y
    inputs, labels = split_item({"input_ids": x, "attention_mask": x, "labels": y}, "b")
    assert set(inputs) == {"input_ids", "attention_mask"} and labels is y
    with pytest.raises(ConfigError, match="without 'labels'.*input_ids"):
        split_item({"input_ids": x}, "the train loader's batch")


def test_taking_rows_and_naming_tensors_keep_the_structure():
    batch = {"input_ids": torch.arange(12).view(6, 2), "attention_mask": torch.ones(6, 2)}
    rows = take(batch, torch.tensor([4, 1]))
    assert rows["input_ids"].tolist() == [[8, 9], [2, 3]] and rows["attention_mask"].shape == (2, 2)
    assert [name for name, _ in named_tensors(batch, "x_val")] == ["x_val.input_ids", "x_val.attention_mask"]
    assert [name for name, _ in named_tensors((torch.ones(2), torch.zeros(2)), "x")] == ["x.0", "x.1"]
    assert [name for name, _ in named_tensors(torch.ones(2), "x_train")] == ["x_train"]  # old fingerprints kept
    assert call(lambda a, b: a - b, (torch.tensor(3), torch.tensor(1))) == 2
    assert call(lambda *, p, q: p * q, {"p": torch.tensor(3), "q": torch.tensor(2)}) == 6


# ---------------------------------------------------------------------------- training
def test_a_dict_split_trains_bit_for_bit_as_the_same_tensors_in_a_pair(tmp_path):
    pairs = models.classification_data()
    named = {split: {"x": x, "labels": y} for split, (x, y) in pairs.items()}  # WithDropout.forward(x)
    a = ticketlab.run(CONFIG, opts(tmp_path / "a"), model=models.WithDropout, data=pairs)
    b = ticketlab.run(CONFIG, opts(tmp_path / "b"), model=models.WithDropout, data=named)
    assert _unit_numbers(a) == _unit_numbers(b) and len(a.runs) == 5
    for level, arm in ((1, "ticket"), (2, "random")):
        assert a.mask(level, arm=arm).equals(b.mask(level, arm=arm))
        for (name, p), (_, q) in zip(a.model(level, arm=arm).state_dict().items(),
                                     b.model(level, arm=arm).state_dict().items()):
            assert torch.equal(p, q), name


def test_a_dataset_of_dict_items_trains_a_model_of_named_inputs_and_the_mask_matters(tmp_path):
    splits = models.token_data()
    data = {name: ItemDataset(split) for name, split in splits.items()}
    result = ticketlab.run(CONFIG, opts(tmp_path), model=models.MaskedBag, data=data)
    assert all(r["status"] == "ok" for r in result.runs)
    dense = result.select("ticket", 0)[0]
    assert dense["test_acc_at_early_stop"] > 0.8  # token 1 found among the kept tokens: padding is token 1 too
    direct = ticketlab.run(CONFIG, opts(tmp_path / "direct"), model=models.MaskedBag, data=splits)
    assert _unit_numbers(direct) == _unit_numbers(result)  # items stacked into the same tensors
    model = result.model(2)
    x = take({k: v for k, v in splits["test"].items() if k != "labels"}, slice(0, 4))
    assert call(model, x)["logits"].shape == (4, 2)
    weights = dict(model.named_parameters())
    mask = result.mask(2)
    assert all(torch.all(weights[name][m == 0] == 0) for name, m in mask.tensors.items())


def test_tuples_of_several_inputs_train_from_tensors_and_from_a_torch_dataset(tmp_path):
    splits = models.two_input_data()
    a = ticketlab.run(CONFIG, opts(tmp_path / "a"), model=models.TwoInputs, data=splits)
    b = ticketlab.run(CONFIG, opts(tmp_path / "b"), model=models.TwoInputs,
                      data={name: TupleItems(split) for name, split in splits.items()})
    assert _unit_numbers(a) == _unit_numbers(b)
    assert a.select("ticket", 0)[0]["test_acc_at_early_stop"] > 0.8  # the label needs both inputs


def test_a_loader_of_dict_batches_streams_and_resumes_to_the_same_numbers(tmp_path):
    from torch.utils.data import DataLoader

    splits = models.token_data()
    loaders = {name: (lambda s=split: DataLoader(ItemDataset(s), batch_size=32, shuffle=True))
               for name, split in splits.items()}
    config = {**CONFIG, "levels": 1, "controls": []}
    streamed = ticketlab.run(config, opts(tmp_path / "s"), model=models.MaskedBag, data=loaders, data_version="v1")
    assert streamed.select("ticket", 0)[0]["test_acc_at_early_stop"] > 0.8
    again = ticketlab.run(config, opts(tmp_path / "s"), model=models.MaskedBag, data=loaders, data_version="v1")
    assert _unit_numbers(again) == _unit_numbers(streamed)


# ---------------------------------------------------------------------------- refused in one line
@pytest.mark.parametrize("data, options, message", [
    ({"train": {"x": torch.ones(8, 4)}, "val": {"x": torch.ones(4, 4)}}, {}, r"without 'labels' \(keys: x\)"),
    ({"train": (torch.ones(8, 4), torch.ones(7, 4), torch.zeros(8).long()),
      "val": (torch.ones(4, 4), torch.ones(4, 4), torch.zeros(4).long())}, {}, r"different numbers of examples"),
    ({"train": {"x": torch.ones(8, 4), "n": 3, "labels": torch.zeros(8).long()},
      "val": {"x": torch.ones(4, 4), "labels": torch.zeros(4).long()}}, {}, r"entry 'n' is int, not a tensor"),
    (models.two_input_data(), {"batch": 2}, r"^--batch stacks replicates on one input tensor.*--batch 1"),
])
def test_inputs_that_cannot_train_are_one_config_error_before_anything_is_written(tmp_path, data, options, message):
    with pytest.raises(ConfigError, match=message):
        ticketlab.run({**CONFIG, "seeds": 2}, opts(tmp_path / "e", **options), model=models.TwoInputs, data=data)
    assert not (tmp_path / "e").exists()


def test_a_built_in_model_on_several_inputs_and_copied_labels_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="built-in models take one input tensor.*give your own model"):
        ticketlab.run({**CONFIG, "model": "mlp_8"}, opts(tmp_path / "e"), data=models.two_input_data())
    tokens = models.sequence_data()
    copied = {name: {"input_ids": x, "labels": x.clone()} for name, (x, _) in tokens.items()}
    with pytest.raises(ConfigError, match="labels equal the inputs"):
        ticketlab.run(CONFIG, opts(tmp_path / "e"), model=models.TinyGPT, data={
            name: {"tokens": s["input_ids"], "labels": s["labels"]} for name, s in copied.items()})
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------------------- the ticket, shipped
@pytest.mark.parametrize("fmt", ["sparse", "torch-prune", "onnx"])
@pytest.mark.parametrize("kind", ["dict", "tuple"])
def test_a_ticket_of_several_inputs_exports_and_reloads(tmp_path, fmt, kind):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from ticketlab.export.ticket import export_model

    factory, splits = ((models.MaskedBag, models.token_data()) if kind == "dict"
                       else (models.TwoInputs, models.two_input_data()))
    result = ticketlab.run({**CONFIG, "controls": []}, opts(tmp_path / "e"), model=factory, data=splits)
    x, _ = split_item(splits["test"], "test")
    x = take(x, slice(0, 16))
    model = result.model(2, weights="final")
    spec = {"name": f"user_code.models:{factory.__name__}", "input_shape": None, "num_classes": 3}
    report = export_model(model, result.mask(2), fmt, tmp_path / f"ticket.{fmt}", x, spec, factory=factory)
    assert report.max_abs_diff <= 1e-5
    got, want = call(report.loaded, x), call(model, x)
    got, want = (v["logits"] if isinstance(v, dict) else v[0] if isinstance(v, tuple) else v for v in (got, want))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert report.exported.nonzeros == report.dense.nonzeros  # the trained ticket's survivors, all carried
    if fmt == "sparse":  # survivors only, and their multiplies only
        assert report.exported.parameters < report.dense.parameters and report.exported.flops < report.dense.flops


def test_a_bundle_of_a_two_input_ticket_verifies_exactly_with_its_data(tmp_path):
    from ticketlab.bundle.pack import BundleError, make_bundle
    from ticketlab.bundle.verification import verify

    result = ticketlab.run({**CONFIG, "controls": []}, opts(tmp_path / "e"), model="user_code.models:TwoInputs",
                           data=models.two_input_data())
    path = make_bundle(result.directory, 2, tmp_path / "two.safetensors")
    outcome = verify(path, data=models.two_input_data())
    assert outcome.mode == "exact" and outcome.passed, [c for c in outcome.checks if c.ok is False]
    with pytest.raises(BundleError, match="not the data the ticket was trained on"):
        verify(path, data=models.two_input_data(seed=1))


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification(BertConfig(
        vocab_size=13, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def test_a_hugging_face_classifier_trains_on_its_batches_with_its_own_loss_or_ours(tmp_path):
    pytest.importorskip("transformers")
    data = models.token_data()
    config = {**CONFIG, "levels": 1}
    own = ticketlab.run(config, opts(tmp_path / "own"), model=_tiny_bert, data=data, task=ticketlab.Task(loss="model"))
    ours = ticketlab.run(config, opts(tmp_path / "ours"), model=_tiny_bert, data=data)
    assert all(r["status"] == "ok" for r in own.runs + ours.runs) and len(own.runs) == 3
    # BERT's own loss for one label per sequence is the cross-entropy ticketlab computes itself
    for key, (step, at_stop, final) in _unit_numbers(ours).items():
        other = _unit_numbers(own)[key]
        assert abs(other[1] - at_stop) <= 0.02 and abs(other[2] - final) <= 0.02, key
