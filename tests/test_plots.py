"""Tests for mlpcli.plots: curves, evaluation figures and comparisons from hand-made run folders."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from mlpcli import figures as figures_mod
from mlpcli import plots_evaluation
from mlpcli.config import resolve
from mlpcli.plots import (
    PlotReport,
    best_epoch,
    evaluation_suffix,
    plot_runs,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DENSE10 = [{"type": "dense", "units": 32, "activation": "relu"},
           {"type": "dense", "units": 10, "activation": "softmax"}]

# 6 epochs: val_loss lowest at epoch 3, then rises while the training loss keeps falling
OVERFIT = {
    "loss": [1.0, 0.6, 0.4, 0.3, 0.2, 0.1],
    "accuracy": [0.70, 0.80, 0.86, 0.90, 0.93, 0.96],
    "val_loss": [0.9, 0.6, 0.5, 0.55, 0.6, 0.7],
    "val_accuracy": [0.72, 0.81, 0.85, 0.84, 0.845, 0.83],
    "lr": [0.001, 0.001, 0.0005, 0.0005, 0.00025, 0.00025],
}


def mnist_config(**changes):
    raw = {"name": "mnist-mlp",
           "data": {"dataset": "mnist", "max_train_samples": 100, "max_test_samples": 300},
           "model": {"layers": DENSE10}}
    raw.update(changes)
    return resolve(raw)


def regression_config():
    return resolve({"name": "reg", "task": "regression", "loss": "mse", "metrics": ["mae"],
                    "data": {"dataset": "csv", "path": "/nonexistent/data.csv"},
                    "model": {"input_shape": [3], "layers": [{"type": "dense", "units": 1}]}})


def make_run(root, name, columns, cfg=None, epochs=None):
    """A run folder with config.yaml and history.csv holding ``columns`` ({name: values})."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg if cfg is not None else mnist_config()))
    if columns is not None:
        n = len(next(iter(columns.values())))
        epochs = epochs or list(range(1, n + 1))
        names = ["epoch", *columns, "seconds"]
        with open(run / "history.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            for i in range(n):
                writer.writerow([epochs[i], *(columns[c][i] for c in columns), 1.5])
    return run


def take(columns, n):
    return {k: v[:n] for k, v in columns.items()}


@pytest.fixture
def figures(monkeypatch):
    """Record {file name: figure} for every figure plot_runs saves."""
    seen = {}
    original = figures_mod.save

    def recording_save(fig, path, fmt, report, label):
        seen[path.name] = fig
        original(fig, path, fmt, report, label)

    monkeypatch.setattr(figures_mod, "save", recording_save)
    return seen


def legend_labels(fig):
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def best_line_x(fig):
    """x of the dashed vertical best-epoch line on the first axes."""
    xs = [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(xs) == 1
    return xs[0]


def assert_png(path, size=None):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()
        width, height = image.size
    if size:
        assert (width, height) == size
    assert width >= 300 and height >= 200
    return width, height


# ---------------------------------------------------------------- curve plots

def test_one_run_writes_three_valid_pngs(tmp_path):
    run = make_run(tmp_path, "run1", OVERFIT)
    report = plot_runs([run])
    assert isinstance(report, PlotReport)
    names = {"accuracy.png", "loss.png", "learning_rate.png"}
    assert {p.name for p in report.written} == names
    for name in names:
        assert (run / "plots" / name) in report.written
        assert_png(run / "plots" / name, size=(640, 480))
    assert not any("validation" in s for s in report.skipped)
    assert not list((run / "plots").glob(".tmp-*"))  # atomic writes leave no temporaries


def test_out_dir_for_one_run(tmp_path):
    run = make_run(tmp_path, "run1", OVERFIT)
    out = tmp_path / "figs"
    report = plot_runs([run], out_dir=out)
    assert {p.parent for p in report.written} == {out}
    assert not (run / "plots").exists()


@pytest.mark.parametrize("fmt, magic", [("svg", b"<svg"), ("pdf", b"%PDF")])
def test_svg_and_pdf(tmp_path, fmt, magic):
    run = make_run(tmp_path, "run1", OVERFIT)
    report = plot_runs([run], fmt=fmt)
    assert {p.name for p in report.written} == {f"accuracy.{fmt}", f"loss.{fmt}",
                                                f"learning_rate.{fmt}"}
    for path in report.written:
        head = path.read_bytes()[:400]
        assert magic in head
        assert not head.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("fmt", ["jpg", "PNG", "", None])
def test_bad_format_raises_before_writing(tmp_path, fmt):
    run = make_run(tmp_path, "run1", OVERFIT)
    with pytest.raises(ValueError, match="png, svg, pdf"):
        plot_runs([run], fmt=fmt)
    assert not (run / "plots").exists()


def test_no_figure_left_open(tmp_path):
    import matplotlib.pyplot as plt

    plt.close("all")
    run = make_run(tmp_path, "run1", OVERFIT)
    plot_runs([run])
    plot_runs([run], fmt="svg")
    assert plt.get_fignums() == []


def test_curves_show_best_epoch_and_overfitting(tmp_path, figures):
    run = make_run(tmp_path, "run1", OVERFIT)  # monitor val_loss (default): best epoch 3
    plot_runs([run])
    for name in ("loss.png", "accuracy.png"):
        fig = figures[name]
        labels = legend_labels(fig)
        assert labels[:2] == ["train", "validation"]
        assert "best epoch 3" in labels
        assert "overfitting from epoch 4" in labels
        assert best_line_x(fig) == 3
        ax = fig.axes[0]
        assert ax.get_xlabel() == "epoch"
        assert ax.get_ylabel() == name.split(".")[0]
        assert ax.get_title().startswith(f"model {name.split('.')[0]}")
        # the shade spans epoch 4 .. 6
        span = [p for p in ax.patches if p.get_label().startswith("overfitting")]
        assert len(span) == 1
        (x0, _), (x1, _) = ax.transData.inverted().transform(span[0].get_extents().get_points())
        assert (round(x0, 6), round(x1, 6)) == (4, 6)
    lr_fig = figures["learning_rate.png"]
    np.testing.assert_allclose(lr_fig.axes[0].lines[0].get_ydata(), OVERFIT["lr"])


def test_best_epoch_line_honours_checkpoint_mode(tmp_path, figures):
    cfg = mnist_config(checkpoint={"monitor": "val_accuracy", "mode": "max"})
    run = make_run(tmp_path, "run1", OVERFIT, cfg=cfg)
    plot_runs([run])
    assert best_line_x(figures["loss.png"]) == 3  # val_accuracy peaks at epoch 3 (0.85)
    cfg = mnist_config(checkpoint={"monitor": "accuracy", "mode": "min"})
    run = make_run(tmp_path, "run2", OVERFIT, cfg=cfg)
    plot_runs([run])
    assert "best epoch 1" in legend_labels(figures["loss.png"])


def test_no_overfitting_no_shade(tmp_path, figures):
    columns = dict(OVERFIT, val_loss=[0.9, 0.7, 0.6, 0.5, 0.45, 0.4])
    run = make_run(tmp_path, "run1", columns)
    plot_runs([run])
    labels = legend_labels(figures["loss.png"])
    assert "best epoch 6" in labels
    assert not any(label.startswith("overfitting") for label in labels)


# ---------------------------------------------------------------- pure helpers

def test_best_epoch_of_float32_arrays():
    assert best_epoch({"val_loss": np.array([0.5, 0.2, 0.3], np.float32)}, "val_loss") == 2


def test_best_epoch_modes():
    history = {"epoch": [1, 2, 3, 4], "loss": [1.0, 0.5, 0.4, 0.3],
               "val_loss": [0.9, 0.4, 0.6, 0.5], "val_accuracy": [0.5, 0.7, 0.9, 0.8]}
    assert best_epoch(history, "val_loss", "auto") == 2
    assert best_epoch(history, "val_loss", "min") == 2
    assert best_epoch(history, "val_loss", "max") == 1
    assert best_epoch(history, "val_accuracy", "auto") == 3
    assert best_epoch(history, "val_accuracy", "max") == 3
    assert best_epoch(history, "val_accuracy", "min") == 1
    # monitored column absent: training loss, lower is better whatever the mode
    assert best_epoch(history, "val_mae", "max") == 4
    assert best_epoch({"epoch": [1], "lr": [0.1]}, "val_loss", "auto") is None
    assert best_epoch({}, "val_loss") is None


def test_best_epoch_uses_epoch_numbers_rows_and_first_tie():
    assert best_epoch({"epoch": [11, 12, 13], "val_loss": [0.5, 0.3, 0.4]}, "val_loss") == 12
    rows = [{"epoch": 1, "loss": 0.5, "val_loss": 0.4}, {"epoch": 2, "loss": 0.4, "val_loss": 0.4},
            {"epoch": 3, "loss": 0.3, "val_loss": math.nan}]
    assert best_epoch(rows, "val_loss", "min") == 1


@pytest.mark.parametrize("name, suffix", [
    ("evaluation.json", ""), ("evaluation-model-03.json", "-model-03"),
    ("evaluation-best.json", "-best"), ("evaluation2.json", "-2")])
def test_evaluation_suffix(name, suffix):
    assert evaluation_suffix(name) == suffix


# ---------------------------------------------------------------- awkward runs

def test_run_without_validation(tmp_path, figures):
    columns = {k: OVERFIT[k] for k in ("loss", "accuracy", "lr")}
    cfg = mnist_config(data={"dataset": "mnist", "validation_split": 0.0},
                       checkpoint={"monitor": "loss"})
    run = make_run(tmp_path, "run1", columns, cfg=cfg)
    report = plot_runs([run])
    assert {p.name for p in report.written} == {"accuracy.png", "loss.png", "learning_rate.png"}
    assert any("no validation" in s and "run1" in s for s in report.skipped)
    labels = legend_labels(figures["loss.png"])
    assert "validation" not in labels and "train" in labels
    assert "best epoch 6" in labels
    assert len(figures["accuracy.png"].axes[0].lines) == 2  # train curve + best-epoch line


def test_monitor_missing_falls_back_to_loss(tmp_path, figures):
    columns = {k: OVERFIT[k] for k in ("loss", "accuracy", "lr")}
    run = make_run(tmp_path, "run1", columns)  # config monitors val_loss, not logged
    report = plot_runs([run])
    assert "best epoch 6" in legend_labels(figures["loss.png"])
    assert any("val_loss not in history" in s for s in report.skipped)


def test_single_epoch_run(tmp_path, figures):
    run = make_run(tmp_path, "run1", take(OVERFIT, 1))
    report = plot_runs([run])
    assert {p.name for p in report.written} == {"accuracy.png", "loss.png", "learning_rate.png"}
    for name in ("accuracy.png", "loss.png", "learning_rate.png"):
        assert_png(run / "plots" / name)
        curve = figures[name].axes[0].lines[0]
        assert curve.get_marker() == "o"
        assert len(curve.get_xdata()) == 1
        assert list(figures[name].axes[0].get_xticks()) == [1]  # no 0.95, 0.975, ... ticks
    assert "best epoch 1" in legend_labels(figures["loss.png"])


def test_regression_run_skips_accuracy(tmp_path):
    columns = {"loss": [2.0, 1.0, 0.5], "mae": [1.2, 0.8, 0.5], "val_loss": [2.1, 1.1, 0.7],
               "val_mae": [1.3, 0.9, 0.6], "lr": [0.01] * 3}
    run = make_run(tmp_path, "reg1", columns, cfg=regression_config())
    report = plot_runs([run])
    assert {p.name for p in report.written} == {"loss.png", "learning_rate.png"}
    assert not (run / "plots" / "accuracy.png").exists()
    assert any("accuracy.png" in s and "no accuracy in history (regression run?)" in s
               for s in report.skipped)
    assert_png(run / "plots" / "loss.png")


def test_missing_history_is_skipped(tmp_path):
    run = make_run(tmp_path, "run1", None)
    report = plot_runs([run])
    assert report.written == []
    assert any("run1" in s and "no history.csv" in s for s in report.skipped)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\x80\x81", b"epoch,loss\n"])
def test_unreadable_or_empty_history_is_skipped(tmp_path, content):
    run = make_run(tmp_path, "run1", None)
    (run / "history.csv").write_bytes(content)
    report = plot_runs([run])
    assert report.written == []
    assert any("history.csv" in s for s in report.skipped)


def test_ragged_history_and_odd_columns(tmp_path):
    run = make_run(tmp_path, "run1", None)
    (run / "history.csv").write_text("epoch,loss,val_loss,lr\n1,0.9,0.8\n2,oops,0.7,0.01\n3,0.5\n")
    report = plot_runs([run])
    assert {p.name for p in report.written} == {"loss.png", "learning_rate.png"}
    assert any("no accuracy" in s for s in report.skipped)


def test_missing_run_folder_and_config(tmp_path):
    run = make_run(tmp_path, "run1", OVERFIT)
    (run / "config.yaml").unlink()
    report = plot_runs([tmp_path / "nope", run])
    assert any("nope" in s and "not a run folder" in s for s in report.skipped)
    assert any("no config.yaml" in s for s in report.skipped)
    assert (run / "plots" / "loss.png") in report.written
    # several runs without out_dir: the comparison goes to the first existing run's plots/
    assert (run / "plots" / "compare-loss.png") in report.written


def test_broken_config_yaml_does_not_raise(tmp_path):
    run = make_run(tmp_path, "run1", OVERFIT)
    (run / "config.yaml").write_text("checkpoint: [unclosed\n")
    report = plot_runs([run])
    assert any("config.yaml unreadable" in s for s in report.skipped)
    assert (run / "plots" / "loss.png") in report.written


# ---------------------------------------------------------------- evaluations

def evaluation(n_classes=10, misclassified=()):
    cm = [[0] * n_classes for _ in range(n_classes)]
    for i in range(n_classes):
        cm[i][i] = 25 + i
    if n_classes >= 5:
        cm[4][2] = 3
    return {"checkpoint": "model.h5", "loss": 0.07, "metrics": {"accuracy": 0.979},
            "class_names": [str(i) for i in range(n_classes)],
            "per_class": [{"class": str(i), "precision": 0.9, "recall": 0.9, "f1": 0.9,
                           "support": 30} for i in range(n_classes)],
            "macro_avg": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 300},
            "weighted_avg": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 300},
            "confusion_matrix": cm, "misclassified": list(misclassified)}


