"""Config validation at the boundary and the CLI's one-line errors (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ticketlab.cli import main
from ticketlab.experiment.names import resolve_names
from ticketlab.config import Config
from ticketlab.errors import ConfigError


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ({"levls": 3}, "unknown key levls"),
        ({"train": {"learning_rate": 0.1}}, "unknown key train.learning_rate"),
        ({"levels": "three"}, "levels must be an integer"),
        ({"levels": 2.5}, "levels must be an integer"),
        ({"train": {"lr": "fast"}}, "train.lr must be a number"),
        ({"prune": {"rate": 1.5}}, "prune.rate must be in (0, 1)"),
        ({"prune": {"rate": 0.0}}, "prune.rate must be in (0, 1)"),
        ({"prune": {"output_rate": -0.1}}, "prune.output_rate must be in (0, 1)"),
        ({"data": {"dataset": "imagenet"}}, "unknown dataset 'imagenet'"),
        ({"model": "resnet9000"}, "unknown model 'resnet9000'"),
        ({"data": {"data_dir": "/no/such/dir"}}, "does not exist"),
        ({"controls": ["reinit", "lucky"]}, "unknown control 'lucky'"),
        ({"train": {"optimizer": "lion"}}, "train.optimizer must be one of"),
        ({"prune": {"layer_rates": {"(": 0.2}}}, "not a valid regular expression"),
        ({"rewind_iteration": 5000, "train": {"iterations": 100}}, "rewind_iteration (5000) must be below"),
        ({"train": {"iterations": 100, "epochs": 3}}, "exactly one of train.iterations and train.epochs"),
    ],
)
def test_invalid_configs_name_the_problem(raw, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_names(Config.from_dict(raw))  # values are checked on construction, names where a run starts
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_hash_ignores_defaults_and_tracks_changes():
    assert Config().canonical_dict() == {}
    assert Config.from_dict({"levels": 5}).digest() == Config().digest()  # 5 is the default
    changed = Config.from_dict({"seeds": 6})
    assert changed.canonical_dict() == {"seeds": 6}
    assert changed.digest() != Config().digest()
    longer = Config.from_dict({"levels": 6, "name": "mine"})  # how far the chain goes, and its label: not identity
    assert longer.canonical_dict() == {} and longer.digest() == Config().digest()
    assert longer.legacy_canonical_dict() == {"levels": 6}  # what directories written before were named by
    assert Config.from_dict({"train": {"lr": 0.01}}).canonical_dict() == {"train": {"lr": 0.01}}


def test_config_roundtrip_through_dict():
    config = Config.from_dict({"controls": ["reinit"], "prune": {"strategy": "global", "global_exclude": ["x"]}})
    assert Config.from_dict(config.to_dict()) == config


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, capsys.readouterr()


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["run", "--levels", "abc"], "Invalid value for '--levels'"),
        (["run", "--rate", "1.5"], "prune.rate must be in (0, 1)"),
        (["run", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["run", "--model", "nope"], "unknown model 'nope'"),
        (["run", "--dataset", "mnist", "--data-dir", "/no/such"], "does not exist"),
        (["run", "--control-levels", "3,x"], "comma-separated integers"),
        (["run", "--levels", "2", "--control-levels", "2,1"], "control_levels must increase"),
        (["show", "/nonexistent", "--margin", "nan"], "margin"),
        (["show", "/nonexistent", "--matching-rule", "loose"], "rule must be"),
        (["show", "/nonexistent", "--min-seeds", "1"], "min_seeds"),
        (["run", "--controls", "reinit,bogus"], "unknown control 'bogus'"),
        (["run", "--executor", "spark"], "executor must be local or ray"),
        (["run", "--threads", "0"], "threads must be between 1 and"),
        (["run", "--threads", "100000"], "threads must be between 1 and"),
        (["run", "--dataset", "mnist", "--data-dir", __file__], "is a file, not a folder"),
        (["run", "--workers", "-1"], "workers must be >= 0"),
        (["run", "--batch", "0"], "batch must be >= 1"),
        (["run", "--batch", "4", "--workers", "2"], "use it with --workers 1"),
        (["run", "--precision", "fp8"], "precision must be fp32 or bf16"),
        (["run", "--device", "tpu"], "device must be auto, cpu or cuda"),
        (["run", "no-such-file.toml"], "not found"),
        (["run", "--bogus-flag"], "No such option"),
        (["show", "/no/such/experiment"], "not a ticketlab experiment"),
        (["run", "--method", "snipp"], "unknown pruning method 'snipp'"),
        (["run", "--method", "no_such_pkg:Method"], "cannot import no_such_pkg"),
        (["run", "--controls", "shuffle"], "shuffle control was removed"),
        (["run", "--roles", "linear,weights"], "unknown prune.roles entry 'weights'"),
        (["run", "--model", "no_such_pkg.nets:make"], "cannot import no_such_pkg.nets"),
        (["run", "--model", "ticketlab.models:nothing_here"], "has no attribute nothing_here"),
        (["run", "--dataset", "no_such_pkg:splits"], "cannot import no_such_pkg"),
        (["run", "--init-weights", "/no/such/init.safetensors"], "init_weights file"),
        (["compare"], "Missing argument"),
    ],
)
def test_cli_errors_are_one_line_exit_2_and_write_nothing(args, fragment, capsys, tmp_path):
    out = tmp_path / "out"
    code, captured = run_cli(args + (["--out", str(out)] if args[0] == "run" else []), capsys)
    assert code == 2
    message = captured.err.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert fragment in message
    assert not out.exists()


def test_cli_reads_toml_and_flags_override(tmp_path, capsys):
    config_file = tmp_path / "experiment.toml"
    config_file.write_text('model = "mlp_16"\nlevels = 1\n[data]\ndataset = "digits"\n'
                           '[train]\niterations = 40\neval_every = 20\nbatch_size = 32\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("levels = [unclosed\n")
    code, captured = run_cli(["run", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "not valid TOML" in captured.err and "\n" not in captured.err.strip()

    main(["run", str(config_file), "--seeds", "2", "--out", str(tmp_path / "o"), "--no-progress"])
    captured = capsys.readouterr()
    assert "No verdict: fewer than 3 seeds" in captured.out  # 2 seeds: numbers, no claim
    (experiment,) = (tmp_path / "o").iterdir()
    stored = json.loads((experiment / "config.json").read_text())
    assert stored["canonical"]["model"] == "mlp_16" and stored["canonical"]["seeds"] == 2

    main(["show", str(experiment)])
    shown = capsys.readouterr().out
    assert "81.3" in shown and "dense" in shown  # 64x16 at 20%, 16x10 at 10%

    main(["show", str(experiment), "--markdown"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| level | % remaining |") and lines[1].startswith("|---:|")
    assert lines[2].startswith("| 0 | 100.0 | 2 |") and lines[3].startswith("| 1 | 81.3 | 2 |")
    assert lines[3].rstrip().endswith("| no verdict |")


def test_console_script_entry_point_runs():
    completed = subprocess.run([sys.executable, "-m", "ticketlab", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "run" in completed.stdout and "show" in completed.stdout
