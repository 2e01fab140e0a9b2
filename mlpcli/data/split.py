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
        train_idx, val_idx = _split_classes(y, fraction, rng)
    else:
        order = rng.permutation(n)
        n_val = int(round(fraction * n))
        train_idx, val_idx = order[n_val:], order[:n_val]
    if len(train_idx) == 0:
        raise DataError(f"validation fraction {fraction} leaves no training samples out of {n}")
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def _split_classes(y, fraction, rng):
    """The stratified split of class labels ``y``, in one sort: a class's members are
    permuted in ascending index order, class by class in label order, so the ``rng``
    draws (and the split) are those of one ``y == cls`` pass per class."""
    classes, counts = np.unique(y, return_counts=True)
    by_class = np.argsort(y, kind="stable")
    ends = np.cumsum(counts)
    train_parts, val_parts = [], []
    for start, end in zip((ends - counts).tolist(), ends.tolist()):
        members = rng.permutation(by_class[start:end])
        n_val = int(round(fraction * (end - start)))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    if fraction and not any(len(part) for part in val_parts):
        largest = int(counts.max())
        raise DataError(
            f"data.validation_split {fraction} holds out round({fraction} x a class's samples) of "
            f"each class, which is none here: the {len(classes)} classes have at most {largest} "
            f"sample(s) each; raise validation_split or give validation data, or check that "
            f"the labels are class indices")
    return rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(val_parts))
