"""The data a training run sees: loaded, checked against the model, split, and in the
model's input shape.

``prepare_data`` is the one way to get it, for ``mlp train`` and the benchmarks alike.
"""

from dataclasses import dataclass

import numpy as np

from mlpcli import config as config_mod
from mlpcli.data import kfold_split, load_dataset, stratified_split
from mlpcli.data.features import Features
from mlpcli.errors import DataError


@dataclass
class TrainingData:
    """(features, targets) pairs (features as ``Features``: scaled a batch at a time, in the
    model's input_shape; val and test are (None, None) when there are none) and what the
    model file's input pipeline needs to know about them."""

    train: tuple
    val: tuple
    test: tuple
    feature_shape: tuple  # one sample's shape as stored, before the model's input_shape
    preprocessing: dict
    class_names: list | None
    table: object  # a table's TableEncoding (how its cells become features), else None
    train_weights: np.ndarray | None = None  # float32 (n,): each training sample's weight in the loss


def prepare_data(cfg, model, split_rng, progress=None):
    """The training, validation and test data of a resolved config for ``model``, or a
    ``DataError``/``ConfigError`` saying why the data does not fit it. ``split_rng``: the
    stream that draws the validation split; ``progress``: told about downloads."""
    # features stay as stored (uint8 for images) and are scaled a batch at a time, to keep memory low
    data = load_dataset(cfg["data"], task=cfg["task"], progress=progress, scale=False)
    # labels are checked against the model's classes before the split, which sorts them
    _check_classes(data.class_names, model, cfg)
    for y, part in ((data.y_train, "training"), (data.y_val, "validation"), (data.y_test, "test")):
        _check_targets(y, model, cfg, part)
    x_train, y_train, w_train, x_val, y_val = _split(cfg, data, split_rng)
    feature_shape = x_train[0].shape[1:]
    x_train, x_val, x_test = (_fit_input(x, model, data.preprocessing, part) for x, part in
                              ((x_train, "training"), (x_val, "validation"), ((data.x_test, None), "test")))
    return TrainingData((x_train, y_train), (x_val, y_val), (x_test, data.y_test), feature_shape,
                        data.preprocessing, data.class_names, data.table,
                        _weights(cfg["training"]["class_weight"], y_train, w_train, data.class_names, model))


def sample_weights(class_weight, labels, class_names, model):
    """Each training sample's weight from ``training.class_weight`` (None: none is set).

    ``balanced`` gives class k ``n_samples / (n_classes * count_k)``, scikit-learn's and Keras's
    meaning (n_classes: the classes that occur); a mapping names classes by name or index, a
    class it leaves out weighs 1."""
    if class_weight is None:
        return None
    n_classes = 2 if model.n_outputs == 1 else model.n_outputs
    if class_weight == "balanced":
        counts = np.bincount(labels, minlength=n_classes)
        per_class = np.where(counts > 0, len(labels) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 1.0)
    else:
        per_class = np.ones(n_classes)
        for key, weight in class_weight.items():
            per_class[_class_index(key, class_names, n_classes)] = weight
    return per_class.astype(np.float32)[labels]


def _class_index(key, class_names, n_classes):
    if class_names and str(key) in map(str, class_names):
        return [str(name) for name in class_names].index(str(key))
    index = int(key) if isinstance(key, str) and key.isdigit() else key  # "1" is class 1 of unnamed classes
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < n_classes:
        return index
    allowed = (", ".join(map(str, class_names[:10])) + (", ..." if len(class_names) > 10 else "")
               if class_names else f"indices 0..{n_classes - 1}")
    raise config_mod.ConfigError(f"training.class_weight.{key}: no such class; the classes are {allowed}")


def _split(cfg, data, rng):
    """Training data (features, targets, sample weights or None) and validation data:
    explicit validation data, or a stratified split, or one fold of cross-validation.
    Features are (array, rows): the rows of the array that are the part (None: all of
    them), so that a split copies no features (they may be mapped from a file)."""
    if cfg["training"]["folds"]:
        return _fold(cfg["training"], data, rng)
    if data.x_val is not None:
        return (data.x_train, None), data.y_train, data.w_train, (data.x_val, None), data.y_val
    fraction = cfg["data"]["validation_split"]
    if not fraction:
        return (data.x_train, None), data.y_train, data.w_train, (None, None), None
    train_idx, val_idx = stratified_split(data.y_train, fraction, rng)
    w_train = None if data.w_train is None else data.w_train[train_idx]
    return ((data.x_train, train_idx), data.y_train[train_idx], w_train, (data.x_train, val_idx),
            data.y_train[val_idx])


