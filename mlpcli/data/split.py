"""Hold out part of the training data for validation."""

import numpy as np

from mlpcli.errors import DataError


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into (train_idx, val_idx), both int64 and shuffled.

    y: int (n,) class labels -> each class gives round(fraction * its count)
    samples to validation, so class proportions are kept; float (n, k) or
    (n,) targets -> a plain shuffled split of round(fraction * n).
    The same ``rng`` state always gives the same split.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    y = np.asarray(y)
    n = len(y)
    if n == 0:
        raise DataError("there are no training samples to split")
    if y.dtype.kind in "biu":
        train_parts, val_parts = [], []
        for cls in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == cls))
            n_val = int(round(fraction * len(members)))
            val_parts.append(members[:n_val])
            train_parts.append(members[n_val:])
        train_idx = rng.permutation(np.concatenate(train_parts))
        val_idx = rng.permutation(np.concatenate(val_parts))
    else:
        order = rng.permutation(n)
        n_val = int(round(fraction * n))
        train_idx, val_idx = order[n_val:], order[:n_val]
    if len(train_idx) == 0:
        raise DataError(f"validation fraction {fraction} leaves no training samples out of {n}")
    return train_idx.astype(np.int64), val_idx.astype(np.int64)
