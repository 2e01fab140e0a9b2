"""The ``plot`` stage: figures of training curves and evaluations from run folders.

``plot_runs(run_dirs, out_dir, fmt)`` reads what ``mlp train`` and ``mlp
evaluate`` left in each run folder and writes:

* ``accuracy.<fmt>``: training vs validation accuracy per epoch (skipped for
  runs without an ``accuracy`` column, e.g. regression runs);
* ``loss.<fmt>``: training vs validation loss per epoch;
* ``learning_rate.<fmt>``: the learning rate per epoch;
* for every ``evaluation*.json`` of a classifier: ``confusion_matrix<suffix>.<fmt>``
  (counts, true class = rows, predicted = columns), ``misclassified<suffix>.<fmt>``
  (up to 25 misclassified test images), ``roc<suffix>.<fmt>`` and
  ``precision_recall<suffix>.<fmt>`` (per class, and the macro average) and
  ``calibration<suffix>.<fmt>`` (a reliability diagram of 10 bins); of a regression
  model: ``predicted_vs_true<suffix>.<fmt>`` and ``residuals<suffix>.<fmt>``. The
  suffix of ``evaluation-model-03.json`` is ``-model-03``; ``evaluation.json`` has none.

On the accuracy and loss plots the best epoch by the checkpoint's monitored
quantity is marked with a dashed vertical line, and the epochs from the onset
of overfitting (``mlpcli.curve_verdicts.overfitting_onset``, the rule the run's
diagnostics use, with the sample counts its diagnostics.json records) to the end are shaded.

With one run the figures go to ``<run>/plots/`` (or ``out_dir``). With several,
each run's figures go to ``<run>/plots/`` (or ``out_dir/<run folder name>/``)
and ``compare-accuracy.<fmt>`` / ``compare-loss.<fmt>``, overlaying the
validation curves (training curves for runs without validation) of every run,
go to ``out_dir`` (default: the first run's ``plots/`` folder).

Nothing a run folder lacks raises (only being given no run folder at all): what
cannot be drawn is listed, with the reason, in ``PlotReport.skipped``. matplotlib is imported only when drawing,
so importing this module stays cheap.
"""

import csv
from pathlib import Path

from mlpcli import figures, runs
from mlpcli.curve_verdicts import overfitting_onset
from mlpcli.diagnostics import saved_sizes
from mlpcli.errors import ConfigError, MlpError, printable
from mlpcli.figures import FORMATS, PlotReport
from mlpcli.history import (
    best_epoch,
    epoch_numbers,
    finite,
    has_values,
    monitored_column,
    read_history,
)
from mlpcli.plots_evaluation import plot_evaluations
from mlpcli.run_models import evaluation_suffix

# the history helpers are part of this module's interface too
__all__ = ["FORMATS", "PlotReport", "best_epoch", "evaluation_suffix", "monitored_column",
           "plot_history", "plot_runs", "read_history"]

# below this many epochs the curves get point markers (one epoch is a single point)
MARKER_EPOCHS = 25


def _read_config(run, report, label):
    """The run's config.yaml as a dict ({} with a note when it is missing or unreadable)."""
    path = run / runs.CONFIG_FILE
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


# ---------------------------------------------------------------- drawing

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
    fig, ax = figures.new_figure()
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
    figures.save(fig, path, fmt, report, label)