def test_evaluation_confusion_matrix_and_misclassified_grid(tmp_path, figures, monkeypatch):
    import mlpcli.data
    from mlpcli.data import load_dataset

    cfg = mnist_config()
    run = make_run(tmp_path, "mnist1", OVERFIT, cfg=cfg)
    data = load_dataset(cfg["data"], task=cfg["task"])
    wrong = [{"index": i, "true": int(data.y_test[i]), "predicted": (int(data.y_test[i]) + 1) % 10,
              "probability": 0.6} for i in range(0, 300, 10)]  # 30 entries, 25 drawn
    wrong.append({"index": 5000, "true": 1, "predicted": 2, "probability": 0.5})  # beyond the split
    (run / "evaluation.json").write_text(json.dumps(evaluation(misclassified=wrong)))
    scaled_rows, scale = [], mlpcli.data.apply_preprocessing
    monkeypatch.setattr(mlpcli.data, "apply_preprocessing", lambda x, p: scaled_rows.append(len(x)) or scale(x, p))
    report = plot_runs([run])
    assert scaled_rows == [1] * 25  # the images drawn, not a scaled copy of the data set
    names = {p.name for p in report.written}
    assert {"confusion_matrix.png", "misclassified.png"} <= names
    assert_png(run / "plots" / "confusion_matrix.png", size=(640, 480))
    assert_png(run / "plots" / "misclassified.png")

    cm_ax = figures["confusion_matrix.png"].axes[0]
    assert cm_ax.get_xlabel() == "predicted" and cm_ax.get_ylabel() == "true"
    assert [t.get_text() for t in cm_ax.get_xticklabels()] == [str(i) for i in range(10)]
    texts = {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text()
             for t in cm_ax.texts}
    assert texts[(2, 4)] == "3"  # row = true 4, column = predicted 2
    assert texts[(9, 9)] == "34"
    assert len(texts) == 100

    grid = figures["misclassified.png"]
    shown = [ax for ax in grid.axes if ax.images]
    assert len(shown) == 25
    first = shown[0]
    assert first.get_title() == f"true {data.y_test[0]} / pred {(data.y_test[0] + 1) % 10}"
    np.testing.assert_allclose(first.images[0].get_array(), data.x_test[0].reshape(28, 28))
    np.testing.assert_allclose(shown[3].images[0].get_array(), data.x_test[30].reshape(28, 28))
    assert any("no valid test index" in s for s in report.skipped)


