"""The input pipeline a model carries: everything between a raw input and its first layer.

``mlp train`` records it in the model file (group ``mlpcli/pipeline``: the
JSON attribute ``record`` and the float32 datasets ``scale`` and ``offset``;
never code), and every consumer (evaluate, predict, and whatever opens a
model later) reads it back through ``read``, so a raw input is prepared the
way the training data was:

- ``kind``: ``digits`` (MNIST-style handwritten digits: an image is centred
  as MNIST's were), ``image`` (images of ``feature_shape`` (H, W) or (H, W, 3)
  in ``color_mode``: decoded and, when their size differs, resized), ``table``
  (rows of the named ``columns``, in that order, with ``label_column``; from
  version 2 also ``categories``, the vocabulary of each categorical column, one-hot
  encoded in its place, and ``missing``, how each column's missing cells are filled:
  ``{"strategy", "value"}``, see ``mlpcli.data.table_encoding``) or
  ``array`` (numeric samples of ``feature_shape``);
- the scaling: its name (``unit``, ``none``, ``standardize``) and its numbers
  (``raw * scale + offset``; scalars or arrays of the feature shape);
- the task and the class names.

``version`` grows when the record changes; a reader takes every version up to
its own. Model files written before the record existed are read from their
stored config, preprocessing and class names (``from_legacy``), and a
foreign Keras file has no pipeline at all: the user says what its inputs need.
"""

import json
import math
from dataclasses import dataclass, field

import numpy as np

from mlpcli.data.table_encoding import STRATEGIES, Fill, TableEncoding
from mlpcli.errors import ModelFileError

VERSION = 2
KINDS = ("digits", "image", "table", "array")
SCALINGS = ("unit", "none", "standardize")
COLOR_MODES = ("grayscale", "rgb")
GROUP = "pipeline"  # below the model file's mlpcli group
DIGITS_SHAPE = (28, 28)
MAX_AXES = 32  # of one sample: numpy's limit on an array's axes, less the samples' own
# how many axes a sample of each kind has (an array: any number up to MAX_AXES)
AXES_OF_KIND = {"digits": (2,), "image": (2, 3), "table": (1,)}
AXES_TEXT = {"digits": f"{list(DIGITS_SHAPE)} (MNIST's digits)", "image": "[height, width] or [height, width, 3]",
             "table": "[columns]"}
# which kind of input each dataset of a config gives
KIND_OF_DATASET = {"mnist": "digits", "fashion_mnist": "image", "image_folder": "image",
                   "csv": "table", "npz": "array", "npy": "array"}


@dataclass
class InputPipeline:
    kind: str
    feature_shape: tuple  # one raw sample as the data gives it, before it is shaped for the model
    scaling: str
    scale: np.ndarray  # float32, shape () or feature_shape
    offset: np.ndarray
    task: str = "classification"
    class_names: list | None = None
    color_mode: str | None = None  # image
    columns: list | None = None  # table: the feature columns, in the model's order
    label_column: str | None = None  # table
    categories: dict = field(default_factory=dict)  # table: categorical column -> vocabulary
    fills: dict = field(default_factory=dict)  # table: column -> Fill of its missing cells
    notes: list = field(default_factory=list)  # what a reader of an older file should know

    @property
    def image_size(self):
        """(height, width) of an image or digits pipeline."""
        return tuple(self.feature_shape[:2])

    def scaling_numbers(self, scaling):
        """(scale, offset) float32 arrays of ``scaling``: this pipeline's own numbers for its own
        scaling (and for ``standardize``, which only the training data's numbers can give)."""
        if scaling == self.scaling or scaling == "standardize":
            return self.scale, self.offset
        return standard_numbers(scaling)

    @property
    def table(self):
        """How a table's cells become this model's features (None: columns not recorded)."""
        if self.columns is None:
            return None
        return TableEncoding(list(self.columns), self.categories, self.fills)

    def record(self):
        """The JSON record (the arrays go next to it)."""
        out = {"version": VERSION, "kind": self.kind, "feature_shape": list(self.feature_shape),
               "scaling": self.scaling, "task": self.task, "class_names": self.class_names}
        if self.kind == "image":
            out["color_mode"] = self.color_mode
        if self.kind == "table":
            out["columns"] = self.columns
            out["label_column"] = self.label_column
            out["categories"] = self.categories
            out["missing"] = {c: {"strategy": f.strategy, "value": f.value} for c, f in self.fills.items()}
        return out


