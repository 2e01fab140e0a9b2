"""mlpcli.modelfile: save/load round trip, the Keras legacy HDF5 layout it writes,
the files it refuses, and the atomic save. Needs h5py, not Keras."""

import copy
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from mlpcli import modelfile
from mlpcli.errors import DiskFullError, ModelFileError
from mlpcli.nn import optimizers
from mlpcli.nn.model import Sequential
from mlpcli.pipeline import InputPipeline

MLP = [{"type": "dense", "units": 16, "activation": "relu"},
       {"type": "dropout", "rate": 0.3},
       {"type": "dense", "units": 10, "activation": "softmax"}]
CLASS_NAMES = [f"digit {i}" for i in range(10)]
PIPELINE = InputPipeline(kind="digits", feature_shape=(28, 28), scaling="unit",
                         scale=np.float32(1 / 255), offset=np.float32(0), class_names=CLASS_NAMES)
CONFIG = {"model": {"layers": MLP}, "training": {"epochs": 3, "batch_size": 32,
                                                 "optimizer": {"type": "adam", "learning_rate": 0.001}},
          "seed": 0}
STATE = {"epoch": 3, "best_val_loss": 0.4321, "history": {"loss": [1.5, 0.9, 0.6]}}


def build(specs=MLP, input_shape=(784,), seed=0):
    return Sequential(copy.deepcopy(specs), input_shape).build(np.random.default_rng(seed))


def trained_adam(model, steps=3, seed=1):
    """An Adam optimizer after ``steps`` updates of ``model`` with random gradients."""
    rng = np.random.default_rng(seed)
    opt = optimizers.get("adam")()
    opt.build(model.params)
    for _ in range(steps):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in model.params]
        opt.apply(model.params, grads, 0.01)
    return opt


def inputs(n=7, shape=(784,), seed=2):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def save_full(path, model, opt):
    modelfile.save(path, model, loss="categorical_crossentropy", optimizer=opt,
                   metrics=["accuracy", "top_k"], config=CONFIG, pipeline=PIPELINE, state=STATE)


@pytest.fixture
def saved(tmp_path):
    """(path, model, optimizer) of a fully saved MLP."""
    model = build()
    opt = trained_adam(model)
    path = tmp_path / "model.h5"
    save_full(path, model, opt)
    return path, model, opt


# ---------------------------------------------------------------- round trip


def test_round_trip_restores_everything(saved):
    path, model, opt = saved
    mf = modelfile.load(path)
    loaded = mf.model

    assert len(loaded.params) == len(model.params) == 4
    for a, b in zip(loaded.params, model.params):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    x = inputs()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))

    got = [layer.get_config() for layer in loaded.layers]
    assert [c["type"] for c in got] == ["dense", "dropout", "dense"]
    assert [c["name"] for c in got] == ["dense", "dropout", "dense_1"]
    assert [got[0]["units"], got[2]["units"]] == [16, 10]
    assert [got[0]["activation"], got[2]["activation"]] == ["relu", "softmax"]
    assert got[1]["rate"] == 0.3
    assert loaded.input_shape == (784,)

    assert mf.loss == "categorical_crossentropy"
    assert mf.config == CONFIG
    assert mf.pipeline.record() == PIPELINE.record()
    assert mf.pipeline.scale == np.float32(1 / 255)  # exact in float32, as applied
    assert mf.pipeline.class_names == CLASS_NAMES
    assert mf.state == STATE


def test_round_trip_restores_optimizer_state(saved):
    path, model, opt = saved
    expected = opt.get_state()
    state = modelfile.load(path).optimizer_state

    assert set(state) == set(expected) == {"iterations", "m/0", "m/1", "m/2", "m/3",
                                           "v/0", "v/1", "v/2", "v/3"}
    assert int(state["iterations"]) == 3
    for key in expected:
        if key != "iterations":
            assert state[key].dtype == np.float32
            assert np.any(state[key] != 0), key  # real slots, not fresh zeros
            np.testing.assert_array_equal(state[key], expected[key])

    # the restored optimizer continues exactly where the saved one stopped
    loaded = modelfile.load(path).model
    resumed = optimizers.get("adam")()
    resumed.build(loaded.params)
    resumed.set_state(state)
    grads = [np.full(p.shape, 0.5, np.float32) for p in model.params]
    opt.apply(model.params, grads, 0.01)
    resumed.apply(loaded.params, grads, 0.01)
    for a, b in zip(loaded.params, model.params):
        np.testing.assert_array_equal(a, b)


