"""Config files: load YAML, apply ``--set`` overrides, fill defaults, validate.

``load_config(path, overrides)`` returns the resolved config: a plain dict in
which every key has its value (defaults filled in, shorthands such as
``optimizer: adam`` expanded), ready to be written to a run folder and read
back. Every problem is collected and raised at once as a ``ConfigError`` whose
lines name the key path, the value given and what is allowed.

The concern is split three ways: this module holds the schema (defaults,
sections, how components are resolved), ``config_check`` the value checks and
their messages, ``config_yaml`` reading, overriding and writing the text.
"""

import copy
import os
import re
from pathlib import Path

from mlpcli.config_check import MAX_THREADS, _brief, _Checker, _join, _show, check_checkpoint_filename
from mlpcli.config_data import augment_options, table_options
from mlpcli.config_resume import RESUME_CHANGEABLE, ROUNDING_KEYS, resume_changes
from mlpcli.config_yaml import apply_override, dump_yaml, read_yaml, safe_load
from mlpcli.data import DATASETS
from mlpcli.data.shape import SHAPE_FROM_FILES, infer_shape
from mlpcli.errors import ConfigError
from mlpcli.files import check_input
from mlpcli.nn import (activations, initializers, layers, losses, metrics, optimizers, regularizers,
                       schedules)
from mlpcli.nn.model import LayerShapeError, output_shapes
from mlpcli.nn.registry import unknown_name_message
from mlpcli.nn.metrics import MODES
from mlpcli.nn.spec import integer, number
from mlpcli.tracking_spec import logging_options

__all__ = ["MODES", "NAME_PATTERN", "NUMBER_KEYS", "PATH_KEYS", "SECTION_DEFAULTS", "TOP_DEFAULTS",
           "absolute_path", "absolute_paths", "apply_override", "check_monitors", "dump_yaml", "has_validation", "integer_key",
           "load_config", "monitor_names",
           "read_yaml", "resolve", "resolve_with_data", "resume_changes", "RESUME_CHANGEABLE", "ROUNDING_KEYS", "safe_load"]

TASKS = ("classification", "regression")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

SECTION_DEFAULTS = {
    "data": {"dataset": "mnist", "path": None, "test_path": None, "validation_path": None,
             "label_column": "label", "color_mode": "grayscale", "scaling": "auto",
             "validation_split": 0.2, "max_train_samples": None, "max_test_samples": None,
             "categorical": [], "missing": None, "weight_column": None},
    "model": {"name": "sequential", "input_shape": None, "layers": None},
    "training": {"epochs": 20, "batch_size": 128, "shuffle": True, "threads": None, "processes": 1,
                 "class_weight": None, "folds": None, "fold": None},
    "checkpoint": {"enabled": True, "filename": "model-{epoch:02d}.h5", "monitor": "val_loss",
                   "mode": "auto", "save_best_only": False},
    "early_stopping": {"monitor": "val_loss", "patience": 5, "min_delta": 0.0, "mode": "auto",
                       "restore_best_weights": False},
}
TOP_DEFAULTS = {"name": "mlp", "seed": 42, "task": "classification", "data": {}, "model": {},
                "loss": "categorical_crossentropy", "optimizer": "adam", "schedule": "constant",
                "metrics": ["accuracy"], "training": {}, "checkpoint": {}, "early_stopping": None,
                "sweep": None, "init_from": None, "augment": None, "logging": {}}
# the numbers of the sections (the components' are in their declarations, mlpcli.nn)
NUMBER_KEYS = {
    "seed": integer(0), "data.validation_split": number(0, 1, closed="left"),
    "data.max_train_samples": integer(1, nullable=True), "data.max_test_samples": integer(1, nullable=True),
    "training.epochs": integer(1), "training.batch_size": integer(1),
    "training.threads": integer(1, MAX_THREADS, nullable=True), "training.processes": integer(1, auto=True),
    # K-fold cross-validation (mlpcli.cross_validation): K, and which fold a fold's run trains
    "training.folds": integer(2, nullable=True), "training.fold": integer(1, nullable=True),
    "early_stopping.patience": integer(0), "early_stopping.min_delta": number(0),
}
PATH_KEYS = ("path", "test_path", "validation_path")

