"""Label encoding shared by the file loaders: class indices, class names, targets."""

import numpy as np

from mlpcli.errors import DataError


def class_indices(y: np.ndarray, where: str) -> np.ndarray:
    """Numeric class labels (n,) -> int64 (n,) class indices.

    Integral floats are accepted because labels are often saved as floats.
    ``where`` names the array in errors (e.g. "data.npz: y_train").
    """
    if y.ndim != 1:
        raise DataError(f"{where}: class labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: class labels must be whole numbers, found {y[i].item()!r} at index {i} "
                "(for real-valued targets use task: regression)"
            )
    elif y.dtype.kind not in "biu":
        raise DataError(f"{where}: class labels must be integers or strings, got dtype {y.dtype}")
    # Checked in the stored dtype, so that messages show the values as written (a uint64
    # 2**64 - 1 is not -1) and nothing beyond int64 wraps around when converted.
    if y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"{where}: class labels must be >= 0, found {y[i].item()} at index {i}")
    if y.size and y.dtype.kind in "uf" and y.max() >= 2**63:
        i = int(np.argmax(y))
        raise DataError(f"{where}: class label {y[i].item()} at index {i} is too large "
                        "(class labels are 0..n-1 for n classes)")
    return y.astype(np.int64)


def string_class_names(labels: np.ndarray) -> list[str]:
    """Sorted distinct labels of a str array (n,): the class names, index = class id."""
    return sorted(set(labels.tolist()))


def encode_strings(labels: np.ndarray, class_names: list[str]) -> np.ndarray:
    """str labels (n,) -> int64 (n,) indices into sorted ``class_names``; -1 where absent."""
    names = np.asarray(class_names, dtype=str)
    labels = np.asarray(labels, dtype=str)
    if names.size == 0:
        return np.full(labels.shape, -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(names, labels), names.size - 1)
    return np.where(names[pos] == labels, pos, -1).astype(np.int64)


def regression_targets(y: np.ndarray, where: str) -> np.ndarray:
    """Numeric targets (n,) or (n, k) -> float32 (n, k), all finite."""
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: regression targets must be numbers, got dtype {y.dtype}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise DataError(f"{where}: regression targets must be (n,) or (n, k), got shape {y.shape}")
    with np.errstate(over="ignore"):
        targets = y.astype(np.float32)
    if not np.isfinite(targets).all():
        i = int(np.argmin(np.isfinite(targets).all(axis=1)))
        raise DataError(f"{where}: non-finite target in row {i}: {y[i].tolist()}")
    return targets