def test_save_without_extras_loads_with_defaults(tmp_path):
    model = build()
    path = tmp_path / "bare.h5"
    modelfile.save(path, model)
    mf = modelfile.load(path)
    assert mf.loss is None and mf.config is None and mf.pipeline is None
    assert mf.state == {} and mf.optimizer_state == {}
    for a, b in zip(mf.model.params, model.params):
        np.testing.assert_array_equal(a, b)


def test_flatten_with_2d_input_round_trips(tmp_path):
    specs = [{"type": "flatten"}, {"type": "dense", "units": 8, "activation": "tanh"},
             {"type": "activation", "activation": "sigmoid"},
             {"type": "dense", "units": 3, "activation": "softmax"}]
    model = build(specs, (28, 28))
    path = tmp_path / "flat.h5"
    modelfile.save(path, model)
    loaded = modelfile.load(path).model
    assert loaded.input_shape == (28, 28)
    assert [layer.type for layer in loaded.layers] == ["flatten", "dense", "activation", "dense"]
    assert loaded.layers[2].get_config()["activation"] == "sigmoid"
    x = inputs(shape=(28, 28))
    out = loaded.predict(x)
    assert out.shape == (7, 3)
    np.testing.assert_array_equal(out, model.predict(x))


def test_dense_without_bias_round_trips(tmp_path):
    specs = [{"type": "dense", "units": 5, "activation": "relu", "use_bias": False},
             {"type": "dense", "units": 2, "activation": "linear"}]
    model = build(specs, (6,))
    path = tmp_path / "nobias.h5"
    modelfile.save(path, model)
    with h5py.File(path, "r") as f:
        names = _strings(f["model_weights/dense"].attrs["weight_names"])
        assert names == ["dense/kernel:0"]
    loaded = modelfile.load(path).model
    assert loaded.layers[0].config["use_bias"] is False
    assert loaded.layers[1].config["use_bias"] is True
    assert [p.shape for p in loaded.params] == [(6, 5), (5, 2), (2,)]
    for a, b in zip(loaded.params, model.params):
        np.testing.assert_array_equal(a, b)
    x = inputs(shape=(6,))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def _without_none(spec):
    return {k: v for k, v in spec.items() if v is not None}


def test_regularizers_and_initializers_survive(tmp_path):
    specs = [{"type": "dense", "units": 4, "activation": "elu",
              "kernel_initializer": {"type": "he_normal", "seed": 7},
              "bias_initializer": {"type": "constant", "value": 0.5},
              "kernel_regularizer": {"l1": 0.001, "l2": 0.01},
              "bias_regularizer": {"l1": 0.0, "l2": 0.02},
              "activity_regularizer": {"l1": 1e-5, "l2": 0.0}},
             {"type": "dense", "units": 3, "activation": "softmax",
              "kernel_initializer": {"type": "random_uniform", "minval": -0.1, "maxval": 0.1,
                                     "seed": 3},
              "bias_initializer": {"type": "zeros"}}]
    model = build(specs, (5,))
    path = tmp_path / "reg.h5"
    modelfile.save(path, model)
    loaded = modelfile.load(path).model

    first, second = (layer.config for layer in loaded.layers)
    assert _without_none(first["kernel_initializer"]) == {"type": "he_normal", "seed": 7}
    assert first["bias_initializer"] == {"type": "constant", "value": 0.5}
    assert first["kernel_regularizer"] == {"l1": 0.001, "l2": 0.01}
    assert first["bias_regularizer"] == {"l1": 0.0, "l2": 0.02}
    assert first["activity_regularizer"] == {"l1": 1e-5, "l2": 0.0}
    assert _without_none(second["kernel_initializer"]) == {
        "type": "random_uniform", "minval": -0.1, "maxval": 0.1, "seed": 3}
    assert second["bias_initializer"] == {"type": "zeros"}
    assert second["kernel_regularizer"] is None and second["activity_regularizer"] is None

    # same penalties on the same weights
    assert loaded.penalty() == pytest.approx(model.penalty(), rel=1e-12)
    assert loaded.penalty() > 0
    # and a model rebuilt from the loaded specs draws the same initial weights
    fresh = Sequential([layer.get_config() for layer in loaded.layers], (5,)).build(
        np.random.default_rng(123))
    again = build(specs, (5,), seed=123)
    for a, b in zip(fresh.params, again.params):
        np.testing.assert_array_equal(a, b)


