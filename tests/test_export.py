"""Shipping a ticket: torch.nn.utils.prune interop, sparse/structured/ONNX exports, FLOPs, the CLI.

Every export is checked the same way: its outputs against the masked dense model's, on
LeNet-style MLPs, the conv2 net and the modadd Transformer (masks made by hand so the
tests are fast, plus one tiny real experiment for the CLI path).
"""

from __future__ import annotations

import builtins
import copy
import pickle
import sys

import pytest
import torch
from torch import nn

from conftest import cli, tiny_config
from ticketlab.config import RunOptions
from ticketlab.errors import ConfigError, StoreError
from ticketlab.export import apply_mask, dense_and_sparse_flops, from_torch_prune, to_torch_prune
from ticketlab.export.sparse import SparseLinear, load_sparse, save_sparse
from ticketlab.export.structured import load_structured, save_structured, structured_chain
from ticketlab.export.ticket import export_model, load_torch_prune, save_torch_prune
from ticketlab.masks import Mask
from ticketlab.models import build_model

TOL = 1e-5


def magnitude_mask(model: nn.Module, keep: float, names=None) -> Mask:
    """Layerwise magnitude pruning of every matrix/kernel weight (or of ``names``)."""
    tensors = {}
    for name, p in model.named_parameters():
        if (names is None and p.dim() > 1 and name.endswith("weight")) or (names is not None and name in names):
            k = max(1, int(keep * p.numel()))
            threshold = p.detach().abs().flatten().kthvalue(p.numel() - k + 1).values
            tensors[name] = p.detach().abs() >= threshold
    return Mask(tensors)


def lenet(seed=0, classes=10):
    torch.manual_seed(seed)
    return build_model("lenet_300_100", (1, 28, 28), classes).eval()


def masked_copy(model, mask):
    return apply_mask(copy.deepcopy(model), mask).eval()


def assert_close(a, b, tol=TOL):
    assert (a - b).abs().max().item() <= tol


def onnxruntime_or_skip():
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ticketlab[export]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'ticketlab[export]')")


@pytest.fixture
def images():
    torch.manual_seed(1)
    x = torch.rand(16, 1, 28, 28)
    x[:, :, :3] = 0  # like MNIST's empty border rows
    return x


# ---------------------------------------------------------------- torch.nn.utils.prune interop
def test_torch_prune_round_trip(images):
    model = lenet()
    mask = magnitude_mask(model, 0.1)
    reference = masked_copy(model, mask)(images)
    pruned = to_torch_prune(copy.deepcopy(model), mask)
    first = pruned.layers[1]
    assert hasattr(first, "weight_orig") and hasattr(first, "weight_mask")
    assert "layers.1.weight" not in dict(pruned.named_parameters())
    assert from_torch_prune(pruned).equals(mask)
    assert_close(pruned(images), reference)


def test_torch_prune_file_round_trip_loads_masks_before_weights(tmp_path, images):
    model = lenet()
    mask = magnitude_mask(model, 0.1)
    path = tmp_path / "pruned.safetensors"
    save_torch_prune(to_torch_prune(copy.deepcopy(model), mask), path)
    loaded = load_torch_prune(path, lenet(seed=99))  # other random weights: all must be replaced
    assert from_torch_prune(loaded).equals(mask)
    assert_close(loaded(images), masked_copy(model, mask)(images))


def test_from_torch_prune_reads_pytorch_own_pruning():
    model = lenet()
    torch.nn.utils.prune.l1_unstructured(model.layers[3], "weight", amount=0.5)
    mask = from_torch_prune(model)
    assert list(mask) == ["layers.3.weight"] and mask.fraction_remaining() == pytest.approx(0.5)


