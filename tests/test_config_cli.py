"""Config validation at the boundary and the CLI's one-line errors (exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing

import pytest
import typer

import ticketlab.cli as cli_module
from conftest import cli
from ticketlab.cli import app, main
from ticketlab.experiment.names import resolve_names
from ticketlab.config import EXECUTORS, PRECISIONS, STEPPERS, Config, RunOptions
from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.export import FORMATS as EXPORT_FORMATS


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
    assert lines[3].rstrip().endswith("| no verdict | 2 seeds < min 3 |")


def test_console_script_entry_point_runs():
    completed = subprocess.run([sys.executable, "-m", "ticketlab", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and "run" in completed.stdout and "show" in completed.stdout


# ---------------------------------------------------------------------------- flags from the config fields
# Filled in by ticketlab.run, never set by a user: these alone have no flag.
RECORDED = {"model_fingerprint", "task", "task_fingerprint", "train_loop", "data.fingerprint"}


def _leaf_fields(cls, prefix=""):
    """Every leaf field of dataclass ``cls`` as ``(dotted key, field)``: walked here, not by the
    CLI's own code, so a field the CLI forgot fails these tests."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def _run_flag_names() -> set[str]:
    command = typer.main.get_command(app).commands["run"]
    return {name for param in command.params for name in param.opts + param.secondary_opts}


def test_every_user_settable_field_has_a_flag_with_help():
    names = _run_flag_names()
    keys = [key for key, _ in _leaf_fields(Config)]
    assert RECORDED <= set(keys)
    for key, f in _leaf_fields(Config):
        flag = "--" + key.replace("_", "-")
        if key in RECORDED:
            assert flag not in names, f"{key} is filled in by ticketlab.run and must not be a flag"
        else:
            assert flag in names, f"config field {key} has no flag {flag}"
            assert f.metadata.get("help"), f"config field {key} has no help (give it setting(default, help))"
    for key, f in _leaf_fields(RunOptions):
        assert ("--out" if key == "root" else "--" + key.replace("_", "-")) in names, f"RunOptions.{key} has no flag"
        assert f.metadata.get("help"), f"RunOptions.{key} has no help"


def test_existing_short_flags_are_kept():
    names = _run_flag_names()
    for flag in ("--dataset", "--data-dir", "--model", "--levels", "--seed", "--seeds", "--controls", "--control-levels",
                 "--ticket-levels", "--retrain", "--transfer-from", "--rewind-iteration", "--iterations", "--epochs",
                 "--batch-size", "--lr", "--optimizer", "--method", "--strategy", "--roles", "--init-weights",
                 "--weight-decay", "--rate", "--output-rate", "--eval-every", "--test-every-eval", "--out", "--device",
                 "--threads", "--workers", "--batch", "--probe-batch", "--no-probe-batch", "--precision", "--stepper",
                 "--executor", "--ray-address", "--progress", "--no-progress", "--report", "--no-report", "--margin",
                 "--matching-rule", "--alpha", "--min-seeds"):
        assert flag in names, flag


class _Captured(TicketlabError):
    """Stops ``run`` where training would start, carrying what it was given."""


