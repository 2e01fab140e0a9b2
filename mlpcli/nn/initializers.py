"""Weight initializers, with Keras's names, defaults and formulas.

Each function takes ``shape`` (``(fan_in, fan_out)`` for a kernel, ``(units,)``
for a bias), a ``numpy.random.Generator`` and its own parameters, and returns a
float32 array of that shape.
"""

import inspect
import math

import numpy as np

from mlpcli.nn.registry import lookup

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


def zeros(shape, rng):
    return np.zeros(shape, np.float32)


def ones(shape, rng):
    return np.ones(shape, np.float32)


def constant(shape, rng, value=0.0):
    return np.full(shape, value, np.float32)


def random_uniform(shape, rng, minval=-0.05, maxval=0.05):
    return rng.uniform(minval, maxval, shape).astype(np.float32)


def random_normal(shape, rng, mean=0.0, stddev=0.05):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(stddev) + np.float32(mean))


def truncated_normal(shape, rng, mean=0.0, stddev=0.05):
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


def glorot_uniform(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_avg", "uniform")


def glorot_normal(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_avg", "truncated_normal")


def he_uniform(shape, rng):
    return variance_scaling(shape, rng, 2.0, "fan_in", "uniform")


def he_normal(shape, rng):
    return variance_scaling(shape, rng, 2.0, "fan_in", "truncated_normal")


def lecun_uniform(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_in", "uniform")


def lecun_normal(shape, rng):
    return variance_scaling(shape, rng, 1.0, "fan_in", "truncated_normal")


INITIALIZERS = {
    f.__name__: f
    for f in [
        zeros, ones, constant, random_uniform, random_normal, truncated_normal,
        glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal,
    ]
}

# name -> Keras class name, for the model file
KERAS_CLASS_NAMES = {
    "zeros": "Zeros", "ones": "Ones", "constant": "Constant",
    "random_uniform": "RandomUniform", "random_normal": "RandomNormal",
    "truncated_normal": "TruncatedNormal", "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform", "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform", "lecun_normal": "LecunNormal",
}


def get(name):
    return lookup(INITIALIZERS, name, "initializer")


def parameters(name):
    """{parameter: default} accepted by initializer ``name`` (``seed`` included)."""
    params = list(inspect.signature(get(name)).parameters.values())[2:]
    return {**{p.name: p.default for p in params}, "seed": None}


def initialize(spec, shape, rng):
    """Draw weights for ``spec`` = ``{"type": name, **params}``.

    A ``seed`` in the spec gives the initializer its own generator, as in Keras.
    """
    params = {k: v for k, v in spec.items() if k != "type"}
    seed = params.pop("seed", None)
    if seed is not None:
        rng = np.random.default_rng(seed)
    return get(spec["type"])(tuple(shape), rng, **params)


def keras_config(spec):
    """The Keras serialization of an initializer spec."""
    config = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] in ("zeros", "ones", "constant"):
        config.pop("seed", None)  # Keras's constant initializers take no seed
    else:
        config.setdefault("seed", None)
    return {"module": "keras.initializers", "class_name": KERAS_CLASS_NAMES[spec["type"]],
            "config": config, "registered_name": None}