def standard_numbers(scaling):
    """(scale, offset) of the scalings that need no data: ``unit`` (x / 255) and ``none``."""
    scale = 1.0 / 255.0 if scaling == "unit" else 1.0
    return np.asarray(scale, np.float32), np.asarray(0.0, np.float32)


def from_training(cfg, preprocessing, class_names, feature_shape, table=None):
    """The pipeline of a model trained with config ``cfg`` on data whose samples have
    ``feature_shape``, scaled by ``preprocessing`` ({"scale", "offset"}); ``table``: the
    TableEncoding of a table's cells."""
    data = cfg["data"]
    kind = KIND_OF_DATASET[data["dataset"]]
    scaling = data["scaling"]["default"] if isinstance(data["scaling"], dict) else data["scaling"]
    columns = table.columns if kind == "table" and table is not None else None
    pipeline = InputPipeline(
        kind=kind, feature_shape=tuple(int(d) for d in feature_shape), scaling=scaling,
        scale=np.asarray(preprocessing["scale"], np.float32), offset=np.asarray(preprocessing["offset"], np.float32),
        task=cfg["task"], class_names=list(class_names) if class_names else None,
        color_mode=(data.get("color_mode") or "grayscale") if kind == "image" else None,
        columns=list(columns) if kind == "table" and columns else None,
        label_column=(data.get("label_column") or "label") if kind == "table" else None,
        categories=dict(table.categories) if columns else {}, fills=dict(table.fills) if columns else {})
    # read back by the readers' own rules, so that no run writes a record it cannot read
    return read(json.loads(json.dumps(pipeline.record())), pipeline.scale, pipeline.offset,
                data.get("path") or data["dataset"])


def write(group, pipeline):
    """Store ``pipeline`` in the h5py group ``group`` (the model file's mlpcli group)."""
    own = group.create_group(GROUP)
    own.attrs["record"] = json.dumps(pipeline.record())
    own.create_dataset("scale", data=np.asarray(pipeline.scale, np.float32))
    own.create_dataset("offset", data=np.asarray(pipeline.offset, np.float32))


def as_json(pipeline):
    """``pipeline`` as one JSON object: the record, and ``scale`` and ``offset`` as (nested)
    lists of numbers; each float32 value is written as the float64 it is, so it reads back exact."""
    return {"record": pipeline.record(), "scale": np.asarray(pipeline.scale, np.float32).tolist(),
            "offset": np.asarray(pipeline.offset, np.float32).tolist()}


def from_json(value, path):
    """The pipeline of an ``as_json`` object (parsed JSON), checked as ``read`` checks one."""
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: the input pipeline is not a JSON object")
    arrays = {}
    for key in ("scale", "offset"):
        try:
            arrays[key] = None if value.get(key) is None else np.asarray(value[key], np.float64)
        except (TypeError, ValueError, OverflowError):
            raise ModelFileError(f"{path}: the input pipeline's {key} is not a number or nested "
                                 "lists of numbers") from None
    return read(value.get("record"), arrays["scale"], arrays["offset"], path)