def load_config(path, overrides=(), note=None):
    """Read the YAML file at ``path``, apply ``KEY=VALUE`` overrides, resolve and validate
    (a model.input_shape left out is read from the data, see ``resolve_with_data``)."""
    check_input(path)  # a folder, a FIFO, a name too long: refused at once as what they are
    raw = read_yaml(path)
    absolute_paths(raw, Path(path).resolve().parent)
    for override in overrides:
        apply_override(raw, override)
    absolute_paths(raw, Path.cwd())  # paths given with --set are relative to the current folder
    return resolve_with_data(raw, note)


def absolute_paths(raw, base):
    """Make the data files' paths (and init_from's) of a raw config absolute (``~`` expanded, a relative one taken
    from the folder ``base``), so a run's config.yaml names the same files from any folder."""
    if isinstance(raw.get("init_from"), str):
        raw["init_from"] = absolute_path(raw["init_from"], base)
    data = raw.get("data")
    if isinstance(data, dict):
        for key in PATH_KEYS:
            if isinstance(data.get(key), str):
                data[key] = absolute_path(data[key], base)


def absolute_path(path, base="."):
    """``path`` made absolute: ``~`` expanded, a relative one taken from the folder ``base``."""
    return str((Path(base) / os.path.expanduser(path)).resolve())


def resolve_with_data(raw, note=None):
    """``resolve(raw)``, with a model.input_shape left out read from the data's files (only
    their headers, see ``mlpcli.data.shape``) and the layers checked against it: what a run
    trains with. ``note`` is told the shape and where it was read."""
    cfg = resolve(raw)
    model = cfg["model"]
    if model["input_shape"] is not None:
        return cfg
    inferred = infer_shape(cfg["data"])
    model["input_shape"] = inferred.shape
    check = _Checker()
    origin = f"model.input_shape {inferred.shape} was inferred from {inferred.path}"
    _check_loss_fits(check, cfg, _check_layer_stack(check, model, origin))
    if check.problems:
        raise ConfigError(check.problems)
    if note is not None:
        note(f"model.input_shape: {inferred.shape} (inferred from {inferred.source}: {inferred.how})")
    return cfg


def _regularizer(check, path, value):
    """``l2`` | ``{l2: 1e-4}`` | ``{type: l1_l2, l1: .., l2: ..}`` -> ``{l1: a, l2: b}``."""
    if value is None:
        return None
    if isinstance(value, dict) and "type" not in value:
        value = {"type": regularizers.GENERAL.name, **value}
    spec = check.component(path, value, regularizers.REGULARIZERS)
    if spec is not None:
        spec.pop("type")
    return spec


def _initializer(check, path, value):
    spec = check.component(path, value, initializers.INITIALIZERS)
    low, high = (spec or {}).get("minval"), (spec or {}).get("maxval")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) and low > high:
        check.error(_join(path, "minval"), f"must be at most maxval ({_brief(high)}), got {_brief(low)}")
    return spec


def _layer(check, path, value):
    if not isinstance(value, dict) or "type" not in value:
        check.error(path, f"must be a mapping with 'type' (one of {', '.join(sorted(layers.LAYERS))}),"
                          f" got {_show(value)}")
        return None
    nested = {"activation": lambda p, v: check.choice(p, "linear" if v is None else v, activations.ACTIVATIONS,
                                                      "activation"),
              "initializer": lambda p, v: _initializer(check, p, v),
              "regularizer": lambda p, v: _regularizer(check, p, v)}
    spec = check.component(path, value, layers.LAYERS, nested, extra={"name": None})
    if spec is not None and spec["name"] is not None and (not isinstance(spec["name"], str)
                                                          or not NAME_PATTERN.match(spec["name"])):
        check.error(_join(path, "name"), f"must be letters, digits, '.', '_' or '-', got {_show(spec['name'])}")
    return spec


def _check_layer_stack(check, model, shape_origin=None):
    """The layers fit together (shapes, names) and have weights to train; returns the number of
    outputs, or None when they do not fit or the input shape is yet to be read from the data.
    ``shape_origin`` says where model.input_shape came from, when not from the config."""
    specs = model["layers"]
    seen = {}
    for i, spec in enumerate(specs):
        if spec["name"] is not None and spec["name"] in seen:
            check.error(f"model.layers[{i}].name", f"{spec['name']!r} is already the name of "
                                                   f"model.layers[{seen[spec['name']]}]; layer names must differ")
        seen.setdefault(spec["name"], i)
    if not any(spec["type"] == "dense" for spec in specs):
        check.error("model.layers", "needs a dense layer (the weights training learns), got only "
                                    f"{', '.join(spec['type'] for spec in specs)}")
        return None
    if not any(layers.TRAINABLE in layers.LAYERS.spec(spec["type"]).params and spec["trainable"]
               for spec in specs):
        check.error("model.layers", "every layer with weights has trainable: false, so training would "
                                    "change nothing; let at least one train")
        return None
    model_shape = model["input_shape"]
    if model_shape is None:
        return None
    try:
        shapes = output_shapes([layers.from_config(spec) for spec in specs], model_shape)
    except LayerShapeError as exc:
        check.error(f"model.layers[{exc.index}]",
                    f"{exc.message} ({shape_origin or f'model.input_shape is {model_shape}'})")
        return None
    return shapes[-1][0]


