"""The HTML report and its figures, built from a real (tiny) experiment.

The report is evidence people read offline and forward, so the tests check what a reader
relies on: every figure is a valid PNG, the page is one self-contained file that loads
nothing from anywhere, it carries the verdict table, a one-seed experiment says plainly
that no interval can be computed, and a real browser renders it without errors.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import ticketlab
from ticketlab.api import Result
from ticketlab.cli import main
from ticketlab.config import Config, RunOptions
from ticketlab.report import write_figures, write_report
from ticketlab.report.figures import FIGURES

REPO_ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {
    "model": "mlp_64_32",
    "levels": 2,
    "seeds": 3,
    "controls": ["reinit", "random"],
    "data": {"dataset": "digits"},
    "train": {"iterations": 200, "eval_every": 50, "batch_size": 32},
}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Result:
    root = tmp_path_factory.mktemp("experiments")
    return ticketlab.run(Config.from_dict(TINY), RunOptions(root=str(root), device="cpu", progress=False))


@pytest.fixture(scope="module")
def report(experiment) -> Path:
    return write_report(experiment.directory)


@pytest.fixture(scope="module")
def one_seed_report(tmp_path_factory) -> Path:
    # Markup characters in the path check that text from data is escaped.
    root = tmp_path_factory.mktemp("one-seed") / "a<b>&c"
    raw = dict(TINY, levels=1, seeds=1, controls=["reinit"], train={"iterations": 100, "eval_every": 50, "batch_size": 32})
    result = ticketlab.run(Config.from_dict(raw), RunOptions(root=str(root), device="cpu", progress=False))
    return write_report(result.directory)


class _TableRows(HTMLParser):
    """Collects the class attribute of every <tr> inside the table with a given id."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.depth, self.rows = table_id, 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and (self.depth or attrs.get("id") == self.table_id):
            self.depth += 1
        elif tag == "tr" and self.depth:
            self.rows.append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth -= 1


def level_rows(page: str) -> list[str]:
    parser = _TableRows("verdict-table")
    parser.feed(page)
    return [css for css in parser.rows if "level-row" in css]


def distinct_colours(image: np.ndarray) -> int:
    rgb = np.round(image[..., :3] * 255).astype(np.uint32).reshape(-1, 3)
    return len(np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]))


def assert_valid_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, image.shape
    return image


def test_figures_are_valid_pngs(experiment, tmp_path):
    paths = write_figures(experiment, tmp_path / "figures")
    assert list(paths) == list(FIGURES)
    for name, path in paths.items():
        assert path == tmp_path / "figures" / f"{name}.png"
        image = assert_valid_png(path)
        assert distinct_colours(image) > 20  # a plot, not a blank canvas


def test_report_is_one_self_contained_page(report, experiment):
    assert report == experiment.directory / "report" / "report.html"
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    for external in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import", "<script"):
        assert external not in page, external
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(FIGURES)
    for name, data in zip(FIGURES, images):
        png = base64.b64decode(data)
        assert png[:8] == PNG_SIGNATURE
        assert png == (report.parent / f"{name}.png").read_bytes()  # the PNGs beside it are the same figures
    assert 'id="verdict-table"' in page
    assert len(level_rows(page)) == 3  # dense + 2 pruned levels
    for text in ("How verdicts are decided", "lower confidence bound", "Holm", "fixed sequence", "dense (reference)", "Per-layer sparsity", "Wall time",
                 "canonical", "layers.1.weight", "torch", "scipy", "devices used", "cpu"):
        assert text in page, text
    assert re.search(r'class="label-(winning|matching|not-matching)"', page)
    assert "no confidence interval can be computed" not in page


def test_verdicts_json_matches_the_verdicts_and_states_the_criteria(report, experiment):
    stored = json.loads((report.parent / "verdicts.json").read_text())
    assert stored == json.loads(json.dumps(experiment.verdicts().to_dict(), allow_nan=False))
    assert [row["level"] for row in stored["rows"]] == [1, 2]
    assert stored["criteria"]["rule"] == "margin" and stored["eval_every"] == 50
    assert set(stored["rows"][0]["controls"]) == {"reinit", "random"}


def test_report_states_other_criteria_when_asked(experiment, tmp_path):
    from ticketlab.evidence.verdicts import Criteria

    page = write_report(experiment.directory, Criteria(rule="std")).read_text()
    assert "within one standard deviation" in page or "one standard deviation" in page
    write_report(experiment.directory)  # leave the default report for the other tests


def test_one_seed_report_says_no_interval_and_escapes_text(one_seed_report):
    page = one_seed_report.read_text()
    assert "no confidence interval can be computed" in page
    assert "no interval with 1 seed" in page  # in the accuracy cells
    assert "a verdict needs at least 3" in page  # the criterion sentence
    assert "a&lt;b&gt;&amp;c" in page and "a<b>&c" not in page
    stored = json.loads((one_seed_report.parent / "verdicts.json").read_text())
    assert stored["rows"][0]["label"] == "no verdict" and stored["rows"][0]["accuracy"] is None
    for name in FIGURES:
        assert_valid_png(one_seed_report.parent / f"{name}.png")


def test_cli_report_prints_table_and_path(experiment, report, capsys):
    main(["report", str(experiment.directory)])
    out = capsys.readouterr().out
    assert ("Sparsest matching level" in out or "No level is claimed matching" in out) and "dense" in out
    assert "lower bound of ticket - dense >= -0.5 points" in out
    assert f"report: {report}" in out.replace("\n", "")


def test_cli_report_of_a_non_experiment_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", "/nonexistent"])
    assert info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "not a ticketlab experiment" in message


@pytest.mark.chromium
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (scripts/test.sh installs it when run as root with apt-get)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium")
    screenshot = tmp_path / "report.png"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--window-size=1280,2000", f"--screenshot={screenshot}", "--dump-dom", report.as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]

    dom = completed.stdout
    assert 'id="verdict-table"' in dom
    assert len(level_rows(dom)) == 3
    assert dom.count('src="data:image/png;base64,') == len(FIGURES)

    # The page has no script, so any console message is an error: a JS exception or a
    # resource the Content-Security-Policy blocked (the page tried to load something).
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)

    image = assert_valid_png(screenshot)
    assert image.shape[:2] == (2000, 1280)
    assert distinct_colours(image) > 50  # text, table and a figure, not a blank page
    assert np.mean(np.all(image[..., :3] > 0.98, axis=-1)) < 0.97  # not (nearly) all white

    artifacts = REPO_ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copyfile(screenshot, artifacts / "report-screenshot.png")