def test_evaluation_file_suffixes(tmp_path):
    run = make_run(tmp_path, "mnist1", OVERFIT)
    (run / "evaluation-model-03.json").write_text(json.dumps(evaluation()))
    (run / "evaluation.json").write_text(json.dumps(evaluation()))
    report = plot_runs([run])
    names = {p.name for p in report.written}
    assert {"confusion_matrix.png", "confusion_matrix-model-03.png"} <= names
    assert (run / "plots" / "confusion_matrix-model-03.png").is_file()
    assert any("lists no misclassified" in s for s in report.skipped)  # empty list: no grid
    assert "misclassified-model-03.png" not in names


def test_regression_and_broken_evaluations_are_skipped(tmp_path):
    columns = {"loss": [2.0, 1.0], "val_loss": [2.1, 1.1], "lr": [0.01, 0.01]}
    run = make_run(tmp_path, "reg1", columns, cfg=regression_config())
    (run / "evaluation.json").write_text(json.dumps({"checkpoint": "model.h5", "loss": 0.3,
                                                     "metrics": {"mae": 0.4}}))
    (run / "evaluation-bad.json").write_text("{not json")
    (run / "evaluation-odd.json").write_text(json.dumps({"confusion_matrix": [[1, 2], [3]]}))
    report = plot_runs([run])
    assert not any(p.name.startswith(("confusion", "misclassified")) for p in report.written)
    assert any("evaluation.json has no confusion matrix" in s for s in report.skipped)
    assert any("evaluation-bad.json unreadable" in s for s in report.skipped)
    assert any("no square confusion_matrix" in s for s in report.skipped)


