"""Property-based fuzzing of every reader of user input: configs, ``--set`` overrides,
model files (bytes and HDF5 structures), PNG images and CSV files.

The property is always the same: the reader returns a result or raises the one
MlpError subclass its callers turn into a clean ``Error:`` line -- never any
other exception (which would be a traceback). Kept bounded: the whole file
runs in well under 30 seconds. tests/test_images.py already fuzzes
``read_image``; here ``load_digit`` (decode + MNIST normalisation) is fuzzed.
"""

import copy
import io
import json
import math
import os
import pickle
import select
import signal
import time

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlpcli import modelfile
from mlpcli.config import SECTION_DEFAULTS, TOP_DEFAULTS, apply_override, read_yaml, resolve
from mlpcli.data import load_dataset
from mlpcli.errors import ConfigError, DataError, ModelFileError
from mlpcli.images import load_digit
from mlpcli.nn import (
    activations,
    initializers,
    layers,
    losses,
    metrics,
    optimizers,
    schedules,
)
from mlpcli.nn.model import Sequential
from mlpcli.pipeline import InputPipeline

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# ------------------------------------------------------------------ values

# decimal exponents: a 5000-digit integer has no repr() (Python's int/str limit), so not even hypothesis can show it
HUGE_INTS = st.tuples(st.sampled_from([30, 4000, 5000]), st.sampled_from([1, -1])).map(lambda p: p[1] * 10 ** p[0])
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.integers(), HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308]),
    TEXT, st.binary(max_size=8),
)
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(TEXT, st.integers(), st.none()), inner, max_size=4)),
    max_leaves=10)


def names(registry):
    return sorted(registry)


def component(registry, params):
    """A component the way a config gives it: a name, or {type: name, **params} with junk mixed in."""
    name = st.one_of(st.sampled_from(names(registry)), st.sampled_from(names(registry)).map(str.upper), JUNK)
    return st.one_of(
        name,
        st.fixed_dictionaries({"type": name}, optional={k: st.one_of(v, JUNK) for k, v in params.items()}),
        st.dictionaries(st.sampled_from(["type", *params]), JUNK, max_size=4),
        JUNK,
    )


NUMBER = st.one_of(st.integers(-3, 1000), st.floats(-2, 2), SCALARS)
OPT_PARAMS = {k: NUMBER for k in ("learning_rate", "beta_1", "beta_2", "epsilon", "momentum", "rho",
                                  "clipnorm", "clipvalue", "weight_decay")} | {
    "nesterov": st.booleans(), "amsgrad": st.booleans()}
SCHED_PARAMS = {k: NUMBER for k in ("decay_steps", "decay_rate", "step_size", "factor", "patience",
                                    "min_lr", "cooldown", "alpha", "min_delta")} | {
    "monitor": st.sampled_from(["loss", "val_loss", "accuracy", "val_accuracy"]), "staircase": st.booleans(),
    "mode": st.sampled_from(["auto", "min", "max"])}
INIT = component(initializers.INITIALIZERS, {"seed": NUMBER, "stddev": NUMBER, "mean": NUMBER,
                                             "minval": NUMBER, "maxval": NUMBER, "scale": NUMBER,
                                             "mode": TEXT, "distribution": TEXT})
REG = st.one_of(st.sampled_from(["l1", "l2", "l1_l2"]), st.fixed_dictionaries({}, optional={"l1": NUMBER, "l2": NUMBER}),
                component({"l1": 0, "l2": 0, "l1_l2": 0}, {"l1": NUMBER, "l2": NUMBER}), st.none())
LAYER = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from([*names(layers.LAYERS), "Dense", "conv2d", "lambda"]), JUNK)},
    optional={"units": NUMBER, "activation": st.one_of(st.sampled_from(names(activations.ACTIVATIONS)), JUNK),
              "rate": NUMBER, "use_bias": st.one_of(st.booleans(), JUNK), "name": st.one_of(TEXT, JUNK),
              "seed": NUMBER, "kernel_initializer": INIT, "bias_initializer": INIT,
              "kernel_regularizer": REG, "bias_regularizer": REG, "activity_regularizer": REG,
              "filters": JUNK})
