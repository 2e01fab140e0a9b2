"""Loss functions with Keras's formulas, each averaged over the batch.

The functions give each sample's loss ``(batch,)`` and ``dL/dy_pred`` of the batch's mean;
they take float32 arrays of shape ``(batch, outputs)`` (``sparse_categorical_crossentropy``
takes integer labels ``(batch,)`` as ``y_true``). ``fused`` names the output activation
whose gradient the loss can combine with its own: softmax + cross-entropy gives
``(p - y) / batch`` without the Jacobian.

A ``Loss`` bound to sample weights (``weighted``) weighs them as Keras 3 does
(``reduce_weighted_values``, "sum_over_batch_size"): each sample's loss times its weight,
summed, divided by the batch's size; each sample's gradient row is scaled by its weight.
"""

from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np

from mlpcli.nn.spec import Component, Param, Registry, number

EPSILON = 1e-7  # Keras's backend.epsilon(), used to clip probabilities
HUBER_DELTA = 1.0
# Keras's label_smoothing (CategoricalCrossentropy, BinaryCrossentropy): targets y become
# y·(1 - s) + s/K, K the outputs for categorical and 2 for binary (each output a yes/no)
LABEL_SMOOTHING = Param("label_smoothing", 0.0, number(0, 1), "moves this share of each target to the "
                        "uniform distribution: y·(1 - s) + s/K (K: classes; 2 for binary)")


def mean_squared_error(y_true, y_pred):
    return np.square(y_pred - y_true).mean(axis=-1)


def mean_squared_error_grad(y_true, y_pred):
    return (2.0 / y_pred.size) * (y_pred - y_true)


def mean_absolute_error(y_true, y_pred):
    return np.abs(y_pred - y_true).mean(axis=-1)


def mean_absolute_error_grad(y_true, y_pred):
    return np.sign(y_pred - y_true) / np.float32(y_pred.size)


def binary_crossentropy(y_true, y_pred):
    p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return -(y_true * np.log(p) + (1.0 - y_true) * np.log1p(-p)).mean(axis=-1)


def binary_crossentropy_grad(y_true, y_pred):
    p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
    inside = (y_pred > EPSILON) & (y_pred < 1.0 - EPSILON)
    return inside * (p - y_true) / (p * (1.0 - p)) / np.float32(y_pred.size)


def sigmoid_binary_crossentropy_grad(y_true, y_pred):
    """Gradient with respect to the logits when y_pred = sigmoid(logits)."""
    return (y_pred - y_true) / np.float32(y_pred.size)


def categorical_crossentropy(y_true, y_pred):
    p = y_pred / y_pred.sum(axis=-1, keepdims=True)
    p = np.clip(p, EPSILON, 1.0 - EPSILON)
    return -(y_true * np.log(p)).sum(axis=-1)


def categorical_crossentropy_grad(y_true, y_pred):
    """Through Keras's renormalisation p = y_pred / sum(y_pred); clipped entries pass none."""
    s = y_pred.sum(axis=-1, keepdims=True)
    p = y_pred / s
    inside = ((p > EPSILON) & (p < 1.0 - EPSILON)).astype(y_pred.dtype)
    dp = -inside * y_true / np.clip(p, EPSILON, 1.0 - EPSILON)
    # d/dy of y/s: (dp - sum(dp * p)) / s
    return (dp - (dp * p).sum(axis=-1, keepdims=True)) / s / np.float32(y_pred.shape[0])


def softmax_categorical_crossentropy_grad(y_true, y_pred):
    """Gradient with respect to the logits when y_pred = softmax(logits)."""
    return (y_pred - y_true) / np.float32(y_pred.shape[0])


def _picked(labels, y_pred):
    return y_pred[np.arange(y_pred.shape[0]), labels]


def sparse_categorical_crossentropy(labels, y_pred):
    p = _picked(labels, y_pred) / y_pred.sum(axis=-1)
    return -np.log(np.clip(p, EPSILON, 1.0 - EPSILON))


def _one_hot_like(labels, y_pred):
    onehot = np.zeros_like(y_pred)
    onehot[np.arange(y_pred.shape[0]), labels] = 1.0
    return onehot


def sparse_categorical_crossentropy_grad(labels, y_pred):
    return categorical_crossentropy_grad(_one_hot_like(labels, y_pred), y_pred)


def sparse_softmax_categorical_crossentropy_grad(labels, y_pred):
    grad = y_pred.copy()
    grad[np.arange(y_pred.shape[0]), labels] -= 1.0
    grad /= np.float32(y_pred.shape[0])
    return grad


def _signed(y_true):
    """Keras's hinge maps {0, 1} labels to {-1, 1}."""
    return np.where(y_true == 0, -1.0, y_true).astype(np.float32)


def hinge(y_true, y_pred):
    return np.maximum(1.0 - _signed(y_true) * y_pred, 0.0).mean(axis=-1)


def hinge_grad(y_true, y_pred):
    t = _signed(y_true)
    return -t * (1.0 - t * y_pred > 0) / np.float32(y_pred.size)


def huber(y_true, y_pred):
    err = np.abs(y_pred - y_true)
    quad = np.minimum(err, HUBER_DELTA)
    return (0.5 * quad * quad + HUBER_DELTA * (err - quad)).mean(axis=-1)


def huber_grad(y_true, y_pred):
    return np.clip(y_pred - y_true, -HUBER_DELTA, HUBER_DELTA) / np.float32(y_pred.size)


