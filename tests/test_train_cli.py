"""`mlp train` end to end through click's CliRunner on a small slice of real MNIST."""

import csv
import json
import warnings

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mlpcli import modelfile
from mlpcli.cli import main

SMALL = ["--set", "data.max_train_samples=6000", "--set", "data.max_test_samples=1000",
         "--set", "training.epochs=2"]


def run(args):
    result = CliRunner().invoke(main, args)
    return result


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = run(["train", "configs/mnist.yaml", "--runs-root", str(root), *SMALL])
    assert result.exit_code == 0, result.output
    return root, result


def test_run_folder_contents(mnist_run):
    root, result = mnist_run
    run_dir = (root / "latest").resolve()
    assert run_dir.name.startswith("mnist-mlp-")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "summary.txt", "history.csv", "checkpoints", "model.h5", "train.log",
            "results.json"} <= names
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["model-01.h5", "model-02.h5"]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["training"]["epochs"] == 2 and cfg["optimizer"]["beta_2"] == 0.999
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    summary = (run_dir / "summary.txt").read_text()
    assert "Total params: 118,282" in summary
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs_run"] == 2
    assert results["test"]["accuracy"] > 0.85  # 6,000 images, 2 epochs
    log = (run_dir / "train.log").read_text()
    assert "Epoch 2/2" in log and "Test:" in log


def test_output_shows_summary_epochs_and_test(mnist_run):
    _, result = mnist_run
    out = result.output
    assert "Layer (type)" in out and "Total params" in out
    assert "Epoch 1/2 - loss:" in out and "val_accuracy" in out
    assert "Test: loss:" in out


def test_model_file_holds_preprocessing_and_classes(mnist_run):
    root, _ = mnist_run
    loaded = modelfile.load(root / "latest" / "model.h5")
    assert loaded.pipeline.kind == "digits" and loaded.pipeline.scaling == "unit"
    assert loaded.pipeline.scale == np.float32(1 / 255) and loaded.pipeline.feature_shape == (28, 28)
    assert loaded.pipeline.class_names == [str(i) for i in range(10)]
    assert loaded.config["name"] == "mnist-mlp"
    assert loaded.optimizer_state["iterations"] > 0


def test_same_seed_same_weights_bit_for_bit(tmp_path):
    weights = []
    for i in range(2):
        result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / f"r{i}"), "-q",
                      "--set", "data.max_train_samples=1500", "--set", "training.epochs=2"])
        assert result.exit_code == 0, result.output
        weights.append(modelfile.load(tmp_path / f"r{i}" / "model.h5").model.params)
    assert all(np.array_equal(a, b) for a, b in zip(*weights))
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "other"), "-q",
                  "--set", "data.max_train_samples=1500", "--set", "training.epochs=2", "--set", "seed=1"])
    other = modelfile.load(tmp_path / "other" / "model.h5").model.params
    assert not np.array_equal(weights[0][0], other[0])


def test_cosine_decay_follows_the_epochs_asked_for(tmp_path):
    """mnist.yaml's cosine decay has no decay_steps: a 2-epoch run decays over those 2 epochs."""
    result = run(["train", "configs/mnist.yaml", "--run-dir", str(tmp_path / "r"), "-q", "--no-plots",
                  "--set", "data.max_train_samples=2000", "--set", "data.max_test_samples=100",
                  "--set", "training.epochs=2"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    # 1,600 training images: 13 batches an epoch; epoch 2 starts half-way through the run's 26
    assert [float(r["lr"]) for r in rows] == [pytest.approx(0.002), pytest.approx(0.001)]


def test_quiet_prints_nothing(tmp_path):
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"), "-q",
                  "--set", "data.max_train_samples=500", "--set", "training.epochs=1"])
    assert result.exit_code == 0 and result.output == ""


