"""Layers: Dense, Activation, Dropout, Flatten, BatchNormalization and LayerNormalization.

Lifecycle, as in Keras: construct from a config dict, ``build(input_shape,
rng)`` creates the weights and returns the output shape, ``forward(x,
training)`` computes the output (keeping what backward needs),
``backward(dy)`` stores the weight gradients in ``grads`` and returns the
gradient with respect to the input. Shapes exclude the batch axis; arrays are
float32 ``(batch, *shape)``.

``params`` are the trainable weights (the optimizer's), ``state`` the non-trainable ones
(batch normalization's moving statistics, updated by ``forward`` in training);
``weights`` is both, in Keras's order, named by ``weight_names``.
"""

import math

import numpy as np

from mlpcli.nn import activations, initializers, regularizers
from mlpcli.nn.spec import BOOLEAN, Component, Constraint, Param, Registry, integer, number

_F = np.float32


# how a parameter of a nested kind is written in a Keras layer config
TO_KERAS = {"activation": lambda name: activations.get(name).name,
            "initializer": initializers.keras_config,
            "regularizer": lambda spec: regularizers.keras_config(spec) if spec else None}


class Layer:
    spec = Component("", "")
    weight_names = ()

    def __init__(self, name=None, **config):
        defaults = self.spec.defaults()
        unknown = set(config) - set(defaults)
        if unknown:
            raise ValueError(f"{self.type}: unknown parameter(s) {sorted(unknown)}")
        self.config = {**defaults, **config}
        self.name = name
        self.params = []
        self.state = []
        self.grads = []
        self.activity_penalty = 0.0

    @property
    def weights(self):
        """Trainable then non-trainable weights: what a model file stores, in Keras's order."""
        return self.params + self.state

    def weight_count(self, input_shape):
        """How many values its weights (trainable and not) hold for inputs of ``input_shape``:
        known before ``build`` allocates them."""
        return 0

    def output_shape(self, input_shape):
        """The shape of this layer's output for inputs of ``input_shape``; ``ValueError`` (saying
        why) when it cannot take them. ``build`` returns it too."""
        return tuple(input_shape)

    def build(self, input_shape, rng):
        return self.output_shape(input_shape)

    def forward(self, x, training):
        return x

    def backward(self, dy):
        return dy

    def penalty(self):
        """Weight-regularization term this layer adds to the loss."""
        return 0.0

    def rebind(self, attribute, arrays):
        """Use ``arrays`` (same shapes, e.g. views of a shared buffer) as ``params`` or ``grads``."""
        setattr(self, attribute, list(arrays))

    def get_config(self):
        """The layer's spec as in a config file: ``{"type": ..., "name": ..., **params}``."""
        return {"type": self.type, "name": self.name, **self.config}

    @property
    def type(self):
        return self.spec.name

    def keras_config(self):
        """The layer's entry in a Keras ``Sequential`` model_config."""
        return {"class_name": self.spec.keras,
                "config": {"name": self.name, "trainable": True, "dtype": "float32",
                           **self.spec.to_keras(self.config, TO_KERAS)}}


