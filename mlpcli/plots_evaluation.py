"""Figures of an evaluation: the confusion matrix, a grid of misclassified test images and,
drawn by ``mlpcli.plots_scores``, the curves of classifiers and the scatters of regression."""

import math

from mlpcli import figures, plots_scores, run_models, runs
from mlpcli.errors import printable
from mlpcli.history import finite

MAX_MISCLASSIFIED = 25
GRID_COLUMNS = 5
# (file name before the evaluation's suffix, how it is drawn) of the curve figures
CLASSIFIER_FIGURES = (("roc", plots_scores.roc_plot), ("precision_recall", plots_scores.precision_recall_plot),
                      ("calibration", plots_scores.calibration_plot))
REGRESSION_FIGURES = (("predicted_vs_true", plots_scores.predicted_vs_true_plot),
                      ("residuals", plots_scores.residuals_plot))


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
    names = [printable(str(c)) for c in names]  # JSON may hold lone surrogates, unfit to draw
    fig, ax = figures.new_figure()
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
    figures.save(fig, path, fmt, report, label)


def image_shape(sample_shape, input_shape):
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
    data_cfg = figures.section(cfg, "data")
    if not data_cfg:
        report.skipped.append(f"{label}: {path.name}: no data section in config.yaml to load "
                              "the test images from")
        return
    if "data" not in cache:
        from mlpcli.errors import MlpError

        try:
            from mlpcli.data import load_dataset

            # unscaled: a scaled copy would be of every split, training's too (a mapped file's
            # millions of rows); the few images drawn are scaled one by one below
            cache["data"] = load_dataset(data_cfg, task=cfg.get("task") or "classification", scale=False)
        except (MlpError, OSError, ValueError) as exc:
            cache["data"] = f"cannot load the test data ({exc})"
    data = cache["data"]
    if isinstance(data, str):
        report.skipped.append(f"{label}: {path.name}: {data}")
        return
    if data.x_test is None or not len(data.x_test):
        report.skipped.append(f"{label}: {path.name}: the run's dataset has no test split")
        return
    shape = image_shape(tuple(data.x_test.shape[1:]), figures.section(cfg, "model").get("input_shape"))
    if shape is None:
        report.skipped.append(f"{label}: {path.name}: test inputs of shape "
                              f"{tuple(data.x_test.shape[1:])} are not image-like")
        return
    names = ev.get("class_names") if isinstance(ev.get("class_names"), list) else data.class_names

    def name_of(k):
        if isinstance(k, bool) or not isinstance(k, int):
            return printable(str(k))
        return printable(str(names[k])) if names and 0 <= k < len(names) else str(k)

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

    from mlpcli.data import apply_preprocessing

    plt = figures.pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(figures.FIGSIZE[0], 0.4 + 1.45 * rows), dpi=figures.DPI,
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items):
        index = item["index"]
        image = apply_preprocessing(data.x_test[index:index + 1], data.preprocessing)[0].reshape(shape)
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
    figures.save(fig, path, fmt, report, label)


def plot_evaluations(run, cfg, folder, fmt, report, label):
    """The figures of each of the run's evaluation reports (``run_models.evaluation_reports``)."""
    cache = {}
    for source in run_models.evaluation_reports(run):
        try:
            ev = runs.read_json(source)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            report.skipped.append(f"{label}: {source.name} unreadable ({exc}); no evaluation plots")
            continue
        plot_evaluation(ev, cfg, folder, fmt, report, label, source.name, run_models.evaluation_suffix(source),
                        cache)


def plot_evaluation(ev, cfg, folder, fmt, report, label, source, suffix="", cache=None):
    """The figures of one evaluation report ``ev`` (``source``: where it came from, for the
    messages), named ``<figure><suffix>.<fmt>``; ``cache`` keeps the test data loaded between
    reports."""
    cache = {} if cache is None else cache
    if not isinstance(ev, dict):
        report.skipped.append(f"{label}: {source} is not a JSON object; no evaluation plots")
        return
    if "confusion_matrix" in ev:
        _confusion_plot(ev, folder / f"confusion_matrix{suffix}.{fmt}", fmt, report, label, source)
        _misclassified_plot(ev, cfg, folder / f"misclassified{suffix}.{fmt}", fmt, report, label,
                            source, cache)
        figures_of = CLASSIFIER_FIGURES
    elif isinstance(ev.get("curves"), dict) and "predicted_vs_true" in ev["curves"]:
        figures_of = REGRESSION_FIGURES
    else:
        report.skipped.append(f"{label}: {source} has no confusion matrix and no predicted "
                              "values (a regression evaluation from before mlp evaluate kept "
                              "them? evaluate again); no evaluation plots")
        return
    for name, draw in figures_of:
        draw(ev, folder / f"{name}{suffix}.{fmt}", fmt, report, label, source)