def test_misclassified_not_image_like_is_skipped(tmp_path):
    data = tmp_path / "table.csv"
    data.write_text("a,b,c,label\n" + "".join(f"{i},{i + 1},{i + 2},{i % 2}\n" for i in range(20)))
    cfg = resolve({"name": "tab", "data": {"dataset": "csv", "path": str(data), "test_path": str(data)},
                   "model": {"input_shape": [3], "layers": [{"type": "dense", "units": 2,
                                                             "activation": "softmax"}]}})
    run = make_run(tmp_path, "tab1", OVERFIT, cfg=cfg)
    ev = evaluation(n_classes=2, misclassified=[{"index": 1, "true": 1, "predicted": 0,
                                                 "probability": 0.7}])
    (run / "evaluation.json").write_text(json.dumps(ev))
    report = plot_runs([run])
    names = {p.name for p in report.written}
    assert "confusion_matrix.png" in names and "misclassified.png" not in names
    assert any("misclassified.png" in s and "not image-like" in s for s in report.skipped)


def test_image_shape_rules():
    assert plots_evaluation.image_shape((784,), [784]) == (28, 28)
    assert plots_evaluation.image_shape((28, 28), [784]) == (28, 28)
    assert plots_evaluation.image_shape((64,), [8, 8]) == (8, 8)
    assert plots_evaluation.image_shape((12, 12, 3), [432]) == (12, 12, 3)
    assert plots_evaluation.image_shape((3,), [3]) is None
    assert plots_evaluation.image_shape((64,), [64]) is None