class Dense(Layer):
    """y = activation(x @ kernel + bias); x: (batch, in), kernel: (in, units)."""

    spec = Component("dense", "activation(x @ kernel + bias)", (
        Param("units", None, integer(1), "the number of outputs", required=True),
        Param("activation", "linear", Constraint("activation"), "applied to the outputs"),
        Param("use_bias", True, BOOLEAN, "whether to add a bias"),
        Param("kernel_initializer", {"type": "glorot_uniform"}, Constraint("initializer"), "draws the kernel"),
        Param("bias_initializer", {"type": "zeros"}, Constraint("initializer"), "draws the bias"),
        Param("kernel_regularizer", None, Constraint("regularizer", nullable=True), "penalty on the kernel"),
        Param("bias_regularizer", None, Constraint("regularizer", nullable=True), "penalty on the bias"),
        Param("activity_regularizer", None, Constraint("regularizer", nullable=True),
              "penalty on the outputs, divided by the batch size"),
    ), keras="Dense", keras_fixed={"kernel_constraint": None, "bias_constraint": None})

    def __init__(self, name=None, **config):
        super().__init__(name, **config)
        self.activation = activations.get(self.config["activation"])
        self.need_input_grad = True

    @property
    def weight_names(self):
        return ("kernel", "bias") if self.config["use_bias"] else ("kernel",)

    def weight_count(self, input_shape):
        return (math.prod(input_shape) + self.config["use_bias"]) * self.config["units"]

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"a dense layer needs a flat input (one axis), got shape {list(input_shape)}; "
                             "add a flatten layer before it")
        return (self.config["units"],)

    def build(self, input_shape, rng):
        self.output_shape(input_shape)
        units = self.config["units"]
        self.kernel = initializers.initialize(self.config["kernel_initializer"], (input_shape[0], units), rng)
        self.params = [self.kernel]
        if self.config["use_bias"]:
            self.bias = initializers.initialize(self.config["bias_initializer"], (units,), rng)
            self.params.append(self.bias)
        self.grads = [np.zeros_like(p) for p in self.params]
        return (units,)

    def forward(self, x, training):
        z = x @ self.kernel
        if self.config["use_bias"]:
            z += self.bias
        y = self.activation.forward(z)
        if training:
            self.x, self.z, self.y = x, z, y
        reg = self.config["activity_regularizer"]
        if reg:  # of this batch, training or not: evaluation reports it on its own data
            self.activity_penalty = regularizers.penalty(reg, y) / x.shape[0]
        return y

    def backward(self, dy, pre_activation=False):
        """``pre_activation``: ``dy`` is already the gradient of the pre-activation z."""
        reg = self.config["activity_regularizer"]
        if reg and not pre_activation:
            dy = dy + regularizers.penalty_grad(reg, self.y) / _F(self.x.shape[0])
        dz = dy if pre_activation else self.activation.backward(self.z, self.y, dy)
        np.matmul(self.x.T, dz, out=self.grads[0])
        if self.config["kernel_regularizer"]:
            self.grads[0] += regularizers.penalty_grad(self.config["kernel_regularizer"], self.kernel)
        if self.config["use_bias"]:
            dz.sum(axis=0, out=self.grads[1])
            if self.config["bias_regularizer"]:
                self.grads[1] += regularizers.penalty_grad(self.config["bias_regularizer"], self.bias)
        return dz @ self.kernel.T if self.need_input_grad else None

    def rebind(self, attribute, arrays):
        super().rebind(attribute, arrays)
        if attribute == "params":
            self.kernel = self.params[0]
            if self.config["use_bias"]:
                self.bias = self.params[1]

    def penalty(self):
        total = 0.0
        if self.config["kernel_regularizer"]:
            total += regularizers.penalty(self.config["kernel_regularizer"], self.kernel)
        if self.config["use_bias"] and self.config["bias_regularizer"]:
            total += regularizers.penalty(self.config["bias_regularizer"], self.bias)
        return total


class Activation(Layer):
    spec = Component("activation", "an activation applied on its own", (
        Param("activation", "linear", Constraint("activation"), "the function"),), keras="Activation")

    def __init__(self, name=None, **config):
        super().__init__(name, **config)
        self.activation = activations.get(self.config["activation"])

    def forward(self, x, training):
        y = self.activation.forward(x)
        if training:
            self.x, self.y = x, y
        return y

    def backward(self, dy):
        return self.activation.backward(self.x, self.y, dy)