def _parsed(args, monkeypatch, capsys, tmp_path):
    """The (config, options) that ``ticketlab run ARGS`` would train, without training."""
    seen = []

    def capture(config, options, **_):
        seen.append((config, options))
        raise _Captured("captured")

    monkeypatch.setattr(cli_module, "run_experiment", capture)
    code, _, err = cli(["run", *args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and seen, err
    return seen[0]


def test_newly_exposed_flags_reach_the_config(monkeypatch, capsys, tmp_path):
    config, options = _parsed(
        ["--prune.nm_group", "8", "--train.momentum", "0.5", "--train.milestones", "100,200", "--train.gamma", "0.5",
         "--prune.layer-rates", "fc1=0.3,fc2=0.4", "--data.split-seed", "3", "--prune.include", "fc.*,out",
         "--train.checkpoint_every", "50", "--train.warmup-iterations", "10", "--output-rate", "none",
         "--prune.output-layer", "fc3", "--stepper", "dense", "--no-probe-batch", "--no-progress"],
        monkeypatch, capsys, tmp_path)
    assert config.prune.nm_group == 8 and config.train.momentum == 0.5 and config.train.gamma == 0.5
    assert config.train.milestones == (100, 200) and config.train.warmup_iterations == 10
    assert config.prune.layer_rates == {"fc1": 0.3, "fc2": 0.4} and config.prune.include == ("fc.*", "out")
    assert config.data.split_seed == 3 and config.train.checkpoint_every == 50
    assert config.prune.output_rate is None and config.prune.output_layer == "fc3"
    assert options.stepper == "dense" and options.probe_batch is False and options.progress is False
    assert options.root == str(tmp_path / "o")

    config, _ = _parsed(["--prune.layer_rates", '{"fc{1,2}": 0.3}'], monkeypatch, capsys, tmp_path)
    assert config.prune.layer_rates == {"fc{1,2}": 0.3}  # JSON: a regex with a comma


def test_short_and_dotted_flags_set_the_same_field_over_the_file(monkeypatch, capsys, tmp_path):
    config_file = tmp_path / "experiment.toml"
    config_file.write_text('levels = 1\n[train]\niterations = 40\ntest_every_eval = true\n')
    config, options = _parsed([str(config_file), "--lr", "0.01", "--batch-size", "32", "--method", "oneshot",
                               "--dataset", "digits", "--epochs", "2", "--no-train.test-every-eval", "--seeds", "2",
                               "--workers", "1", "--executor", "local"], monkeypatch, capsys, tmp_path)
    assert (config.train.lr, config.train.batch_size, config.prune.method) == (0.01, 32, "oneshot")
    assert config.data.dataset == "digits" and config.levels == 1 and config.seeds == 2
    assert (config.train.epochs, config.train.iterations) == (2, None)  # one length replaces the other
    assert config.train.test_every_eval is False and options.workers == 1
    config, _ = _parsed(["--train.lr", "0.02", "--train.batch_size", "16", "--test-every-eval"],
                        monkeypatch, capsys, tmp_path)
    assert (config.train.lr, config.train.batch_size, config.train.test_every_eval) == (0.02, 16, True)


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--prune.nm-group", "1"], "prune.nm_group (M of N:M) must be >= 2"),
        (["--train.momentum", "1.5"], "train.momentum must be in [0, 1)"),
        (["--train.milestones", "200,100"], "train.milestones must increase"),
        (["--prune.layer-rates", "fc1=1.5"], "prune.layer_rates['fc1'] must be in (0, 1)"),
        (["--prune.layer-rates", "fc1"], "regex=rate pairs"),
        (["--prune.layer-rates", "fc1=fast"], "'fast' is not a number"),
        (["--prune.include", "("], "not a valid regular expression"),
        (["--retrain", "rewnd"], "retrain must be one of 'rewind', 'lr_rewind', 'finetune'"),
        (["--stepper", "fast"], "stepper must be auto, dense or sparse"),
        (["--train.gamma", "nan"], "train.gamma must be a finite number"),
    ],
)
def test_new_flags_are_checked_by_the_config_in_one_line(args, fragment, capsys, tmp_path):
    out = tmp_path / "out"
    code, _, err = cli(["run", *args, "--out", str(out)], capsys)
    assert code == 2 and err.startswith("error: ") and "\n" not in err.strip(), err
    assert fragment in err
    assert not out.exists()


def test_help_lists_the_fields_and_their_choices(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    code, out, _ = cli(["run", "--help"], capsys)
    assert code == 0
    for text in ("--train.momentum", "--prune.nm-group", "--prune.layer-rates", "--data.split-seed", "--train.lr",
                 "--lr", "--levels", "SGD momentum. (default: 0.9)", "[auto|dense|sparse]", "[local|ray]", "[adam|adamw|sgd]",
                 "--stepper", "--executor"):
        assert text in out, text
    assert "--model-fingerprint" not in out and "--task-fingerprint" not in out and "--data.fingerprint" not in out
    code, out, _ = cli(["export", "--help"], capsys)
    assert code == 0 and all(fmt in out for fmt in EXPORT_FORMATS)


def test_run_option_choices_come_from_their_literal():
    for name, choices in (("executor", EXECUTORS), ("stepper", STEPPERS), ("precision", PRECISIONS)):
        assert typing.get_args(typing.get_type_hints(RunOptions)[name]) == choices
        with pytest.raises(ConfigError, match=f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}"):
            RunOptions(**{name: "bogus"}).validate()
