"""The ``plot`` stage: figures of training curves and evaluations from run folders.

``plot_runs(run_dirs, out_dir, fmt)`` reads what ``mlp train`` and ``mlp
evaluate`` left in each run folder and writes:

* ``accuracy.<fmt>``: training vs validation accuracy per epoch (skipped for
  runs without an ``accuracy`` column, e.g. regression runs);
* ``loss.<fmt>``: training vs validation loss per epoch;
* ``learning_rate.<fmt>``: the learning rate per epoch;
* for every ``evaluation*.json``: ``confusion_matrix<suffix>.<fmt>`` (counts,
  true class = rows, predicted = columns) and ``misclassified<suffix>.<fmt>``
  (up to 25 misclassified test images), where ``evaluation-model-03.json``
  gives the suffix ``-model-03`` and ``evaluation.json`` none.

On the accuracy and loss plots the best epoch by the checkpoint's monitored
quantity is marked with a dashed vertical line, and the epochs from the onset
of overfitting (see ``overfitting_onset``) to the end are shaded.

With one run the figures go to ``<run>/plots/`` (or ``out_dir``). With several,
each run's figures go to ``<run>/plots/`` (or ``out_dir/<run folder name>/``)
and ``compare-accuracy.<fmt>`` / ``compare-loss.<fmt>``, overlaying the
validation curves (training curves for runs without validation) of every run,
go to ``out_dir`` (default: the first run's ``plots/`` folder).

Nothing a run folder lacks raises: what cannot be drawn is listed, with the
reason, in ``PlotReport.skipped``. matplotlib is imported only when drawing,
so importing this module stays cheap.
"""

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from mlpcli.errors import ConfigError
from mlpcli.history import (best_epoch, epoch_numbers, evaluation_suffix, finite, has_values,
                            monitored_column, overfitting_onset, read_history)

# the history helpers are part of this module's interface too
__all__ = ["FORMATS", "PlotReport", "best_epoch", "evaluation_suffix", "monitored_column",
           "overfitting_onset", "plot_runs", "read_history"]

FORMATS = ("png", "svg", "pdf")
FIGSIZE = (6.4, 4.8)
DPI = 100
MAX_MISCLASSIFIED = 25
GRID_COLUMNS = 5
# below this many epochs the curves get point markers (one epoch is a single point)
MARKER_EPOCHS = 25


@dataclass
class PlotReport:
    written: list[Path] = field(default_factory=list)  # files written
    skipped: list[str] = field(default_factory=list)  # what was not drawn and why, one line each


def _read_config(run, report, label):
    """The run's config.yaml as a dict ({} with a note when it is missing or unreadable)."""
    path = run / "config.yaml"
    if not path.is_file():
        report.skipped.append(f"{label}: no config.yaml; best epoch uses val_loss, "
                              "misclassified images are not drawn")
        return {}
    from mlpcli.config_yaml import read_yaml

    try:
        return read_yaml(path)
    except ConfigError as exc:
        report.skipped.append(f"{label}: config.yaml unreadable ({str(exc).split(': ', 2)[-1]}); using defaults")
        return {}


def _section(cfg, key):
    value = cfg.get(key)
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- drawing

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _new_figure(figsize=FIGSIZE):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=DPI)
    return fig, ax


def _save(fig, path, fmt, report, label):
    """Tight-layout, write atomically, close; record the file or the failure."""
    import warnings

    from mlpcli.runs import atomic_path

    plt = _pyplot()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "tight_layout not applied" etc.
            fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        report.written.append(path)
    except OSError as exc:
        report.skipped.append(f"{label}: {path.name}: could not be written ({exc})")
    finally:
        plt.close(fig)


def _integer_epochs(ax, epochs):
    """Whole-number epoch ticks; a single epoch gets one tick in the middle, not 0.945..1.05."""
    from matplotlib.ticker import MaxNLocator

    if epochs and min(epochs) == max(epochs):
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
        ax.set_xticks([epochs[0]])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _curve_style(n):
    return {"marker": "o", "markersize": 4} if n <= MARKER_EPOCHS else {}


