"""Exports of models beyond the built-in chains: dict / ModelOutput outputs, attention, tied weights.

Every check compares against the masked model computed in the same test, and every reload
goes into a freshly built model (other random weights), the way a user loads an export.
"""

from __future__ import annotations

import copy
import errno

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab.errors import ConfigError, StoreError, TicketlabError
from ticketlab.export import apply_mask
from ticketlab.export.ticket import export_model, load_torch_prune, torch_prune_mask
from ticketlab.io import load_tensors
from ticketlab.masks import Mask

TOL = 1e-5


def random_mask(model: nn.Module, keep: float = 0.3, seed: int = 0) -> Mask:
    generator = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=generator) < keep
                 for n, p in model.named_parameters() if p.dim() > 1})


def masked_outputs(model: nn.Module, mask: Mask, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return logits(apply_mask(copy.deepcopy(model), mask).eval()(x))


def logits(output) -> torch.Tensor:
    return output["logits"] if isinstance(output, dict) or hasattr(output, "logits") else output


def plain_torch_load(path, fresh: nn.Module) -> nn.Module:
    """What a user with only PyTorch does: reparametrise by the file's masks, then a strict load."""
    state = load_tensors(path)
    for key, value in state.items():
        if key.endswith("_mask"):
            owner, _, local = key[: -len("_mask")].rpartition(".")
            prune.custom_from_mask(fresh.get_submodule(owner), local, value.bool())
    fresh.load_state_dict(state, strict=True)
    return fresh.eval()


class DictNet(nn.Module):
    """A user model returning a dict, as Hugging Face models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return {"logits": self.body(x), "hidden": x.sum(dim=1)}


class Attention(nn.Module):
    """Tokens -> embedding -> nn.MultiheadAttention -> head (MHA reads out_proj.weight itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 16)
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.attention(h, h, h)
        return self.head(a.mean(dim=1))


def seeded(factory, seed):
    torch.manual_seed(seed)
    return factory().eval()


@pytest.fixture
def attention():
    model = seeded(Attention, 0)
    return model, random_mask(model), torch.randint(0, 11, (8, 5)), lambda: seeded(Attention, 99)


def tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    return lambda seed=7: seeded(lambda: transformers.GPT2LMHeadModel(config), seed)


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


# ---------------------------------------------------------------- dict and ModelOutput outputs
@pytest.mark.parametrize("fmt", ["sparse", "torch-prune", "onnx"])
def test_dict_output_model_exports_and_reloads(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    model = seeded(DictNet, 0)
    mask = random_mask(model)
    x = torch.rand(8, 6)
    spec = {"name": "mymodels:dict_net", "input_shape": [6], "num_classes": 3}
    report = export_model(model, mask, fmt, tmp_path / "out.bin", x, spec, factory=lambda: seeded(DictNet, 5))
    assert report.max_abs_diff <= TOL
    out = report.loaded(x)
    got = out["logits"] if isinstance(out, dict) else out[0]
    torch.testing.assert_close(got, masked_outputs(model, mask, x), rtol=0, atol=TOL)
    assert leftovers(tmp_path) == ["out.bin"]


def test_gpt2_model_output_exports_sparse_and_torch_prune(tmp_path):
    build = tiny_gpt2()
    model = build(0)
    mask = random_mask(model)
    x = torch.randint(0, 50, (2, 8))
    spec = {"name": "hf:gpt2", "input_shape": [8], "num_classes": 50}
    reference = masked_outputs(model, mask, x)
    for fmt in ("sparse", "torch-prune"):
        report = export_model(model, mask, fmt, tmp_path / f"{fmt}.safetensors", x, spec, factory=build)
        assert report.max_abs_diff <= TOL
        torch.testing.assert_close(report.loaded(x).logits, reference, rtol=0, atol=TOL)


# ---------------------------------------------------------------- nothing unchecked is left on disk
def test_failed_check_leaves_nothing(tmp_path, monkeypatch):
    model = seeded(DictNet, 0)
    monkeypatch.setattr("ticketlab.export.ticket.TOLERANCE", -1.0)  # every check fails
    target = tmp_path / "new" / "out.safetensors"
    with pytest.raises(TicketlabError, match="does not reproduce"):
        export_model(model, random_mask(model), "torch-prune", target, torch.rand(4, 6))
    assert leftovers(tmp_path) == []


def test_check_loads_into_a_fresh_model_from_the_factory(tmp_path, attention):
    model, mask, x, factory = attention
    built = []
    export_model(model, mask, "torch-prune", tmp_path / "p.safetensors", x,
                 factory=lambda: built.append(1) or factory())
    assert built  # the reload went into a model the factory built, not a copy of the trained one


def test_check_without_a_factory_does_not_reuse_the_trained_weights(tmp_path, attention, monkeypatch):
    """Without a factory the fresh model is a NaN-filled copy, never the trained model: a file
    that does not carry a weight right (here out_proj left to a hook that never runs, the
    old torch-prune bug) fails the check instead of borrowing the trained value."""
    model, mask, x, _ = attention
    monkeypatch.setattr("ticketlab.export.prune_interop.hookless", lambda model, example=None: [])
    with pytest.raises(TicketlabError, match="does not reproduce"):
        export_model(model, mask, "torch-prune", tmp_path / "p.safetensors", x)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- torch-prune: attention and tied weights
def test_torch_prune_of_attention_loads_right_in_plain_torch_and_ticketlab(tmp_path, attention):
    model, mask, x, factory = attention
    assert "attention.out_proj.weight" in mask
    reference = masked_outputs(model, mask, x)
    path = tmp_path / "p.safetensors"
    report = export_model(model, mask, "torch-prune", path, x, factory=factory)
    assert report.max_abs_diff <= TOL
    with torch.no_grad():
        torch.testing.assert_close(plain_torch_load(path, factory())(x), reference, rtol=0, atol=TOL)
        loaded = load_torch_prune(path, factory())
        torch.testing.assert_close(loaded(x), reference, rtol=0, atol=TOL)
    assert torch_prune_mask(path, loaded).equals(mask)


def test_torch_prune_of_gpt2_with_tied_weights_loads_strictly(tmp_path):
    build = tiny_gpt2()
    model = build(0)
    assert model.lm_head.weight is model.transformer.wte.weight
    mask = random_mask(model)
    assert "transformer.wte.weight" in mask  # the tied embedding is pruned, and so is the head it feeds
    x = torch.randint(0, 50, (2, 8))
    reference = masked_outputs(model, mask, x)
    path = tmp_path / "p.safetensors"
    export_model(model, mask, "torch-prune", path, x, factory=build)
    with torch.no_grad():
        torch.testing.assert_close(plain_torch_load(path, build(3))(x).logits, reference, rtol=0, atol=TOL)
        torch.testing.assert_close(load_torch_prune(path, build(4))(x).logits, reference, rtol=0, atol=TOL)


# ---------------------------------------------------------------- ONNX of attention
def test_onnx_exports_multihead_attention(tmp_path, attention):
    pytest.importorskip("onnxruntime")
    model, mask, x, factory = attention
    report = export_model(model, mask, "onnx", tmp_path / "a.onnx", x, factory=factory)
    torch.testing.assert_close(report.loaded(x), masked_outputs(model, mask, x), rtol=0, atol=TOL)
    assert torch.backends.mha.get_fastpath_enabled()  # restored after the export


def test_onnx_of_gpt2_exports_or_refuses_in_one_line(tmp_path, capfd):
    pytest.importorskip("onnxruntime")
    build = tiny_gpt2()
    model = build(0)
    mask = random_mask(model)
    x = torch.randint(0, 50, (2, 8))
    try:
        report = export_model(model, mask, "onnx", tmp_path / "g.onnx", x, factory=build)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "ONNX cannot express GPT2LMHeadModel" in str(exc)
        assert "graph(" not in capfd.readouterr().err
        assert leftovers(tmp_path) == []
    else:
        assert report.max_abs_diff <= TOL


# ---------------------------------------------------------------- unusable --out
def test_out_onto_a_directory_or_proc_is_one_line(tmp_path, attention):
    model, mask, x, factory = attention
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        export_model(model, mask, "sparse", tmp_path / "taken", x, factory=factory)
    with pytest.raises(StoreError, match="cannot"):
        export_model(model, mask, "torch-prune", "/proc/ticketlab-test/p.safetensors", x, factory=factory)


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, attention):
    model, mask, x, factory = attention

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("ticketlab.io.write_bytes_atomic", full)
    with pytest.raises(StoreError, match="No space left on device"):
        export_model(model, mask, "torch-prune", tmp_path / "p.safetensors", x, factory=factory)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- the CLI: one line, exit 2, nothing written
@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import ticketlab
    from conftest import tiny_config
    from ticketlab.config import RunOptions

    root = tmp_path_factory.mktemp("experiments")
    options = RunOptions(root=str(root), device="cpu", threads=1, workers=1, progress=False)
    return ticketlab.run(tiny_config(levels=1, prune={"rate": 0.6}), options).directory


def one_line_refusal(code, stdout, stderr, message):
    assert code == 2 and message in stderr, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


def test_cli_export_weights_of_another_model_is_one_line(experiment, tmp_path, capsys):
    from conftest import cli
    from ticketlab.io import save_tensors

    save_tensors({"fc.weight": torch.zeros(3, 4)}, tmp_path / "other.safetensors")
    out = tmp_path / "t.safetensors"
    result = cli(["export", str(experiment), "--level", "1", "--format", "torch-prune", "--out", str(out),
                  "--weights", str(tmp_path / "other.safetensors")], capsys)
    one_line_refusal(*result, "are not weights of this experiment's model")
    assert not out.exists()


@pytest.mark.parametrize("where", ["directory", "proc", "full disk"])
def test_cli_export_unusable_out_is_one_line_and_writes_nothing(experiment, tmp_path, capsys, monkeypatch, where):
    from conftest import cli

    target = tmp_path / "out"
    if where == "directory":
        target.mkdir()
        message = "is a directory"
    elif where == "proc":
        target = "/proc/ticketlab-export-test/t.safetensors"
        message = "cannot"
    else:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("ticketlab.io.write_bytes_atomic", full)
        message = "No space left on device"
    before = leftovers(tmp_path)
    result = cli(["export", str(experiment), "--level", "1", "--format", "sparse", "--out", str(target)], capsys)
    one_line_refusal(*result, message)
    assert leftovers(tmp_path) == before
    if where == "directory":
        assert leftovers(target) == []


def test_loaders_never_import_a_user_model_named_in_the_file(tmp_path):
    """Sparse and structured exports of a user's model rebuild it only from a model passed in."""
    from ticketlab.export._files import recorded_model
    from ticketlab.export.sparse import load_sparse

    model = seeded(DictNet, 0)
    mask = random_mask(model)
    spec = {"name": "mymodels:dict_net", "input_shape": [6], "num_classes": 3}
    export_model(model, mask, "sparse", tmp_path / "s.safetensors", torch.rand(4, 6), spec)
    with pytest.raises(ConfigError, match="build it and pass it as model="):
        load_sparse(tmp_path / "s.safetensors")
    with pytest.raises(ConfigError, match="build it and pass it as model="):
        recorded_model(spec, None)
    assert recorded_model(spec, model) is model


def test_hf_image_classifier_output_exports(tmp_path):
    """A Hugging Face ResNet returns ImageClassifierOutputWithNoAttention (the issue's traceback)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                       num_labels=3)
    build = lambda seed=7: seeded(lambda: transformers.ResNetForImageClassification(config), seed)  # noqa: E731
    model = build(0)
    mask = random_mask(model)
    x = torch.rand(2, 1, 16, 16)
    spec = {"name": "hf:resnet", "input_shape": [1, 16, 16], "num_classes": 3}
    reference = masked_outputs(model, mask, x)
    for fmt in ("sparse", "torch-prune"):
        report = export_model(model, mask, fmt, tmp_path / f"{fmt}.safetensors", x, spec, factory=build)
        torch.testing.assert_close(report.loaded(x).logits, reference, rtol=0, atol=TOL)