def _lr_plot(cols, epochs, path, fmt, report, label):
    values = cols["lr"]
    fig, ax = figures.new_figure()
    ax.plot(epochs, values, color="tab:green", **_curve_style(len(epochs)))
    kept = [v for v in values if finite(v)]
    if kept and min(kept) > 0 and max(kept) / min(kept) >= 10:
        ax.set_yscale("log")
    ax.set_title(f"learning rate ({label})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    _integer_epochs(ax, epochs)
    ax.grid(True, alpha=0.3)
    figures.save(fig, path, fmt, report, label)


def plot_history(cols, cfg, folder, fmt, report, label, n_val=None):
    """accuracy, loss and learning_rate figures of a history's columns into ``folder``; ``n_val``:
    the validation samples, for the overfitting shade's rule."""
    if not cols or not any(cols.values()):
        report.skipped.append(f"{label}: history.csv has no epochs; no curves drawn")
        return
    epochs = epoch_numbers(cols)
    ckpt = figures.section(cfg, "checkpoint")
    monitor = ckpt.get("monitor") if isinstance(ckpt.get("monitor"), str) else "val_loss"
    mode = ckpt.get("mode") if ckpt.get("mode") in ("auto", "min", "max") else "auto"
    best = best_epoch(cols, monitor, mode)
    column = monitored_column(cols, monitor)
    if column is not None and column != monitor:
        report.skipped.append(f"{label}: {monitor} not in history; best epoch marked by {column}")
    onset = None
    if has_values(cols, "loss") and has_values(cols, "val_loss"):
        onset = overfitting_onset(cols["loss"], cols["val_loss"], n_val)
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


def _compare_plot(runs, metric, path, fmt, report):
    """Overlay each run's validation curve of ``metric`` (training when no validation)."""
    fig, ax = figures.new_figure()
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
        figures.pyplot().close(fig)
        report.skipped.append(f"{path.name}: no run has {metric} in its history")
        return
    ax.set_title(f"{metric} by run (validation where available)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    _integer_epochs(ax, all_epochs)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8 if drawn <= 8 else 6)
    figures.save(fig, path, fmt, report, "compare")


# ---------------------------------------------------------------- entry point

def _labels(run_dirs):
    """A distinct display name per run folder (its folder name, resolved through links), fit
    for a figure: matplotlib cannot draw the lone surrogates of a name that is not UTF-8."""
    labels, seen = [], {}
    for run in run_dirs:
        try:
            name = run.resolve().name or str(run)
        except OSError:
            name = run.name or str(run)
        name = printable(name)
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return labels


def _is_run(folder):
    """Whether ``folder`` holds a run (its config.yaml or history.csv) to draw."""
    return (folder / runs.CONFIG_FILE).is_file() or (folder / runs.HISTORY_FILE).is_file()


def plot_runs(run_dirs: list[Path], out_dir: Path | None = None, fmt: str = "png") -> PlotReport:
    """Draw the figures of one or more run folders; return what was written and skipped.

    ``run_dirs``: run folders made by ``mlp train``. ``out_dir``: where to
    write (see the module docstring for the layout with several runs).
    ``fmt``: "png", "svg" or "pdf" (else ValueError). A path that is not a run
    folder (no such folder, or one with neither config.yaml nor history.csv) is
    skipped, and an ``MlpError`` when no path is one; what a run lacks (no history.csv, no
    validation data, a regression run, ...) never raises: it is listed in
    ``PlotReport.skipped``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"plot format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("no run folders given")
    usable = [run for run in run_dirs if _is_run(run)]
    if not usable:  # checked before anything is drawn
        run = run_dirs[0]
        raise MlpError(f"{printable(str(run))}: " + (
            f"not a run folder (no {runs.CONFIG_FILE} or {runs.HISTORY_FILE}); nothing drawn" if run.is_dir()
            else "no such run folder; nothing drawn"))
    out_dir = None if out_dir is None else Path(out_dir)
    several = len(run_dirs) > 1
    report = PlotReport()
    histories = []  # (label, columns) of runs with a readable history, for comparison
    for run, label in zip(run_dirs, _labels(run_dirs)):
        if run not in usable:
            report.skipped.append(f"{label}: {run} is not a run folder; nothing drawn")
            continue
        if out_dir is None:
            folder = run / runs.PLOTS_DIR
        else:
            folder = out_dir / label if several else out_dir
        cfg = _read_config(run, report, label)
        history_path = run / runs.HISTORY_FILE
        if not history_path.is_file():
            report.skipped.append(f"{label}: no history.csv; no curves drawn")
        else:
            try:
                cols = read_history(history_path)
            except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
                report.skipped.append(f"{label}: history.csv unreadable ({exc}); no curves drawn")
            else:
                plot_history(cols, cfg, folder, fmt, report, label, saved_sizes(run).get("validation"))
                if cols and any(cols.values()):
                    histories.append((label, cols))
        plot_evaluations(run, cfg, folder, fmt, report, label)

    if several:
        target = out_dir if out_dir is not None else usable[0] / runs.PLOTS_DIR
        if not histories:
            report.skipped.append("no run has a readable history; no comparison plots drawn")
        else:
            _compare_plot(histories, "accuracy", target / f"compare-accuracy.{fmt}", fmt, report)
            _compare_plot(histories, "loss", target / f"compare-loss.{fmt}", fmt, report)
    return report
