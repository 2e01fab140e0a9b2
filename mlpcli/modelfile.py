"""Model files in Keras's legacy whole-model HDF5 layout.

Written: root attribute ``model_config`` (JSON of a ``Sequential`` whose first
entry is an ``InputLayer`` with ``batch_input_shape``), ``training_config``,
group ``model_weights`` (attribute ``layer_names``; per layer a group with
``weight_names`` and datasets ``<layer>/kernel:0``, ``<layer>/bias:0``) —
what ``keras.models.load_model`` reads. mlpcli's own extras (resolved config,
the input pipeline (``mlpcli.pipeline``), training state, optimizer slots) live
in the root group ``mlpcli``, which Keras ignores.

Read: any such file, also one written by Keras 2 or 3, as JSON config plus
numeric arrays and nothing else; anything else is refused with a
``ModelFileError`` before it is used. ``load`` also reads Keras 3's ``.keras``
zip (told by its first bytes), through ``mlpcli.keras_file``.
"""

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from mlpcli import __version__, keras_file
from mlpcli import pipeline as input_pipeline
from mlpcli.errors import ModelFileError
from mlpcli.files import atomic_path, open_input
from mlpcli.hdf5_checks import (
    check_global_heaps,
    first_line,
    numeric,
    refuse_outside_data,
    weight_into,
)
from mlpcli.keras_layers import layer_specs_from_keras
from mlpcli.nn.losses import keras_form
from mlpcli.nn.model import Sequential
from mlpcli.pipeline import InputPipeline

KERAS_VERSION = "2.15.0"  # the layout version we write: Keras 2's, which Keras 3 reads


@dataclass
class ModelFile:
    """What a model file holds: the model and, for mlpcli's own files, its extras."""

    model: Sequential
    loss: str | None = None
    config: dict | None = None
    pipeline: InputPipeline | None = None  # None: a foreign file, which does not say what its inputs need
    state: dict = field(default_factory=dict)
    optimizer_state: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


def save(path, model, *, loss=None, optimizer=None, metrics=(), config=None,
         pipeline=None, state=None, arrays=None):
    """Atomically write ``model`` (and the extras given) to ``path``.

    ``state`` is JSON-able training state; ``arrays`` maps names to numeric
    arrays that go with it (best weights, the epoch's shuffled order, ...).
    """
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["keras_version"] = KERAS_VERSION
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(keras_model_config(model))
        if loss and optimizer is not None:
            f.attrs["training_config"] = json.dumps(_training_config(loss, optimizer, metrics))
        weights = f.create_group("model_weights")
        weights.attrs["keras_version"] = KERAS_VERSION
        weights.attrs["backend"] = "tensorflow"
        weights.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            g = weights.create_group(layer.name)
            names = [f"{layer.name}/{w}:0" for w in layer.weight_names]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, layer.weights, strict=True):
                g.create_dataset(name, data=value)
        own = f.create_group("mlpcli")
        own.attrs["version"] = __version__
        for key, value in (("config", config), ("state", state)):
            if value is not None:
                own.attrs[key] = json.dumps(value)
        if pipeline is not None:
            input_pipeline.write(own, pipeline)
        for group, values in (("optimizer", optimizer.get_state() if optimizer else None),
                              ("arrays", arrays)):
            if values:
                g = own.create_group(group)
                for key, value in values.items():
                    g.create_dataset(key, data=value)


def keras_model_config(model):
    """The ``model_config`` JSON object of a Keras ``Sequential``."""
    input_layer = {"class_name": "InputLayer",
                   "config": {"batch_input_shape": [None, *model.input_shape], "dtype": "float32",
                              "sparse": False, "ragged": False, "name": "input_1"}}
    return {"class_name": "Sequential",
            "config": {"name": model.name,
                       "layers": [input_layer] + [layer.keras_config() for layer in model.layers]}}