def _check_class_weight(check, value, task):
    """``null``, ``balanced`` or {class name or index: weight >= 0}; which classes exist is
    known only with the data (``training_data.sample_weights``)."""
    if value is None:
        return
    if task != "classification":
        check.error("training.class_weight", f"needs task: classification, got {_show(value)}")
    elif isinstance(value, dict) and value:
        for key, weight in value.items():
            check.number(f"training.class_weight.{key}", weight, number(0))
    elif value != "balanced":
        check.error("training.class_weight", "must be balanced, null or a mapping {class name or index: "
                    f"weight}}, got {_show(value)}")


def _check_fold(check, training):
    """training.fold names one of the training.folds folds (the one a fold's run validates on)."""
    folds, fold = training["folds"], training["fold"]
    if fold is None:
        return
    if not isinstance(folds, int) or isinstance(folds, bool):
        check.error("training.fold", f"got {_show(fold)}, but is for a run of cross-validation; set "
                                     "training.folds (K) too")
    elif isinstance(fold, int) and not isinstance(fold, bool) and not 1 <= fold <= folds:
        check.error("training.fold", f"must be between 1 and training.folds ({_brief(folds)}), got {_brief(fold)}")


def _check_loss_fits(check, cfg, outputs):
    """The loss can compare the model's outputs with the task's targets: the classic
    mismatches of a cross-entropy and the output layer are refused with the fix."""
    loss, activation = cfg["loss"]["type"], output_activation(cfg["model"]["layers"])
    if loss == "sparse_categorical_crossentropy" and cfg["task"] != "classification":
        check.error("loss", "sparse_categorical_crossentropy compares class labels, so it needs task: "
                            "classification; for regression use mean_squared_error, mean_absolute_error or huber")
    elif loss in ("sparse_categorical_crossentropy", "categorical_crossentropy") and outputs is not None \
            and outputs < 2:
        check.error("loss", f"{loss} needs one output per class (2 or more), but the model has {outputs}; "
                            "for two classes with one sigmoid output use binary_crossentropy")
    elif loss == "binary_crossentropy" and activation == "softmax" and outputs is not None and outputs > 1:
        check.error("loss", f"binary_crossentropy on a softmax of {outputs} outputs scores each output as a "
                            "yes/no of its own, though softmax makes them compete; for one class out of "
                            f"{outputs} use categorical_crossentropy (or sparse_categorical_crossentropy), "
                            "for two classes one sigmoid output with binary_crossentropy")


def output_activation(layer_specs):
    """The activation of the model's outputs: the last dense or activation layer's
    (what follows it, e.g. dropout, passes values through at inference)."""
    for spec in reversed(layer_specs):
        if spec.get("type") in ("dense", "activation"):
            return spec.get("activation")
    return None


def last_dense_index(layer_specs):
    """The position of the output layer in ``model.layers``, for messages that name its units."""
    return max(i for i, spec in enumerate(layer_specs) if spec.get("type") == "dense")


def _metric_names(spec_list):
    return [s["type"] for s in spec_list if s]


