"""Overfitting onset and the training/validation accuracy gap, and what `mlp train` writes."""

import csv
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from mlpcli.cli import main
from mlpcli.diagnostics import diagnose
from mlpcli.history import read_history

DATA = Path(__file__).parent / "data"

SIZES = {"train": 4800, "validation": 1200}
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
    assert d == {"samples": None, "overfitting": None, "plateau": None,
                 "train_below_validation": None, "messages": [], "notes": []}
    # validation loss that rises but comes back to its minimum is not overfitting
    assert diagnose(history([1.0, 0.8, 0.6, 0.5], [0.9, 0.7, 0.8, 0.7]))["overfitting"] is None
    assert diagnose([])["messages"] == []


def test_training_accuracy_below_validation():
    h = history([1.0, 0.8], [0.9, 0.7], [0.80, 0.85], [0.86, 0.90])
    gap = diagnose(h, DROPOUT, SIZES)["train_below_validation"]
    assert gap["accuracy"] == 0.85 and gap["val_accuracy"] == 0.90 and gap["dropout_rates"] == [0.3]
    assert "under-trained" in gap["warning"] and "dropout (0.3) too strong" in gap["warning"]
    assert "off when validation is measured" in gap["warning"]
    plain = diagnose(h, {"model": {"layers": [{"type": "dense", "units": 2}]}}, SIZES)
    assert "there is no dropout or weight penalty" in plain["train_below_validation"]["warning"]
    assert plain["notes"] == ["train acc < val acc"]
    augmented = diagnose(h, {"model": {"layers": [{"type": "dense", "units": 2}]},
                             "augment": {"transforms": [{"type": "random_rotation", "factor": 0.1}]}},
                         SIZES)
    warning = augmented["train_below_validation"]["warning"]
    assert "augmentation too strong" in warning and "images are augmented while training accuracy" in warning
    # regression runs have no accuracy to compare
    assert diagnose(history([1.0, 0.8], [0.9, 0.7]), None, SIZES)["train_below_validation"] is None
    # without the sample counts the sampling error is unknown, and no gap is claimed
    assert diagnose(h, DROPOUT)["train_below_validation"] is None


def train(tmp_path, config, *settings):
    """Train with ``mlp train`` and return (diagnostics.json, history rows, output)."""
    args = ["train", config, "--run-dir", str(tmp_path / "run"), "--no-plots",
            "--set", "data.max_test_samples=100", "--set", "training.threads=1"]
    for setting in settings:
        args += ["--set", setting]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    with open(tmp_path / "run" / "history.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    log = (tmp_path / "run" / "train.log").read_text()
    for message in saved["messages"]:
        assert message in result.output and message in log
    return saved, rows, result.output


def sustained_rise_start(val_loss, margin=0.02):
    """The first epoch after the minimum from which validation loss never comes back within
    ``margin`` (relative) of it: where a person reading the curve sees the rise begin."""
    low = min(val_loss)
    start = val_loss.index(low) + 1
    for i in range(start, len(val_loss)):
        if val_loss[i] <= low * (1 + margin):
            start = i + 1
    return start + 1


def test_a_clearly_overfitting_run_is_flagged_where_its_rise_starts(tmp_path):
    # wide, no dropout, 1,500 training samples, 30 epochs at Adam 0.01: training loss
    # goes to ~0.001 while validation loss climbs from 0.30 (epoch 3) to 0.38
    saved, rows, output = train(
        tmp_path, "configs/quick.yaml", "data.max_train_samples=2000", "data.validation_split=0.25",
        "training.epochs=30", "optimizer.learning_rate=0.01",
        ("model.layers=[{type: dense, units: 512, activation: relu}, "
         "{type: dense, units: 10, activation: softmax}]"))
    assert saved["samples"] == {"train": 1499, "validation": 501}
    assert saved == json.loads(json.dumps(diagnose(rows, {}, saved["samples"])))
    val_loss = [r["val_loss"] for r in rows]
    onset = saved["overfitting"]["onset_epoch"]
    assert abs(onset - sustained_rise_start(val_loss)) <= 2, (onset, val_loss)
    assert saved["plateau"] is None and saved["notes"] == [f"overfits from epoch {onset}"]
    assert f"Overfitting: validation loss rose from epoch {onset} on" in output


def test_the_seed_config_history_is_a_plateau_not_overfitting():
    # tests/data/mnist_seed42_history.csv: `mlp train configs/mnist.yaml` (seed 42, 20 epochs,
    # 48,000 training and 12,000 validation samples); validation loss 0.0747 at epoch 15,
    # 0.0751 at epoch 20, validation accuracy best at epoch 17
    cols = read_history(DATA / "mnist_seed42_history.csv")
    for sizes in ({"train": 48000, "validation": 12000}, None):
        d = diagnose(cols, {}, sizes)
        assert d["overfitting"] is None and d["train_below_validation"] is None
        assert d["plateau"]["lowest_val_loss_epoch"] == 15 and d["notes"] == ["plateau"]
        plateau = ("Plateau: validation loss ended flat within its noise "
                   "(lowest 0.0747 at epoch 15, last 0.0751)")
        assert d["messages"] == [plateau]


def test_an_under_trained_run_is_not_overfitting(tmp_path):
    # 2 epochs with dropout 0.7 after each hidden layer: validation accuracy above training
    saved, rows, _ = train(
        tmp_path, "configs/mnist.yaml", "data.max_train_samples=2000", "training.epochs=2",
        "training.processes=1", "model.layers[2].rate=0.7", "model.layers[5].rate=0.7")
    assert saved["overfitting"] is None and saved["plateau"] is None
    gap = saved["train_below_validation"]
    assert gap["accuracy"] < gap["val_accuracy"] and "under-trained" in gap["warning"], rows
    assert saved["notes"] == ["train acc < val acc"]


def test_flat_noisy_validation_loss_is_a_plateau_and_a_noisy_rise_is_flagged():
    rng = np.random.default_rng(0)
    epochs = 30
    train_loss = list(np.linspace(1.0, 0.05, epochs))
    falling = list(np.linspace(0.9, 0.5, 10))
    flat = falling + list(0.5 + rng.normal(0, 0.01, epochs - 10))
    d = diagnose(history(train_loss, flat))
    assert d["overfitting"] is None and d["notes"] == ["plateau"]
    assert not any("early stopping" in m for m in d["messages"])
    rising = falling + list(0.5 + np.linspace(0.01, 0.2, epochs - 10) + rng.normal(0, 0.01, epochs - 10))
    d = diagnose(history(train_loss, rising), None, {"train": 4000, "validation": 1000})
    assert d["plateau"] is None and abs(d["overfitting"]["onset_epoch"] - 11) <= 2


def test_a_one_sample_accuracy_difference_is_no_gap():
    # a 600-row CSV: 480 training rows, 120 validation rows; validation got one more right
    sizes = {"train": 480, "validation": 120}
    h = history([0.5, 0.4], [0.45, 0.42], [0.90, 108 / 120 - 1 / 120], [0.91, 108 / 120])
    assert diagnose(h, DROPOUT, sizes)["train_below_validation"] is None
    # the same 0.8-point difference over 48,000 and 12,000 samples is beyond sampling error
    assert diagnose(h, DROPOUT, {"train": 48000, "validation": 12000})["train_below_validation"]
    # a gap of 8 points on the same sizes is far beyond sampling error
    h = history([0.5, 0.4], [0.45, 0.42], [0.80, 0.82], [0.88, 0.90])
    assert "dropout (0.3) too strong" in diagnose(h, DROPOUT, sizes)["train_below_validation"]["warning"]
