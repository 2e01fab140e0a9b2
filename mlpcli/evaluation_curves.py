"""The ``curves`` of an evaluation report: what ``mlp plot`` draws besides the confusion
matrix, written into ``evaluation*.json`` by ``mlp evaluate`` and read back here.

The report carries the curves, not the predictions: a ROC or precision-recall curve and
the calibration bins summarise every test sample exactly, while the file stays small
however big the test set. Each curve keeps at most ``CURVE_POINTS`` + 1 points (chosen
along its length, ``metrics_curves.thin``), of at most ``CURVE_CLASSES_KEPT`` classes;
the macro average (several classes) is over every scored class, on a grid of
``CURVE_POINTS`` + 1 points. A regression report keeps (true, predicted) pairs of at
most ``REGRESSION_SAMPLES_KEPT`` samples, evenly spread over the data, for at most
``REGRESSION_OUTPUTS_KEPT`` outputs: a scatter of more shows nothing more.

Values are kept to 7 significant digits (float32's). The reader checks what it reads
(a report is a file anyone may have edited) and says what is wrong instead of raising.
"""

import numpy as np

from mlpcli.history import finite
from mlpcli.nn.metrics_curves import (
    average_precision,
    calibration_bins,
    class_score,
    precision_recall_curve,
    roc_auc,
    roc_curve,
    scored_classes,
    thin,
)

CURVE_POINTS = 100
CURVE_CLASSES_KEPT = 10
CALIBRATION_BINS = 10
REGRESSION_SAMPLES_KEPT = 1000
REGRESSION_OUTPUTS_KEPT = 8


def _short(values):
    return [float(f"{v:.7g}") for v in np.asarray(values, np.float64).ravel()]


def classifier_curves(labels, y_pred, class_names):
    """{"curves": ...} of a classifier's outputs (n, outputs) on samples of class ``labels``."""
    classes = scored_classes(labels, y_pred.shape[1])
    grid = np.linspace(0.0, 1.0, CURVE_POINTS + 1)
    roc, pr, roc_grid, pr_grid, areas = [], [], [], [], []
    for c in classes:
        positive, score = labels == c, class_score(y_pred, c)
        fpr, tpr = roc_curve(positive, score)
        recall, precision = precision_recall_curve(positive, score)
        areas.append((roc_auc(positive, score), average_precision(positive, score)))
        roc_grid.append(np.interp(grid, fpr, tpr))
        best_after = np.maximum.accumulate(precision[::-1])[::-1]  # interpolated precision
        pr_grid.append(best_after[np.minimum(np.searchsorted(recall, grid), len(recall) - 1)])
        if len(roc) < CURVE_CLASSES_KEPT:
            fpr, tpr = thin(fpr, tpr, CURVE_POINTS)
            recall, precision = thin(recall, precision, CURVE_POINTS)
            roc.append({"class": class_names[c], "auc": areas[-1][0], "fpr": _short(fpr), "tpr": _short(tpr)})
            pr.append({"class": class_names[c], "average_precision": areas[-1][1],
                       "prevalence": float(positive.mean()), "recall": _short(recall),
                       "precision": _short(precision)})
    curves = {"roc": {"classes": roc}, "precision_recall": {"classes": pr}}
    if y_pred.shape[1] > 1 and classes:
        auc, ap = np.mean(areas, axis=0)
        curves["roc"]["macro"] = {"auc": float(auc), "fpr": _short(grid),
                                  "tpr": _short(np.mean(roc_grid, axis=0))}
        curves["precision_recall"]["macro"] = {"average_precision": float(ap), "recall": _short(grid),
                                               "precision": _short(np.mean(pr_grid, axis=0))}
    left_out = [class_names[c] for c in ([1] if y_pred.shape[1] == 1 else range(y_pred.shape[1]))
                if c not in classes]
    if left_out:
        curves["left_out"] = {"classes": left_out, "why": "no curve: the data holds no sample of the class, "
                              "or only samples of it; auc and pr_auc average over the other classes"}
    if len(classes) > CURVE_CLASSES_KEPT:
        curves["classes_kept"] = f"curves of the first {CURVE_CLASSES_KEPT} of {len(classes)} classes"
    curves["calibration"] = _calibration(labels, y_pred, class_names)
    return {"curves": curves}


