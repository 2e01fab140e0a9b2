"""Scores of a ranking: ROC and precision-recall curves, their areas, and calibration bins.

The curves are scikit-learn's (``roc_curve``, ``precision_recall_curve``): one point
per distinct score, from the highest threshold down, tied scores moving together.
The areas are ``roc_auc_score`` (trapezoids, so a tie between a positive and a
negative counts a half) and ``average_precision_score`` (the precision at each
threshold times the recall it gains). Counts accumulate in int64, ratios in float64;
each curve costs one sort.

A model's classes are scored one against the rest: a single sigmoid output scores
its positive class (1), a softmax each class by its own column. A class with no
sample in the data, or with every sample, has no curve (scikit-learn raises for its
ROC AUC); ``scored_classes`` leaves it out, and the macro average is over the rest
(NaN when none is left).
"""

import math

import numpy as np


def scored_classes(labels, n_outputs):
    """The classes that get a curve: the positive class of one output, else every class
    that some but not all of ``labels`` (int (n,)) belong to."""
    candidates = [1] if n_outputs == 1 else range(n_outputs)
    counts = np.bincount(labels, minlength=max(n_outputs, 2))
    return [c for c in candidates if 0 < counts[c] < len(labels)]


def class_score(y_pred, c):
    """The model's score of class ``c`` per sample, from its outputs (n, outputs)."""
    return y_pred[:, 0] if y_pred.shape[1] == 1 else y_pred[:, c]


def macro_area(area, labels, y_pred):
    """The mean of ``area(positive, score)`` over ``scored_classes``; NaN if there are none."""
    classes = scored_classes(labels, y_pred.shape[1])
    if not classes:
        return math.nan
    return float(np.mean([area(labels == c, class_score(y_pred, c)) for c in classes]))


def ranked_counts(positive, score):
    """(true positives, false positives) among the samples scoring at least each distinct
    score, highest score first. ``positive``: bool (n,), both values present."""
    order = np.argsort(score, kind="stable")[::-1]
    ranked = score[order]
    ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1]
    tps = np.cumsum(positive[order], dtype=np.int64)[ends]
    return tps, ends + 1 - tps


def roc_curve(positive, score):
    """(false positive rates, true positive rates), from (0, 0) to (1, 1)."""
    tps, fps = ranked_counts(positive, score)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def roc_auc(positive, score):
    fpr, tpr = roc_curve(positive, score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)


def precision_recall_curve(positive, score):
    """(recalls, precisions) from (0, 1) to the first threshold reaching full recall."""
    tps, fps = ranked_counts(positive, score)
    full = int(np.searchsorted(tps, tps[-1]))
    tps, fps = tps[:full + 1], fps[:full + 1]
    return np.r_[0.0, tps / tps[-1]], np.r_[1.0, tps / (tps + fps)]


def average_precision(positive, score):
    recall, precision = precision_recall_curve(positive, score)
    return float(np.sum(np.diff(recall) * precision[1:]))


def calibration_bins(observed, probability, bins=10):
    """(bin edges, sample count, mean probability, share observed) of ``bins`` equal bins of
    [0, 1], each (low, high] (the first also takes 0) as scikit-learn's ``calibration_curve``
    bins them; an empty bin's mean and share are NaN."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], probability)
    count = np.bincount(which, minlength=bins)
    filled = count > 0
    mean = np.full(bins, np.nan)
    share = np.full(bins, np.nan)
    mean[filled] = np.bincount(which, weights=probability.astype(np.float64), minlength=bins)[filled] / count[filled]
    share[filled] = np.bincount(which, weights=observed.astype(np.float64), minlength=bins)[filled] / count[filled]
    return edges, count, mean, share


def thin(x, y, points):
    """At most ``points`` + 1 points of the curve (x, y) that keep its shape: the first and
    the last, and between them the first point past each of ``points`` even steps of its
    length (|dx| + |dy|), so steep and flat stretches keep their share of points."""
    if len(x) <= points + 1:
        return x, y
    length = np.r_[0.0, np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))]
    keep = np.unique(np.r_[np.searchsorted(length, np.linspace(0.0, length[-1], points)), len(x) - 1])
    return x[keep], y[keep]