def read(record, scale, offset, path):
    """The pipeline of a stored ``record`` (parsed JSON) and its ``scale``/``offset`` arrays;
    ``ModelFileError`` naming ``path`` for anything that does not hold together."""
    def bad(what):
        return ModelFileError(f"{path}: the input pipeline record (mlpcli/{GROUP}) {what}")

    if record is None:
        raise bad("has no 'record' attribute")
    if not isinstance(record, dict):
        raise bad("is not a JSON object")
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"has no valid version (got {version!r})")
    if version > VERSION:
        raise ModelFileError(f"{path}: written by a newer mlpcli (input pipeline record version {version}; "
                             f"this mlpcli reads up to {VERSION}); upgrade mlpcli to use it")
    kind = _choice(record, "kind", KINDS, bad)
    shape = record.get("feature_shape")
    if (not isinstance(shape, list) or not 0 < len(shape) <= MAX_AXES
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**31 for d in shape)):
        raise bad(f"has an invalid feature_shape {shape!r}")
    if len(shape) not in AXES_OF_KIND.get(kind, range(1, MAX_AXES + 1)) or (
            kind == "digits" and tuple(shape) != DIGITS_SHAPE):
        raise bad(f"has a {kind} feature_shape {shape!r}; expected {AXES_TEXT[kind]}")
    pipeline = InputPipeline(
        kind=kind, feature_shape=tuple(shape), scaling=_choice(record, "scaling", SCALINGS, bad),
        scale=_numbers(scale, shape, "scale", bad), offset=_numbers(offset, shape, "offset", bad),
        task=_choice(record, "task", ("classification", "regression"), bad),
        class_names=_strings(record.get("class_names"), "class_names", bad, nullable=True))
    if pipeline.class_names is not None:
        names = pipeline.class_names
        if pipeline.task == "regression":
            raise bad("names classes for a regression model")
        if len(set(names)) < len(names) or not all(names):
            raise bad(f"has class_names with an empty or repeated name: {names[:20]!r}")
    if kind == "image":
        pipeline.color_mode = _choice(record, "color_mode", COLOR_MODES, bad)
        if (len(shape) == 3) != (pipeline.color_mode == "rgb") or (len(shape) == 3 and shape[2] != 3):
            raise bad(f"has feature_shape {shape!r}, which does not fit color_mode {pipeline.color_mode!r}")
    if kind == "table":
        label = record.get("label_column")
        if not isinstance(label, str) or not label:
            raise bad(f"has label_column {label!r}, not a column name")
        pipeline.label_column = label
        columns = pipeline.columns = _strings(record.get("columns"), "columns", bad, nullable=True)
        if columns is not None and (len(set(columns)) < len(columns) or not all(columns) or label in columns):
            raise bad(f"has columns with an empty or repeated name, or the label column {label!r}: "
                      f"{columns[:20]!r}")
        _read_encoding(pipeline, record, bad)
        width = len(columns) if columns is not None and not pipeline.categories else \
            pipeline.table.width if columns is not None else None
        if width is not None and [width] != list(shape):
            features = f" ({width} features)" if pipeline.categories else ""
            raise bad(f"names {len(columns)} columns{features} for feature_shape {shape!r}")
    return pipeline


def _read_encoding(pipeline, record, bad):
    """A version-2 table record's ``categories`` and ``missing`` (a version-1 record has
    neither: every column is a number, and no cell may be missing)."""
    columns = pipeline.columns or []
    categories, missing = record.get("categories", {}), record.get("missing", {})
    if not isinstance(categories, dict) or not isinstance(missing, dict):
        raise bad("has categories or missing that is not a JSON object")
    for column, vocabulary in categories.items():
        _strings(vocabulary, f"categories of {column!r}", bad)
        if column not in columns or not vocabulary or len(set(vocabulary)) < len(vocabulary):
            raise bad(f"has categories for {column!r}, which is not a feature column or whose "
                      "vocabulary is empty or repeats a value")
    for column, fill in missing.items():
        if column not in columns or not isinstance(fill, dict) or fill.get("strategy") not in STRATEGIES:
            raise bad(f"has missing {fill!r} for column {column!r}; expected a feature column and "
                      f"{{'strategy': one of {', '.join(STRATEGIES)}, 'value': ...}}")
        value = fill.get("value")
        kind_ok = (value is None) if fill["strategy"] == "drop_row" else (
            isinstance(value, str) if column in categories else
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        if not kind_ok:
            raise bad(f"has a missing-cell fill {value!r} for column {column!r} that does not fit its "
                      f"strategy {fill['strategy']} and kind")
        pipeline.fills[column] = Fill(fill["strategy"], value)
    pipeline.categories = {c: list(v) for c, v in categories.items()}


def _choice(record, key, allowed, bad):
    value = record.get(key)
    if value not in allowed:
        raise bad(f"has {key} {value!r}; expected one of {', '.join(allowed)}")
    return value


def _strings(value, key, bad, nullable=False):
    if value is None and nullable:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"has {key} that is not a list of strings")
    return value


