"""Normalization layers: BatchNormalization and LayerNormalization (Keras 3's meanings)."""

import math

import numpy as np

from mlpcli.nn.layer import Layer
from mlpcli.nn.spec import BOOLEAN, Component, Param, number

_F = np.float32


class _Normalization(Layer):
    """y = gamma * (x - mean) / sqrt(variance + epsilon) + beta over the last axis, with
    ``gamma`` only when ``scale`` and ``beta`` only when ``center``; subclasses say over
    which rows ``mean`` and ``variance`` are taken."""

    def build(self, input_shape, rng):
        features = input_shape[-1]
        self.params = ([np.ones(features, _F)] if self.config["scale"] else []) + \
                      ([np.zeros(features, _F)] if self.config["center"] else [])
        self.grads = [np.zeros_like(p) for p in self.params]
        self._bind()
        return self.output_shape(input_shape)

    @property
    def weight_names(self):
        return (("gamma",) if self.config["scale"] else ()) + (("beta",) if self.config["center"] else ())

    def weight_count(self, input_shape):
        return input_shape[-1] * len(self.weight_names)

    def rebind(self, attribute, arrays):
        super().rebind(attribute, arrays)
        self._bind()

    def _bind(self):
        weights = dict(zip(self.weight_names, self.weights))
        self.gamma, self.beta = weights.get("gamma"), weights.get("beta")
        self.moving_mean, self.moving_variance = weights.get("moving_mean"), weights.get("moving_variance")

    def _affine(self, x_hat):
        y = x_hat * self.gamma if self.gamma is not None else x_hat.copy()
        if self.beta is not None:
            y += self.beta
        return y

    def _affine_grads(self, dy, x_hat, axes):
        """Fill gamma's and beta's gradients (summed over ``axes``); the gradient of x_hat."""
        i = 0
        if self.gamma is not None:
            self.grads[i][...] = (dy * x_hat).sum(axis=axes)
            i += 1
        if self.beta is not None:
            self.grads[i][...] = dy.sum(axis=axes)
        return dy * self.gamma if self.gamma is not None else dy


_NORMALIZATION_PARAMS = (
    Param("epsilon", 1e-3, number(0, closed="neither"), "added to the variance"),
    Param("center", True, BOOLEAN, "whether to add a learned offset beta"),
    Param("scale", True, BOOLEAN, "whether to multiply by a learned gamma"),
)


class BatchNormalization(_Normalization):
    """Each feature (last axis) normalized by the batch's mean and variance in training,
    by the moving ones at inference; the moving ones follow Keras:
    moving = moving * momentum + batch * (1 - momentum), the batch's variance biased.

    ``rows = (start, stop, total)`` says the input is rows start:stop of a batch of
    ``total`` that several processes share; ``all_sum`` (set by ``mlpcli/parallel.py``)
    then turns this process's float64 sums into the whole batch's. Forward sums x and x**2
    (the whole batch's mean and variance); backward sums the loss's gradient and its
    product with x_hat, each share weighted by its share of the rows, as the processes'
    gradients are averaged.
    """

    combines_batches = True
    all_sum = None
    rows = None

    spec = Component("batch_normalization", "normalizes each feature by the batch's (training) or the "
                     "moving (inference) mean and variance", (
                         Param("momentum", 0.99, number(0, 1), "of the moving mean and variance"),
                         *_NORMALIZATION_PARAMS,
                     ), keras="BatchNormalization", keras_fixed={"axis": -1})

    def build(self, input_shape, rng):
        shape = super().build(input_shape, rng)
        self.state = [np.zeros(input_shape[-1], _F), np.ones(input_shape[-1], _F)]
        self._bind()
        return shape

    @property
    def weight_names(self):
        return super().weight_names + ("moving_mean", "moving_variance")

    def forward(self, x, training):
        rows = x.reshape(-1, x.shape[-1])
        eps = _F(self.config["epsilon"])
        if not training:
            inv = _F(1) / np.sqrt(self.moving_variance + eps)
            return self._affine((x - self.moving_mean) * inv)
        if self.rows is None:
            mean = rows.mean(axis=0)
            centered = rows - mean
            variance = np.mean(centered * centered, axis=0)
        else:
            mean, variance = self._whole_batch_moments(rows, math.prod(x.shape[1:-1]))
            centered = rows - mean
        momentum = _F(self.config["momentum"])
        self.moving_mean[...] = self.moving_mean * momentum + mean * (_F(1) - momentum)
        self.moving_variance[...] = self.moving_variance * momentum + variance * (_F(1) - momentum)
        self.inv = _F(1) / np.sqrt(variance + eps)
        self.x_hat = centered * self.inv
        return self._affine(self.x_hat).reshape(x.shape)

    @property
    def sums_width(self):
        """The most values one ``all_sum`` of this layer adds up: a sum of x and of x**2 per feature."""
        return 2 * self.moving_mean.size

    def _whole_batch_moments(self, rows, positions):
        """(mean, variance) of the whole batch that ``rows`` (this process's share) is part of."""
        sums = self.all_sum(np.concatenate([rows.sum(axis=0, dtype=np.float64),
                                            np.square(rows, dtype=np.float64).sum(axis=0)]))
        count = self.rows[2] * positions
        mean = sums[:rows.shape[1]] / count
        variance = np.maximum(sums[rows.shape[1]:] / count - mean * mean, 0)
        return mean.astype(_F), variance.astype(_F)

    def backward(self, dy):
        rows = dy.reshape(-1, dy.shape[-1])
        d_hat = self._affine_grads(rows, self.x_hat, 0)
        if self.rows is None:
            n = _F(rows.shape[0])
            dx = (d_hat - d_hat.mean(axis=0) - self.x_hat * (d_hat * self.x_hat).sum(axis=0) / n) * self.inv
            return dx.reshape(dy.shape)
        start, stop, total = self.rows
        weight = (stop - start) / total  # this share's weight in the averaged gradients
        sums = self.all_sum(np.concatenate([d_hat.sum(axis=0, dtype=np.float64),
                                            (d_hat * self.x_hat).sum(axis=0, dtype=np.float64)]) * weight)
        if rows.shape[0] == 0:
            return dy
        n, features = rows.shape
        mean_d, mean_dx = (sums[:features] / n).astype(_F), (sums[features:] / n).astype(_F)
        return ((d_hat - mean_d - self.x_hat * mean_dx) * self.inv).reshape(dy.shape)


class LayerNormalization(_Normalization):
    """Each sample normalized by its own mean and variance over the last axis."""

    spec = Component("layer_normalization", "normalizes each sample by its own mean and variance "
                     "over the last axis", _NORMALIZATION_PARAMS,
                     keras="LayerNormalization", keras_fixed={"axis": -1})

    def forward(self, x, training):
        mean = x.mean(axis=-1, keepdims=True)
        centered = x - mean
        variance = np.mean(centered * centered, axis=-1, keepdims=True)
        inv = _F(1) / np.sqrt(variance + _F(self.config["epsilon"]))
        x_hat = centered * inv
        if training:
            self.x_hat, self.inv = x_hat, inv
        return self._affine(x_hat)

    def backward(self, dy):
        d_hat = self._affine_grads(dy, self.x_hat, tuple(range(dy.ndim - 1)))
        return (d_hat - d_hat.mean(axis=-1, keepdims=True)
                - self.x_hat * (d_hat * self.x_hat).mean(axis=-1, keepdims=True)) * self.inv
