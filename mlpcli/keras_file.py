"""Keras 3's native ``.keras`` model files, written and read: the one module that knows the format.

A ``.keras`` file is a zip of ``metadata.json`` (``keras_version``, ``date_saved``),
``config.json`` (a ``Sequential``'s config: an ``InputLayer`` with ``batch_shape``, then
each layer's Keras config as ``Layer.keras_config`` writes it for the legacy ``.h5`` too,
with Keras 3's ``module`` and ``build_config``) and ``model.weights.h5``: per layer the
group ``layers/<group>/vars`` holding datasets ``0``, ``1``, ... in the layer's weight
order. Keras names a layer's group by its class, not by the layer's own name:
``dense``, ``dense_1``, ``batch_normalization``, ... in the order of the layers
(``group_names``). mlpcli adds ``mlpcli/pipeline.json``, the input pipeline
(``mlpcli.pipeline.as_json``), which ``keras.saving.load_model`` leaves alone.

A ``.keras`` file is untrusted data: member names are checked (no absolute paths,
``..``, backslashes or repeats), each member's declared size is capped before a byte
of it is read (and, compressed, by its compressed size: no decompression bombs), and
nothing is extracted: JSON is parsed from memory, weights are read from the in-memory
HDF5 file as numeric arrays (``mlpcli.hdf5_checks``), never pickle.
"""

import datetime
import io
import json
import re
import zipfile
import zlib

from mlpcli import pipeline as input_pipeline
from mlpcli.errors import MlpError, ModelFileError
from mlpcli.files import atomic_path
from mlpcli.hdf5_checks import (
    check_global_heaps,
    first_line,
    refuse_outside_data,
    weight_into,
)
from mlpcli.keras_layers import layer_specs_from_keras
from mlpcli.nn.model import Sequential, output_shapes

ZIP_SIGNATURE = b"PK\x03\x04"  # a zip's first local file header
KERAS_VERSION = "3.15.1"  # the Keras whose own files this layout was checked against
CONFIG, METADATA, WEIGHTS, PIPELINE = "config.json", "metadata.json", "model.weights.h5", "mlpcli/pipeline.json"
MAX_MEMBERS = 1000
MAX_JSON_BYTES = 64 * 2**20
MAX_WEIGHTS_BYTES = 8 * 2**30
MAX_DEFLATE_RATIO = 1100  # deflate expands at most ~1032-fold: a member claiming more lies


# ---------------------------------------------------------------------------- writing

def write_keras(path, predictor):
    """Write the model of ``predictor`` (a ``mlpcli.predictor.Predictor``) and its input
    pipeline to the ``.keras`` file ``path``, atomically."""
    write_model(path, predictor.model, predictor.pipeline)


def write_model(path, model, pipeline=None):
    """Write ``model`` (a built ``Sequential``) and ``pipeline`` (or none) to ``path``, atomically;
    ``MlpError`` naming the layer when the format cannot hold it."""
    import h5py

    config = model_config(model)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        stored = f.create_group("layers")
        for layer, group in zip(model.layers, group_names(model.layers), strict=True):
            variables = stored.create_group(group).create_group("vars")
            variables.attrs["name"] = layer.name
            for i, value in enumerate(layer.weights):
                variables.create_dataset(str(i), data=value)
        f.create_group("vars").attrs["name"] = model.name
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(METADATA, json.dumps(metadata))
        archive.writestr(CONFIG, json.dumps(config))
        archive.writestr(WEIGHTS, buffer.getvalue())
        if pipeline is not None:
            archive.writestr(PIPELINE, json.dumps(input_pipeline.as_json(pipeline)))


def model_config(model):
    """``config.json``: the Keras 3 ``Sequential`` config of ``model``."""
    _check_expressible(model)
    names = {layer.name for layer in model.layers}
    input_name = next(n for n in ("input_layer", *(f"input_layer_{i}" for i in range(1, len(names) + 2)))
                      if n not in names)
    batch_shape = [None, *model.input_shape]
    entries = [{"module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": batch_shape, "dtype": "float32", "sparse": False, "name": input_name},
                "registered_name": None}]
    inputs = [model.input_shape, *output_shapes(model.layers, model.input_shape)]
    for layer, shape in zip(model.layers, inputs):
        entries.append({"module": "keras.layers", **layer.keras_config(), "registered_name": None,
                        "build_config": {"input_shape": [None, *shape]}})
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": model.name, "trainable": True, "layers": entries, "build_input_shape": batch_shape},
            "registered_name": None, "build_config": {"input_shape": batch_shape}}


def _check_expressible(model):
    """Refuse what a Keras 3 model cannot be: a layer without a Keras class, a name with '/'."""
    if "/" in model.name:
        raise MlpError(f"model name {model.name!r} contains '/', which Keras does not allow in a name; "
                       "a .keras file cannot hold it (rename the model: model.name)")
    for i, layer in enumerate(model.layers):
        if layer.spec.keras is None:
            raise MlpError(f"layer {i} ({layer.name}) is a {layer.type} layer, which has no Keras class; "
                           "a .keras file cannot hold it")
        if "/" in layer.name:
            raise MlpError(f"layer {i} ({layer.name}) has a name with '/', which Keras does not allow in a "
                           "layer name; a .keras file cannot hold it (rename the layer)")