def _training_config(loss, optimizer, metrics):
    keras_metrics = [m for m in metrics if m == "accuracy"]
    return {"loss": keras_form(loss), "metrics": keras_metrics, "weighted_metrics": None,
            "loss_weights": None,
            "optimizer_config": {"class_name": optimizer.spec.keras,
                                 "config": optimizer.get_config()}}


def load(path):
    """Read a model file (a Keras-layout ``.h5``, or a ``.keras`` zip: ``mlpcli.keras_file``);
    raise ``ModelFileError`` naming the file and the problem."""
    import h5py

    try:
        with open_input(path) as fh:
            if fh.read(len(keras_file.ZIP_SIGNATURE)) == keras_file.ZIP_SIGNATURE:
                model, pipeline, loss = keras_file.read(fh, path)
                return ModelFile(model=model, pipeline=pipeline, loss=loss)
            _check_global_heaps(fh, path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None
    try:
        with f:
            return _read(f, path)
    except ModelFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: damaged or not a model file ({first_line(exc)})") from None


def _check_global_heaps(fh, path):
    """``hdf5_checks.check_global_heaps`` on the file open as ``fh``."""
    import mmap

    try:
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            check_global_heaps(data, path)
    except (OSError, ValueError):  # empty (mmap refuses 0 bytes), unreadable: h5py says so
        return


def _text_attr(group, key, path):
    """The value of attribute ``key``, read only when its HDF5 type is a string type:
    libhdf5 can crash the process (not raise) when it reads a damaged non-string one."""
    from h5py import h5t

    attr = group.attrs.get_id(key)
    if attr.get_type().get_class() != h5t.STRING:
        if attr.shape and math.prod(attr.shape) == 0:  # an empty list is stored as an empty float array
            return []
        raise ModelFileError(f"{path}: attribute '{key}' is not text")
    return group.attrs[key]


def _json_attr(group, key, path, required=False):
    if key not in group.attrs:
        if required:
            raise ModelFileError(f"{path}: no '{key}' attribute; not a Keras model file")
        return None
    try:
        value = _text_attr(group, key, path)
    except ModelFileError:
        raise ModelFileError(f"{path}: attribute '{key}' is not JSON text") from None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise ModelFileError(f"{path}: attribute '{key}' is not JSON text")
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: attribute '{key}' is not valid JSON ({exc})") from None


def _string_list(group, key, path):
    """A list-of-strings attribute, also in Keras's chunked form (key0, key1, ...)."""
    if key in group.attrs:
        values = list(_text_attr(group, key, path))
    else:
        values, chunk = [], 0
        while f"{key}{chunk}" in group.attrs:
            values += list(_text_attr(group, f"{key}{chunk}", path))
            chunk += 1
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _read(f, path):
    refuse_outside_data(f, path)
    config = _json_attr(f, "model_config", path, required=True)
    specs, input_shape, name = layer_specs_from_keras(config, path)
    _check_weight_count(specs, input_shape, path)
    model = Sequential(specs, input_shape, name=name).build(None)  # its weights are read next
    if "model_weights" not in f:
        raise ModelFileError(f"{path}: no 'model_weights' group")
    _load_weights(f["model_weights"], model, path)
    training = _json_attr(f, "training_config", path)
    loss = training.get("loss") if isinstance(training, dict) else None
    out = ModelFile(model=model, loss=loss if isinstance(loss, str) else None)
    if "mlpcli" in f:
        own = f["mlpcli"]
        out.config = _typed(_json_attr(own, "config", path), dict, "config", path)
        out.pipeline = _pipeline(own, out.config, model, path)
        out.state = _typed(_json_attr(own, "state", path), dict, "state", path) or {}
        out.optimizer_state = _datasets(own, "optimizer", path)
        out.arrays = _datasets(own, "arrays", path)
    return out


def _datasets(own, group, path):
    """{relative name: numeric array} of every dataset below ``mlpcli/<group>``."""
    if group not in own:
        return {}
    items = {}
    own[group].visititems(lambda key, obj: items.__setitem__(key, obj))
    return {k: numeric(v, path, f"mlpcli/{group}/{k}", os.path.getsize(path)) for k, v in items.items()
            if not hasattr(v, "keys")}


def _pipeline(own, config, model, path):
    """The input pipeline the file records, or (a file written before mlpcli recorded one)
    the one its stored config, preprocessing and class names describe."""
    if input_pipeline.GROUP in own:
        group = own[input_pipeline.GROUP]
        if not hasattr(group, "keys"):
            raise ModelFileError(f"{path}: mlpcli/{input_pipeline.GROUP} is not a group")
        arrays = {key: numeric(group[key], path, f"mlpcli/{input_pipeline.GROUP}/{key}",
                                 os.path.getsize(path))
                  for key in ("scale", "offset") if key in group}
        pipeline = input_pipeline.read(_json_attr(group, "record", path),
                                       arrays.get("scale"), arrays.get("offset"), path)
    else:
        class_names = _typed(_json_attr(own, "class_names", path), list, "class_names", path)
        if class_names is not None and not all(isinstance(c, str) for c in class_names):
            raise ModelFileError(f"{path}: attribute 'class_names' must be a list of strings")
        pipeline = input_pipeline.from_legacy(config, _preprocessing(_json_attr(own, "preprocessing", path), path),
                                              class_names, model.input_shape, model.n_outputs, path)
    if pipeline is not None:
        input_pipeline.check_fits(pipeline, model.input_shape, model.n_outputs, path)
    return pipeline


def _preprocessing(value, path):
    """The stored ``{"scale", "offset"}`` (None when there is none): numbers or nested lists
    of them, each finite in float32, where inputs are scaled (so NaN or 1e39 would make
    every prediction NaN)."""
    value = _typed(value, dict, "preprocessing", path)
    if value is None:
        return None
    limit = float(np.finfo(np.float32).max)
    for key in ("scale", "offset"):
        where = f"{path}: attribute mlpcli/preprocessing, {key!r}"
        try:
            numbers = np.asarray(value[key], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{where}: missing, or not a number or nested lists of numbers") from None
        bad = ~(np.abs(numbers) <= limit)  # NaN compares False
        if bad.any():
            index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), numbers.shape))
            at = f" at index {index}" if index else ""
            raise ModelFileError(f"{where} holds {numbers[index].item()!r}{at}; it must be a finite "
                                 "float32 number")
    return value


