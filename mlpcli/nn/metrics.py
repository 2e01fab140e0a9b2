"""Metrics over a whole epoch or dataset.

Each metric is ``metric(y_true, y_pred, **params) -> float`` where ``y_true``
holds the dataset's targets (int labels ``(n,)`` for classification, float
``(n, k)`` for regression) and ``y_pred`` the model output ``(n, outputs)``.
With one output, classification is binary (threshold 0.5); otherwise the
predicted class is the arg-max. Precision, recall and F1 are macro averages
over the classes for multi-class models; so are the areas under the ROC and
precision-recall curves (``mlpcli.nn.metrics_curves``), one class against the rest.
"""

import math

import numpy as np

from mlpcli.nn import metrics_curves
from mlpcli.nn.spec import Component, Param, Registry, declare, integer


def predicted_classes(y_pred):
    """(n,) int class indices from (n, outputs) scores."""
    if y_pred.shape[1] == 1:
        return (y_pred[:, 0] > 0.5).astype(np.int64)
    return y_pred.argmax(axis=1)


def _labels(y_true):
    if y_true.ndim == 2:
        return y_true.argmax(axis=1) if y_true.shape[1] > 1 else (y_true[:, 0] > 0.5).astype(np.int64)
    return y_true.astype(np.int64, copy=False)


def confusion_matrix(labels, predicted, n_classes):
    """(n_classes, n_classes) counts; row = true class, column = predicted."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def per_class_scores(cm):
    """Precision, recall, F1 and support per class from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1, support


def _scores(y_true, y_pred):
    n_classes = max(y_pred.shape[1], 2)
    cm = confusion_matrix(_labels(y_true), predicted_classes(y_pred), n_classes)
    return per_class_scores(cm)


def _average(values, binary):
    # binary models report the positive class, as Keras's Precision/Recall do
    return float(values[1]) if binary else float(values.mean())


@declare(Component("accuracy", "share of samples whose predicted class is right (binary for one output)"))
def accuracy(y_true, y_pred):
    return float((predicted_classes(y_pred) == _labels(y_true)).mean())


@declare(Component("precision", "macro average over classes (the positive class for one output)", keras="Precision"))
def precision(y_true, y_pred):
    return _average(_scores(y_true, y_pred)[0], y_pred.shape[1] == 1)


@declare(Component("recall", "macro average over classes (the positive class for one output)", keras="Recall"))
def recall(y_true, y_pred):
    return _average(_scores(y_true, y_pred)[1], y_pred.shape[1] == 1)


@declare(Component("f1", "macro average over classes (the positive class for one output)", keras="F1Score"))
def f1(y_true, y_pred):
    return _average(_scores(y_true, y_pred)[2], y_pred.shape[1] == 1)


@declare(Component("top_k_accuracy", "share of samples whose class is among the k highest scores", (
    Param("k", 5, integer(1), "how many of the highest scores count"),), keras="TopKCategoricalAccuracy"))
def top_k_accuracy(y_true, y_pred, k):
    """Share of samples whose true class is among the k highest scores."""
    if y_pred.shape[1] == 1:  # one sigmoid output: the scores of classes 0 and 1
        y_pred = np.hstack([1.0 - y_pred, y_pred])
    k = min(k, y_pred.shape[1])
    top = np.argpartition(-y_pred, k - 1, axis=1)[:, :k]
    return float((top == _labels(y_true)[:, None]).any(axis=1).mean())


def _as_targets(y_true, y_pred):
    if y_true.ndim == 1 and np.issubdtype(y_true.dtype, np.integer) and y_pred.shape[1] > 1:
        onehot = np.zeros_like(y_pred)
        onehot[np.arange(y_pred.shape[0]), y_true] = 1.0
        return onehot
    return y_true.reshape(y_pred.shape).astype(np.float32, copy=False)


@declare(Component("mse", "mean squared error", keras="MeanSquaredError"))
def mse(y_true, y_pred):
    return float(np.square(y_pred - _as_targets(y_true, y_pred)).mean(dtype=np.float64))


@declare(Component("mae", "mean absolute error", keras="MeanAbsoluteError"))
def mae(y_true, y_pred):
    return float(np.abs(y_pred - _as_targets(y_true, y_pred)).mean(dtype=np.float64))


@declare(Component("auc", "area under the ROC curve; several classes: one against the rest, macro average", keras="AUC"))
def auc(y_true, y_pred):
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``, ``multi_class="ovr"``)."""
    return metrics_curves.macro_area(metrics_curves.roc_auc, _labels(y_true), y_pred)


@declare(Component("pr_auc", "average precision (area under the precision-recall curve); one class against the rest, macro average"))
def pr_auc(y_true, y_pred):
    """Average precision (scikit-learn's ``average_precision_score``), one class against the rest."""
    return metrics_curves.macro_area(metrics_curves.average_precision, _labels(y_true), y_pred)


@declare(Component("log_loss", "mean -log of the true class's probability (clipped to [eps, 1 - eps])"))
def log_loss(y_true, y_pred):
    """Mean -log of the true class's probability, clipped to [eps, 1 - eps] with the eps of
    its float type, as scikit-learn's ``log_loss``."""
    probs = np.hstack([1 - y_pred, y_pred]) if y_pred.shape[1] == 1 else y_pred
    eps = np.finfo(probs.dtype).eps
    true = np.take_along_axis(probs, _labels(y_true)[:, None], axis=1)
    return float(-np.log(np.clip(true, eps, 1 - eps).astype(np.float64)).mean())


@declare(Component("r2", "coefficient of determination, the mean over outputs", keras="R2Score"))
def r2(y_true, y_pred):
    """Coefficient of determination, the mean over outputs, as scikit-learn's ``r2_score``:
    an output whose targets are all equal scores 1 if predicted exactly, else 0; NaN for
    fewer than two samples."""
    if len(y_pred) < 2:
        return math.nan
    target = _as_targets(y_true, y_pred).astype(np.float64)
    residual = np.square(target - y_pred.astype(np.float64)).sum(axis=0)
    spread = np.square(target - target.mean(axis=0)).sum(axis=0)
    ratio = np.divide(residual, spread, out=np.ones_like(spread), where=spread > 0)
    return float(np.where(residual == 0, 1.0, 1.0 - ratio).mean())


METRICS = Registry("metric", [accuracy, precision, recall, f1, top_k_accuracy, mse, mae, auc, pr_auc, log_loss, r2])
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "top_k_accuracy", "auc", "pr_auc", "log_loss")
HIGHER_IS_BETTER = ("accuracy", "precision", "recall", "f1", "top_k_accuracy", "auc", "pr_auc", "r2")
MODES = ("auto", "min", "max")  # of a monitored quantity, see higher_is_better


def higher_is_better(monitor, mode="auto"):
    """Whether larger values of a monitored quantity (``val_accuracy``, ...) are better.

    ``mode`` is Keras's: "min", "max", or "auto" (accuracy-like metrics go up).
    """
    if mode in ("min", "max"):
        return mode == "max"
    base = monitor[4:] if monitor.startswith("val_") else monitor
    return base in HIGHER_IS_BETTER


def get(name):
    return METRICS.lookup(name)


def compute(specs, y_true, y_pred):
    """{name: value} for metric specs ``[{"type": name, **params}, ...]``."""
    return {s["type"]: get(s["type"])(y_true, y_pred, **{k: v for k, v in s.items() if k != "type"})
            for s in specs}