def _numbers(values, shape, key, bad):
    """float32 ``values`` (a scalar, or an array of the feature shape), all finite in float32."""
    if values is None:
        raise bad(f"has no {key} array")
    values = np.asarray(values)
    if values.shape not in ((), tuple(shape)):
        raise bad(f"has {key} of shape {values.shape}; expected () or {tuple(shape)}")
    limit = float(np.finfo(np.float32).max)
    if not (np.abs(values.astype(np.float64)) <= limit).all():  # NaN compares False
        raise bad(f"has {key} values that are not finite in float32")
    return values.astype(np.float32)


def check_fits(pipeline, input_shape, n_outputs, path):
    """Refuse (``ModelFileError`` naming ``path``) a pipeline whose samples or class names do
    not fit a model of ``input_shape`` with ``n_outputs`` outputs (one sigmoid output: 2 classes)."""
    if math.prod(pipeline.feature_shape) != math.prod(input_shape):
        raise ModelFileError(f"{path}: the input pipeline gives samples of shape {list(pipeline.feature_shape)}, "
                             f"which do not fit the model's input shape {list(input_shape)}")
    classes = max(n_outputs, 2)
    if pipeline.class_names is not None and pipeline.task == "classification" and len(pipeline.class_names) != classes:
        raise ModelFileError(f"{path}: the input pipeline names {len(pipeline.class_names)} classes, but the "
                             f"model has {n_outputs} output(s), for {classes} classes")


def from_legacy(config, preprocessing, class_names, input_shape, n_outputs, path):
    """The pipeline of a model file mlpcli wrote before it recorded one: read from the
    stored config (dataset, scaling, task, colour mode, label column), the stored
    ``preprocessing`` numbers and class names (dropped, as that mlpcli ignored them, when
    their count does not fit the model's ``n_outputs``). None when the file has no config."""
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        return None
    data = config["data"]
    dataset = data.get("dataset")
    if dataset not in KIND_OF_DATASET:
        return None
    stored = preprocessing or {}
    scale = np.asarray(stored.get("scale", 1.0), np.float32)
    offset = np.asarray(stored.get("offset", 0.0), np.float32)
    scaling = data.get("scaling") if data.get("scaling") in SCALINGS else \
        ("unit" if KIND_OF_DATASET[dataset] in ("digits", "image") else "none")
    # the data's own sample shape: a per-feature scaling has it; else the model's input shape
    feature_shape = scale.shape if scale.ndim else tuple(input_shape)
    kind = KIND_OF_DATASET[dataset]
    notes = []
    color_mode = (data.get("color_mode") or "grayscale") if kind == "image" else None
    if dataset in ("mnist", "fashion_mnist"):
        feature_shape = DIGITS_SHAPE
    elif kind == "image" and len(feature_shape) != (3 if color_mode == "rgb" else 2):
        notes.append(f"{path} was written by an older mlpcli that did not record its images' size; "
                     "it takes arrays only (.npy, .npz, .csv), not image files")
        kind = "array"
    task = config.get("task") if config.get("task") in ("classification", "regression") else "classification"
    if task == "regression" or len(class_names or ()) != max(n_outputs, 2):
        class_names = None
    if scale.ndim and scale.shape != tuple(feature_shape) or offset.ndim and offset.shape != tuple(feature_shape):
        raise ModelFileError(f"{path}: the stored preprocessing does not fit the model's input shape")
    return InputPipeline(kind=kind, feature_shape=tuple(feature_shape), scaling=scaling, scale=scale,
                         offset=offset, task=task, class_names=class_names or None,
                         color_mode=color_mode if kind == "image" else None,
                         label_column=(data.get("label_column") or "label") if kind == "table" else None,
                         notes=notes)
