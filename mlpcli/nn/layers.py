"""Layers: Dense, Activation, Dropout and Flatten here, the normalization layers in
``mlpcli.nn.normalization``; ``LAYERS`` is every one of them. The protocol they follow is
``mlpcli.nn.layer.Layer``'s.
"""

import math

import numpy as np

from mlpcli.nn import activations, initializers, regularizers
from mlpcli.nn.layer import TRAINABLE, Layer
from mlpcli.nn.normalization import BatchNormalization, LayerNormalization
from mlpcli.nn.spec import BOOLEAN, Component, Constraint, Param, Registry, integer, number

_F = np.float32


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
        TRAINABLE,
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


LAYERS = Registry("layer type", [Dense, Activation, Dropout, Flatten, BatchNormalization, LayerNormalization])


def get(name):
    return LAYERS.lookup(name)


def from_config(spec):
    """A layer from ``{"type": ..., "name": ..., **params}``."""
    params = {k: v for k, v in spec.items() if k not in ("type", "name")}
    return get(spec["type"])(name=spec.get("name"), **params)