CKPT_FILENAMES = st.one_of(
    st.sampled_from(["model-{epoch:02d}.h5", "m{epoch[0]}.h5", "m{epoch.real.x}.h5", "{loss:d}.h5",
                     "{0}.h5", "x.h5", "../x.h5", "{epoch:99999999999}.h5", "{epoch:9999}.h5",
                     "{val_loss:.4f}.h5", "{nope}.h5", "{epoch!x}.h5", "{epoch:{loss}}.h5", "}.h5"]),
    st.text(st.sampled_from("{}[]:.!0123456789epochlsvd_x"), max_size=16).map(lambda t: t + ".h5"),
    JUNK)


def section(defaults, special=None):
    """A mapping of some of a section's keys (valid-looking or junk values) plus unknown keys."""
    special = special or {}
    known = st.fixed_dictionaries({}, optional={k: st.one_of(special.get(k, st.just(v)), NUMBER, JUNK)
                                                for k, v in defaults.items()})
    return st.one_of(st.builds(lambda a, b: {**b, **a}, known, st.dictionaries(TEXT, JUNK, max_size=2)), JUNK)


DATA = section(SECTION_DEFAULTS["data"], {
    "dataset": st.sampled_from(["mnist", "fashion_mnist", "npz", "csv", "image_folder", "cifar"]),
    "scaling": st.sampled_from(["auto", "unit", "none", "standardize", "minmax"]),
    "color_mode": st.sampled_from(["grayscale", "rgb", "cmyk"]),
    "path": st.sampled_from(["x.csv", "/nonexistent/x.npz", "", "~/x"]),
    "validation_split": st.one_of(st.floats(-1, 2), st.just(math.nan))})
MODEL = st.one_of(
    st.fixed_dictionaries({}, optional={
        "input_shape": st.one_of(st.lists(st.integers(-2, 1000), max_size=3), JUNK),
        "layers": st.one_of(st.lists(st.one_of(LAYER, JUNK), max_size=4), JUNK),
        "name": st.one_of(TEXT, JUNK), "extra": JUNK}),
    JUNK)
CONFIGS = st.one_of(
    st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.sampled_from(["mlp", "../escape", "/etc/x", "a/b", "..", ".x", "ok-1.2"]), TEXT, JUNK),
        "seed": NUMBER,
        "task": st.one_of(st.sampled_from(["classification", "regression", "Regression"]), JUNK),
        "data": DATA,
        "model": MODEL,
        "loss": st.one_of(st.sampled_from([*names(losses.LOSSES), *losses.ALIASES, "MSE"]), JUNK),
        "optimizer": component(optimizers.OPTIMIZERS, OPT_PARAMS),
        "schedule": component(schedules.SCHEDULES, SCHED_PARAMS),
        "metrics": st.one_of(st.lists(component(metrics.METRICS, {"k": NUMBER}), max_size=3), JUNK),
        "training": section(SECTION_DEFAULTS["training"]),
        "checkpoint": section(SECTION_DEFAULTS["checkpoint"], {"filename": CKPT_FILENAMES,
                                                               "monitor": st.sampled_from(["loss", "val_loss"])}),
        "early_stopping": st.one_of(st.none(), section(SECTION_DEFAULTS["early_stopping"])),
        "trainig": JUNK,
    }).flatmap(lambda cfg: st.dictionaries(TEXT, JUNK, max_size=2).map(lambda extra: {**extra, **cfg})),
    JUNK)


@FAST
@given(cfg=CONFIGS)
def test_resolve_returns_a_config_or_raises_config_error(cfg):
    before = copy.deepcopy(cfg)
    try:
        out = resolve(cfg)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
        assert len(str(exc)) < 20_000  # error messages stay short, whatever the input
    else:
        assert isinstance(out, dict) and set(TOP_DEFAULTS) <= set(out)
    assert pickle.dumps(cfg) == pickle.dumps(before)  # the caller's mapping is left as it was


# A fully resolved config with every section in use; changing one value of it reaches checks
# that only run when everything else is valid (monitored quantities, for one).
GOOD = resolve({
    "name": "good", "data": {"dataset": "mnist", "validation_split": 0.1, "max_train_samples": 100},
    "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu",
                          "kernel_regularizer": {"l2": 0.01}},
                         {"type": "dropout", "rate": 0.2}, {"type": "dense", "units": 10, "activation": "softmax"}]},
    "optimizer": {"type": "sgd", "momentum": 0.9}, "schedule": {"type": "reduce_on_plateau", "monitor": "val_loss"},
    "metrics": ["accuracy", {"type": "top_k_accuracy", "k": 3}],
    "checkpoint": {"monitor": "val_accuracy"}, "early_stopping": {"monitor": "val_loss", "patience": 2}})


def leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def with_value(cfg, path, value):
    cfg = copy.deepcopy(cfg)
    node = cfg
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return cfg


@FAST
@given(changes=st.lists(st.tuples(st.sampled_from(leaf_paths(GOOD)),
                                  st.one_of(NUMBER, JUNK, CKPT_FILENAMES, TEXT,
                                            st.sampled_from(["val_loss", "loss", "val_top_k_accuracy", "csv"]))),
                        min_size=1, max_size=2))
def test_one_bad_value_in_a_good_config(changes):
    cfg = GOOD
    for path, value in changes:
        cfg = with_value(cfg, path, value)
    try:
        out = resolve(cfg)
    except ConfigError as exc:
        assert exc.problems
    else:
        assert resolve(out) == out  # what resolve returns resolves to itself


def test_good_config_is_a_fixed_point():
    assert resolve(GOOD) == GOOD and len(leaf_paths(GOOD)) > 60


# a config that resolves, so an override has a valid base to change
BASE = {"name": "fuzz", "model": {"input_shape": [4], "layers": [
    {"type": "dense", "units": 8, "activation": "relu"}, {"type": "dropout", "rate": 0.1},
    {"type": "dense", "units": 3, "activation": "softmax"}]},
    "optimizer": "adam", "data": {"dataset": "mnist"}, "metrics": ["accuracy"]}
KEY_PARTS = st.sampled_from(["model", "layers", "units", "rate", "type", "optimizer", "learning_rate",
                             "training", "epochs", "data", "dataset", "metrics", "name", "seed",
                             "checkpoint", "filename", "early_stopping", "x", ""])
KEYS = st.one_of(
    st.lists(st.one_of(KEY_PARTS, st.integers(-2, 4).map(lambda i: f"[{i}]"), st.just("[99999999999]")),
             min_size=1, max_size=5).map(lambda parts: ".".join(parts).replace(".[", "[")),
    st.text(st.sampled_from("ab.[]0-9 =_"), max_size=12))
VALUES = st.one_of(
    st.sampled_from(["5", "0.1", "[1, 2]", "{type: sgd}", "null", ".nan", "-.inf", "adam", "[", "{", "!!python/name:os.system",
                     "&a [*a]", "*x", "2001-13-45", "9" * 5000, "[" * 3000, "'", "\"", "\t", "- a\n- b"]),
    st.text(st.characters(codec="utf-8"), max_size=20))


@FAST
@given(key=KEYS, value=VALUES, with_equals=st.booleans())
def test_apply_override_then_resolve_only_raise_config_error(key, value, with_equals):
    raw = copy.deepcopy(BASE)
    try:
        apply_override(raw, f"{key}={value}" if with_equals else key + value)
        resolve(raw)
    except ConfigError:
        pass


def test_base_config_resolves():
    assert resolve(BASE)["model"]["layers"][1]["type"] == "dropout"


# ------------------------------------------------------------------ model files: bytes


