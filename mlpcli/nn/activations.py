"""Activation functions and their derivatives.

Each entry of ``ACTIVATIONS`` pairs ``forward(x) -> y`` with
``backward(x, y, dy) -> dx``; all arrays have the same shape ``(batch, units)``
and stay float32. Formulas follow ``keras.activations``.
"""

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mlpcli.nn.spec import Component, Registry

SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
LEAKY_RELU_SLOPE = 0.2  # Keras 3's default negative_slope
_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _erf(x):
    """Elementwise erf by Abramowitz & Stegun 7.1.26 (max error 1.5e-7, float32's own)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(x.dtype, copy=False)


def linear(x):
    return x


def linear_grad(x, y, dy):
    return dy


def sigmoid(x):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def sigmoid_grad(x, y, dy):
    return dy * y * (1.0 - y)


def hard_sigmoid(x):
    """clip(x / 6 + 0.5, 0, 1), Keras 3's definition."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0).astype(x.dtype, copy=False)


def hard_sigmoid_grad(x, y, dy):
    return dy * ((x > -3.0) & (x < 3.0)).astype(x.dtype) / 6.0


def tanh(x):
    return np.tanh(x)


def tanh_grad(x, y, dy):
    return dy * (1.0 - y * y)


def relu(x):
    return np.maximum(x, 0.0)


def relu_grad(x, y, dy):
    return dy * (x > 0)


def leaky_relu(x):
    return np.where(x > 0, x, LEAKY_RELU_SLOPE * x).astype(x.dtype, copy=False)


def leaky_relu_grad(x, y, dy):
    return np.where(x > 0, dy, LEAKY_RELU_SLOPE * dy).astype(dy.dtype, copy=False)


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))).astype(x.dtype, copy=False)


def elu_grad(x, y, dy):
    return np.where(x > 0, dy, dy * (y + 1.0)).astype(dy.dtype, copy=False)


def selu(x):
    neg = SELU_ALPHA * np.expm1(np.minimum(x, 0.0))
    return (SELU_SCALE * np.where(x > 0, x, neg)).astype(x.dtype, copy=False)


def selu_grad(x, y, dy):
    neg = SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0.0))
    return dy * np.where(x > 0, SELU_SCALE, neg).astype(dy.dtype, copy=False)


def softplus(x):
    """log(1 + exp(x)), stable for large |x|."""
    return (np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


def softplus_grad(x, y, dy):
    return dy * sigmoid(x)


def softsign(x):
    return x / (1.0 + np.abs(x))


def softsign_grad(x, y, dy):
    d = 1.0 + np.abs(x)
    return dy / (d * d)


def swish(x):
    return x * sigmoid(x)


def swish_grad(x, y, dy):
    s = sigmoid(x)
    return dy * (s + x * s * (1.0 - s))


def gelu(x):
    """Exact GELU, x * Phi(x) (Keras's default ``approximate=False``)."""
    return (0.5 * x * (1.0 + _erf(x / _SQRT_2))).astype(x.dtype, copy=False)


def gelu_grad(x, y, dy):
    cdf = 0.5 * (1.0 + _erf(x / _SQRT_2))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return (dy * (cdf + x * pdf)).astype(dy.dtype, copy=False)


def softmax(x):
    """Row-wise softmax over the last axis; x: (batch, classes)."""
    e = x - x.max(axis=-1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def softmax_grad(x, y, dy):
    """Jacobian-vector product of softmax: y * (dy - sum(dy * y))."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class Activation:
    spec: Component
    forward: Callable
    backward: Callable

    @property
    def name(self):
        return self.spec.name


def _declared(name, doc):
    """An activation's declaration: no parameters, and Keras calls it by the same name."""
    return Component(name, doc, keras=name)


ACTIVATIONS = Registry("activation", [
    Activation(_declared("linear", "x, unchanged"), linear, linear_grad),
    Activation(_declared("sigmoid", "1 / (1 + exp(-x))"), sigmoid, sigmoid_grad),
    Activation(_declared("hard_sigmoid", "clip(x / 6 + 0.5, 0, 1)"), hard_sigmoid, hard_sigmoid_grad),
    Activation(_declared("tanh", "tanh(x)"), tanh, tanh_grad),
    Activation(_declared("relu", "max(x, 0)"), relu, relu_grad),
    Activation(_declared("leaky_relu", "x, or 0.2·x below 0 (Keras 3's negative_slope)"), leaky_relu, leaky_relu_grad),
    Activation(_declared("elu", "x, or exp(x) - 1 below 0"), elu, elu_grad),
    Activation(_declared("selu", "scaled elu (Klambauer et al.'s constants)"), selu, selu_grad),
    Activation(_declared("softplus", "log(1 + exp(x))"), softplus, softplus_grad),
    Activation(_declared("softsign", "x / (1 + |x|)"), softsign, softsign_grad),
    Activation(_declared("swish", "x · sigmoid(x)"), swish, swish_grad),
    Activation(_declared("silu", "x · sigmoid(x) (as swish)"), swish, swish_grad),
    Activation(_declared("gelu", "x · Φ(x), exact (Keras's approximate=False)"), gelu, gelu_grad),
    Activation(_declared("softmax", "exp(x) / Σ exp(x) over the outputs"), softmax, softmax_grad),
])


def get(name):
    """The ``Activation`` called ``name`` (``None`` means linear)."""
    return ACTIVATIONS.lookup("linear" if name is None else name)