def _curve_plot(cols, epochs, metric, title, path, fmt, report, label, best, onset):
    """Train (and validation) curve of ``metric`` with best-epoch line and overfitting shade."""
    fig, ax = _new_figure()
    style = _curve_style(len(epochs))
    if has_values(cols, metric):
        ax.plot(epochs, cols[metric], label="train", **style)
    if has_values(cols, f"val_{metric}"):
        ax.plot(epochs, cols[f"val_{metric}"], label="validation", **style)
    if onset is not None:
        ax.axvspan(epochs[onset - 1], epochs[-1], color="tab:red", alpha=0.12,
                   label=f"overfitting from epoch {epochs[onset - 1]}")
    if best is not None:
        ax.axvline(best, color="0.35", linestyle="--", linewidth=1, label=f"best epoch {best}")
    ax.set_title(f"model {title} ({label})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(title)
    _integer_epochs(ax, epochs)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    _save(fig, path, fmt, report, label)


def _lr_plot(cols, epochs, path, fmt, report, label):
    values = cols["lr"]
    fig, ax = _new_figure()
    ax.plot(epochs, values, color="tab:green", **_curve_style(len(epochs)))
    kept = [v for v in values if finite(v)]
    if kept and min(kept) > 0 and max(kept) / min(kept) >= 10:
        ax.set_yscale("log")
    ax.set_title(f"learning rate ({label})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    _integer_epochs(ax, epochs)
    ax.grid(True, alpha=0.3)
    _save(fig, path, fmt, report, label)


def _plot_history(cols, cfg, folder, fmt, report, label):
    if not cols or not any(cols.values()):
        report.skipped.append(f"{label}: history.csv has no epochs; no curves drawn")
        return
    epochs = epoch_numbers(cols)
    ckpt = _section(cfg, "checkpoint")
    monitor = ckpt.get("monitor") if isinstance(ckpt.get("monitor"), str) else "val_loss"
    mode = ckpt.get("mode") if ckpt.get("mode") in ("auto", "min", "max") else "auto"
    best = best_epoch(cols, monitor, mode)
    column = monitored_column(cols, monitor)
    if column is not None and column != monitor:
        report.skipped.append(f"{label}: {monitor} not in history; best epoch marked by {column}")
    onset = None
    if has_values(cols, "loss") and has_values(cols, "val_loss"):
        onset = overfitting_onset(cols["loss"], cols["val_loss"])
    if not any(name.startswith("val_") and has_values(cols, name) for name in cols):
        report.skipped.append(f"{label}: no validation columns in history; "
                              "accuracy and loss show training curves only")

    for metric, title, missing in (
            ("accuracy", "accuracy", "no accuracy in history (regression run?)"),
            ("loss", "loss", "no loss in history")):
        name = f"{metric}.{fmt}"
        if not (has_values(cols, metric) or has_values(cols, f"val_{metric}")):
            report.skipped.append(f"{label}: {name}: {missing}")
            continue
        _curve_plot(cols, epochs, metric, title, folder / name, fmt, report, label, best, onset)

    name = f"learning_rate.{fmt}"
    if has_values(cols, "lr"):
        _lr_plot(cols, epochs, folder / name, fmt, report, label)
    else:
        report.skipped.append(f"{label}: {name}: no lr in history")


def _confusion_plot(ev, path, fmt, report, label, source):
    cm = ev.get("confusion_matrix")
    n = len(cm) if isinstance(cm, list) else 0
    if not n or not all(isinstance(row, list) and len(row) == n and all(finite(v) for v in row)
                        for row in cm):
        report.skipped.append(f"{label}: {path.name}: {source} has no square confusion_matrix")
        return
    names = ev.get("class_names")
    if not (isinstance(names, list) and len(names) == n):
        names = [str(i) for i in range(n)]
    names = [str(c) for c in names]
    fig, ax = _new_figure()
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    peak = max(max(row) for row in cm)
    if n <= 30:
        size = 9 if n <= 10 else max(4, int(90 / n))
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=size,
                        color="white" if peak and v > peak / 2 else "black")
    ticks = list(range(n))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    small = 9 if n <= 10 else max(4, int(100 / n))
    ax.set_xticklabels(names, fontsize=small, rotation=45 if max(map(len, names)) > 2 else 0,
                       ha="right" if max(map(len, names)) > 2 else "center")
    ax.set_yticklabels(names, fontsize=small)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = ev.get("metrics", {}).get("accuracy") if isinstance(ev.get("metrics"), dict) else None
    extra = f", accuracy {accuracy:.4f}" if finite(accuracy) else ""
    ax.set_title(f"confusion matrix ({label}{extra})")
    _save(fig, path, fmt, report, label)


def _image_shape(sample_shape, input_shape):
    """The (h, w) or (h, w, c) to show a sample as, or None when it is not image-like."""
    size = math.prod(sample_shape)
    if size == 784:
        return (28, 28)
    if (isinstance(input_shape, list) and all(isinstance(d, int) and d > 0 for d in input_shape)
            and math.prod(input_shape) == size):
        if len(input_shape) == 2 or (len(input_shape) == 3 and input_shape[2] in (1, 3, 4)):
            return tuple(input_shape)
    if len(sample_shape) == 2 or (len(sample_shape) == 3 and sample_shape[2] in (1, 3, 4)):
        return tuple(sample_shape)
    return None


def _misclassified_plot(ev, cfg, path, fmt, report, label, source, cache):
    wrong = ev.get("misclassified")
    if not isinstance(wrong, list) or not wrong:
        report.skipped.append(f"{label}: {path.name}: {source} lists no misclassified samples")
        return
    if ev.get("run_test_split") is False:
        report.skipped.append(f"{label}: {path.name}: {source} scored other data (--data), whose "
                              "images are not at hand")
        return
    data_cfg = _section(cfg, "data")
    if not data_cfg:
        report.skipped.append(f"{label}: {path.name}: no data section in config.yaml to load "
                              "the test images from")
        return
    if "data" not in cache:
        from mlpcli.errors import MlpError

        try:
            from mlpcli.data import load_dataset

            cache["data"] = load_dataset(data_cfg, task=cfg.get("task") or "classification")
        except (MlpError, OSError, ValueError) as exc:
            cache["data"] = f"cannot load the test data ({exc})"
    data = cache["data"]
    if isinstance(data, str):
        report.skipped.append(f"{label}: {path.name}: {data}")
        return
    if data.x_test is None or not len(data.x_test):
        report.skipped.append(f"{label}: {path.name}: the run's dataset has no test split")
        return
    shape = _image_shape(tuple(data.x_test.shape[1:]), _section(cfg, "model").get("input_shape"))
    if shape is None:
        report.skipped.append(f"{label}: {path.name}: test inputs of shape "
                              f"{tuple(data.x_test.shape[1:])} are not image-like")
        return
    names = ev.get("class_names") if isinstance(ev.get("class_names"), list) else data.class_names

    def name_of(k):
        if isinstance(k, bool) or not isinstance(k, int):
            return str(k)
        return str(names[k]) if names and 0 <= k < len(names) else str(k)

    items = [w for w in wrong if isinstance(w, dict) and isinstance(w.get("index"), int)
             and not isinstance(w.get("index"), bool) and 0 <= w["index"] < len(data.x_test)]
    if len(items) < len(wrong):
        report.skipped.append(f"{label}: {path.name}: {len(wrong) - len(items)} misclassified "
                              f"entries have no valid test index (test split has {len(data.x_test)})")
    if not items:
        return
    items = items[:MAX_MISCLASSIFIED]
    cols = min(GRID_COLUMNS, len(items))
    rows = math.ceil(len(items) / cols)
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(FIGSIZE[0], 0.4 + 1.45 * rows), dpi=DPI,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items):
        image = np.asarray(data.x_test[item["index"]], dtype=np.float32).reshape(shape)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 3:  # colour: stretch to [0, 1] for imshow
            low, high = float(image.min()), float(image.max())
            image = (image - low) / (high - low) if high > low else np.zeros_like(image)
            ax.imshow(image, interpolation="nearest")
        else:
            ax.imshow(image, cmap="gray", interpolation="nearest")
        ax.set_title(f"true {name_of(item.get('true'))} / pred {name_of(item.get('predicted'))}",
                     fontsize=7)
    fig.suptitle(f"misclassified test images ({len(items)} of {len(wrong)}, {label})", fontsize=9)
    _save(fig, path, fmt, report, label)