def test_bad_masks_are_one_line_errors():
    model = lenet()
    with pytest.raises(ConfigError, match="not a parameter"):
        apply_mask(model, {"layers.9.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="shape"):
        to_torch_prune(model, {"layers.1.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="no torch.nn.utils.prune masks"):
        from_torch_prune(model)


# ---------------------------------------------------------------- FLOPs
def test_flops_count_weights_per_application():
    model = lenet()
    mask = magnitude_mask(model, 0.05)
    dense, sparse = dense_and_sparse_flops(model, mask, torch.zeros(4, 1, 28, 28))
    assert dense == 2 * (784 * 300 + 300 * 100 + 100 * 10)
    assert sparse == 2 * sum(mask.remaining().values())
    torch.manual_seed(0)
    conv = build_model("conv2", (1, 8, 8), 10)
    dense, _ = dense_and_sparse_flops(conv, None, torch.zeros(2, 1, 8, 8))
    convs = 2 * 64 * 9 * 64 + 2 * 64 * 64 * 9 * 64  # two 3x3 convs at 8x8 = 64 positions
    linears = 2 * (64 * 16 * 256 + 256 * 256 + 256 * 10)
    assert dense == convs + linears


# ---------------------------------------------------------------- LeNet: sparse, structured, ONNX
def test_lenet_sparse_matches_masked_and_is_small(tmp_path, images):
    model = lenet()
    mask = magnitude_mask(model, 0.036)
    masked = masked_copy(model, mask)
    path = tmp_path / "lenet.safetensors"
    save_sparse(masked, mask, path, images)
    loaded = load_sparse(path)
    assert sum(isinstance(m, SparseLinear) for m in loaded.modules()) == 3
    assert_close(loaded(images), masked(images))
    dense_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert path.stat().st_size * 15 <= dense_bytes


def test_structured_removes_dead_units_and_inputs(tmp_path, images):
    model = lenet()
    mask = magnitude_mask(model, 0.2)
    w1, w2, w3 = (mask.tensors[f"layers.{i}.weight"] for i in (1, 3, 5))
    w1[:, :84] = False  # the first three pixel rows feed nothing: inputs dropped
    w2[:, :20] = False  # hidden units 0..19 feed nothing: dead
    w1[20:30] = False  # units 20..29 get no input: constant relu(bias)
    w3[:, 50:] = False  # second-layer units 50..99 are dead, and so their inputs are too
    alive = int(w3[:, :50].any(dim=0).sum())  # (at 20% a few of units 0..49 lost all their outputs already)
    with torch.no_grad():
        model.layers[1].bias[20:30] = torch.linspace(-0.5, 0.5, 10)  # some fold into the next bias, some are zero
    masked = masked_copy(model, mask)
    net, removed = structured_chain(masked, mask, images)
    assert removed["units"]["layers.1"] == [300, 270] and removed["units"]["layers.3"] == [100, alive]
    assert removed["inputs"] == [784, 700] and net.input_index.numel() == 700
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(270, 700), (alive, 270), (10, alive)]
    path = tmp_path / "structured.safetensors"
    save_structured(net, path, images)
    loaded = load_structured(path)
    assert_close(net(images), masked(images))
    assert_close(loaded(images), masked(images))


def test_lenet_onnx_of_structured(tmp_path, images):
    onnxruntime_or_skip()
    model = lenet()
    mask = magnitude_mask(model, 0.036)
    report = export_model(model, mask, "onnx", tmp_path / "lenet.onnx", images)
    assert report.max_abs_diff <= TOL
    assert report.exported.parameters < report.dense.parameters and report.removed["units"]


# ---------------------------------------------------------------- conv2
@pytest.fixture
def conv_ticket():
    torch.manual_seed(0)
    model = build_model("conv2", (1, 8, 8), 10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(-0.3, 0.3)
    gen = torch.Generator().manual_seed(2)
    mask = Mask({n: torch.rand(p.shape, generator=gen) < 0.2 for n, p in model.named_parameters() if p.dim() > 1})
    mask.tensors["features.0.weight"][:8] = False  # channels 0..7 get no input: constant
    mask.tensors["features.2.weight"][:, 8:16] = False  # channels 8..15 feed nothing: dead
    mask.tensors["classifier.1.weight"][:, : 16 * 10] = False  # conv channels 0..9 of the last conv feed nothing
    return model, mask, torch.rand(8, 1, 8, 8)


def test_conv_sparse_structured_onnx_match_masked(tmp_path, conv_ticket):
    model, mask, x = conv_ticket
    masked = masked_copy(model, mask)
    reference = masked(x)
    sparse = export_model(model, mask, "sparse", tmp_path / "c.safetensors", x)
    structured = export_model(model, mask, "structured", tmp_path / "s.safetensors", x)
    assert sparse.max_abs_diff <= TOL and structured.max_abs_diff <= TOL
    net = load_structured(tmp_path / "s.safetensors")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels <= 64 - 8 and convs[1].out_channels == 64 - 10
    assert convs[1].in_channels == convs[0].out_channels
    assert_close(net(x), reference)
    assert structured.exported.flops < structured.dense.flops
    if "onnxruntime" in sys.modules or _importable("onnxruntime"):
        assert export_model(model, mask, "onnx", tmp_path / "c.onnx", x).max_abs_diff <= TOL


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


# ---------------------------------------------------------------- Transformer
@pytest.fixture
def transformer_ticket():
    torch.manual_seed(0)
    model = build_model("transformer_modadd", (2,), 97).eval()
    names = [n for n, _ in model.named_parameters()
             if n.endswith(("out_proj.weight", "linear1.weight", "linear2.weight", "head.weight", "in_proj_weight"))]
    return model, magnitude_mask(model, 0.1, names), torch.randint(0, 98, (16, 2))


def test_transformer_sparse_and_onnx_match_masked(tmp_path, transformer_ticket):
    model, mask, x = transformer_ticket
    spec = {"name": "transformer_modadd", "input_shape": [2], "num_classes": 97}
    report = export_model(model, mask, "sparse", tmp_path / "t.safetensors", x, spec)
    assert report.max_abs_diff <= TOL
    loaded = load_sparse(tmp_path / "t.safetensors")
    assert sum(isinstance(m, SparseLinear) for m in loaded.modules()) == 3  # linear1, linear2, head
    assert_close(loaded(x), masked_copy(model, mask)(x))
    assert export_model(model, mask, "torch-prune", tmp_path / "p.safetensors", x, spec).max_abs_diff <= TOL
    if _importable("onnxruntime") and _importable("onnx"):
        assert export_model(model, mask, "onnx", tmp_path / "t.onnx", x, spec).max_abs_diff <= TOL


def test_transformer_structured_shrinks_feedforward(tmp_path, transformer_ticket):
    model, mask, x = transformer_ticket
    spec = {"name": "transformer_modadd", "input_shape": [2], "num_classes": 97}
    w1, w2 = mask.tensors["encoder.layers.0.linear1.weight"], mask.tensors["encoder.layers.0.linear2.weight"]
    w2[:, :40] = False  # hidden units 0..39 feed nothing
    w1[40:60] = False  # units 40..59 get no input: relu(bias), folded into linear2's bias
    expected = int((w2.any(dim=0) & w1.any(dim=1)).sum())
    report = export_model(model, mask, "structured", tmp_path / "s.safetensors", x, spec)
    assert report.max_abs_diff <= TOL and report.removed["units"]["encoder.layers.0.linear1"] == [256, expected]
    loaded = load_structured(tmp_path / "s.safetensors")
    assert loaded.encoder.layers[0].linear1.out_features == expected <= 196
    assert_close(loaded(x), masked_copy(model, mask)(x))
    assert report.exported.parameters < report.dense.parameters
    if _importable("onnxruntime") and _importable("onnx"):
        assert export_model(model, mask, "onnx", tmp_path / "t.onnx", x, spec).max_abs_diff <= TOL


def test_structured_refuses_other_architectures(tmp_path):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.fc(x)

    model = Residual()
    with pytest.raises(ConfigError, match="--format sparse or onnx"):
        export_model(model, magnitude_mask(model, 0.5), "structured", tmp_path / "s.safetensors", torch.rand(2, 4))


# ---------------------------------------------------------------- loading is safe
def test_loaders_never_unpickle(tmp_path, images, monkeypatch):
    model = lenet()
    mask = magnitude_mask(model, 0.1)
    masked = masked_copy(model, mask)
    save_sparse(masked, mask, tmp_path / "a.safetensors", images)
    net, _ = structured_chain(masked, mask, images)
    save_structured(net, tmp_path / "b.safetensors", images)

    def refuse(*args, **kwargs):
        raise AssertionError("an export loader unpickled something")

    for target, name in [(pickle, "load"), (pickle, "loads"), (torch, "load"), (pickle, "Unpickler")]:
        monkeypatch.setattr(target, name, refuse)
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda n, *a, **k: refuse() if n in ("cloudpickle", "dill") else real_import(n, *a, **k))
    assert_close(load_sparse(tmp_path / "a.safetensors")(images), masked(images))
    assert_close(load_structured(tmp_path / "b.safetensors")(images), masked(images))


def test_wrong_or_damaged_files_are_one_line_errors(tmp_path, images):
    model = lenet()
    mask = magnitude_mask(model, 0.1)
    save_sparse(masked_copy(model, mask), mask, tmp_path / "a.safetensors", images)
    with pytest.raises(StoreError, match="not 'ticketlab-structured'"):
        load_structured(tmp_path / "a.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(StoreError):
        load_sparse(tmp_path / "junk.safetensors")


def test_missing_onnx_is_one_line_error(tmp_path, monkeypatch, images):
    from ticketlab.export.onnx_export import export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConfigError, match=r"pip install 'ticketlab\[export\]'"):
        export_onnx(lenet(), images, tmp_path / "x.onnx")


# ---------------------------------------------------------------- a real experiment, through the CLI
@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import ticketlab

    root = tmp_path_factory.mktemp("experiments")
    options = RunOptions(root=str(root), device="cpu", threads=1, workers=1, progress=False)
    return ticketlab.run(tiny_config(levels=2, prune={"rate": 0.6}), options).directory


@pytest.mark.parametrize("fmt", ["sparse", "structured", "torch-prune", "onnx"])
def test_cli_export_every_format(experiment, fmt, tmp_path, capsys):
    if fmt == "onnx":
        onnxruntime_or_skip()
    out = tmp_path / ("t.onnx" if fmt == "onnx" else "t.safetensors")
    code, stdout, stderr = cli(["export", str(experiment), "--level", "2", "--format", fmt, "--out", str(out)], capsys)
    assert code == 0, stderr
    assert out.exists() and "file bytes" in stdout and "flops" in stdout and "nonzeros" in stdout


def test_cli_export_errors(experiment, tmp_path, capsys):
    for args, message in [
        (["--level", "7"], "no finished ticket at level 7"),
        (["--level", "1", "--format", "zip"], "--format must be one of"),
        (["--level", "1", "--replicate", "3"], "for replicate 3"),
    ]:
        code, _, stderr = cli(["export", str(experiment), *args, "--out", str(tmp_path / "x")], capsys)
        assert code == 2 and message in stderr and "Traceback" not in stderr
    code, _, stderr = cli(["export", str(tmp_path / "nothing"), "--level", "1"], capsys)
    assert code == 2 and stderr.startswith("error:")


def test_cli_bench_times_every_export_against_dense(experiment, capsys):
    """`ticketlab bench`: every side computes the masked model's function (checked before timing),
    dense is the 1.00x baseline, and the sparse file is smaller than the dense one."""
    code, stdout, stderr = cli(["bench", str(experiment), "--level", "2", "--batches", "1,8", "--rounds", "2",
                                "--seconds", "0.01"], capsys)
    assert code == 0, stderr
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    for side in ("dense", "masked", "sparse", "structured"):
        assert side in rows
    assert "| batch 1 |" in stdout and "| batch 8 |" in stdout
    assert "| dense | " in stdout and " 1.00x | 1.00..1.00 |" in stdout
    code, _, stderr = cli(["bench", str(experiment), "--level", "2", "--rounds", "0"], capsys)
    assert code == 2 and "--rounds" in stderr


@pytest.mark.parametrize("with_bias", [True, False])
def test_sparse_linear_drops_unread_inputs_and_matches_linear(with_bias):
    """Inputs no stored weight reads are skipped, one example or many, any leading dimensions."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 12, generator=generator) * (torch.rand(7, 12, generator=generator) < 0.4)
    weight[:, [0, 5, 11]] = 0  # inputs pruned away entirely, as IMP does to MNIST's border pixels
    weight[3] = 0  # and a unit with no inputs left
    bias = torch.randn(7, generator=generator) if with_bias else None
    layer = SparseLinear(weight.to_sparse_csr(), bias)
    assert layer.live.tolist() == [c for c in range(12) if weight[:, c].any()]
    for shape in ((1, 12), (5, 12), (2, 3, 12)):
        x = torch.randn(*shape, generator=generator)
        torch.testing.assert_close(layer(x), nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-6)
    chained = SparseLinear(weight[:, :7].t().contiguous().to_sparse_csr(), None)  # features x batch input, no copy
    x = torch.randn(4, 12, generator=generator)
    torch.testing.assert_close(chained(layer(x)), nn.functional.linear(nn.functional.linear(x, weight, bias), weight[:, :7].t()),
                               rtol=1e-5, atol=1e-5)