def _calibration(labels, y_pred, class_names):
    """Reliability bins: of the positive class's probability for two classes, else of the
    top class's probability (the model's confidence) against how often it is right."""
    if max(y_pred.shape[1], 2) == 2:
        probability, observed = class_score(y_pred, 1), labels == 1
        of = f"probability of class {class_names[1]}"
    else:
        probability, observed = y_pred.max(axis=1), y_pred.argmax(axis=1) == labels
        of = "probability of the predicted class"
    edges, count, mean, share = calibration_bins(observed, probability, CALIBRATION_BINS)
    return {"of": of, "edges": _short(edges), "count": count.tolist(),
            "mean_probability": [None if np.isnan(v) else v for v in _short(mean)],
            "observed": [None if np.isnan(v) else v for v in _short(share)]}


def regression_points(y, y_pred):
    """{"curves": ...} of a regression model's outputs (n, outputs) on targets ``y``."""
    n, outputs = y_pred.shape
    rows = np.unique(np.linspace(0, n - 1, min(n, REGRESSION_SAMPLES_KEPT)).round().astype(np.int64))
    kept = min(outputs, REGRESSION_OUTPUTS_KEPT)
    true = np.asarray(y, np.float64).reshape(y_pred.shape)[rows, :kept].T
    return {"curves": {"predicted_vs_true": {"samples": int(n), "outputs": int(outputs),
                                             "true": [_short(t) for t in true],
                                             "predicted": [_short(p) for p in y_pred[rows, :kept].T]}}}


# ---------------------------------------------------------------- reading back

class CurvesProblem(ValueError):
    """What is wrong with a report's curves, in words."""


def _numbers(value, what, allow_none=False):
    if not isinstance(value, list) or not value or not all(
            finite(v) or (allow_none and v is None) for v in value):
        raise CurvesProblem(f"{what} is not a list of numbers")
    return np.array([np.nan if v is None else v for v in value], np.float64)


def _section(ev, key, what):
    curves = ev.get("curves")
    section = curves.get(key) if isinstance(curves, dict) else None
    if not isinstance(section, dict):
        raise CurvesProblem(f"has no {what} (written before mlp evaluate recorded them? evaluate again)")
    return section


def read_lines(ev, key, x_key, y_key, area_key=None):
    """[(class name, x, y, area or None, whether it is the macro average), ...] of the
    per-class curves under ``curves.<key>``, then the macro average when there is one;
    ``CurvesProblem`` if there are none."""
    section = _section(ev, key, f"{key.replace('_', '-')} curves")
    entries = section.get("classes")
    if not isinstance(entries, list) or not entries:
        raise CurvesProblem(f"has no {key.replace('_', '-')} curve of any class")
    lines = []
    for i, entry in enumerate([*entries, section.get("macro")] if section.get("macro") is not None else entries):
        if not isinstance(entry, dict):
            raise CurvesProblem(f"curves.{key}: entry {i} is not an object")
        x = _numbers(entry.get(x_key), f"curves.{key} {x_key}")
        y = _numbers(entry.get(y_key), f"curves.{key} {y_key}")
        if len(x) != len(y):
            raise CurvesProblem(f"curves.{key}: {x_key} and {y_key} differ in length")
        area = entry.get(area_key) if area_key and finite(entry.get(area_key)) else None
        macro = i == len(entries)
        lines.append(("macro average" if macro else str(entry.get("class")), x, y, area, macro))
    return lines


def read_calibration(ev):
    """(what the probability is, mean probability, share observed, count) per bin."""
    section = _section(ev, "calibration", "calibration bins")
    mean = _numbers(section.get("mean_probability"), "curves.calibration mean_probability", allow_none=True)
    share = _numbers(section.get("observed"), "curves.calibration observed", allow_none=True)
    count = _numbers(section.get("count"), "curves.calibration count")
    if not len(mean) == len(share) == len(count):
        raise CurvesProblem("curves.calibration: its lists differ in length")
    return str(section.get("of", "probability")), mean, share, count


def read_regression(ev):
    """[(true, predicted), ...] per output."""
    section = _section(ev, "predicted_vs_true", "predicted values")
    true, predicted = section.get("true"), section.get("predicted")
    if not isinstance(true, list) or not isinstance(predicted, list) or not true or len(true) != len(predicted):
        raise CurvesProblem("curves.predicted_vs_true: true and predicted are not lists of outputs")
    pairs = [(_numbers(t, "curves.predicted_vs_true true"), _numbers(p, "curves.predicted_vs_true predicted"))
             for t, p in zip(true, predicted)]
    if any(len(t) != len(p) for t, p in pairs):
        raise CurvesProblem("curves.predicted_vs_true: true and predicted differ in length")
    return pairs
