"""Weight and activity penalties: l1, l2 and l1_l2 (elastic net).

A regularizer spec is ``{"l1": a, "l2": b}`` (either may be 0). ``penalty``
gives the scalar added to the loss, ``penalty_grad`` its gradient with respect
to the same array (any shape, float32).
"""

import numpy as np

from mlpcli.nn.spec import SAME, Component, Param, Registry, number


def penalty(spec, w):
    """l1 * sum(|w|) + l2 * sum(w**2), as Keras's L1L2."""
    total = 0.0
    if spec.get("l1"):
        total += spec["l1"] * float(np.abs(w).sum())
    if spec.get("l2"):
        total += spec["l2"] * float(np.square(w).sum())
    return total


def penalty_grad(spec, w):
    """d penalty / d w = l1 * sign(w) + 2 * l2 * w; same shape as ``w``."""
    grad = np.zeros_like(w)
    if spec.get("l1"):
        grad += np.float32(spec["l1"]) * np.sign(w)
    if spec.get("l2"):
        grad += np.float32(2.0 * spec["l2"]) * w
    return grad


def _strength(name, default, in_keras=True):
    return Param(name, default, number(0), f"the {name.upper()} factor", keras=SAME if in_keras else None)


# Keras's classes and defaults: L1(0.01), L2(0.01), L1L2(0, 0); each takes the other factor too
REGULARIZERS = Registry("regularizer", [
    Component("l1", "l1·Σ|w|", (_strength("l1", 0.01), _strength("l2", 0.0, False)), keras="L1"),
    Component("l2", "l2·Σw²", (_strength("l1", 0.0, False), _strength("l2", 0.01)), keras="L2"),
    Component("l1_l2", "l1·Σ|w| + l2·Σw² (elastic net)", (_strength("l1", 0.0), _strength("l2", 0.0)),
              keras="L1L2"),
])
# what a resolved spec {l1: a, l2: b} is written as, and what a mapping without `type` means
GENERAL = REGULARIZERS.spec("l1_l2")


def get(name):
    """The spec ``{l1: a, l2: b}`` regularizer ``name`` stands for by default."""
    return REGULARIZERS.spec(name).defaults()


def keras_config(spec):
    """The Keras serialization (always L1L2, which covers all three)."""
    return {"module": "keras.regularizers", "class_name": GENERAL.keras,
            "config": {k: float(v) for k, v in GENERAL.to_keras(spec).items()}, "registered_name": None}