def small_model_file(path):
    """A real mlpcli model file of a 4-8-3 MLP with optimizer state: about 20 kB."""
    model = Sequential([{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dropout", "rate": 0.5},
                        {"type": "dense", "units": 3, "activation": "softmax"}], (4,)).build(np.random.default_rng(0))
    opt = optimizers.get("adam")()
    opt.build(model.params)
    opt.apply(model.params, [np.ones_like(p) for p in model.params], 0.01)
    modelfile.save(path, model, loss="categorical_crossentropy", optimizer=opt, metrics=["accuracy"],
                   config={"name": "x"}, state={"epoch": 1},
                   pipeline=InputPipeline(kind="array", feature_shape=(4,), scaling="standardize",
                                          scale=np.full(4, 0.5, np.float32), offset=np.zeros(4, np.float32),
                                          class_names=["a", "b", "c"]))
    return path.read_bytes()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def model_bytes(fuzz_dir):
    return small_model_file(fuzz_dir / "small.h5")


def test_small_model_file_loads(fuzz_dir, model_bytes):
    path = fuzz_dir / "again.h5"
    path.write_bytes(model_bytes)
    loaded = modelfile.load(path)
    assert loaded.pipeline.class_names == ["a", "b", "c"] and loaded.model.count_params() == 4 * 8 + 8 + 8 * 3 + 3


def model_or_error(path):
    """'ok' when modelfile.load(path) returns a usable model, 'ModelFileError' when it refuses
    the file by name, else a description of what went wrong."""
    try:
        loaded = modelfile.load(path)
    except ModelFileError as exc:
        return "ModelFileError" if str(path) in str(exc) else f"message without the path: {exc}"
    except Exception as exc:  # noqa: BLE001 -- what the property is about
        return f"{type(exc).__name__}: {exc}"
    if not (loaded.model.built and all(np.isfinite(p).all() for p in loaded.model.params)):
        return "loaded a model with non-finite weights"
    return "ok"


def expect_model_or_error(path):
    assert model_or_error(path) in ("ok", "ModelFileError")


def model_or_error_in_child(path, seconds=20):
    """``model_or_error`` in a forked child, so that libhdf5 itself crashing (a segfault) or
    hanging (an endless loop) on a damaged file fails this test instead of the test run."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any cleanup of the parent's
        try:
            os.close(read_end)
            os.write(write_end, model_or_error(path).encode()[:4000])
        finally:
            os._exit(0)
    os.close(write_end)
    outcome, deadline = b"", time.monotonic() + seconds
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return f"libhdf5 hung reading the file (killed after {seconds} s)"
            chunk = os.read(pipe.fileno(), 4096)
            if not chunk:
                break
            outcome += chunk
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"libhdf5 crashed the process (signal {os.WTERMSIG(status)})"
    return outcome.decode(errors="replace")


def flipped(data, edits):
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="runs each load in a forked child")
@FAST
@given(kind=st.sampled_from(["random", "hdf5-signature", "flip", "flip-many", "truncate", "truncate+flip"]),
       blob=st.binary(max_size=2000), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                     min_size=1, max_size=64),
       cut=st.floats(0, 1))
def test_model_file_bytes(fuzz_dir, model_bytes, kind, blob, edits, cut):
    if kind == "random":
        content = blob
    elif kind == "hdf5-signature":
        content = b"\x89HDF\r\n\x1a\n" + blob
    elif kind == "flip":
        content = flipped(model_bytes, edits[:4])
    elif kind == "flip-many":
        content = flipped(model_bytes, edits)
    elif kind == "truncate":
        content = model_bytes[:int(len(model_bytes) * cut)]
    else:
        content = flipped(model_bytes[:max(1, int(len(model_bytes) * cut))], edits[:4])
    path = fuzz_dir / "bytes.h5"
    path.write_bytes(content)
    outcome = model_or_error_in_child(path)
    if outcome not in ("ok", "ModelFileError"):
        (fuzz_dir / "failing-model-file.h5").write_bytes(content)  # kept for a bug report
    assert outcome in ("ok", "ModelFileError"), outcome


# ------------------------------------------------------------------ model files: HDF5 structures

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 2000), st.integers(),
                         st.sampled_from([10**30, 10**4000, -1, 0]),
                         st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
KERAS_LAYER = st.fixed_dictionaries({
    "class_name": st.one_of(st.sampled_from(["InputLayer", "Dense", "Activation", "Dropout", "Flatten",
                                             "Lambda", "Conv2D"]), JSON),
    "config": st.one_of(st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.sampled_from(["dense", "dense_1", "dropout", "input_1", ""]), JSON),
        "units": st.one_of(st.integers(-1, 12), st.sampled_from([10**12, 10**4000]), JSON),
        "batch_input_shape": st.one_of(st.lists(st.one_of(st.none(), st.integers(-1, 10)), max_size=3),
                                       st.just([None, 10**12]), JSON),
        "activation": st.one_of(st.sampled_from(["relu", "softmax", "linear", "swish"]),
                                st.fixed_dictionaries({"class_name": JSON, "config": JSON}), JSON),
        "use_bias": JSON, "rate": st.one_of(st.floats(-1, 2), JSON),
        "kernel_initializer": st.one_of(st.fixed_dictionaries({
            "class_name": st.sampled_from(["GlorotUniform", "RandomNormal", "VarianceScaling", "Zeros", "X"]),
            "config": st.one_of(st.dictionaries(st.sampled_from(["seed", "stddev", "mean", "scale", "mode",
                                                                 "distribution", "minval", "maxval"]),
                                                JSON, max_size=3), JSON)}), JSON),
        "kernel_regularizer": st.one_of(st.fixed_dictionaries({
            "class_name": st.sampled_from(["L1L2", "L1", "L2"]),
            "config": st.one_of(st.dictionaries(st.sampled_from(["l1", "l2"]), JSON, max_size=2), JSON)}), JSON),
    }), JSON),
})
MODEL_CONFIG = st.one_of(
    JSON,
    st.fixed_dictionaries({"class_name": st.sampled_from(["Sequential", "Functional"]),
                           "config": st.one_of(
                               st.fixed_dictionaries({"name": JSON, "layers": st.lists(KERAS_LAYER, max_size=4)},
                                                     optional={"build_input_shape": JSON}),
                               st.lists(KERAS_LAYER, max_size=4), JSON)}))
DTYPES = st.sampled_from(["f4", "f8", "f2", "i1", "u8", "i8", "?", "c8", "S4", "V8"])
SHAPES = st.one_of(st.lists(st.integers(0, 9), max_size=3).map(tuple),
                   st.sampled_from([(10**6, 10**6), (2**40,), (4, 8), (8,), (8, 3), (3,)]))
NAMES = st.sampled_from(["dense", "dense_1", "dropout", "kernel:0", "bias:0", "dense/kernel:0",
                         "dense/bias:0", "dense_1/kernel:0", "dense_1/bias:0", "x", "/", "..", "/model_weights"])
STRING_LISTS = st.one_of(st.lists(NAMES, max_size=4), st.lists(st.integers(), max_size=3), st.integers(), TEXT)
ATTR_VALUES = st.one_of(JSON.map(json.dumps), JSON.map(lambda v: json.dumps(v).encode()),
                        st.integers(), st.binary(max_size=8).map(np.void),
                        st.lists(st.integers(), min_size=1, max_size=3).map(np.array),
                        st.just("[" * 5000 + "]" * 5000), st.just('{"a": ' * 2000 + "1" + "}" * 2000),
                        st.binary(max_size=8).filter(lambda b: b"\0" not in b))
DATASET = st.tuples(st.sampled_from(["model_weights", "model_weights/dense", "model_weights/dense_1",
                                     "mlpcli/optimizer", "mlpcli/optimizer/m", ""]),
                    NAMES, DTYPES, SHAPES, st.sampled_from(["zeros", "random", "nan", "empty", "no-data"]))


def set_attr(node, key, value):
    """Store an attribute; h5py refuses some Python values, which is then simply not stored."""
    if isinstance(value, list):
        value = np.array([str(v).encode() for v in value]) if value else np.array([], dtype="S1")
    try:
        node.attrs[key] = value
    except (TypeError, ValueError):
        pass


def write_structure(path, model_config, root_attrs, layer_names, weight_names, datasets, extras):
    with h5py.File(path, "w") as f:
        if model_config is not None:
            set_attr(f, "model_config", model_config if isinstance(model_config, str) else json.dumps(model_config))
        for key, value in root_attrs.items():
            set_attr(f, key, value)
        mw = f.require_group("model_weights")
        if layer_names is not None:
            set_attr(mw, "layer_names", layer_names)
        for group, wnames in weight_names.items():
            set_attr(f.require_group(f"model_weights/{group}"), "weight_names", wnames)
        own = f.require_group("mlpcli")
        for key, value in extras.items():
            set_attr(own, key, value)
        for group, name, dtype, shape, fill in datasets:
            where = f"{group}/{name}".strip("/").replace("//", "/")
            if not where or where in f or name in ("/", ".."):
                continue
            try:
                if fill == "no-data" or math.prod(shape) > 10_000:
                    f.create_dataset(where, shape=shape, dtype=dtype)
                elif fill == "empty":
                    f.create_dataset(where, data=h5py.Empty(dtype))
                else:
                    data = np.zeros(shape, dtype=dtype)
                    if fill != "zeros" and data.dtype.kind in "fc":
                        data[...] = np.nan if fill == "nan" else np.random.default_rng(0).standard_normal(shape)
                    f.create_dataset(where, data=data)
            except (TypeError, ValueError, OSError):
                pass


@FAST
@given(model_config=st.one_of(MODEL_CONFIG, st.none(), st.just("{not json"), st.just("[" * 5000)),
       root_attrs=st.dictionaries(st.sampled_from(["training_config", "keras_version", "backend"]),
                                  ATTR_VALUES, max_size=2),
       layer_names=st.one_of(st.none(), STRING_LISTS),
       weight_names=st.dictionaries(st.sampled_from(["dense", "dense_1", "dropout"]), STRING_LISTS, max_size=3),
       datasets=st.lists(DATASET, max_size=6),
       extras=st.dictionaries(st.sampled_from(["config", "preprocessing", "class_names", "state"]),
                              ATTR_VALUES, max_size=4))
def test_model_file_structures(fuzz_dir, model_config, root_attrs, layer_names, weight_names, datasets, extras):
    path = fuzz_dir / "structure.h5"
    write_structure(path, model_config, root_attrs, layer_names, weight_names, datasets, extras)
    expect_model_or_error(path)


@FAST
@given(where=st.sampled_from(["model_weights/dense/dense/kernel:0", "model_weights/dense/dense/bias:0",
                              "model_weights/dense_1/dense_1/kernel:0", "mlpcli/optimizer/m/0",
                              "mlpcli/optimizer/iterations"]),
       dtype=DTYPES, shape=SHAPES, fill=st.sampled_from(["zeros", "random", "nan", "empty", "no-data", "huge"]),
       config_edit=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.sampled_from(
           ["units", "activation", "rate", "use_bias", "batch_input_shape", "name", "kernel_regularizer"]), JSON)),
       extras=st.dictionaries(st.sampled_from(["config", "preprocessing", "class_names", "state"]),
                              ATTR_VALUES, max_size=2))
def test_model_file_edits(fuzz_dir, model_bytes, where, dtype, shape, fill, config_edit, extras):
    """One change to a real model file: a dataset replaced, a model_config value or an extra changed."""
    path = fuzz_dir / "edited.h5"
    path.write_bytes(model_bytes)
    with h5py.File(path, "r+") as f:
        del f[where]
        try:
            if fill == "no-data":
                f.create_dataset(where, shape=shape, dtype=dtype)
            elif fill == "empty":
                f.create_dataset(where, data=h5py.Empty(dtype))
            else:
                data = np.zeros(shape if math.prod(shape) <= 10_000 else (3,), dtype=dtype)
                if data.dtype.kind in "fc" and fill != "zeros":
                    with np.errstate(over="ignore"):  # 1e300 into float32 is inf: fine, that is the point
                        data[...] = {"nan": np.nan, "huge": 1e300, "random": 0.5}[fill]
                f.create_dataset(where, data=data)
        except (TypeError, ValueError, OSError):
            pass
        if config_edit is not None:
            i, key, value = config_edit
            config = json.loads(f.attrs["model_config"])
            entries = config["config"]["layers"]
            entries[i % len(entries)]["config"][key] = value
            f.attrs["model_config"] = json.dumps(config)
        for key, value in extras.items():
            set_attr(f["mlpcli"], key, value)
    expect_model_or_error(path)


# ------------------------------------------------------------------ images: load_digit


def png_bytes(array, mode=None, **save):
    out = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(out, format="PNG", **save)
    return out.getvalue()


def _digit():
    canvas = np.full((32, 24), 250, np.uint8)
    canvas[6:26, 10:14] = 10
    canvas[6:9, 6:14] = 10
    return canvas


DIGIT = _digit()
PNGS = [png_bytes(DIGIT), png_bytes(np.stack([DIGIT] * 3 + [np.full_like(DIGIT, 200)], axis=-1)),
        png_bytes(DIGIT.astype(np.uint16) * 257), png_bytes(DIGIT, optimize=True),
        png_bytes(np.zeros((1, 1), np.uint8)), png_bytes(np.full((3, 300), 255, np.uint8)),
        png_bytes(DIGIT, "P"), png_bytes(DIGIT, "1"), png_bytes(DIGIT, "LA")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(PNGS) - 1),
       kind=st.sampled_from(["random", "signature+random", "flip", "truncate", "as-is"]),
       blob=st.binary(max_size=300),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.floats(0, 1))
def test_load_digit_returns_mnist_pixels_or_data_error(fuzz_dir, which, kind, blob, edits, cut):
    good = PNGS[which]
    content = {"random": blob, "signature+random": b"\x89PNG\r\n\x1a\n" + blob, "flip": flipped(good, edits),
               "truncate": good[:int(len(good) * cut)], "as-is": good}[kind]
    path = fuzz_dir / "digit.png"
    path.write_bytes(content)
    try:
        digit = load_digit(path)
    except DataError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert digit.shape == (28, 28) and digit.dtype == np.float32
        assert np.isfinite(digit).all() and digit.min() >= 0 and digit.max() <= 255 + 1e-3


def test_load_digit_on_the_unchanged_digit(fuzz_dir):
    path = fuzz_dir / "plain.png"
    path.write_bytes(PNGS[0])
    digit = load_digit(path)
    assert digit.max() == pytest.approx(255) and digit[:4].max() == 0


# ------------------------------------------------------------------ CSV files

CSV_TEXT = st.one_of(
    st.lists(st.sampled_from(list("0123456789.,-+e\n\r\"' labx_") + ["nan", "inf", "1e39", "label", "\t",
                                                                     "\ufeff", "٣", "\x00", "é"]),
             max_size=60).map("".join),
    st.lists(st.lists(st.one_of(st.integers(-3, 5).map(str), st.floats(allow_nan=True).map(str),
                                st.sampled_from(["", " ", "a", "cat", "\"1,2\"", "1_0", "0x10", "9" * 30])),
                      min_size=1, max_size=4), min_size=0, max_size=6).map(
        lambda rows: "x1,x2,label,x3\n" + "\n".join(",".join(r) for r in rows)),
    st.text(st.characters(codec="utf-8"), max_size=60))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=CSV_TEXT, raw=st.one_of(st.none(), st.binary(max_size=60)),
       task=st.sampled_from(["classification", "regression"]),
       scaling=st.sampled_from(["none", "standardize", "unit"]),
       with_test=st.booleans())
def test_csv_loader_returns_a_dataset_or_a_clean_error(fuzz_dir, text, raw, task, scaling, with_test):
    path = fuzz_dir / "fuzz.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text, encoding="utf-8")
    cfg = {"dataset": "csv", "path": str(path), "label_column": "label", "scaling": scaling}
    if with_test:
        test = fuzz_dir / "fuzz-test.csv"
        test.write_text("x1,x2,label,x3\n1,2,0,3\n", encoding="utf-8")
        cfg["test_path"] = str(test)
    try:
        data = load_dataset(cfg, task=task)
    except (DataError, ConfigError):
        return
    assert data.x_train.dtype == np.float32 and len(data.x_train) == len(data.y_train) > 0
    assert np.isfinite(data.x_train).all()


QUICK = read_yaml(os.path.join(os.path.dirname(__file__), "..", "configs", "quick.yaml"))
FILENAME_TEMPLATES = st.text(st.sampled_from("{}:!<>=^+- #0123456789,_.bcdeEfFgGnosxX%/\0aépochlsv"),
                             max_size=20).map(lambda t: t + ".h5")
FILENAME_FIELDS = st.sampled_from(["{epoch", "{loss", "{val_accuracy", "{epoch:02d}", "{val_loss:.4f}",
                                   "{loss:x^20.9%}", "{epoch:_>9,}", "{accuracy!r}"])


@FAST
@given(parts=st.lists(st.one_of(FILENAME_TEMPLATES, FILENAME_FIELDS), min_size=1, max_size=4),
       epoch=st.integers(1, 10**6), value=st.floats(width=32))
def test_an_accepted_checkpoint_filename_is_always_a_plain_name(parts, epoch, value):
    """Whatever template the check lets through gives a plain, visible name of at most 255 bytes
    in checkpoints/ for any epoch up to training.epochs and any float32 metric value."""
    template = "".join(parts) + ".h5"
    try:
        cfg = resolve({**QUICK, "training": {"epochs": 10**6}, "checkpoint": {"filename": template}})
    except ConfigError as exc:
        assert "checkpoint.filename" in str(exc)
        return
    name = cfg["checkpoint"]["filename"].format(epoch=epoch, loss=value, val_loss=value, accuracy=value,
                                                val_accuracy=value)
    assert "/" not in name and "\0" not in name and not name.startswith(".")
    assert len(os.fsencode(name)) <= 255
