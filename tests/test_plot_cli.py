"""`mlp plot` through CliRunner on runs trained in the test, and the plots `mlp train` leaves."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlpcli.cli import main

QUICK = ["--set", "data.max_train_samples=1500", "--set", "data.max_test_samples=500",
         "--set", "training.epochs=3"]
PNG = b"\x89PNG\r\n\x1a\n"


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = invoke(["train", "configs/quick.yaml", "--run-dir", root / "a", "-q", *QUICK])
    b = invoke(["train", "configs/quick.yaml", "--run-dir", root / "b", "-q", *QUICK,
                "--set", "optimizer.learning_rate=0.01"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    return root / "a", root / "b"


def assert_png(path, size=(640, 480)):
    from PIL import Image

    assert path.read_bytes().startswith(PNG)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == size


def test_train_leaves_curves_in_plots(two_runs):
    plots = two_runs[0] / "plots"
    for name in ("accuracy.png", "loss.png", "learning_rate.png"):
        assert_png(plots / name)


def test_plot_after_evaluate_draws_confusion_and_misclassified(two_runs):
    run = two_runs[0]
    assert invoke(["evaluate", run]).exit_code == 0
    result = invoke(["plot", run])
    assert result.exit_code == 0, result.output
    for name in ("confusion_matrix.png", "accuracy.png"):
        assert f"wrote {run / 'plots' / name}" in result.output
        assert_png(run / "plots" / name)
    assert f"wrote {run / 'plots' / 'misclassified.png'}" in result.output
    assert_png(run / "plots" / "misclassified.png", size=(640, 765))


def test_plot_several_runs_compares_them(two_runs, tmp_path):
    result = invoke(["plot", *two_runs, "--out", tmp_path / "cmp", "--format", "svg"])
    assert result.exit_code == 0, result.output
    for name in ("compare-accuracy.svg", "compare-loss.svg"):
        text = (tmp_path / "cmp" / name).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert (tmp_path / "cmp" / "a" / "loss.svg").exists() and (tmp_path / "cmp" / "b" / "loss.svg").exists()


def test_plot_regression_run_says_what_it_skipped(tmp_path):
    result = invoke(["train", "configs/diabetes-regression.yaml", "--run-dir", tmp_path / "r", "-q",
                     "--set", "training.epochs=2", "--no-plots"])
    assert result.exit_code == 0 and not (tmp_path / "r" / "plots").exists()
    result = invoke(["plot", tmp_path / "r"])
    assert result.exit_code == 0, result.output
    assert "no accuracy in history (regression run?)" in result.output
    assert (tmp_path / "r" / "plots" / "loss.png").exists()


def test_plot_without_runs_is_a_clean_error(tmp_path):
    result = invoke(["plot", "--runs-root", tmp_path])
    assert result.exit_code == 2 and "no runs found" in result.output


def modules_loaded_by(*commands):
    """Which of the heavy modules a fresh interpreter has loaded after invoking ``commands``."""
    heavy = ("numpy", "h5py", "matplotlib", "PIL", "yaml", "tqdm")
    code = ("import sys; from click.testing import CliRunner; from mlpcli.cli import main; "
            + "".join(f"CliRunner().invoke(main, {list(c)!r}); " for c in commands)
            + f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_help_imports_nothing_heavy():
    assert modules_loaded_by(["--help"]) == "[]"


def test_predict_and_help_do_not_import_matplotlib():
    assert "matplotlib" not in modules_loaded_by(["predict", "--help"], ["--help"])