def _typed(value, kind, key, path):
    """``value`` (a JSON attribute of the mlpcli group) when it is None or a ``kind``."""
    if value is not None and not isinstance(value, kind):
        raise ModelFileError(f"{path}: attribute 'mlpcli/{key}' must be a JSON "
                             f"{'object' if kind is dict else 'array'}, got {type(value).__name__}")
    return value


def _check_weight_count(specs, input_shape, path):
    """Refuse a config with more weights than the file has bytes, before building it:
    every stored weight takes at least a byte, and a small file must not make us
    allocate a huge model."""
    count = Sequential(specs, input_shape).planned_weight_count()  # a stack that does not fit: ValueError
    size = os.path.getsize(path)
    if count > size:
        raise ModelFileError(f"{path}: model_config describes more weights than the "
                             f"{size:,}-byte file can hold; damaged or not a model file")


def _load_weights(group, model, path):
    names = [n for n in _string_list(group, "layer_names", path) if _string_list(group[n], "weight_names", path)]
    dense = [layer for layer in model.layers if layer.weights]
    if len(names) != len(dense):
        raise ModelFileError(f"{path}: the config has {len(dense)} layers with weights but "
                             f"model_weights holds {len(names)}")
    for name, layer in zip(names, dense):
        g = group[name]
        weight_names = _string_list(g, "weight_names", path)
        if len(weight_names) != len(layer.weights):
            raise ModelFileError(f"{path}: layer '{name}' has {len(weight_names)} weights, "
                                 f"expected {len(layer.weights)} ({', '.join(layer.weight_names)})")
        for wname, param in zip(weight_names, layer.weights):
            weight_into(param, g[wname], path, f"weight '{wname}'", os.path.getsize(path))