# ---------------------------------------------------------------- several runs

def test_two_runs_write_comparisons(tmp_path, figures):
    a = make_run(tmp_path, "run-a", OVERFIT)
    no_val = {k: OVERFIT[k] for k in ("loss", "accuracy", "lr")}
    b = make_run(tmp_path, "run-b", take(no_val, 4))
    report = plot_runs([a, b])
    assert (a / "plots" / "compare-accuracy.png") in report.written
    assert (a / "plots" / "compare-loss.png") in report.written
    assert (b / "plots" / "loss.png") in report.written  # each run still gets its own plots
    assert_png(a / "plots" / "compare-loss.png", size=(640, 480))
    assert legend_labels(figures["compare-loss.png"]) == ["run-a", "run-b (train)"]
    lines = figures["compare-loss.png"].axes[0].lines
    np.testing.assert_allclose(lines[0].get_ydata(), OVERFIT["val_loss"])  # validation curve
    np.testing.assert_allclose(lines[1].get_ydata(), OVERFIT["loss"][:4])  # training: no validation


def test_two_runs_with_out_dir(tmp_path):
    a = make_run(tmp_path, "run-a", OVERFIT)
    b = make_run(tmp_path, "run-b", OVERFIT)
    out = tmp_path / "out"
    report = plot_runs([a, b], out_dir=out, fmt="svg")
    assert (out / "compare-accuracy.svg") in report.written
    assert (out / "compare-loss.svg") in report.written
    assert (out / "run-a" / "loss.svg") in report.written
    assert (out / "run-b" / "loss.svg") in report.written
    assert not (a / "plots").exists()