class Dropout(Layer):
    """Inverted dropout: zero a share ``rate`` of inputs, scale the rest by 1/(1-rate).

    Active only when ``training``; at inference it is the identity. A unit is
    kept when a uniform 32-bit draw is at least ``rate * 2**32`` (Keras: a
    uniform float at least ``rate``; 32 bits resolve ``rate`` finer than float32's
    24). The mask holds 0 or 1/(1-rate), so forward and backward are one multiply each.

    ``rows = (start, stop, total)`` says the input is rows start:stop of a batch of
    ``total`` (one process's share, see ``mlpcli/parallel.py``): the mask is then
    those rows of the whole batch's mask, and the generator ends where drawing
    the whole batch's mask leaves it.
    """

    spec = Component("dropout", "inverted dropout in training, nothing at inference", (
        Param("rate", 0.5, number(0, 1, closed="left"), "the share of inputs zeroed"),
        Param("seed", None, integer(0, nullable=True), "its mask's own seed (null: the run's generator)"),
    ), keras="Dropout", keras_fixed={"noise_shape": None})

    def build(self, input_shape, rng):
        seed = self.config["seed"]
        self.rng = rng if seed is None else np.random.default_rng(seed)
        rate = self.config["rate"]
        self._threshold = np.uint32(min(math.ceil(rate * 2.0 ** 32), 2 ** 32 - 1))
        self._scale = _F(1.0 / (1.0 - rate))  # rate < 1: config and model-file checks
        self._mask = None
        self.rows = None
        return self.output_shape(input_shape)

    def forward(self, x, training):
        if not training or self.config["rate"] == 0:
            self.mask = None
            return x
        if self._mask is None or self._mask.shape != x.shape:
            self._mask = np.empty(x.shape, np.float32)
        if self.rows is None:
            bits = uint32_draws(self.rng.bit_generator, 0, x.size, x.size)
        else:
            start, stop, total = self.rows
            per_row = math.prod(x.shape[1:])
            bits = uint32_draws(self.rng.bit_generator, start * per_row, x.size, total * per_row)
        self.mask = np.greater_equal(bits.reshape(x.shape), self._threshold, out=self._mask, casting="unsafe")
        self.mask *= self._scale  # 1.0 -> 1/(1-rate), 0.0 stays
        return np.multiply(x, self.mask)

    def skip(self, n_rows, units):
        """Move the generator past the mask of a batch of ``n_rows`` rows of ``units``, drawing nothing."""
        if self.config["rate"] != 0:
            self.rng.bit_generator.advance((n_rows * units + 1) // 2)

    def backward(self, dy):
        if self.mask is None:
            return dy
        return np.multiply(dy, self.mask)


def uint32_draws(bit_generator, start, count, total):
    """uint32 values start:start+count (count,) of a stream of ``total`` of them, leaving the
    generator at the stream's end.

    The stream is ``random_raw`` 64-bit draws seen as uint32 pairs (half as many draws
    as values, no float conversion); a part of it is reached by ``advance``.
    """
    if start == 0 and count == total:
        return bit_generator.random_raw((total + 1) // 2).view(np.uint32)[:total]
    first, last = start // 2, (start + count + 1) // 2
    bit_generator.advance(first)
    raw = bit_generator.random_raw(last - first).view(np.uint32)
    bit_generator.advance((total + 1) // 2 - last)
    return raw[start - 2 * first:start - 2 * first + count]


class Flatten(Layer):
    """(batch, *shape) -> (batch, prod(shape))."""

    spec = Component("flatten", "(batch, *shape) -> (batch, prod(shape))", keras="Flatten",
                     keras_fixed={"data_format": "channels_last"})

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def build(self, input_shape, rng):
        self.input_shape = tuple(input_shape)
        return self.output_shape(input_shape)

    def forward(self, x, training):
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape((dy.shape[0],) + self.input_shape)


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

    def _whole_batch_moments(self, rows, positions):
        """(mean, variance) of the whole batch that ``rows`` (this process's share) is part of."""
        start, stop, total = self.rows
        sums = self.all_sum(np.concatenate([rows.sum(axis=0, dtype=np.float64),
                                            np.square(rows, dtype=np.float64).sum(axis=0)]))
        count = total * positions
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
        n = rows.shape[0]
        features = rows.shape[1]
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


LAYERS = Registry("layer type", [Dense, Activation, Dropout, Flatten, BatchNormalization, LayerNormalization])


def get(name):
    return LAYERS.lookup(name)


def from_config(spec):
    """A layer from ``{"type": ..., "name": ..., **params}``."""
    params = {k: v for k, v in spec.items() if k not in ("type", "name")}
    return get(spec["type"])(name=spec.get("name"), **params)