@dataclass(frozen=True)
class Loss:
    spec: Component
    per_sample: Callable
    batch_grad: Callable
    target: str  # "onehot" (float, one column per output), "labels" (int) or "as_is"
    fused_activation: Optional[str] = None
    fused_batch_grad: Optional[Callable] = None
    weights: Optional[np.ndarray] = None  # float32 (batch,): the batch's sample weights
    label_smoothing: float = 0.0

    @property
    def name(self):
        return self.spec.name

    def weighted(self, weights):
        """This loss on a batch whose samples weigh ``weights`` (float32 ``(batch,)``; None: 1 each)."""
        return replace(self, weights=weights)

    def value(self, y_true, y_pred):
        losses = self.per_sample(y_true, y_pred)
        if self.weights is None:
            return float(losses.mean())
        return float((losses * self.weights).sum() / np.float32(len(losses)))

    def grad(self, y_true, y_pred):
        return self._weigh(self.batch_grad(y_true, y_pred))

    def fused_grad(self, y_true, y_pred):
        """Gradient with respect to the logits of ``fused_activation``."""
        return self._weigh(self.fused_batch_grad(y_true, y_pred))

    def _weigh(self, grad):
        if self.weights is None:
            return grad
        return grad * self.weights.reshape((-1,) + (1,) * (grad.ndim - 1))


LOSSES = Registry("loss", [
    Loss(Component("mean_squared_error", "mean of (y - ŷ)²", aliases=("mse",), keras="MeanSquaredError"),
         mean_squared_error, mean_squared_error_grad, "onehot"),
    Loss(Component("mean_absolute_error", "mean of |y - ŷ|", aliases=("mae",), keras="MeanAbsoluteError"),
         mean_absolute_error, mean_absolute_error_grad, "onehot"),
    Loss(Component("binary_crossentropy", "yes/no cross-entropy per output (0/1 targets; one sigmoid "
                   "output for two classes)", (LABEL_SMOOTHING,), keras="BinaryCrossentropy"),
         binary_crossentropy, binary_crossentropy_grad, "onehot", "sigmoid", sigmoid_binary_crossentropy_grad),
    Loss(Component("categorical_crossentropy", "cross-entropy of one-hot targets (integer labels are "
                   "one-hot encoded)", (LABEL_SMOOTHING,), keras="CategoricalCrossentropy"),
         categorical_crossentropy, categorical_crossentropy_grad, "onehot", "softmax",
         softmax_categorical_crossentropy_grad),
    Loss(Component("sparse_categorical_crossentropy", "cross-entropy of integer labels",
                   keras="SparseCategoricalCrossentropy"),
         sparse_categorical_crossentropy, sparse_categorical_crossentropy_grad, "labels", "softmax",
         sparse_softmax_categorical_crossentropy_grad),
    Loss(Component("hinge", "mean of max(1 - y·ŷ, 0), 0/1 labels taken as -1/1", keras="Hinge"),
         hinge, hinge_grad, "onehot"),
    Loss(Component("huber", "squared error below 1, absolute error above", keras="Huber"),
         huber, huber_grad, "onehot"),
])
ALIASES = LOSSES.aliases


def get(name):
    return LOSSES.lookup(name)


def from_spec(spec):
    """The loss a resolved config's ``loss`` ({type: name, **parameters}) describes; a bare name
    (a model file written before losses had parameters) is the loss with its defaults."""
    if isinstance(spec, str):
        return get(spec)
    return replace(get(spec["type"]), **{p.name: spec[p.name] for p in get(spec["type"]).spec.params})


def keras_form(spec):
    """``spec`` as Keras's training_config writes a loss: its name when every parameter has its
    default (as ``compile(loss="name")`` gives), else {class_name, config}."""
    if isinstance(spec, str):
        return spec
    component = get(spec["type"]).spec
    values = {k: v for k, v in spec.items() if k != "type"}
    if values == component.defaults():
        return spec["type"]
    return {"class_name": component.keras,
            "config": {"name": spec["type"], "reduction": "sum_over_batch_size", "from_logits": False,
                       **component.to_keras(values)}}


def encode_targets(loss, y, n_outputs):
    """Turn dataset targets into what ``loss`` compares with the model output.

    ``y``: int labels ``(n,)`` or float targets ``(n, k)``. Returns float32
    ``(n, n_outputs)``, or int64 ``(n,)`` for sparse losses. A single output
    with integer labels means binary 0/1 targets.
    """
    if loss.target == "labels":
        return y.astype(np.int64, copy=False)
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        if n_outputs == 1:
            targets = y.astype(np.float32).reshape(-1, 1)
        else:
            targets = np.zeros((y.shape[0], n_outputs), np.float32)
            targets[np.arange(y.shape[0]), y] = 1.0
    else:
        targets = y.astype(np.float32, copy=False).reshape(y.shape[0], -1)
    if not loss.label_smoothing:
        return targets
    s = loss.label_smoothing
    classes = 2 if loss.name == "binary_crossentropy" else targets.shape[1]
    return targets * np.float32(1.0 - s) + np.float32(s / classes)


class BatchTargets:
    """``encode_targets`` of any rows of ``y``, made a batch at a time: one-hot targets of
    millions of labels would be training's largest array. A row's encoding does not depend
    on the others, so a batch's rows are those of the whole array's encoding, bit for bit."""

    def __init__(self, loss, y, n_outputs):
        self.loss, self.y, self.n_outputs = loss, y, n_outputs
        first = encode_targets(loss, y[:1], n_outputs)  # (a reshape cannot tell the width of no rows)
        self.dtype, self.row_shape = first.dtype, first.shape[1:]

    def take(self, rows, out):
        """Write the targets of ``rows`` (indices into y) into ``out``."""
        out[...] = encode_targets(self.loss, self.y[rows], self.n_outputs)