def test_comparison_skips_runs_without_accuracy(tmp_path):
    a = make_run(tmp_path, "reg-a", {"loss": [2.0, 1.0], "val_loss": [2.1, 1.1]},
                 cfg=regression_config())
    b = make_run(tmp_path, "reg-b", {"loss": [3.0, 1.5], "val_loss": [3.1, 1.6]},
                 cfg=regression_config())
    report = plot_runs([a, b])
    names = {p.name for p in report.written}
    assert "compare-loss.png" in names and "compare-accuracy.png" not in names
    assert any("compare-accuracy.png: no run has accuracy" in s for s in report.skipped)


# ---------------------------------------------------------------- import cost

def test_import_does_not_load_matplotlib():
    code = ("import sys, mlpcli.plots; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- curves of an evaluation

def mlp(*args):
    """``mlp ARGS`` in a real process; its output (it must succeed)."""
    result = subprocess.run([sys.executable, "-m", "mlpcli", *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def copied_run(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / run.name)


def test_classifier_evaluation_and_plot_draw_roc_pr_and_calibration(tiny_run, tmp_path, figures):
    run = copied_run(tiny_run, tmp_path)
    printed = mlp("evaluate", run)
    ev = json.loads((run / "evaluation.json").read_text())
    for name in ("auc", "pr_auc", "log_loss"):  # scored though the config lists only accuracy
        assert f"{name}: " in printed and finite_number(ev["metrics"][name])
    assert 0.5 < ev["metrics"]["auc"] <= 1 and ev["metrics"]["log_loss"] > 0
    assert ev["metrics"]["log_loss"] == pytest.approx(ev["loss"], rel=1e-4)  # the loss, sparse CE
    report = plot_runs([run])
    names = {p.name for p in report.written}
    assert {"roc.png", "precision_recall.png", "calibration.png", "confusion_matrix.png"} <= names
    for name in ("roc.png", "precision_recall.png", "calibration.png"):
        assert_png(run / "plots" / name, size=(640, 480))
    roc = legend_labels(figures["roc.png"])
    assert roc[0] == "chance" and len(roc) == 12  # chance, 10 classes, the macro average
    assert roc[-1] == f"macro average (AUC {ev['metrics']['auc']:.3f})"
    assert legend_labels(figures["precision_recall.png"])[-1] == \
        f"macro average (AP {ev['metrics']['pr_auc']:.3f})"
    assert "probability of the predicted class" in figures["calibration.png"].axes[0].get_title()


def finite_number(value):
    return isinstance(value, float) and math.isfinite(value)


def test_binary_classifier_curves_are_of_its_positive_class(csv_run, tmp_path, figures):
    run = copied_run(csv_run, tmp_path)
    mlp("evaluate", run)
    ev = json.loads((run / "evaluation.json").read_text())
    positive = ev["class_names"][1]
    assert [c["class"] for c in ev["curves"]["roc"]["classes"]] == [positive]
    assert "macro" not in ev["curves"]["roc"]
    assert ev["curves"]["roc"]["classes"][0]["auc"] == pytest.approx(ev["metrics"]["auc"], abs=1e-12)
    plot_runs([run])
    assert legend_labels(figures["roc.png"]) == ["chance", f"{positive} (AUC {ev['metrics']['auc']:.3f})"]
    assert figures["calibration.png"].axes[0].get_title().startswith(
        f"calibration: probability of class {positive}")


def test_regression_evaluation_and_plot_draw_predicted_vs_true_and_residuals(tmp_path, figures):
    run = tmp_path / "diabetes"
    mlp("train", "configs/diabetes-regression.yaml", "--run-dir", run, "-q", "--no-plots",
        "--set", "training.epochs=3", "--set", "metrics=[mae, r2]", "--set", "checkpoint.monitor=val_r2")
    assert "val_r2" in (run / "history.csv").read_text().splitlines()[0].split(",")
    printed = mlp("evaluate", run)
    ev = json.loads((run / "evaluation.json").read_text())
    assert "r2: " in printed and finite_number(ev["metrics"]["r2"])
    points = ev["curves"]["predicted_vs_true"]
    assert points["samples"] == len(points["true"][0]) == len(points["predicted"][0])
    report = plot_runs([run])
    names = {p.name for p in report.written}
    assert {"predicted_vs_true.png", "residuals.png"} <= names
    assert not any(n.startswith(("roc", "confusion", "calibration")) for n in names)
    for name in ("predicted_vs_true.png", "residuals.png"):
        assert_png(run / "plots" / name, size=(640, 480))
    true, predicted = (np.array(points[k][0]) for k in ("true", "predicted"))
    residuals = figures["residuals.png"].axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(residuals[:, 0], predicted)
    np.testing.assert_allclose(residuals[:, 1], true - predicted)


def curves_evaluation(n_classes=3, seed=0):
    from mlpcli.evaluation_curves import classifier_curves

    rng = np.random.default_rng(seed)
    out = rng.dirichlet(np.ones(n_classes), 200)
    labels = rng.integers(0, n_classes, 200)
    return {**evaluation(n_classes=n_classes), **classifier_curves(labels, out, [f"k{i}" for i in range(n_classes)])}


def test_curve_figures_take_the_evaluation_suffix(tmp_path):
    run = make_run(tmp_path, "run1", OVERFIT)
    (run / "evaluation-model-03.json").write_text(json.dumps(curves_evaluation()))
    (run / "evaluation-model-03-on-other.json").write_text(json.dumps(
        {"loss": 1.0, "metrics": {"r2": 0.5}, "curves": {"predicted_vs_true": {
            "samples": 3, "outputs": 2, "true": [[1, 2, 3], [0, 1, 0]], "predicted": [[1.5, 2, 2], [0, 0, 0]]}}}))
    names = {p.name for p in plot_runs([run]).written}
    assert {"roc-model-03.png", "precision_recall-model-03.png", "calibration-model-03.png",
            "predicted_vs_true-model-03-on-other.png", "residuals-model-03-on-other.png"} <= names


def test_reports_without_or_with_broken_curves_are_skipped_with_the_reason(tmp_path):
    run = make_run(tmp_path, "run1", OVERFIT)
    (run / "evaluation.json").write_text(json.dumps(evaluation()))  # written before the curves
    broken = curves_evaluation()
    broken["curves"]["roc"]["classes"][1]["tpr"] = ["x", None]
    broken["curves"]["precision_recall"]["classes"][0]["recall"] = [0.1]
    broken["curves"]["calibration"] = "no"
    (run / "evaluation-broken.json").write_text(json.dumps(broken))
    (run / "evaluation-reg.json").write_text(json.dumps(
        {"metrics": {}, "curves": {"predicted_vs_true": {"true": [[1, 2]], "predicted": [[1, math.inf]]}}}))
    report = plot_runs([run])
    names = {p.name for p in report.written}
    assert {"confusion_matrix.png", "confusion_matrix-broken.png"} <= names
    assert not any(n.startswith(("roc", "precision_recall", "calibration", "residuals", "predicted"))
                   for n in names)
    skipped = "\n".join(report.skipped)
    assert "roc.png: evaluation.json has no roc curves (written before mlp evaluate recorded them" in skipped
    assert "roc-broken.png: evaluation-broken.json curves.roc tpr is not a list of numbers" in skipped
    assert "precision_recall-broken.png: evaluation-broken.json curves.precision_recall: recall and " \
           "precision differ in length" in skipped
    assert "calibration-broken.png: evaluation-broken.json has no calibration bins" in skipped
    assert "residuals-reg.png: evaluation-reg.json curves.predicted_vs_true predicted is not a list" in skipped
