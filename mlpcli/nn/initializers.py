"""Weight initializers, with Keras's names, defaults and formulas.

Each function takes ``shape`` (``(fan_in, fan_out)`` for a kernel, ``(units,)``
for a bias), a ``numpy.random.Generator`` and its own parameters, and returns a
float32 array of that shape.
"""

import math

import numpy as np

from mlpcli.nn.spec import Component, Param, Registry, declare, integer, number

# stddev of a unit normal truncated to [-2, 2]; Keras divides by it so that
# truncated variance-scaling initializers keep the intended variance.
_TRUNCATED_STDDEV = 0.87962566103423978


def _fans(shape):
    """(fan_in, fan_out) of a kernel shape; a 1-D shape counts as both."""
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[-1]


def _truncated_normal(shape, rng, mean, stddev):
    """Normal(mean, stddev) redrawn until within two standard deviations."""
    x = rng.standard_normal(shape, dtype=np.float32)
    outside = np.abs(x) > 2.0
    while outside.any():
        x[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
        outside = np.abs(x) > 2.0
    return (x * np.float32(stddev) + np.float32(mean)).astype(np.float32, copy=False)


SEED = Param("seed", None, integer(0, nullable=True),
              "its own random generator's seed (null: the run's generator)")
# Keras's constant initializers take no seed
OWN_SEED = Param("seed", None, integer(0, nullable=True), SEED.doc, keras=None)


@declare(Component("zeros", "all 0", (OWN_SEED,), keras="Zeros"))
def zeros(shape, rng):
    return np.zeros(shape, np.float32)


@declare(Component("ones", "all 1", (OWN_SEED,), keras="Ones"))
def ones(shape, rng):
    return np.ones(shape, np.float32)


@declare(Component("constant", "all `value`", (
    Param("value", 0.0, number(), "the value"), OWN_SEED), keras="Constant"))
def constant(shape, rng, value):
    return np.full(shape, value, np.float32)


@declare(Component("random_uniform", "uniform in [minval, maxval)", (
    Param("minval", -0.05, number(), "the lower bound"),
    Param("maxval", 0.05, number(), "the upper bound (at least minval)"), SEED), keras="RandomUniform"))
def random_uniform(shape, rng, minval, maxval):
    return rng.uniform(minval, maxval, shape).astype(np.float32)


_MEAN = Param("mean", 0.0, number(), "the mean")
_STDDEV = Param("stddev", 0.05, number(0, closed="right"), "the standard deviation")


@declare(Component("random_normal", "normal", (_MEAN, _STDDEV, SEED), keras="RandomNormal"))
def random_normal(shape, rng, mean, stddev):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(stddev) + np.float32(mean))


@declare(Component("truncated_normal", "normal, redrawn beyond two standard deviations",
                   (_MEAN, _STDDEV, SEED), keras="TruncatedNormal"))
def truncated_normal(shape, rng, mean, stddev):
    return _truncated_normal(shape, rng, mean, stddev)


def variance_scaling(shape, rng, scale=1.0, mode="fan_in", distribution="truncated_normal"):
    """Keras's VarianceScaling: variance ``scale / n`` with n from ``mode``."""
    fan_in, fan_out = _fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
    variance = scale / max(1.0, n)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, shape).astype(np.float32)
    return _truncated_normal(shape, rng, 0.0, math.sqrt(variance) / _TRUNCATED_STDDEV)


@declare(Component("glorot_uniform", "uniform, variance 2 / (fan_in + fan_out)", (SEED,), keras="GlorotUniform"))
def glorot_uniform(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_avg", "uniform")


@declare(Component("glorot_normal", "truncated normal, variance 2 / (fan_in + fan_out)", (SEED,), keras="GlorotNormal"))
def glorot_normal(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_avg", "truncated_normal")


@declare(Component("he_uniform", "uniform, variance 2 / fan_in", (SEED,), keras="HeUniform"))
def he_uniform(shape, rng):
    return variance_scaling(shape, rng, 2.0, "fan_in", "uniform")


@declare(Component("he_normal", "truncated normal, variance 2 / fan_in", (SEED,), keras="HeNormal"))
def he_normal(shape, rng):
    return variance_scaling(shape, rng, 2.0, "fan_in", "truncated_normal")


@declare(Component("lecun_uniform", "uniform, variance 1 / fan_in", (SEED,), keras="LecunUniform"))
def lecun_uniform(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_in", "uniform")


@declare(Component("lecun_normal", "truncated normal, variance 1 / fan_in", (SEED,), keras="LecunNormal"))
def lecun_normal(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_in", "truncated_normal")


INITIALIZERS = Registry("initializer", [
    zeros, ones, constant, random_uniform, random_normal, truncated_normal,
    glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal,
])


def get(name):
    return INITIALIZERS.lookup(name)


def initialize(spec, shape, rng):
    """Draw weights for ``spec`` = ``{"type": name, **params}`` (a parameter left out has its default).

    A ``seed`` in the spec gives the initializer its own generator, as in Keras. ``rng``
    None: zeros, for weights about to be loaded from a file (nothing is drawn).
    """
    if rng is None:
        return np.zeros(tuple(shape), np.float32)
    function = get(spec["type"])
    params = {**function.spec.defaults(), **{k: v for k, v in spec.items() if k != "type"}}
    seed = params.pop("seed")
    if seed is not None:
        rng = np.random.default_rng(seed)
    return function(tuple(shape), rng, **params)


def keras_config(spec):
    """The Keras serialization of an initializer spec."""
    component = INITIALIZERS.spec(spec["type"])
    return {"module": "keras.initializers", "class_name": component.keras,
            "config": component.to_keras(spec), "registered_name": None}