def group_names(layers):
    """The group of each layer in ``model.weights.h5``: its Keras class in snake_case, numbered
    from the second of a class on (dense, dense_1, ...), as Keras's saving names them."""
    used = {}
    for layer in layers:
        base = _snake_case(layer.spec.keras)
        used[base] = used.get(base, -1) + 1
        yield f"{base}_{used[base]}" if used[base] else base


def _snake_case(name):
    """Keras's ``naming.to_snake_case``: BatchNormalization -> batch_normalization."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# ---------------------------------------------------------------------------- reading

def read(fh, path):
    """(model, input pipeline or None, loss name or None) of the ``.keras`` file open as ``fh``;
    ``ModelFileError`` naming ``path`` and the problem for anything else."""
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise ModelFileError(f"{path}: a damaged zip file ({first_line(exc)}); not a .keras model file") from None
    try:
        with archive:
            return _read(archive, path)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, ValueError, TypeError, RuntimeError,
            NotImplementedError) as exc:  # RuntimeError: an encrypted member; NotImplementedError: a compression
        raise ModelFileError(f"{path}: damaged or not a .keras model file ({first_line(exc)})") from None


def _read(archive, path):
    members = _members(archive, path)
    if CONFIG not in members:
        raise ModelFileError(f"{path}: no {CONFIG} in the zip; not a .keras model file")
    if WEIGHTS not in members:
        raise ModelFileError(f"{path}: no {WEIGHTS} in the zip (mlpcli reads Keras's HDF5 weights only)")
    config = _json(archive, members[CONFIG], path)
    specs, input_shape, name = layer_specs_from_keras(config, path)
    weights = _member(archive, members[WEIGHTS], MAX_WEIGHTS_BYTES, path)
    if Sequential(specs, input_shape).planned_weight_count() > len(weights):
        raise ModelFileError(f"{path}: {CONFIG} describes more weights than the {len(weights):,}-byte "
                             f"{WEIGHTS} can hold; damaged or not a model file")
    model = Sequential(specs, input_shape, name=name).build(None)  # its weights are read next
    _load_weights(weights, model, path)
    pipeline = None
    if PIPELINE in members:
        pipeline = input_pipeline.from_json(_json(archive, members[PIPELINE], path), path)
        input_pipeline.check_fits(pipeline, model.input_shape, model.n_outputs, path)
    compiled = config.get("compile_config")
    loss = compiled.get("loss") if isinstance(compiled, dict) else None
    return model, pipeline, loss if isinstance(loss, str) else None


def _members(archive, path):
    """{name: ZipInfo} of the archive, once every name is known to be safe and given once."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{path}: the zip holds {len(infos):,} members; a .keras model file holds a few")
    members = {}
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0]:
            raise ModelFileError(f"{path}: zip member {name!r} has an unsafe name (absolute, '..', a drive "
                                 "or a backslash); not a .keras model file")
        if name in members:
            raise ModelFileError(f"{path}: zip member {name!r} is there twice; not a .keras model file")
        members[name] = info
    return members


def _member(archive, info, limit, path):
    """The bytes of zip member ``info``, once its declared size is known to be at most ``limit``
    and no more than its stored bytes can expand to."""
    name, size = info.filename, info.file_size
    if size > limit:
        raise ModelFileError(f"{path}: zip member {name} declares {size:,} bytes, more than mlpcli reads "
                             f"of it ({limit:,})")
    stored = info.compress_type == zipfile.ZIP_STORED
    if size > (info.compress_size if stored else MAX_DEFLATE_RATIO * info.compress_size + 1024):
        raise ModelFileError(f"{path}: zip member {name} declares {size:,} bytes from {info.compress_size:,} "
                             "stored ones; damaged, or a decompression bomb")
    with archive.open(info) as member:
        data = member.read(size + 1)
    if len(data) != size:
        raise ModelFileError(f"{path}: zip member {name} holds {len(data):,} bytes, not the {size:,} "
                             "it declares")
    return data


def _json(archive, info, path):
    data = _member(archive, info, MAX_JSON_BYTES, path)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelFileError(f"{path}: zip member {info.filename} is not valid JSON ({first_line(exc)})") from None


def _load_weights(data, model, path):
    """Fill ``model``'s weights from the bytes of ``model.weights.h5``."""
    import h5py

    check_global_heaps(data, path)
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: {WEIGHTS} is not a readable HDF5 file ({first_line(exc)})") from None
    with f:
        refuse_outside_data(f, path)
        for layer, group in zip(model.layers, group_names(model.layers), strict=True):
            if not layer.weights:
                continue
            where = f"layers/{group}/vars"
            stored = f.get(where)
            names = sorted(stored.keys()) if isinstance(stored, h5py.Group) else []
            expected = [str(i) for i in range(len(layer.weights))]
            if names != sorted(expected):
                raise ModelFileError(f"{path}: {WEIGHTS} holds {names or 'nothing'} at {where} for layer "
                                     f"{layer.name}; expected {', '.join(expected)} "
                                     f"({', '.join(layer.weight_names)})")
            for i, param in enumerate(layer.weights):
                weight_into(param, stored[str(i)], path, f"{where}/{i} ({layer.name}'s "
                            f"{layer.weight_names[i]})", len(data))