def resolve(raw):
    """Fill defaults into a raw config mapping and validate it; raise ConfigError on problems."""
    check = _Checker()
    try:
        raw = copy.deepcopy(raw)
    except RecursionError:
        raise ConfigError("the config is nested too deeply") from None
    cfg = check.mapping("", raw, set(TOP_DEFAULTS), TOP_DEFAULTS)

    # `sweep:` is read by `mlp sweep` (mlpcli.sweep_spec); a single run carries it along unused
    if cfg["sweep"] is not None and not isinstance(cfg["sweep"], dict):
        check.error("sweep", f"must be a mapping (grid, random, ranges, ...), got {_show(cfg['sweep'])}")
    name = cfg["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        check.error("name", "must be a plain folder name (letters, digits, '.', '_', '-'; no path "
                            f"separators or '..'), got {_show(name)}")
    cfg["task"] = check.choice("task", cfg["task"], TASKS, "task")
    # the run or model file whose weights a new run starts from (mlpcli.init_from)
    check.string("init_from", cfg["init_from"], nullable=True)

    data = cfg["data"] = check.mapping("data", cfg["data"], set(SECTION_DEFAULTS["data"]),
                                       SECTION_DEFAULTS["data"])
    data["dataset"] = check.choice("data.dataset", data["dataset"], DATASETS, "dataset")
    table_options(check, data)
    augment_options(check, cfg)
    logging_options(check, cfg)
    data["color_mode"] = check.choice("data.color_mode", data["color_mode"], ("grayscale", "rgb"),
                                      "color mode")
    for key in PATH_KEYS + ("label_column",):
        data[key] = check.string(f"data.{key}", data[key], nullable=key != "label_column")
    if data["dataset"] in ("npz", "npy", "csv", "image_folder") and not data["path"]:
        check.error("data.path", f"is required for dataset '{data['dataset']}' (a file or folder)")

    model = cfg["model"] = check.mapping("model", cfg["model"], set(SECTION_DEFAULTS["model"]),
                                         SECTION_DEFAULTS["model"])
    shape = model["input_shape"]
    if shape is None and data["dataset"] in ("mnist", "fashion_mnist"):
        shape = model["input_shape"] = [784]
    from_files = data["dataset"] in SHAPE_FROM_FILES
    # left out for a dataset of files, it is read from them by resolve_with_data (resolve reads no files)
    if not (shape is None and from_files) and (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        check.error("model.input_shape", "must be a list of positive integers, e.g. [784]"
                    f"{', or null to read it from the data' if from_files else ''}, got {_show(shape)}")
    if not isinstance(model["layers"], list) or not model["layers"]:
        check.error("model.layers", f"must be a non-empty list of layers, got {_show(model['layers'])}")
        model["layers"] = []
    model["layers"] = [_layer(check, f"model.layers[{i}]", layer) for i, layer in enumerate(model["layers"])]
    check.string("model.name", model["name"])

    loss = cfg["loss"]
    cfg["loss"] = check.component("loss", loss, losses.LOSSES)
    cfg["optimizer"] = check.component("optimizer", cfg["optimizer"], optimizers.OPTIMIZERS)
    cfg["schedule"] = check.component("schedule", cfg["schedule"], schedules.SCHEDULES)
    if not isinstance(cfg["metrics"], list):
        check.error("metrics", f"must be a list of metric names, got {_show(cfg['metrics'])}")
        cfg["metrics"] = []
    cfg["metrics"] = [check.component(f"metrics[{i}]", m, metrics.METRICS) for i, m in enumerate(cfg["metrics"])]
    if cfg["task"] == "regression":
        for i, name in enumerate(_metric_names(cfg["metrics"])):
            if name in metrics.CLASSIFICATION_METRICS:
                check.error(f"metrics[{i}]", f"'{name}' needs a classification task; for regression use mse or mae")

    training = cfg["training"] = check.mapping("training", cfg["training"],
                                               set(SECTION_DEFAULTS["training"]), SECTION_DEFAULTS["training"])
    clipping = [k for k in ("clipnorm", "global_clipnorm") if isinstance(cfg["optimizer"], dict)
                and cfg["optimizer"].get(k)]
    if isinstance(training["processes"], int) and training["processes"] > 1 and clipping:
        check.error("training.processes", f"got {training['processes']}, but optimizer.{clipping[0]} needs the "
                    "whole gradient, which no one process has; use processes: 1 (or clipvalue)")
    check.boolean("training.shuffle", training["shuffle"])
    _check_fold(check, training)
    _check_class_weight(check, training["class_weight"], cfg["task"])

    ckpt = cfg["checkpoint"] = check.mapping("checkpoint", cfg["checkpoint"],
                                             set(SECTION_DEFAULTS["checkpoint"]), SECTION_DEFAULTS["checkpoint"])
    check.boolean("checkpoint.enabled", ckpt["enabled"])
    check.boolean("checkpoint.save_best_only", ckpt["save_best_only"])
    ckpt["mode"] = check.choice("checkpoint.mode", ckpt["mode"], MODES, "mode")
    check.string("checkpoint.monitor", ckpt["monitor"])
    check_checkpoint_filename(check, ckpt["filename"], training["epochs"])

    if cfg["early_stopping"] is not None:
        es = cfg["early_stopping"] = check.mapping(
            "early_stopping", cfg["early_stopping"], set(SECTION_DEFAULTS["early_stopping"]),
            SECTION_DEFAULTS["early_stopping"])
        es["mode"] = check.choice("early_stopping.mode", es["mode"], MODES, "mode")
        check.string("early_stopping.monitor", es["monitor"])
        check.boolean("early_stopping.restore_best_weights", es["restore_best_weights"])

    for key, constraint in NUMBER_KEYS.items():
        section, _, name = key.rpartition(".")
        values = cfg[section] if section else cfg
        if isinstance(values, dict):  # early_stopping: null has no numbers
            check.number(key, values[name], constraint)

    if not check.problems:
        _check_loss_fits(check, cfg, _check_layer_stack(check, model))
    if not check.problems:
        _check_monitors(check, cfg, has_validation(cfg))
    if check.problems:
        raise ConfigError(check.problems)
    return cfg


def integer_key(cfg, key):
    """Whether the config key ``key`` (``training.epochs``, ``optimizer.beta_1``,
    ``model.layers[0].units``) holds an integer, by its declaration; ``cfg`` is the resolved
    config, which says what component each section or layer is."""
    if key in NUMBER_KEYS:
        return NUMBER_KEYS[key].type == "integer"
    parent, _, name = key.rpartition(".")
    last = re.sub(r"\[[0-9]+\]$", "", parent.rpartition(".")[2])
    registry = {"optimizer": optimizers.OPTIMIZERS, "schedule": schedules.SCHEDULES, "metrics": metrics.METRICS,
                "layers": layers.LAYERS}.get(last)
    if last.endswith("_initializer"):
        registry = initializers.INITIALIZERS
    elif last.endswith("_regularizer"):
        registry = regularizers.REGULARIZERS
    spec = cfg
    for part, index in re.findall(r"([^.\[\]]+)|\[([0-9]+)\]", parent):
        try:
            spec = spec[int(index)] if index else spec[part]
        except (KeyError, IndexError, TypeError):
            return False
    if registry is None or not isinstance(spec, dict):
        return False
    component = registry.spec(spec.get("type", regularizers.GENERAL.name))
    return any(p.name == name and p.constraint.type == "integer" for p in component.params)


def monitor_names(cfg, with_validation=True):
    """Every quantity logged per epoch that can be monitored."""
    names = ["loss"] + _metric_names(cfg["metrics"])
    return names + ([f"val_{n}" for n in names] if with_validation else [])


def has_validation(cfg):
    """Whether a run of ``cfg`` has validation data (cross-validation always has: a fold)."""
    data = cfg["data"]
    return (bool(cfg["training"]["folds"]) or bool(data["validation_split"]) or bool(data["validation_path"])
            or data["dataset"] in ("npz", "npy"))


def _check_monitors(check, cfg, with_validation):
    allowed = monitor_names(cfg, with_validation)
    watchers = [("checkpoint.monitor", cfg["checkpoint"]["monitor"])]
    if cfg["early_stopping"]:
        watchers.append(("early_stopping.monitor", cfg["early_stopping"]["monitor"]))
    if cfg["schedule"] and cfg["schedule"]["type"] == "reduce_on_plateau":
        watchers.append(("schedule.monitor", cfg["schedule"]["monitor"]))
    for path, name in watchers:
        if name not in allowed:
            why = "" if with_validation or not str(name).startswith("val_") else \
                " (there is no validation data: set data.validation_split or data.validation_path)"
            check.error(path, unknown_name_message(name, allowed, "monitored quantity") + why)


def check_monitors(cfg, with_validation):
    """Raise ConfigError when a monitored quantity will not be logged (e.g. val_* without validation data)."""
    check = _Checker()
    _check_monitors(check, cfg, with_validation)
    if check.problems:
        raise ConfigError(check.problems)


# What `mlp train --resume RUN --set ...` may change: how long the run goes on and when it
# stops early (neither alters an epoch already run), and the threads and processes doing
# the work (those round differently, so the rest of the run is then not bit for bit what an
# uninterrupted run gives). Anything else (data, model, batch size, optimizer, ...) does
# not fit the saved state: the samples and batches of the epoch under way, the weights.