def fold_indices(training, y, rng):
    """(training indices, validation indices) of fold ``training.fold`` of ``training.folds``
    over the samples labelled ``y``; a ConfigError when there are too few for that many folds."""
    folds = training["folds"]
    try:
        parts = kfold_split(y, folds, rng)
    except ValueError as exc:
        most = _most_folds(y)
        allowed = f"allowed: 2 to {most}" if most >= 2 else "too few samples for cross-validation; give more data"
        raise config_mod.ConfigError(f"training.folds: got {folds}, but {exc}; {allowed}") from None
    held_out = training["fold"] - 1
    return np.sort(np.concatenate([p for i, p in enumerate(parts) if i != held_out])), parts[held_out]


def _most_folds(y):
    return int(np.unique(y, return_counts=True)[1].min()) if np.asarray(y).dtype.kind in "biu" else len(y)


def _fold(training, data, rng):
    """Cross-validation folds the training data and the validation data together (what the run would
    otherwise train and validate on; the test data stays out; joining them copies the features)
    and holds out fold ``training.fold``."""
    x, y, weights = data.x_train, data.y_train, data.w_train
    if data.x_val is not None:
        x, y = np.concatenate([x, data.x_val]), np.concatenate([y, data.y_val])
        if weights is not None:  # the data gives weights for training rows only: the validation rows weigh 1
            weights = np.concatenate([weights, np.ones(len(data.y_val), np.float32)])
    if training["fold"] is None:
        raise config_mod.ConfigError("training.fold: a run of one fold needs it (mlp train sets it for each fold)")
    train_idx, val_idx = fold_indices(training, y, rng)
    return ((x, train_idx), y[train_idx], None if weights is None else weights[train_idx], (x, val_idx),
            y[val_idx])


def _weights(class_weight, labels, given, class_names, model):
    """Each training sample's weight in the loss: the data's own (``w_train``, a weight column)
    times its class's weight (as Keras 2 did; Keras 3 refuses the two together); None when neither is set."""
    by_class = sample_weights(class_weight, labels, class_names, model)
    if by_class is None or given is None:
        return given if by_class is None else by_class
    return given * by_class


def _fit_input(x_rows, model, preprocessing, part):
    """The features (array, rows: see ``_split``) as the model sees them (scaled a batch at
    a time, in the model's input_shape), or an explanation of why they do not fit."""
    x, rows = x_rows
    if x is None:
        return None
    if len(x) == 0 or (rows is not None and len(rows) == 0):
        raise DataError(f"the {part} data is empty")
    want = model.input_shape
    if int(np.prod(x.shape[1:])) != int(np.prod(want)):
        raise DataError(f"the {part} data has samples of shape {tuple(x.shape[1:])} "
                        f"({int(np.prod(x.shape[1:]))} values) but model.input_shape is "
                        f"{list(want)}; set model.input_shape to match the data")
    return Features(x, preprocessing, want, rows)


def _check_classes(class_names, model, cfg):
    """A dataset that names its classes (string labels, image folders, MNIST) needs one output
    per class, or one sigmoid output for two: an extra output is a class that never occurs,
    which predict would still offer."""
    if cfg["task"] != "classification" or not class_names:
        return
    outputs, count = model.n_outputs, len(class_names)
    if outputs == count or (outputs == 1 and count == 2):
        return
    shown = ", ".join(map(str, class_names[:6])) + (", ..." if count > 6 else "")
    key = f"model.layers[{config_mod.last_dense_index(cfg['model']['layers'])}].units"
    raise config_mod.ConfigError(f"{key}: the data has {count} classes ({shown}) but the output layer has "
                                 f"{outputs} unit(s); set it to {count}"
                                 + (" (or 1 with a sigmoid and binary_crossentropy)" if count == 2 else ""))


def _check_targets(y, model, cfg, part):
    if y is None:
        return
    outputs = model.n_outputs
    if cfg["task"] == "classification":
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"the {part} labels are not class indices; for numeric targets set task: regression")
        n_classes = 2 if outputs == 1 else outputs
        if y.min() < 0 or y.max() >= n_classes:
            raise DataError(f"the {part} labels range over {int(y.min())}..{int(y.max())} but the model "
                            f"has {outputs} output(s), i.e. {n_classes} classes; make the last dense "
                            f"layer's units match the number of classes")
    else:
        width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        if width != outputs:
            raise DataError(f"the {part} targets have {width} value(s) per sample but the model has "
                            f"{outputs} output(s)")


