"""Weight and activity penalties: l1, l2 and l1_l2 (elastic net).

A regularizer spec is ``{"l1": a, "l2": b}`` (either may be 0). ``penalty``
gives the scalar added to the loss, ``penalty_grad`` its gradient with respect
to the same array (any shape, float32).
"""

import numpy as np

from mlpcli.nn.registry import lookup


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


# Keras's defaults: L1(0.01), L2(0.01), L1L2(0, 0)
REGULARIZERS = {
    "l1": {"l1": 0.01, "l2": 0.0},
    "l2": {"l1": 0.0, "l2": 0.01},
    "l1_l2": {"l1": 0.0, "l2": 0.0},
}


def get(name):
    return dict(lookup(REGULARIZERS, name, "regularizer"))


def keras_config(spec):
    """The Keras serialization (always L1L2, which covers all three)."""
    return {"module": "keras.regularizers", "class_name": "L1L2",
            "config": {"l1": float(spec.get("l1", 0.0)), "l2": float(spec.get("l2", 0.0))},
            "registered_name": None}
