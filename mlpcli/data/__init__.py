"""Datasets: load the ``data:`` section of a config into scaled float32 arrays.

``load_dataset`` is the entry point; ``apply_preprocessing`` repeats the
training-time scaling on new inputs (for predict). The loaders of each kind of
dataset are imported when one is loaded, so a command that only reads one of
this package's modules (``mlp predict``: ``npy``) starts without them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.data.features import preprocessing_arrays, scale_into
from mlpcli.data.mapped import row_blocks
from mlpcli.data.raw import RawData
from mlpcli.data.split import kfold_split, stratified_split
from mlpcli.data.table_encoding import TableEncoding, TableSettings
from mlpcli.errors import ConfigError, DataError
from mlpcli.images import COLOR_MODES

__all__ = [
    "COLOR_MODES",
    "DATASETS",
    "SCALINGS",
    "TASKS",
    "Dataset",
    "apply_preprocessing",
    "fit_preprocessing",
    "kfold_split",
    "load_dataset",
    "load_raw",
    "stratified_split",
]

DATASETS = ("mnist", "fashion_mnist", "npz", "npy", "csv", "image_folder")
SCALINGS = ("unit", "none", "standardize")
TASKS = ("classification", "regression")

# Image pixels are 0..255, so "unit" maps them to [0, 1]; tabular data is
# left as is unless the config asks otherwise.
DEFAULT_SCALING = {
    "mnist": "unit",
    "fashion_mnist": "unit",
    "image_folder": "unit",
    "npz": "none",
    "npy": "none",
    "csv": "none",
}



def holds_pixels(dataset):
    """Whether ``dataset``'s features are image pixels (0-255, scaled to [0, 1] by default)."""
    return DEFAULT_SCALING[dataset] == "unit"


_CHUNK_ROWS = 4096


@dataclass
class Dataset:
    """Scaled arrays ready for training; val/test are None when not given."""

    x_train: np.ndarray  # float32 (n, *feature_shape), already scaled
    y_train: np.ndarray  # int64 (n,) class indices, or float32 (n, k) targets for regression
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str] | None
    preprocessing: dict  # {"scale", "offset"}: x_model = x_raw * scale + offset (numbers or per-feature lists)
    name: str  # e.g. "mnist"
    table: TableEncoding | None = None  # how a table's cells become features
    w_train: np.ndarray | None = None  # float32 (n,): each training sample's weight, when the data gives them


