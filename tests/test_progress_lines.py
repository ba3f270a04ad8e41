"""Progress without a terminal: one ``ticketlab`` log line per finished training, with the time
left, from the Python API and from the CLI writing to a file or pipe (issue 21)."""

from __future__ import annotations

import dataclasses
import logging
import re

import ticketlab
from ticketlab.experiment.progress import Estimate
from ticketlab.experiment.unit import Unit

from conftest import cli, tiny_config

TINY = {"model": "mlp_32_16", "train": {"iterations": 100, "eval_every": 50, "checkpoint_every": 100}}
LINE = (r"\[(\d+)/(\d+)\] replicate 0 level (\d) (ticket|random) finished in \d+\.\d s "
        r"\(test accuracy 0\.\d+ at early stop\); (\d+ left, ETA \d+:\d\d:\d\d|all done in \d+:\d\d:\d\d)")


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ticketlab" and r.levelno == logging.INFO]


def test_the_api_logs_one_line_per_finished_training_with_an_eta(options, caplog):
    caplog.set_level(logging.INFO, logger="ticketlab")
    loud = dataclasses.replace(options, progress=True)
    config = tiny_config(**TINY, levels=1, controls=["random"])
    ticketlab.run(config, loud)
    lines = _lines(caplog)
    assert len(lines) == 3, lines
    matches = [re.fullmatch(LINE, line) for line in lines]
    assert all(matches), lines
    assert [m.group(1, 2) for m in matches] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert "all done in" in lines[-1]

    caplog.clear()
    ticketlab.run(config.replace(levels=2), loud)  # resumed: the finished units are not counted as trained
    lines = _lines(caplog)
    assert lines[0] == "resuming: 3 of 5 trainings already finished"
    assert [re.fullmatch(LINE, line).group(1, 2, 3) for line in lines[1:]] == [("4", "5", "2"), ("5", "5", "2")]

    caplog.clear()
    ticketlab.run(config.replace(levels=2), options)  # RunOptions(progress=False): quiet
    ticketlab.run(config.replace(levels=2), loud, progress=lambda unit, step, end: None)  # the caller draws its own
    assert _lines(caplog) == []


def test_the_estimate_counts_only_units_trained_in_this_run():
    now = [100.0]
    done_before = {Unit(0, 0, "ticket")}
    estimate = Estimate(4, done_before, clock=lambda: now[0])
    assert estimate.eta() == "ETA -"
    assert not estimate.finished(Unit(0, 0, "ticket"))
    now[0] = 110.0
    assert estimate.finished(Unit(0, 1, "ticket"))
    assert (estimate.done, estimate.eta()) == (2, "ETA 0:00:20")  # 10 s per trained unit, 2 left
    now[0] = 130.0
    estimate.finished(Unit(0, 2, "ticket"))
    estimate.finished(Unit(0, 3, "ticket"))
    assert estimate.eta() == "all done in 0:00:30"
    diverging = Estimate(5, set(), clock=lambda: now[0])
    diverging.finished(Unit(0, 1, "ticket"))
    diverging.blocked([Unit(0, 1, "random"), Unit(0, 2, "ticket")])  # a ticket diverged: these never train
    assert (diverging.total, diverging.done) == (3, 1)


def test_the_cli_without_a_terminal_prints_the_lines_on_stderr(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('model = "mlp_32_16"\nlevels = 1\n[data]\ndataset = "digits"\n'
                    "[train]\niterations = 100\neval_every = 50\nbatch_size = 32\n")
    code, out, err = cli(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--device", "cpu",
                          "--no-report"], capsys)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("ticketlab: ")]
    assert len(lines) == 2 and all(re.fullmatch(LINE, line.removeprefix("ticketlab: ")) for line in lines), err
    code, out, err = cli(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "1", "--device", "cpu",
                          "--no-report", "--no-progress"], capsys)
    assert code == 0 and "ticketlab: " not in err
