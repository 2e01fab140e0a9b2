"""``mlp report``: one self-contained HTML page of a run or a sweep.

Each page is checked as a parsed document: the sections it must have, the figures inline
as PNG data (every one decodes), nothing that would reach the network, only the elements
the page is made of (no script, whatever the names in the data), and numbers that are
those ``mlp evaluate`` and ``mlp compare`` give for the same folder.
"""

import base64
import csv
import io
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from mlpcli import compare, diagnostics, report, runs
from mlpcli.cli import main
from mlpcli.evaluate import evaluate
from mlpcli.history import read_history

# the elements mlpcli.report_html writes; anything else in a page came from the data
PAGE_ELEMENTS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "nav",
                 "a", "section", "table", "tr", "th", "td", "ul", "li", "figure", "img", "figcaption", "pre"}
HOSTILE = ('<script>alert("b")</script>', "<img src=x onerror=alert(1)>")


class Page(HTMLParser):
    """A report page, parsed: its elements, sections, images (alt -> src), links, table
    cells and text."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.sections, self.images, self.links, self.rows, self.text = set(), [], {}, [], [], []
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images[attrs["alt"]] = attrs["src"]
        elif tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def row(self, first):
        """The table row whose first cell is ``first``."""
        return next(r for r in self.rows if r and r[0] == first)


def self_contained(path):
    """The parsed page at ``path``, after checking it needs nothing outside itself."""
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert page.tags <= PAGE_ELEMENTS, f"elements the page does not make: {page.tags - PAGE_ELEMENTS}"
    for reference in ("http://", "https://", 'src="//', 'href="//', "url("):
        assert reference not in text
    assert all(link.startswith("#") and link[1:] in page.sections for link in page.links)
    for alt, src in page.images.items():
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), alt
        with Image.open(io.BytesIO(base64.b64decode(src[len(prefix):], validate=True))) as image:
            assert image.format == "PNG" and min(image.size) > 0, alt
    return page


def run(*args):
    return CliRunner().invoke(main, ["report", *map(str, args)])


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A copy of ``tiny_run`` that a test may write into, under ``tmp_path/runs``."""
    return Path(shutil.copytree(tiny_run, tmp_path / "runs" / "tiny"))


def test_a_classifier_runs_page_has_every_section_and_mlp_evaluates_numbers(tiny_run, tmp_path):
    before = sorted(p.name for p in tiny_run.iterdir())
    out = tmp_path / "tiny.html"
    result = run(tiny_run, "--out", out, "--checkpoint", "last")
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.output
    page = self_contained(out)
    assert page.sections == ["diagnostics", "curves", "evaluation", "model", "config"]
    figures = dict(report.CURVES) | dict(report.EVALUATION_FIGURES)
    drawn = {figures[name] for name in ("accuracy", "loss", "learning_rate", "confusion_matrix", "misclassified",
                                        "roc", "precision_recall", "calibration")}
    assert set(page.images) == drawn
    expected = evaluate(tiny_run, checkpoint="last").report
    assert f"Model {expected['model_file']} on {expected['data']}" in "".join(page.text)
    assert page.row("accuracy")[1] == f"{expected['metrics']['accuracy']:.4f}"
    assert page.row("loss")[1] == f"{expected['loss']:.4f}"
    for entry, matrix_row in zip(expected["per_class"], expected["confusion_matrix"]):
        rows = [r for r in page.rows if r and r[0] == entry["class"]]
        assert rows[0] == [entry["class"], *(f"{entry[k]:.4f}" for k in ("precision", "recall", "f1")),
                           str(entry["support"])]
        assert rows[1] == [entry["class"], *map(str, matrix_row)]
    text = "".join(page.text)
    assert (tiny_run / runs.SUMMARY_FILE).read_text().strip() in text  # the summary mlp train printed
    assert (tiny_run / runs.CONFIG_FILE).read_text().strip() in text
    assert sorted(p.name for p in tiny_run.iterdir()) == before  # nothing written into the run


