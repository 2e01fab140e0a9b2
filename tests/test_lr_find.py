"""mlp lr-find: the learning-rate range test."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlpcli import modelfile
from mlpcli.cli import main
from mlpcli.lr_find import rate_at, smooth, suggest

SMALL = ["--set", "data.max_train_samples=4000"]
REPO = Path(__file__).resolve().parent.parent


def run(args):
    return CliRunner().invoke(main, args)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) for r in rows]) for key in ("rate", "loss", "smoothed")}


@pytest.fixture(scope="module")
def adam_test(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lrf") / "adam"
    result = run(["lr-find", "configs/quick.yaml", *SMALL, "--start", "1e-6", "--end", "1",
                  "--batches", "60", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder, result.output


def test_rates_grow_geometrically_from_start_to_end(adam_test):
    folder, _ = adam_test
    table = read_csv(folder / "lr_find.csv")
    assert len(table["rate"]) == 60  # Adam on MNIST up to rate 1 does not diverge
    assert table["rate"][0] == pytest.approx(1e-6)
    assert table["rate"][-1] == pytest.approx(1.0)
    ratios = table["rate"][1:] / table["rate"][:-1]
    assert np.allclose(ratios, 1e6 ** (1 / 59))
    assert np.all(np.isfinite(table["loss"]))


def test_suggestion_is_on_the_descent_near_a_rate_that_trains(adam_test):
    folder, output = adam_test
    line = next(x for x in output.splitlines() if x.startswith("Suggested learning rate: "))
    rate = float(line.split()[3])
    assert 1e-4 <= rate <= 2e-2  # Adam on MNIST trains well at 1e-3
    assert f"--set optimizer.learning_rate={rate:g}" in output
    table = read_csv(folder / "lr_find.csv")
    at = int(np.argmin(abs(np.log(table["rate"] / rate))))
    lowest = int(np.argmin(table["smoothed"]))
    assert 0 < at < lowest  # before the lowest loss: the loss still falls there
    assert table["smoothed"][at] < table["smoothed"][0]


def test_files_written_and_nothing_else(adam_test):
    folder, output = adam_test
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.png"]
    assert (folder / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Wrote {folder}" in output


def test_divergence_stops_early(tmp_path):
    result = run(["lr-find", "configs/quick.yaml", "--set", "data.max_train_samples=2000", "--set",
                  "optimizer=sgd", "--start", "1e-2", "--end", "1e6", "--batches", "60",
                  "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    table = read_csv(tmp_path / "f" / "lr_find.csv")
    assert 5 < len(table["rate"]) < 60
    assert "the loss diverged" in result.output
    last = table["smoothed"][-1]
    assert not np.isfinite(last) or last > 4 * np.nanmin(table["smoothed"][:-1])


def test_default_folder_is_named_like_a_run_and_latest_is_left_alone(tmp_path):
    root = tmp_path / "runs"
    result = run(["lr-find", "configs/quick.yaml", "--set", "data.max_train_samples=1000",
                  "--batches", "8", "--runs-root", str(root)])
    assert result.exit_code == 0, result.output
    [folder] = root.iterdir()
    assert folder.name.startswith("quick-lr-find-")
    assert (folder / "lr_find.csv").is_file()


def test_a_cross_validation_config_is_tested_on_its_first_folds_training_data(tmp_path):
    result = run(["lr-find", "configs/quick.yaml", "--set", "data.max_train_samples=1000", "--set",
                  "training.folds=4", "--batches", "8", "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert "the range test trains on fold 1's training data" in result.output
    assert "on 750 training samples" in result.output  # 3 of 4 equal folds of the 1000 (no validation split)
    assert (tmp_path / "f" / "lr_find.csv").is_file()


def test_config_training_is_bit_identical_before_and_after(tmp_path):
    args = ["train", "configs/quick.yaml", "-q", "--no-plots", "--set", "data.max_train_samples=1500",
            "--set", "training.epochs=1"]
    assert run([*args, "--run-dir", str(tmp_path / "before")]).exit_code == 0
    found = run(["lr-find", "configs/quick.yaml", "--set", "data.max_train_samples=1500", "--batches", "20",
                 "--out", str(tmp_path / "lrf")])
    assert found.exit_code == 0, found.output
    assert run([*args, "--run-dir", str(tmp_path / "after")]).exit_code == 0
    before = modelfile.load(tmp_path / "before" / "model.h5").model.params
    after = modelfile.load(tmp_path / "after" / "model.h5").model.params
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("options, message", [
    (["--start", "1", "--end", "1"], "must be below --end"),
    (["--start", "0.1", "--end", "0.01"], "must be below --end"),
    (["--start", "0"], "above 0"),
    (["--end", "inf"], "finite"),
    (["--batches", "4"], "give 5 to 100000"),
    (["--batches", "100001"], "give 5 to 100000"),
])
def test_bad_options_are_usage_errors(tmp_path, options, message):
    result = run(["lr-find", "configs/quick.yaml", *options, "--runs-root", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_failure_leaves_no_folder(tmp_path):
    result = run(["lr-find", "configs/quick.yaml", "--set", "data.max_train_samples=500", "--set",
                  "model.input_shape=[100]", "--batches", "5", "--runs-root", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "runs").exists()


def test_rate_schedule_and_suggestion_on_a_synthetic_curve():
    rates = np.array([rate_at(i, 1e-5, 1e1, 61) for i in range(61)])
    assert rates[0] == pytest.approx(1e-5) and rates[-1] == pytest.approx(10)
    # a loss that falls fastest around 1e-2 and rises after 1e-1
    x = np.log10(rates)
    losses = 2 - np.tanh(2 * (x + 2)) + np.where(x > -1, 3 * (x + 1) ** 2, 0)
    smoothed = smooth(losses, 0.5)
    found = suggest(rates, smoothed)
    assert 10 ** -2.5 < found < 10 ** -1.5
    assert suggest(rates, np.linspace(1, 5, 61)) is None  # a loss that only rises has no descent
    assert suggest(rates[:2], smoothed[:2]) is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_the_test_ends_it_and_leaves_no_folder(tmp_path, sig):
    """A real process stopped while it trains: exit 130, one line, no traceback, no folder."""
    folder = tmp_path / "lrf"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpcli", "lr-find", "configs/quick.yaml", "--set", "data.max_train_samples=2000",
         "--start", "1e-7", "--end", "1e-6", "--batches", "100000", "--out", str(folder)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # training has begun once the test says what it does
        if line.startswith("Range test of"):
            break
    assert process.poll() is None, process.stderr.read()
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Interrupted" in err
    assert not folder.exists()


def test_an_out_folder_that_is_not_empty_is_refused_naming_out(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "mine.txt").write_text("keep")
    result = run(["lr-find", "configs/quick.yaml", "--batches", "5", "--out", str(tmp_path / "f")])
    assert result.exit_code == 2, result.output
    assert "already exists and is not empty; choose a new --out" in result.output
    assert (tmp_path / "f" / "mine.txt").read_text() == "keep"