def test_dry_run_trains_nothing(tmp_path):
    result = run(["train", "configs/mnist.yaml", "--dry-run", "--runs-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "optimizer:" in result.output and "Total params: 118,282" in result.output
    assert list(tmp_path.iterdir()) == []


def test_config_error_exit_2_without_traceback(tmp_path):
    result = run(["train", "configs/mnist.yaml", "--set", "model.layers[2].rate=1.5",
                  "--runs-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "model.layers[2].rate: must be in [0, 1), got 1.5" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_missing_config_file(tmp_path):
    result = run(["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_existing_run_dir_is_never_written_into(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    result = run(["train", "configs/quick.yaml", "--run-dir", str(target), "-q"])
    assert result.exit_code == 2 and "not empty" in result.output
    assert [p.name for p in target.iterdir()] == ["precious.txt"]
    assert (target / "precious.txt").read_text() == "keep me"


def test_two_runs_get_two_folders(tmp_path):
    args = ["train", "configs/quick.yaml", "--runs-root", str(tmp_path), "-q",
            "--set", "data.max_train_samples=300", "--set", "training.epochs=1"]
    assert run(args).exit_code == 0 and run(args).exit_code == 0
    runs = sorted(p.name for p in tmp_path.iterdir() if p.name != "latest")
    assert len(runs) == 2 and runs[0] != runs[1]
    assert (tmp_path / "latest").resolve().name == runs[-1]


def test_early_stopping_and_restore_best_weights(tmp_path):
    # loss never improves by min_delta=10 after the first epoch: stop after patience epochs
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"),
                  "--set", "data.max_train_samples=1000", "--set", "training.epochs=10",
                  "--set", "early_stopping={monitor: loss, patience: 2, min_delta: 10, restore_best_weights: true}",
                  "--set", "checkpoint.monitor=loss"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert len(rows) == 3
    assert "Early stopping" in result.output and "Restored the weights of epoch 1" in result.output
    final = modelfile.load(tmp_path / "r" / "model.h5").model.params
    first = modelfile.load(tmp_path / "r" / "checkpoints" / "model-01.h5").model.params
    assert all(np.array_equal(a, b) for a, b in zip(final, first))


def test_save_best_only_writes_only_improvements(tmp_path):
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"), "-q",
                  "--set", "data.max_train_samples=1000", "--set", "training.epochs=3",
                  "--set", "checkpoint={monitor: loss, save_best_only: true, mode: max}"])
    assert result.exit_code == 0, result.output
    # training loss falls every epoch, so with mode max only epoch 1 is a "best"
    assert [p.name for p in (tmp_path / "r" / "checkpoints").iterdir()] == ["model-01.h5"]


def test_nan_loss_stops_with_clear_message(tmp_path):
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"),
                  "--set", "data.max_train_samples=1000", "--set", "optimizer={type: sgd, learning_rate: 1.0e+9}",
                  "--set", "model.layers[1].activation=linear", "--set", "loss=mse"])
    assert result.exit_code == 1
    assert "in epoch 1, batch" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "model.h5").exists()
    assert list((tmp_path / "r" / "checkpoints").iterdir()) == []


def test_weights_going_non_finite_with_a_finite_loss_stop_the_run(tmp_path):
    # One batch an epoch and a learning rate of 1e10 that grows 1e30-fold a step (beyond
    # float32 at step 2): epoch 2's only update sends the weights to inf/NaN after its loss
    # (computed before the update) came out finite, so only the check of the weights at the
    # epoch's end can see it.
    run_dir = tmp_path / "r"
    with warnings.catch_warnings():  # numpy's overflow warnings must not bury the one message
        warnings.simplefilter("error", RuntimeWarning)
        result = run(["train", "configs/quick.yaml", "--run-dir", str(run_dir), "--no-plots",
                      "--set", "data.max_train_samples=500", "--set", "training.batch_size=500",
                      "--set", "training.epochs=3", "--set", "optimizer={type: sgd, learning_rate: 1.0e+10}",
                      "--set", "schedule={type: exponential_decay, decay_steps: 1, decay_rate: 1.0e+30, "
                               "staircase: true}"])
    assert result.exit_code == 1, result.output
    assert "weights became NaN or infinite in epoch 2" in result.output
    assert "Traceback" not in result.output
    assert [r["epoch"] for r in csv.DictReader((run_dir / "history.csv").open())] == ["1"]
    assert not (run_dir / "model.h5").exists()
    saved = sorted(run_dir.glob("checkpoints/*.h5")) + sorted(run_dir.glob("resume/*.h5"))
    assert [p.name for p in saved] == ["model-01.h5", "epoch-0001.h5"]
    for path in saved:
        assert all(np.isfinite(w).all() for w in modelfile.load(path).model.params)


def test_python_m_mlpcli_works():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mlpcli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout


def test_threads_option_limits_blas_during_training(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    import mlpcli.trainer as training

    seen = []
    real = training.Trainer.run_epoch

    def spy(self, *args, **kwargs):
        seen.append({i["internal_api"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "run_epoch", spy)
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"), "-q", "--no-plots",
                  "--threads", "1", "--set", "data.max_train_samples=300", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    assert seen and all(set(s.values()) == {1} for s in seen)
    assert "threads: 1" in (tmp_path / "r" / "config.yaml").read_text()


def test_labels_outside_the_classes_are_named_before_the_split(tmp_path):
    """Labels 0..4999 for a 10-class model: the message says so, not that the split found
    every class too small (the split used to run first)."""
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((5000, 784), np.float32), y_train=np.arange(5000))
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"), "--no-plots",
                  "--set", f"data={{dataset: npz, path: {data}}}"])
    assert result.exit_code == 2, result.output
    assert "labels range over 0..4999" in result.output and "validation_split" not in result.output
    assert not (tmp_path / "r").exists()


def test_output_units_that_do_not_match_the_named_classes_are_refused(tmp_path):
    """Three string classes and four output units: the fourth class never occurs, yet predict
    would offer it; refused before training, naming the layer's units and the fix."""
    rows = ["a,b,kind"] + [f"{i % 7},{i % 5},{('cat', 'dog', 'eel')[i % 3]}" for i in range(60)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    result = run(["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "r"), "--no-plots",
                  "--set", f"data={{dataset: csv, path: {tmp_path / 'd.csv'}, label_column: kind}}",
                  "--set", "model={input_shape: [2], layers: [{type: dense, units: 8, activation: relu}, "
                           "{type: dense, units: 4, activation: softmax}]}"])
    assert result.exit_code == 2, result.output
    assert ("model.layers[1].units: the data has 3 classes (cat, dog, eel) but the output layer has 4 "
            "unit(s); set it to 3") in result.output
    assert not (tmp_path / "r").exists()
