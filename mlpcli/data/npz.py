"""Loader for .npz archives holding x_train, y_train and optional val/test arrays, and an
optional w_train: each training sample's weight in the loss; and for folders holding the
same arrays as .npy files (``x_train.npy``, ...).

Features are mapped, not copied, where they can be (an .npy file, or an .npz member
stored without compression; see ``mlpcli.data.npy``): a data set larger than memory
trains a batch at a time from its file. Labels and weights are read into memory."""

from pathlib import Path

import numpy as np

from mlpcli.data.features import check_finite
from mlpcli.data.labels import class_indices, encode_strings, regression_targets, string_class_names
from mlpcli.data.npy import NpyFolder, NpzArchive
from mlpcli.data.raw import RawData, sample_weights
from mlpcli.errors import DataError

SPLITS = ("train", "val", "test")


def _check_features(shape: tuple, dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biuf":
        raise DataError(f"{where}: features must be numbers, got dtype {dtype}")
    if len(shape) < 2:
        raise DataError(
            f"{where}: features must have shape (n, ...), got {shape} "
            "(for one feature per sample save x.reshape(-1, 1))"
        )


def _features(x: np.ndarray, where: str) -> np.ndarray:
    _check_features(x.shape, x.dtype, where)
    if x.dtype.kind == "f":
        check_finite(x, where)
    return x


def _archive(path, folder: bool):
    return NpyFolder(path) if folder else NpzArchive(path)


def _splits(archive) -> list[str]:
    """The splits the archive holds (train first); DataError unless x_train and y_train are
    there and every x_<split> has its y_<split>."""
    present = set(archive.names)
    if not {"x_train", "y_train"} <= present:
        missing = sorted({"x_train", "y_train"} - present)
        raise DataError(
            f"{archive.path}: missing array(s) {', '.join(missing)}; the archive holds "
            f"{', '.join(sorted(present)) or 'no arrays'}"
        )
    for split in SPLITS:
        xn, yn = f"x_{split}", f"y_{split}"
        if (xn in present) != (yn in present):
            have, lack = (xn, yn) if xn in present else (yn, xn)
            raise DataError(f"{archive.path}: has {have} but not {lack}; give both or neither")
    return [s for s in SPLITS if f"x_{s}" in present]


def feature_shape(path, folder=False) -> tuple:
    """The shape of one sample of x_train in the .npz (``folder``: the folder of .npy files)
    at ``path``, from the array's header alone: nothing is decompressed."""
    path = Path(path)
    with _archive(path, folder) as archive:
        _splits(archive)
        header = archive.header("x_train")
    _check_features(header.shape, header.dtype, f"{path}: x_train")
    return header.shape[1:]


def load_npz(path, *, task: str = "classification", folder: bool = False) -> RawData:
    """Load x_train/y_train and optional x_val/y_val, x_test/y_test from an .npz (``folder``:
    from the .npy files of the folder ``path``).

    x arrays keep their numeric dtype and shape (n, ...). y arrays become
    int64 (n,) class indices (string labels map to sorted class names taken
    from y_train) or, for task "regression", float32 (n, k) targets.
    """
    path = Path(path)
    with _archive(path, folder) as archive:
        splits = _splits(archive)
        weighted = "w_train" in archive.names
        arrays = archive.read([f"{xy}_{s}" for s in splits for xy in "xy"] + ["w_train"] * weighted,
                              mapped={f"x_{s}" for s in splits})
    xs = {s: _features(arrays[f"x_{s}"], f"{path}: x_{s}") for s in splits}
    ys = {s: arrays[f"y_{s}"] for s in splits}

    class_names = None
    if task == "regression":
        ys = {s: regression_targets(y, f"{path}: y_{s}") for s, y in ys.items()}
    elif ys["train"].dtype.kind == "U":
        class_names = string_class_names(ys["train"])
        ys = {s: _encode(y, class_names, f"{path}: y_{s}") for s, y in ys.items()}
    else:
        ys = {s: class_indices(y, f"{path}: y_{s}") for s, y in ys.items()}

    raw = RawData.from_splits(xs, ys, class_names)
    if weighted:
        raw.w_train = sample_weights(arrays["w_train"], f"{path}: w_train")
    return raw


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
