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
    return float(_hits(y_true, y_pred).mean())


def _hits(y_true, y_pred):
    return predicted_classes(y_pred) == _labels(y_true)


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
    return float(_top_k_hits(y_true, y_pred, k).mean())


def _top_k_hits(y_true, y_pred, k):
    if y_pred.shape[1] == 1:  # one sigmoid output: the scores of classes 0 and 1
        y_pred = np.hstack([1.0 - y_pred, y_pred])
    k = min(k, y_pred.shape[1])
    top = np.argpartition(-y_pred, k - 1, axis=1)[:, :k]
    return (top == _labels(y_true)[:, None]).any(axis=1)


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
    return float(_true_class_losses(y_true, y_pred).mean())


def _true_class_losses(y_true, y_pred):
    """float64 (n,): -log of each sample's true class's probability, clipped as ``log_loss`` says."""
    probs = np.hstack([1 - y_pred, y_pred]) if y_pred.shape[1] == 1 else y_pred
    eps = np.finfo(probs.dtype).eps
    true = np.take_along_axis(probs, _labels(y_true)[:, None], axis=1)
    return -np.log(np.clip(true, eps, 1 - eps).astype(np.float64))[:, 0]


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


def _from_confusion(which):
    def value(cm, n_outputs):
        return _average(per_class_scores(cm)[which], n_outputs == 1)
    return value


def _error_sums(error):
    def sums(y_true, y_pred):
        return np.array([error(y_pred - _as_targets(y_true, y_pred)).sum(dtype=np.float64), y_pred.size])
    return sums


def _mean_of_sums(sums, n_outputs):
    return float(sums[0] / sums[1])


# metric name -> (a batch's (total, count) as float64 (2,): (y_true, y_pred, **params), the
# value of the summed pairs over all batches: (sums, n_outputs) -> float)
_BATCH_SUMS = {
    "accuracy": (lambda y_true, y_pred: np.array([_hits(y_true, y_pred).sum(), len(y_pred)], np.float64),
                 _mean_of_sums),
    "top_k_accuracy": (lambda y_true, y_pred, k: np.array([_top_k_hits(y_true, y_pred, k).sum(), len(y_pred)],
                                                          np.float64), _mean_of_sums),
    "mse": (_error_sums(np.square), _mean_of_sums),
    "mae": (_error_sums(np.abs), _mean_of_sums),
    "log_loss": (lambda y_true, y_pred: np.array([_true_class_losses(y_true, y_pred).sum(), len(y_pred)]),
                 _mean_of_sums),
}
# metric name -> its value from the confusion matrix over all batches (one matrix serves all three)
_FROM_CONFUSION = {"precision": _from_confusion(0), "recall": _from_confusion(1), "f1": _from_confusion(2)}
CONFUSION = "confusion"  # the state's name for that matrix


class EpochMetrics:
    """The values ``compute`` gives over all of an epoch's outputs, from its batches one at a
    time, so that no epoch-long array of outputs is held (at millions of rows it would be the
    trainer's largest): each metric keeps a total and a count over the batches, and
    precision, recall and F1 share one confusion matrix. auc and pr_auc rank every output,
    and r2 needs the targets' spread, so only when one of them is asked are the outputs
    kept, with their targets.

    ``state()`` and ``EpochMetrics(..., state)`` carry the sums across an interrupted epoch;
    a state that lacks one of them, or holds one of the wrong shape, is a KeyError."""

    def __init__(self, specs, n_outputs, state=None):
        self.specs, self.n_outputs = specs, n_outputs
        self.n_classes = max(n_outputs, 2)
        # (state name, a batch's pair, its params) of each metric kept as a total and a count
        self.counted = [(f"sums{i}", _BATCH_SUMS[s["type"]][0], self._params(s))
                        for i, s in enumerate(specs) if s["type"] in _BATCH_SUMS]
        self.confused = any(s["type"] in _FROM_CONFUSION for s in specs)
        self.keeps = any(s["type"] not in _BATCH_SUMS and s["type"] not in _FROM_CONFUSION for s in specs)
        self.sums = {}  # state name -> float64 (2,) pair, or the int64 confusion matrix
        self.kept_true, self.kept_pred = [], []
        if state is not None:
            self._restore(state)

    def _restore(self, state):
        shapes = {name: (2,) for name, _, _ in self.counted}
        if self.confused:
            shapes[CONFUSION] = (self.n_classes, self.n_classes)
        for name, shape in shapes.items():
            if name not in state or np.shape(state[name]) != shape:
                raise KeyError(f"the epoch's metric sums ({name}) are missing or of the wrong shape")
            self.sums[name] = np.array(state[name], np.int64 if name == CONFUSION else np.float64)
        if self.keeps:
            true, pred = state.get("kept_true"), state.get("kept_pred")
            if true is None or pred is None or pred.ndim != 2 or pred.shape[1] != self.n_outputs \
                    or len(true) != len(pred):
                raise KeyError("the epoch's kept outputs are missing or of the wrong shape")
            self.kept_true, self.kept_pred = [true], [pred]

    @staticmethod
    def _params(spec):
        return {k: v for k, v in spec.items() if k != "type"}

    def add(self, y_true, y_pred):
        """Count a batch: its targets (as ``compute`` takes them) and outputs (n, outputs)."""
        for name, pair, params in self.counted:
            batch = pair(y_true, y_pred, **params)
            self.sums[name] = batch if name not in self.sums else self.sums[name] + batch
        if self.confused:
            cm = self.sums.setdefault(CONFUSION, np.zeros((self.n_classes, self.n_classes), np.int64))
            np.add.at(cm, (_labels(y_true), predicted_classes(y_pred)), 1)
        if self.keeps:
            self.kept_true.append(np.array(y_true))
            self.kept_pred.append(np.array(y_pred, np.float32))

    def _value(self, i, spec):
        name = spec["type"]
        if name in _BATCH_SUMS:
            return _BATCH_SUMS[name][1](self.sums[f"sums{i}"], self.n_outputs)
        return _FROM_CONFUSION[name](self.sums[CONFUSION], self.n_outputs)

    def value(self, name):
        """The named counted metric over the batches so far."""
        i, spec = next((i, s) for i, s in enumerate(self.specs) if s["type"] == name)
        return self._value(i, spec)

    def values(self):
        """{name: value} over every batch added, as ``compute(specs, all targets, all outputs)``."""
        if self.keeps:
            y_true, y_pred = np.concatenate(self.kept_true), np.concatenate(self.kept_pred)
        out = {}
        for i, spec in enumerate(self.specs):
            if spec["type"] in _BATCH_SUMS or spec["type"] in _FROM_CONFUSION:
                out[spec["type"]] = self._value(i, spec)
            else:
                out[spec["type"]] = get(spec["type"])(y_true, y_pred, **self._params(spec))
        return out

    def state(self):
        """{name: array} to resume from (``EpochMetrics(specs, n_outputs, state)``)."""
        state = dict(self.sums)
        if self.keeps and self.kept_pred:
            state.update(kept_true=np.concatenate(self.kept_true), kept_pred=np.concatenate(self.kept_pred))
        return state


def compute(specs, y_true, y_pred):
    """{name: value} for metric specs ``[{"type": name, **params}, ...]``."""
    return {s["type"]: get(s["type"])(y_true, y_pred, **{k: v for k, v in s.items() if k != "type"})
            for s in specs}
