"""Figures of an evaluation's curves (``mlpcli.evaluation_curves``): ROC and
precision-recall curves and a reliability diagram for classifiers, predicted-vs-true
and residual plots for regression models."""

import numpy as np

from mlpcli import figures
from mlpcli.errors import printable
from mlpcli.evaluation_curves import (
    CurvesProblem,
    read_calibration,
    read_lines,
    read_regression,
)

MAX_LEGEND = 12  # classes named in a legend; past that the lines go unnamed


def _curve_lines(ax, lines, area_name):
    for i, (name, x, y, area, macro) in enumerate(lines):
        text = f"{printable(name)} ({area_name} {area:.3f})" if area is not None else printable(name)
        style = {"color": "black", "linewidth": 2.2, "linestyle": "--"} if macro else {"linewidth": 1.2}
        ax.plot(x, y, label=text if macro or i < MAX_LEGEND else None, **style)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7 if len(lines) > 4 else 9)


def roc_plot(ev, path, fmt, report, label, source):
    _curves_plot(ev, path, fmt, report, label, source, ("roc", "fpr", "tpr", "auc"), "AUC",
                 ("false positive rate", "true positive rate"), f"ROC curves ({label})", chance=True)


def precision_recall_plot(ev, path, fmt, report, label, source):
    _curves_plot(ev, path, fmt, report, label, source,
                 ("precision_recall", "recall", "precision", "average_precision"), "AP",
                 ("recall", "precision"), f"precision-recall curves ({label})")


def _curves_plot(ev, path, fmt, report, label, source, keys, area, axes, title, chance=False):
    """One figure of a report's curves of one kind (``keys``: the section, its x, y and area)."""
    try:
        lines = read_lines(ev, *keys)
    except CurvesProblem as exc:
        report.skipped.append(f"{label}: {path.name}: {source} {exc}")
        return
    fig, ax = figures.new_figure()
    if chance:
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="chance")
    _curve_lines(ax, lines, area)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    figures.save(fig, path, fmt, report, label)


def calibration_plot(ev, path, fmt, report, label, source):
    try:
        of, mean, observed, count = read_calibration(ev)
    except CurvesProblem as exc:
        report.skipped.append(f"{label}: {path.name}: {source} {exc}")
        return
    plt = figures.pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=figures.FIGSIZE, dpi=figures.DPI, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    filled = ~(np.isnan(mean) | np.isnan(observed))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="perfectly calibrated")
    ax.plot(mean[filled], observed[filled], marker="o", markersize=4, label="model")
    ax.set_ylim(-0.01, 1.01)
    ax.set_ylabel("observed frequency")
    ax.set_title(f"calibration: {printable(of)} ({label})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    edges = np.linspace(0.0, 1.0, len(count) + 1)
    hist.bar(edges[:-1], count, width=np.diff(edges), align="edge", color="tab:blue", alpha=0.5,
             edgecolor="white")
    hist.set_xlim(-0.01, 1.01)
    hist.set_xlabel("predicted probability (bins of equal width)")
    hist.set_ylabel("samples")
    figures.save(fig, path, fmt, report, label)


def _regression(ev, path, report, label, source):
    try:
        return read_regression(ev)
    except CurvesProblem as exc:
        report.skipped.append(f"{label}: {path.name}: {source} {exc}")
        return None


def _scatter(ax, pairs, xy):
    """One scatter per output of the points ``xy(true, predicted)`` gives."""
    for i, (true, predicted) in enumerate(pairs):
        ax.scatter(*xy(true, predicted), s=6, alpha=0.5, label=f"output {i}" if len(pairs) > 1 else None)
    if len(pairs) > 1:
        ax.legend(loc="best", fontsize=8, markerscale=2)
    ax.grid(True, alpha=0.3)


def predicted_vs_true_plot(ev, path, fmt, report, label, source):
    pairs = _regression(ev, path, report, label, source)
    if pairs is None:
        return
    fig, ax = figures.new_figure()
    _scatter(ax, pairs, lambda true, predicted: (true, predicted))
    low = min(min(t.min(), p.min()) for t, p in pairs)
    high = max(max(t.max(), p.max()) for t, p in pairs)
    ax.plot([low, high], [low, high], color="0.4", linestyle="--", linewidth=1)
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.set_title(f"predicted vs true ({label})")
    figures.save(fig, path, fmt, report, label)


def residuals_plot(ev, path, fmt, report, label, source):
    pairs = _regression(ev, path, report, label, source)
    if pairs is None:
        return
    fig, ax = figures.new_figure()
    _scatter(ax, pairs, lambda true, predicted: (predicted, true - predicted))
    ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted value")
    ax.set_ylabel("residual (true - predicted)")
    ax.set_title(f"residuals ({label})")
    figures.save(fig, path, fmt, report, label)