def _float32_blocks(x: np.ndarray):
    """Yield x (n, ...) as float32 (rows, features) blocks, so no full-size copy is made."""
    for block in row_blocks(x.reshape(len(x), -1), _CHUNK_ROWS):
        yield block.astype(np.float32)


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of x (n, ...) as float64 (features,), summed over float32 blocks."""
    mean = sum(b.sum(axis=0, dtype=np.float64) for b in _float32_blocks(x)) / len(x)
    # Two passes (mean, then squared deviations) avoid the cancellation of E[x^2] - E[x]^2.
    # The shift is the float32-rounded mean; the last term corrects for that rounding.
    shift = mean.astype(np.float32)
    squares = sum(np.square(b - shift).sum(axis=0, dtype=np.float64) for b in _float32_blocks(x))
    return mean, np.sqrt(np.maximum(squares / len(x) - np.square(mean - shift), 0.0))


def fit_preprocessing(x_train: np.ndarray, scaling: str) -> dict:
    """The {"scale", "offset"} that ``scaling`` gives for training features x_train (n, ...).

    "unit" and "none" need no data (``x_train`` may be None).

    "standardize" is per feature: scale and offset are nested lists of the
    feature shape; a feature that never varies is only centred.
    """
    if scaling == "unit":
        return {"scale": 1.0 / 255.0, "offset": 0.0}
    if scaling == "none":
        return {"scale": 1.0, "offset": 0.0}
    mean, std = _mean_std(x_train)
    if not np.all(np.isfinite(std)):
        raise DataError("scaling 'standardize': the training features hold NaN or infinite values")
    std[std == 0.0] = 1.0
    shape = x_train.shape[1:]
    return {"scale": (1.0 / std).reshape(shape).tolist(), "offset": (-mean / std).reshape(shape).tolist()}


def apply_preprocessing(x_raw, preprocessing: dict) -> np.ndarray:
    """x_raw (n, ...) numeric -> float32 (n, ...) = x_raw * scale + offset, computed in float32.

    scale and offset are numbers, or arrays of the feature shape (per-feature standardization).
    """
    scale, offset = preprocessing_arrays(preprocessing)
    try:
        x = np.array(x_raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"input features are not numeric: {e}") from None
    if scale.ndim and scale.shape != x.shape[1:]:
        raise DataError(f"the features have shape {x.shape[1:]}, the preprocessing expects {scale.shape}")
    return scale_into(x, x, scale, offset)


def _column_preprocessing(x_train, scaling, table: TableEncoding) -> dict:
    """Per-feature {"scale", "offset"} of a table whose ``scaling`` is a mapping ``{default,
    columns: {column: scaling}}``, or whose one-hot features are never scaled."""
    if isinstance(scaling, str):
        scaling = {"default": scaling, "columns": {}}
    unknown = [c for c in scaling["columns"] if c not in table.columns]
    if unknown:
        raise ConfigError(f"data.scaling.columns: {unknown[0]!r} is not a feature column; the feature "
                          f"columns are: {', '.join(table.columns[:20])}")
    names = [scaling["columns"].get(c, scaling["default"]) if c not in table.categories else
             None for c in table.columns for _ in table.categories.get(c, (None,))]
    scale, offset = np.ones(len(names)), np.zeros(len(names))
    standard = fit_preprocessing(x_train, "standardize") if "standardize" in names else None
    for k, name in enumerate(names):
        if name == "unit":
            scale[k] = 1.0 / 255.0
        elif name == "standardize":
            scale[k], offset[k] = standard["scale"][k], standard["offset"][k]
    return {"scale": scale.tolist(), "offset": offset.tolist()}


def _path(data_cfg: dict, key: str, kind: str, required: bool) -> Path | None:
    value = data_cfg.get(key)
    if value is None:
        if required:
            raise ConfigError(f"data.{key}: required for dataset {kind!r}")
        return None
    return Path(value).expanduser()


def _max_rows(data_cfg: dict, key: str) -> int | None:
    value = data_cfg.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"data.{key}: must be a positive integer, got {value!r}")
    return value


def _load_raw(
    kind: str, data_cfg: dict, task: str, progress: Callable[[str], None] | None,
    table: TableEncoding | None = None,
) -> tuple[RawData, str]:
    """Read the configured files: the unscaled data and a name for it."""
    from mlpcli.data.builtin import BUILTINS, load_builtin
    from mlpcli.data.image_folder import load_image_folder
    from mlpcli.data.npz import load_npz
    from mlpcli.data.tabular import load_csv

    if task == "regression" and kind not in ("csv", "npz", "npy"):
        raise ConfigError(
            f"data.dataset: {kind!r} has class labels; task regression needs a csv, npz or npy dataset"
        )
    if kind in BUILTINS:
        return load_builtin(kind, progress), kind
    path = _path(data_cfg, "path", kind, required=True)
    others = {
        "test_path": _path(data_cfg, "test_path", kind, required=False),
        "validation_path": _path(data_cfg, "validation_path", kind, required=False),
    }
    if kind in ("npz", "npy"):
        return load_npz(path, task=task, folder=kind == "npy"), path.name
    if kind == "csv":
        label_column = data_cfg.get("label_column") or "label"
        return load_csv(path, label_column, task=task, settings=TableSettings.of(data_cfg), warn=progress,
                        encoding=table, **others), path.name
    color_mode = data_cfg.get("color_mode") or "grayscale"
    if color_mode not in COLOR_MODES:
        raise ConfigError(
            f"data.color_mode: must be one of {', '.join(COLOR_MODES)}, got {color_mode!r}"
        )
    return load_image_folder(path, color_mode=color_mode, **others), path.name


def load_raw(
    data_cfg: dict,
    *,
    task: str = "classification",
    progress: Callable[[str], None] | None = None,
    table: TableEncoding | None = None,
) -> tuple[RawData, str]:
    """The unscaled, checked arrays of the configured dataset and a name for it; a csv
    dataset's cells encoded by ``table`` (a model's) when given, else as fitted on its
    training file."""
    kind = data_cfg.get("dataset")
    if kind not in DATASETS:
        raise ConfigError(f"data.dataset: must be one of {', '.join(DATASETS)}, got {kind!r}")
    raw, name = _load_raw(kind, data_cfg, task, progress, table)
    raw.check(name)
    return raw, name


def load_dataset(
    data_cfg: dict,
    *,
    task: str = "classification",
    progress: Callable[[str], None] | None = None,
    scale: bool = True,
) -> Dataset:
    """Load, truncate and scale the dataset that a config's ``data:`` section describes.

    Features keep their natural shape (mnist: (n, 28, 28)); the caller
    reshapes them for the model. ``progress`` receives one-line messages
    about downloads. ``validation_split`` is left to the caller (see
    ``stratified_split``). With ``scale=False`` the features stay as stored
    (MNIST: uint8, a quarter of float32's memory) and the caller applies
    ``apply_preprocessing(x, dataset.preprocessing)`` to the parts it uses.
    """
    kind = data_cfg.get("dataset")
    if kind not in DATASETS:
        raise ConfigError(f"data.dataset: must be one of {', '.join(DATASETS)}, got {kind!r}")
    if task not in TASKS:
        raise ConfigError(f"task: must be one of {', '.join(TASKS)}, got {task!r}")
    scaling = data_cfg.get("scaling") or DEFAULT_SCALING[kind]
    if isinstance(scaling, dict) and kind != "csv":
        raise ConfigError(f"data.scaling: a scaling per column is for dataset 'csv', not {kind!r}")
    if not isinstance(scaling, dict) and scaling not in SCALINGS:
        raise ConfigError(f"data.scaling: must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    max_train = _max_rows(data_cfg, "max_train_samples")
    max_test = _max_rows(data_cfg, "max_test_samples")

    raw, name = load_raw(data_cfg, task=task, progress=progress)
    x_train, y_train = raw.x_train[:max_train], raw.y_train[:max_train]
    table = raw.table
    if table is not None and (table.categories or isinstance(scaling, dict)):
        preprocessing = _column_preprocessing(x_train, scaling, table)
    else:
        preprocessing = fit_preprocessing(x_train, scaling)

    def scaled(x):
        if x is None or not scale:
            return x
        return apply_preprocessing(x, preprocessing)

    return Dataset(
        x_train=scaled(x_train),
        y_train=y_train,
        x_val=scaled(raw.x_val),
        y_val=raw.y_val,
        x_test=scaled(None if raw.x_test is None else raw.x_test[:max_test]),
        y_test=None if raw.y_test is None else raw.y_test[:max_test],
        class_names=raw.class_names,
        preprocessing=preprocessing,
        name=name,
        table=raw.table,
        w_train=None if raw.w_train is None else raw.w_train[:max_train],
    )
