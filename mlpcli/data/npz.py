"""Loader for .npz archives holding x_train, y_train and optional val/test arrays."""

import zipfile
from pathlib import Path

import numpy as np

from mlpcli.data.labels import class_indices, encode_strings, regression_targets, string_class_names
from mlpcli.data.raw import RawData
from mlpcli.errors import DataError

SPLITS = ("train", "val", "test")


def _open(path: Path):
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is a single .npy array; expected an .npz archive (np.savez)")
    return archive


def _array(archive, name: str, path: Path) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(
                f"{path}: array {name!r} has object dtype, which is refused for safety; "
                "save plain numeric (or string label) arrays"
            ) from None
        raise DataError(f"{path}: array {name!r} cannot be read: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: array {name!r} cannot be read: {e}") from None


def _features(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: features must be numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise DataError(
            f"{where}: features must have shape (n, ...), got {x.shape} "
            "(for one feature per sample save x.reshape(-1, 1))"
        )
    return x


def load_npz(path, *, task: str = "classification") -> RawData:
    """Load x_train/y_train and optional x_val/y_val, x_test/y_test from an .npz.

    x arrays keep their numeric dtype and shape (n, ...). y arrays become
    int64 (n,) class indices (string labels map to sorted class names taken
    from y_train) or, for task "regression", float32 (n, k) targets.
    """
    path = Path(path)
    with _open(path) as archive:
        present = set(archive.files)
        if not {"x_train", "y_train"} <= present:
            missing = sorted({"x_train", "y_train"} - present)
            raise DataError(
                f"{path}: missing array(s) {', '.join(missing)}; the archive holds "
                f"{', '.join(sorted(present)) or 'no arrays'}"
            )
        xs, ys = {}, {}
        for split in SPLITS:
            xn, yn = f"x_{split}", f"y_{split}"
            if (xn in present) != (yn in present):
                have, lack = (xn, yn) if xn in present else (yn, xn)
                raise DataError(f"{path}: has {have} but not {lack}; give both or neither")
            if xn in present:
                xs[split] = _features(_array(archive, xn, path), f"{path}: {xn}")
                ys[split] = _array(archive, yn, path)

    class_names = None
    if task == "regression":
        ys = {s: regression_targets(y, f"{path}: y_{s}") for s, y in ys.items()}
    elif ys["train"].dtype.kind == "U":
        class_names = string_class_names(ys["train"])
        ys = {s: _encode(y, class_names, f"{path}: y_{s}") for s, y in ys.items()}
    else:
        ys = {s: class_indices(y, f"{path}: y_{s}") for s, y in ys.items()}

    return RawData.from_splits(xs, ys, class_names)


def _encode(y: np.ndarray, class_names: list[str], where: str) -> np.ndarray:
    if y.dtype.kind != "U" or y.ndim != 1:
        raise DataError(
            f"{where}: expected 1-D string labels like y_train, got dtype {y.dtype} shape {y.shape}"
        )
    codes = encode_strings(y, class_names)
    if (codes < 0).any():
        i = int(np.argmax(codes < 0))
        raise DataError(f"{where}: label {y[i].item()!r} at index {i} does not occur in y_train")
    return codes