def test_overwriting_replaces_the_file(tmp_path):
    path = tmp_path / "m.h5"
    modelfile.save(path, build(seed=0))
    newer = build(seed=5)
    modelfile.save(path, newer)
    for a, b in zip(modelfile.load(path).model.params, newer.params):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == ["m.h5"]


# ---------------------------------------------------------------- written layout


def _strings(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def test_written_layout_is_keras_legacy_hdf5(saved):
    path, model, opt = saved
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        assert config["class_name"] == "Sequential"
        entries = config["config"]["layers"]
        assert entries[0]["class_name"] == "InputLayer"
        assert entries[0]["config"]["batch_input_shape"] == [None, 784]
        assert [e["class_name"] for e in entries[1:]] == ["Dense", "Dropout", "Dense"]
        assert [e["config"]["name"] for e in entries[1:]] == ["dense", "dropout", "dense_1"]
        assert entries[1]["config"]["units"] == 16 and entries[1]["config"]["activation"] == "relu"
        assert entries[2]["config"]["rate"] == 0.3
        assert entries[3]["config"]["activation"] == "softmax"

        training = json.loads(f.attrs["training_config"])
        assert training["loss"] == "categorical_crossentropy"
        assert training["metrics"] == ["accuracy"]
        assert training["optimizer_config"]["class_name"] == "Adam"
        assert training["optimizer_config"]["config"]["learning_rate"] == 0.001

        weights = f["model_weights"]
        layer_names = _strings(weights.attrs["layer_names"])
        assert layer_names == ["dense", "dropout", "dense_1"]
        seen = []
        for name in layer_names:
            weight_names = _strings(weights[name].attrs["weight_names"])
            for wname in weight_names:
                ds = weights[name][wname]
                assert isinstance(ds, h5py.Dataset)
                assert ds.dtype == np.float32
                seen.append(ds[()])
        assert _strings(weights["dense"].attrs["weight_names"]) == ["dense/kernel:0", "dense/bias:0"]
        assert _strings(weights["dropout"].attrs["weight_names"]) == []
        assert len(seen) == 4
        for value, param in zip(seen, model.params):
            np.testing.assert_array_equal(value, param)

        own = f["mlpcli"]
        assert "version" in own.attrs
        assert json.loads(own.attrs["config"]) == CONFIG
        assert json.loads(own["pipeline"].attrs["record"]) == PIPELINE.record()
        assert own["pipeline/scale"][()] == np.float32(1 / 255)
        assert json.loads(own.attrs["state"]) == STATE
        assert int(own["optimizer/iterations"][()]) == 3
        np.testing.assert_array_equal(own["optimizer/m/0"][()], opt.get_state()["m/0"])
        # nothing of mlpcli's leaks into the groups Keras reads
        assert set(f) == {"model_weights", "mlpcli"}


# ---------------------------------------------------------------- refusals


def refused(path, *words):
    """Load ``path``, expect a ModelFileError naming the file (and ``words``)."""
    with pytest.raises(ModelFileError) as info:
        modelfile.load(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return message


@pytest.fixture
def good(saved, tmp_path):
    """A fresh copy of a good model file, to damage."""
    copy_path = tmp_path / "damaged.h5"
    shutil.copyfile(saved[0], copy_path)
    return copy_path


def edit_config(path, change):
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config = change(config) or config
        f.attrs["model_config"] = json.dumps(config)


def replace_dataset(path, where, data):
    with h5py.File(path, "r+") as f:
        del f[where]
        f.create_dataset(where, data=data)


KERNEL = "model_weights/dense/dense/kernel:0"


def test_refuses_random_bytes(tmp_path):
    path = tmp_path / "noise.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    refused(path, "HDF5")


def test_refuses_zero_byte_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.touch()
    refused(path)


def test_refuses_truncated_file(saved, tmp_path):
    data = saved[0].read_bytes()
    path = tmp_path / "half.h5"
    path.write_bytes(data[:len(data) // 2])
    refused(path)


def test_refuses_missing_file(tmp_path):
    refused(tmp_path / "nowhere.h5", "no such file")


def test_refuses_file_without_model_config(good):
    with h5py.File(good, "r+") as f:
        del f.attrs["model_config"]
    refused(good, "model_config")


def test_refuses_model_config_that_is_not_json(good):
    with h5py.File(good, "r+") as f:
        f.attrs["model_config"] = "{'class_name': Sequential"
    refused(good, "model_config", "JSON")


def test_refuses_lambda_layer(good, monkeypatch):
    import builtins
    import marshal

    def forbidden(*args, **kwargs):
        raise AssertionError("the loader tried to run code from the file")

    def add_lambda(config):
        code = "print('pwned')"
        config["config"]["layers"].insert(2, {
            "class_name": "Lambda",
            "config": {"name": "lambda", "function": [code, None, None], "function_type": "lambda",
                       "module": "builtins", "output_shape": None, "arguments": {}}})
    edit_config(good, add_lambda)
    monkeypatch.setattr(marshal, "loads", forbidden)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert "'Lambda'" in refused(good, "Lambda")  # named as the Keras class


def test_refuses_unknown_layer_class(good):
    def conv(config):
        config["config"]["layers"][2] = {"class_name": "Conv2D",
                                         "config": {"name": "conv2d", "filters": 4,
                                                    "kernel_size": [3, 3]}}
    edit_config(good, conv)
    assert "'Conv2D'" in refused(good, "Conv2D")  # named as the Keras class


@pytest.mark.parametrize("kind", ["Model", "Functional"])
def test_refuses_functional_model(good, kind):
    def functional(config):
        config["class_name"] = kind
        config["config"]["input_layers"] = [["input_1", 0, 0]]
        config["config"]["output_layers"] = [["dense_1", 0, 0]]
    edit_config(good, functional)
    refused(good, kind, "Sequential")


def test_refuses_missing_weight_dataset(good):
    with h5py.File(good, "r+") as f:
        del f[KERNEL]
    refused(good)


def test_refuses_a_weight_linked_from_another_file(good, tmp_path):
    """An external link would make reading the model open some other file."""
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("kernel", data=np.zeros((784, 16), np.float32))
    with h5py.File(good, "r+") as f:
        del f[KERNEL]
        f[KERNEL] = h5py.ExternalLink(str(other), "kernel")
    refused(good, KERNEL, "link to another file", "other.h5")


def test_refuses_soft_links(good):
    with h5py.File(good, "r+") as f:
        f["mlpcli/alias"] = h5py.SoftLink("/model_weights")
    refused(good, "mlpcli/alias", "link")


def test_refuses_a_weight_stored_in_an_outside_file(good, tmp_path):
    """External storage would read the numbers of any file on the disk."""
    outside = tmp_path / "raw.bin"
    outside.write_bytes(np.zeros(784 * 16, np.float32).tobytes())
    with h5py.File(good, "r+") as f:
        del f[KERNEL]
        f.create_dataset(KERNEL, shape=(784, 16), dtype=np.float32, external=[(str(outside), 0, 784 * 16 * 4)])
    refused(good, KERNEL, "outside the file")


def test_refuses_extra_layer_weights(good):
    with h5py.File(good, "r+") as f:
        weights = f["model_weights"]
        g = weights.create_group("dense_2")
        g.attrs["weight_names"] = [b"dense_2/kernel:0", b"dense_2/bias:0"]
        g.create_dataset("dense_2/kernel:0", data=np.zeros((10, 4), np.float32))
        g.create_dataset("dense_2/bias:0", data=np.zeros(4, np.float32))
        weights.attrs["layer_names"] = [b"dense", b"dropout", b"dense_1", b"dense_2"]
    message = refused(good).replace(str(good), "")
    assert "2" in message and "3" in message


def test_refuses_weight_of_wrong_shape(good):
    replace_dataset(good, KERNEL, np.zeros((784, 15), np.float32))
    refused(good, "shape", "(784, 15)")


def test_refuses_non_numeric_weight(good):
    replace_dataset(good, KERNEL, np.array([b"0.1"] * 16, dtype=object).astype("S3"))
    refused(good, "dtype")


def test_refuses_variable_length_string_weight(good):
    replace_dataset(good, KERNEL, np.array(["0.1"] * 16, dtype=h5py.string_dtype()))
    refused(good, "dtype")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_non_finite_weights(good, bad):
    with h5py.File(good, "r+") as f:
        f[KERNEL][3, 4] = bad
    refused(good, "NaN")


def test_refuses_unknown_activation(good):
    def swoosh(config):
        config["config"]["layers"][1]["config"]["activation"] = "swooshy"
    edit_config(good, swoosh)
    refused(good, "swooshy")


def _malform(path, key, value):
    def change(config):
        config["config"]["layers"][1]["config"][key] = value
    edit_config(path, change)


def test_refuses_malformed_regularizer_config(good):
    """A nested config that is a list, not a dict: a ModelFileError, not an AttributeError."""
    _malform(good, "kernel_regularizer", {"class_name": "L1L2", "config": [0.1, 0.2]})
    refused(good, "regularizer")


def test_refuses_malformed_unknown_activation_config(good):
    _malform(good, "activation", {"class_name": "Mystery", "config": [1, 2]})
    refused(good, "Mystery")


def test_dict_activation_with_malformed_config_uses_class_name(good, saved):
    _malform(good, "activation", {"class_name": "ReLU", "config": [1, 2]})
    loaded = modelfile.load(good).model
    assert loaded.layers[0].config["activation"] == "relu"
    x = inputs()
    np.testing.assert_array_equal(loaded.predict(x), saved[1].predict(x))


def test_malformed_initializer_config_falls_back_to_default(good, saved):
    """Initializers do not affect loaded weights; a malformed one means the default."""
    _malform(good, "kernel_initializer", {"class_name": "HeNormal", "config": [1, 2]})
    loaded = modelfile.load(good).model
    assert loaded.layers[0].config["kernel_initializer"] == {"type": "glorot_uniform"}
    np.testing.assert_array_equal(loaded.params[0], saved[1].params[0])


def test_refuses_bad_optimizer_slot(good):
    replace_dataset(good, "mlpcli/optimizer/m/0", np.array(["x"], dtype=h5py.string_dtype()))
    refused(good, "mlpcli/optimizer/m/0")


# ---------------------------------------------------------------- atomic save


def _create_dataset_calls(monkeypatch, fail_at=None):
    """Count (and optionally fail) ``h5py.Group.create_dataset`` calls."""
    calls = []
    original = h5py.Group.create_dataset

    def create_dataset(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("name"))
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    return calls


@pytest.mark.parametrize("fail", ["first", "last"])
def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch, fail):
    path = tmp_path / "model.h5"
    old = build(seed=0)
    save_full(path, old, trained_adam(old))
    before = path.read_bytes()

    new = build(seed=9)
    new_opt = trained_adam(new)
    with monkeypatch.context() as m:
        calls = _create_dataset_calls(m)
        save_full(tmp_path / "probe.h5", new, new_opt)
    os.unlink(tmp_path / "probe.h5")
    assert len(calls) == 4 + 2 + 9  # 4 weights + the pipeline's scale and offset + iterations + 8 Adam slots

    fail_at = 1 if fail == "first" else len(calls)
    with monkeypatch.context() as m:
        _create_dataset_calls(m, fail_at=fail_at)
        with pytest.raises(DiskFullError) as info:
            save_full(path, new, new_opt)
    assert str(path) in str(info.value) and "no space left" in str(info.value)

    assert path.read_bytes() == before
    mf = modelfile.load(path)
    for a, b in zip(mf.model.params, old.params):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["model.h5"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "model.h5"
    _create_dataset_calls(monkeypatch, fail_at=2)
    with pytest.raises(DiskFullError):
        modelfile.save(path, build())
    assert os.listdir(tmp_path) == []