def _plot_evaluations(run, cfg, folder, fmt, report, label):
    cache = {}
    for source in sorted(run.glob("evaluation*.json")):
        suffix = evaluation_suffix(source)
        try:
            ev = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            report.skipped.append(f"{label}: {source.name} unreadable ({exc}); no evaluation plots")
            continue
        if not isinstance(ev, dict):
            report.skipped.append(f"{label}: {source.name} is not a JSON object; no evaluation plots")
            continue
        if "confusion_matrix" not in ev:
            report.skipped.append(f"{label}: {source.name} has no confusion matrix "
                                  "(regression evaluation?); no evaluation plots")
            continue
        _confusion_plot(ev, folder / f"confusion_matrix{suffix}.{fmt}", fmt, report, label,
                        source.name)
        _misclassified_plot(ev, cfg, folder / f"misclassified{suffix}.{fmt}", fmt, report, label,
                            source.name, cache)


def _compare_plot(runs, metric, path, fmt, report):
    """Overlay each run's validation curve of ``metric`` (training when no validation)."""
    fig, ax = _new_figure()
    drawn = 0
    all_epochs = []
    for label, cols in runs:
        if has_values(cols, f"val_{metric}"):
            values, name = cols[f"val_{metric}"], label
        elif has_values(cols, metric):
            values, name = cols[metric], f"{label} (train)"
        else:
            report.skipped.append(f"{label}: {path.name}: no {metric} in history; not compared")
            continue
        epochs = epoch_numbers(cols)
        all_epochs += epochs
        ax.plot(epochs, values, label=name, linestyle=("-", "--", ":", "-.")[(drawn // 10) % 4],
                **_curve_style(len(epochs)))
        drawn += 1
    if not drawn:
        _pyplot().close(fig)
        report.skipped.append(f"{path.name}: no run has {metric} in its history")
        return
    ax.set_title(f"{metric} by run (validation where available)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    _integer_epochs(ax, all_epochs)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8 if drawn <= 8 else 6)
    _save(fig, path, fmt, report, "compare")


# ---------------------------------------------------------------- entry point

def _labels(run_dirs):
    """A distinct display name per run folder (its folder name, resolved through links)."""
    labels, seen = [], {}
    for run in run_dirs:
        try:
            name = run.resolve().name or str(run)
        except OSError:
            name = run.name or str(run)
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return labels


def plot_runs(run_dirs: list[Path], out_dir: Path | None = None, fmt: str = "png") -> PlotReport:
    """Draw the figures of one or more run folders; return what was written and skipped.

    ``run_dirs``: run folders made by ``mlp train``. ``out_dir``: where to
    write (see the module docstring for the layout with several runs).
    ``fmt``: "png", "svg" or "pdf" (else ValueError). Problems with a run
    (no history.csv, no validation data, a regression run, ...) never raise;
    they are listed in ``PlotReport.skipped``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"plot format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("no run folders given")
    out_dir = None if out_dir is None else Path(out_dir)
    several = len(run_dirs) > 1
    report = PlotReport()
    histories = []  # (label, columns) of runs with a readable history, for comparison
    first_existing = None
    for run, label in zip(run_dirs, _labels(run_dirs)):
        if not run.is_dir():
            report.skipped.append(f"{label}: {run} is not a run folder; nothing drawn")
            continue
        if first_existing is None:
            first_existing = run
        if out_dir is None:
            folder = run / "plots"
        else:
            folder = out_dir / label if several else out_dir
        cfg = _read_config(run, report, label)
        history_path = run / "history.csv"
        if not history_path.is_file():
            report.skipped.append(f"{label}: no history.csv; no curves drawn")
        else:
            try:
                cols = read_history(history_path)
            except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
                report.skipped.append(f"{label}: history.csv unreadable ({exc}); no curves drawn")
            else:
                _plot_history(cols, cfg, folder, fmt, report, label)
                if cols and any(cols.values()):
                    histories.append((label, cols))
        _plot_evaluations(run, cfg, folder, fmt, report, label)

    if several:
        target = out_dir if out_dir is not None else (
            first_existing / "plots" if first_existing is not None else None)
        if target is None:
            report.skipped.append("no run folder exists; no comparison plots drawn")
        elif not histories:
            report.skipped.append("no run has a readable history; no comparison plots drawn")
        else:
            _compare_plot(histories, "accuracy", target / f"compare-accuracy.{fmt}", fmt, report)
            _compare_plot(histories, "loss", target / f"compare-loss.{fmt}", fmt, report)
    return report
