"""Overfitting onset and the training/validation accuracy gap, and what `mlp train` writes."""

import csv
import json

from click.testing import CliRunner

from mlpcli.cli import main
from mlpcli.diagnostics import diagnose

DROPOUT = {"model": {"layers": [{"type": "dense", "units": 8}, {"type": "dropout", "rate": 0.3},
                                {"type": "dense", "units": 2}]}}


def history(loss, val_loss, accuracy=None, val_accuracy=None):
    rows = []
    for i, (a, b) in enumerate(zip(loss, val_loss)):
        row = {"epoch": i + 1, "loss": a, "val_loss": b}
        if accuracy:
            row.update(accuracy=accuracy[i], val_accuracy=val_accuracy[i])
        rows.append(row)
    return rows


def test_overfitting_onset_with_a_hint():
    d = diagnose(history([1.0, 0.8, 0.6, 0.5, 0.4], [0.9, 0.7, 0.75, 0.8, 0.85]))
    over = d["overfitting"]
    assert over["onset_epoch"] == 3 and over["lowest_val_loss_epoch"] == 2
    assert over["lowest_val_loss"] == 0.7 and over["final_val_loss"] == 0.85
    assert "use early stopping" in over["hint"] and "regularization" in over["hint"]
    assert d["messages"][0].startswith("Overfitting: validation loss rose from epoch 3 on")
    assert d["notes"] == ["overfits from epoch 3"]
    es = {"early_stopping": {"monitor": "val_loss", "patience": 5, "restore_best_weights": False}}
    hint = diagnose(history([1.0, 0.8, 0.6, 0.5], [0.9, 0.7, 0.75, 0.8]), es)["overfitting"]["hint"]
    assert "early stopping is on (patience 5)" in hint and "restore_best_weights" in hint


def test_no_diagnosis_for_healthy_curves():
    d = diagnose(history([1.0, 0.8, 0.6], [0.9, 0.7, 0.65], [0.6, 0.7, 0.8], [0.6, 0.65, 0.7]))
    assert d == {"overfitting": None, "train_below_validation": None, "messages": [], "notes": []}
    # validation loss that rises but comes back to its minimum is not overfitting
    assert diagnose(history([1.0, 0.8, 0.6, 0.5], [0.9, 0.7, 0.8, 0.7]))["overfitting"] is None
    assert diagnose([])["messages"] == []


def test_training_accuracy_below_validation():
    h = history([1.0, 0.8], [0.9, 0.7], [0.80, 0.85], [0.86, 0.90])
    gap = diagnose(h, DROPOUT)["train_below_validation"]
    assert gap["accuracy"] == 0.85 and gap["val_accuracy"] == 0.90 and gap["dropout_rates"] == [0.3]
    assert "under-trained" in gap["warning"] and "dropout (0.3) too strong" in gap["warning"]
    assert "off when validation is measured" in gap["warning"]
    plain = diagnose(h, {"model": {"layers": [{"type": "dense", "units": 2}]}})
    assert "there is no dropout or weight penalty" in plain["train_below_validation"]["warning"]
    assert plain["notes"] == ["train acc < val acc"]
    augmented = diagnose(h, {"model": {"layers": [{"type": "dense", "units": 2}]},
                             "augment": {"transforms": [{"type": "random_rotation", "factor": 0.1}]}})
    warning = augmented["train_below_validation"]["warning"]
    assert "augmentation too strong" in warning and "images are augmented while training accuracy" in warning
    # regression runs have no accuracy to compare
    assert diagnose(history([1.0, 0.8], [0.9, 0.7]))["train_below_validation"] is None


def test_mlp_train_writes_diagnostics_and_prints_them(tmp_path):
    # a tiny training set and a high learning rate overfit within a few epochs
    result = CliRunner().invoke(main, [
        "train", "configs/mnist.yaml", "--run-dir", str(tmp_path / "run"), "--no-plots",
        "--set", "data.max_train_samples=300", "--set", "data.max_test_samples=100",
        "--set", "training.epochs=8", "--set", "optimizer.learning_rate=0.01", "--set", "schedule=constant",
        "--set", "training.threads=1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    with open(tmp_path / "run" / "history.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    assert saved == json.loads(json.dumps(diagnose(rows, {"model": {"layers": [
        {"type": "dropout", "rate": 0.3}, {"type": "dropout", "rate": 0.3}]}})))
    assert saved["overfitting"] is not None, rows
    log = (tmp_path / "run" / "train.log").read_text()
    for message in saved["messages"]:
        assert message in result.output and message in log
    assert "Overfitting: validation loss rose from epoch" in result.output
