"""Hold out part of the training data for validation."""

import numpy as np

from mlpcli.errors import DataError


def stratified_split(
    y: np.ndarray, fraction: float, rng: "np.random.Generator"
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


def kfold_split(y: np.ndarray, k: int, rng: "np.random.Generator") -> list[np.ndarray]:
    """Split sample indices into ``k`` disjoint folds that cover them all (int64, sorted).

    y: int (n,) class labels -> stratified: each class's members, shuffled, are dealt to the
    folds in turn, carrying on from where the previous class stopped, so every fold holds
    each class's count / k within one sample and the folds' sizes differ by at most one;
    other targets -> a plain shuffled split. The same ``rng`` state gives the same folds.
    A ``k`` above the smallest class's count (or, for other targets, above n) is a
    ``ValueError`` naming that count, for the caller to say which key asked for it.
    """
    y = np.asarray(y)
    if y.dtype.kind in "biu":
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) and k > counts.min():
            raise ValueError(f"the smallest class ({classes[counts.argmin()]}) has {counts.min()} sample(s), "
                             f"and stratified folds need one of each class in every fold")
        by_class = np.argsort(y, kind="stable")
        ends = np.cumsum(counts)
        order = np.concatenate([rng.permutation(by_class[start:end])
                                for start, end in zip((ends - counts).tolist(), ends.tolist())] or [by_class])
    else:
        if k > len(y):
            raise ValueError(f"there are {len(y)} training samples, and every fold needs one")
        order = rng.permutation(len(y))
    position = np.arange(len(order)) % k
    return [np.sort(order[position == i]).astype(np.int64) for i in range(k)]