def test_the_newest_run_by_default_into_its_folder_never_over_a_file_without_overwrite(run_copy):
    root = run_copy.parent
    result = run("--runs-root", root)
    assert result.exit_code == 0, result.output
    written = run_copy / runs.REPORT_FILE
    assert self_contained(written).sections[0] == "diagnostics"
    written.write_text("the user's own notes")
    refused = run(run_copy)
    assert refused.exit_code == 2
    assert refused.output.startswith(f"Error: {written}: already exists") and "--overwrite" in refused.output
    assert written.read_text() == "the user's own notes"
    replaced = run(run_copy, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "mlp report" in "".join(self_contained(written).text)


def overfitting_history(path):
    """A history.csv whose validation loss falls, then rises clearly while training loss falls."""
    loss = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    val_loss = [0.9, 0.7, 0.6, 0.75, 0.85, 0.95, 1.05, 1.15]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"])
        for epoch, (a, b) in enumerate(zip(loss, val_loss), 1):
            writer.writerow([epoch, a, 0.5 + epoch / 20, b, 0.6, 0.001])


@pytest.mark.slow  # a full page each, about 12 s on 2 busy cores
@pytest.mark.parametrize("history", ["seed-config plateau", "clear overfitting"])
def test_the_diagnostics_show_each_verdict_with_the_numbers_it_rests_on(run_copy, history):
    target = run_copy / runs.HISTORY_FILE
    if history == "seed-config plateau":
        shutil.copy(Path(__file__).parent / "data" / "mnist_seed42_history.csv", target)
    else:
        overfitting_history(target)
    assert run(run_copy).exit_code == 0
    page = self_contained(run_copy / runs.REPORT_FILE)
    found = diagnostics.diagnose(read_history(target), runs.run_config(run_copy), diagnostics.saved_sizes(run_copy))
    kind = "plateau" if history == "seed-config plateau" else "overfitting"
    assert found[kind] and found["messages"]
    for message in found["messages"]:
        assert message in page.text
    for key, value in found[kind].items():
        if key != "hint":
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            assert page.row(key.replace("_", " "))[1] == shown
    assert page.row("epochs")[1] == str(len(read_history(target)["epoch"]))


def test_a_regression_runs_page_shows_its_scatter_plots_not_a_class_table(tmp_path):
    folder = tmp_path / "diabetes"
    trained = CliRunner().invoke(main, ["train", "configs/diabetes-regression.yaml", "--run-dir", str(folder),
                                       "-q", "--no-plots", "--set", "training.epochs=2"])
    assert trained.exit_code == 0, trained.output
    assert run(folder).exit_code == 0
    page = self_contained(folder / runs.REPORT_FILE)
    figures = dict(report.EVALUATION_FIGURES)
    assert {figures["predicted_vs_true"], figures["residuals"]} <= set(page.images)
    assert figures["confusion_matrix"] not in page.images
    assert not any(r and r[0] == "class" for r in page.rows)
    assert page.row("r2")[1] == f"{evaluate(folder).report['metrics']['r2']:.4f}"


def test_a_run_without_test_data_gets_its_page_saying_it_was_not_evaluated(tmp_path):
    folder = tmp_path / "diabetes"
    trained = CliRunner().invoke(main, ["train", "configs/diabetes-regression.yaml", "--run-dir", str(folder),
                                       "-q", "--no-plots", "--set", "training.epochs=2", "--set",
                                       "data.test_path=null"])
    assert trained.exit_code == 0, trained.output
    result = run(folder)
    assert result.exit_code == 0, result.output
    page = self_contained(folder / runs.REPORT_FILE)
    assert page.sections[:5] == ["diagnostics", "curves", "evaluation", "model", "config"]
    text = "".join(page.text)
    assert "Not evaluated: the run's dataset (diabetes_train.csv) has no test split" in text
    assert set(dict(report.CURVES).values()) - {"accuracy per epoch"} <= set(page.images)
    assert (folder / runs.SUMMARY_FILE).read_text().strip() in text
    with_data = run(folder, "--data", "configs/data/diabetes_test.csv", "--out", tmp_path / "with-data.html")
    assert with_data.exit_code == 0, with_data.output
    evaluated = self_contained(tmp_path / "with-data.html")
    assert evaluated.row("r2")[1] == f"{evaluate(folder, data='configs/data/diabetes_test.csv').report['metrics']['r2']:.4f}"


def test_hostile_class_names_and_paths_show_as_text(tmp_path):
    """Class names and a data folder that are HTML: the page shows them, and runs none of it. The
    run folder's name is not UTF-8: its bytes show as \\xNN."""
    data = tmp_path / '<b onmouseover="alert(2)">data'
    data.mkdir()
    for name in ("breast_cancer_train.csv", "breast_cancer_test.csv"):
        text = Path("configs/data", name).read_text()
        (data / name).write_text(text.replace(",benign\n", f",{HOSTILE[0]}\n")
                                 .replace(",malignant\n", f",{HOSTILE[1]}\n"))
    folder = tmp_path / os.fsdecode(b"hostile-\xff")
    trained = CliRunner().invoke(main, ["train", "configs/breast-cancer.yaml", "--run-dir", str(folder), "-q",
                                        "--no-plots", "--set", "training.epochs=1",
                                        "--set", f"data.path={data / 'breast_cancer_train.csv'}",
                                        "--set", f"data.test_path={data / 'breast_cancer_test.csv'}"])
    assert trained.exit_code == 0, trained.output
    assert run(folder).exit_code == 0
    text = (folder / runs.REPORT_FILE).read_text()
    page = self_contained(folder / runs.REPORT_FILE)  # no <script>, no <img> but the figures
    for name in HOSTILE:
        assert name not in text
        assert page.row(name)[0] == name  # in the per-class table, as text
    assert data.name in "".join(page.text)
    assert "hostile-\\xff" in "".join(page.text)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 2-trial sweep of configs/quick.yaml (300 images, 2 epochs)."""
    root = tmp_path_factory.mktemp("sweep")
    result = CliRunner().invoke(main, ["sweep", "configs/quick.yaml", "--grid", "training.batch_size=32,64",
                                       "--set", "data.max_train_samples=300", "--set", "training.epochs=2",
                                       "--runs-root", str(root), "--no-plots", "-q"])
    assert result.exit_code == 0, result.output
    return next(p for p in root.iterdir() if p.name != runs.LATEST)


def test_a_sweeps_page_ranks_its_trials_as_mlp_compare_does(sweep, tmp_path):
    out = tmp_path / "sweep.html"
    result = run(sweep, "--out", out)
    assert result.exit_code == 0, result.output
    page = self_contained(out)
    assert page.sections == ["ranking", "curves", "config"]
    assert len(page.images) == 2
    expected = compare.compare([sweep], plots=False)
    table = compare.ranked_table(expected)
    shown = next(i for i, r in enumerate(page.rows) if r == table.header)
    assert page.rows[shown + 1: shown + 1 + len(table.rows)] == [[str(c) for c in r] for r in table.rows]
    said = compare.recommendation(expected)
    assert said and all(line in page.text for line in said)
    assert not (sweep / runs.REPORT_FILE).exists()


def test_what_is_not_a_run_or_a_sweep_is_refused_with_one_line(sweep, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(empty)
    assert result.exit_code == 2
    assert result.output == f"Error: {empty}: not a run folder (no config.yaml) nor a sweep folder; nothing written\n"
    result = run(sweep, "--data", "mnist", "--out", tmp_path / "x.html")
    assert result.exit_code == 2 and result.output.startswith("Error: --checkpoint, --data: are for a run's")
    assert not (tmp_path / "x.html").exists()

