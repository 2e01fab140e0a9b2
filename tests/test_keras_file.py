"""mlpcli.keras_file against real Keras 3: the .keras files mlpcli writes load in
``keras.saving.load_model`` and predict the same, Keras-written .keras files load in
mlpcli (also through ``mlp predict`` and ``mlp evaluate``), and hostile zips are
refused with one ModelFileError naming the file."""

import dataclasses
import io
import json
import os
import shutil
import struct
import zipfile

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

keras = pytest.importorskip("keras")

from mlpcli import keras_file, modelfile  # noqa: E402
from mlpcli.cli import main  # noqa: E402
from mlpcli.data.builtin import load_builtin  # noqa: E402
from mlpcli.errors import MlpError, ModelFileError  # noqa: E402
from mlpcli.nn import losses, optimizers  # noqa: E402
from mlpcli.nn.model import Sequential  # noqa: E402
from mlpcli.predictor import Predictor  # noqa: E402


@pytest.fixture(scope="module")
def mnist_test():
    mnist = load_builtin("mnist")
    return mnist.x_test[:200], mnist.y_test[:200]


def test_trained_run_loads_in_keras_with_its_pipeline(tiny_run, tmp_path, mnist_test):
    predictor = Predictor.open(tiny_run)
    path = tmp_path / "quick.keras"
    keras_file.write_keras(path, predictor)
    x = predictor.prepare(mnist_test[0], "mnist")  # scaled as the pipeline says: x / 255
    assert x.max() <= 1.0 and x.max() > 0.5
    km = keras.saving.load_model(path)
    np.testing.assert_allclose(km.predict(x, verbose=0), predictor.outputs(x), atol=1e-5, rtol=0)
    back = modelfile.load(path)
    assert back.pipeline.record() == predictor.pipeline.record()
    np.testing.assert_array_equal(back.pipeline.scale, predictor.pipeline.scale)
    for got, want in zip(back.model.weights, predictor.model.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "mlpcli/pipeline.json",
                                              "model.weights.h5"]
        assert json.loads(archive.read("metadata.json"))["keras_version"].startswith("3.")


def test_mlp_export_writes_a_keras_file_beside_the_run_model(tiny_run, tmp_path, mnist_test):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = CliRunner().invoke(main, ["export", str(run), "--format", "keras"])
    assert result.exit_code == 0, result.output
    path = run / "model.keras"
    assert f"Wrote {path}" in result.output
    predictor = Predictor.open(run)
    x = predictor.prepare(mnist_test[0], "mnist")
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), predictor.outputs(x),
                               atol=1e-5, rtol=0)
    again = CliRunner().invoke(main, ["export", str(run), "--format", "keras"])
    assert again.exit_code == 2 and "already exists" in again.output  # kept, without --overwrite


def _normalization_model():
    """A trained mlpcli model with every layer kind, whose moving statistics have moved."""
    specs = [{"type": "flatten"},
             {"type": "dense", "units": 8, "activation": "tanh", "kernel_regularizer": {"l2": 0.01}},
             {"type": "batch_normalization", "momentum": 0.5},
             {"type": "dropout", "rate": 0.3},
             {"type": "dense", "units": 8, "use_bias": False},
             {"type": "activation", "activation": "gelu"},
             {"type": "layer_normalization", "scale": False, "epsilon": 0.01},
             {"type": "batch_normalization", "center": False},
             {"type": "dense", "units": 3, "activation": "softmax"}]
    model = Sequential(specs, (2, 3)).build(np.random.default_rng(0))
    opt = optimizers.get("adam")()
    opt.build(model.params)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((32, 2, 3)) * 3 + 1).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(32) % 3]
    for _ in range(3):
        model.train_step(x, y, losses.get("categorical_crossentropy"), opt, 0.01)
    assert not np.allclose(model.layers[2].moving_variance, 1)
    return model, x


def test_normalization_model_loads_in_keras_and_predicts_the_same(tmp_path):
    model, x = _normalization_model()
    keras_file.write_model(tmp_path / "norm.keras", model)
    km = keras.saving.load_model(tmp_path / "norm.keras")
    assert [type(layer).__name__ for layer in km.layers] == [
        "Flatten", "Dense", "BatchNormalization", "Dropout", "Dense", "Activation", "LayerNormalization",
        "BatchNormalization", "Dense"]
    np.testing.assert_allclose(km.predict(x, verbose=0), model.predict(x), atol=1e-5, rtol=0)
    back = modelfile.load(tmp_path / "norm.keras")
    assert back.pipeline is None
    np.testing.assert_array_equal(back.model.predict(x), model.predict(x))


def test_weight_groups_are_named_as_keras_names_them(tmp_path):
    """Keras addresses a layer's weights by its class (dense, dense_1, ...), not by its name:
    with layers named otherwise, the file still loads in Keras with each weight in its place."""
    specs = [{"type": "dense", "units": 4, "name": "hidden"}, {"type": "dense", "units": 2, "name": "dense"}]
    model = Sequential(specs, (3,)).build(np.random.default_rng(0))
    keras_file.write_model(tmp_path / "named.keras", model)
    with zipfile.ZipFile(tmp_path / "named.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as f:
        assert f["layers/dense/vars/0"].shape == (3, 4) and f["layers/dense_1/vars/0"].shape == (4, 2)
    km = keras.saving.load_model(tmp_path / "named.keras")
    assert [layer.name for layer in km.layers] == ["hidden", "dense"]
    np.testing.assert_array_equal(km.layers[0].get_weights()[0], model.layers[0].kernel)


def test_what_keras_cannot_hold_is_refused_naming_the_layer(tmp_path):
    model = Sequential([{"type": "dense", "units": 2, "name": "block/out"}], (3,)).build(np.random.default_rng(0))
    with pytest.raises(MlpError, match=r"layer 0 \(block/out\).*'/'"):
        keras_file.write_model(tmp_path / "bad.keras", model)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left
    model = Sequential([{"type": "dense", "units": 2}, {"type": "dropout"}], (3,)).build(np.random.default_rng(0))
    model.layers[1].spec = dataclasses.replace(model.layers[1].spec, keras=None)  # a layer Keras has no class for
    with pytest.raises(MlpError, match=r"layer 1 \(dropout\) is a dropout layer, which has no Keras class"):
        keras_file.write_model(tmp_path / "bad.keras", model)
    assert list(tmp_path.iterdir()) == []


def _keras_model():
    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                           keras.layers.BatchNormalization(), keras.layers.Dropout(0.2),
                           keras.layers.Dense(10, activation="softmax")])
    km.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    km.fit(x, np.arange(64) % 10, epochs=1, batch_size=16, verbose=0)  # moving statistics move
    return km


@pytest.fixture(scope="module")
def keras_written(tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "keras_mlp.keras"
    km = _keras_model()
    km.save(path)
    return path, km


def test_keras_written_file_loads_in_mlpcli(keras_written, mnist_test):
    path, km = keras_written
    loaded = modelfile.load(path)
    assert [layer.type for layer in loaded.model.layers] == ["dense", "batch_normalization", "dropout", "dense"]
    assert loaded.pipeline is None and loaded.loss == "sparse_categorical_crossentropy"
    assert not np.allclose(loaded.model.layers[1].moving_mean, 0)
    x = mnist_test[0].reshape(-1, 784).astype(np.float32) / 255
    np.testing.assert_allclose(loaded.model.predict(x), km.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_keras_written_file_through_mlp_predict_and_evaluate(keras_written, mnist_test, tmp_path):
    path, km = keras_written
    raw, labels = mnist_test
    np.save(tmp_path / "rows.npy", raw)
    np.savez(tmp_path / "test.npz", x_test=raw, y_test=labels)
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "rows.npy"), "--model", str(path),
                                       "--scaling", "unit", "--out", str(tmp_path / "p.npy")])
    assert result.exit_code == 0, result.output
    expected = km.predict(raw.reshape(-1, 784).astype(np.float32) / 255, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5, rtol=0)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(path), "--data", str(tmp_path / "test.npz"),
                                       "--scaling", "unit", "--json"])
    assert result.exit_code == 0, result.output
    accuracy = json.loads(result.stdout)["metrics"]["accuracy"]
    assert accuracy == pytest.approx(float((expected.argmax(axis=1) == labels).mean()))


def test_mlpcli_written_file_through_mlp_predict_needs_no_scaling(tiny_run, tmp_path, mnist_test):
    predictor = Predictor.open(tiny_run)
    keras_file.write_keras(tmp_path / "quick.keras", predictor)
    np.save(tmp_path / "rows.npy", mnist_test[0][:20])
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "rows.npy"), "--model",
                                       str(tmp_path / "quick.keras"), "--out", str(tmp_path / "p.npy")])
    assert result.exit_code == 0, result.output
    expected = predictor.outputs(predictor.prepare(mnist_test[0][:20], "rows"))
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6, rtol=0)


def test_init_from_a_keras_file_copies_its_weights(tiny_run, tmp_path):
    predictor = Predictor.open(tiny_run)
    keras_file.write_keras(tmp_path / "quick.keras", predictor)
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "run"),
                                       "--no-plots", "--init-from", str(tmp_path / "quick.keras"),
                                       "--set", "data.max_train_samples=200", "--set", "training.epochs=1",
                                       "--set", "model.layers[0].trainable=false"])
    assert result.exit_code == 0, result.output
    assert "  dense: copied kernel [784, 64], bias [64]" in result.output
    trained = modelfile.load(tmp_path / "run" / "model.h5").model
    np.testing.assert_array_equal(trained.layers[0].kernel, predictor.model.layers[0].kernel)


# ---------------------------------------------------------------------------- hostile files

def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def good_members(tmp_path_factory):
    """The members of a small valid .keras file, by name."""
    path = tmp_path_factory.mktemp("good") / "small.keras"
    model = Sequential([{"type": "dense", "units": 3, "activation": "softmax"}], (4,)).build(np.random.default_rng(0))
    keras_file.write_model(path, model)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _refused(path, *words):
    with pytest.raises(ModelFileError) as info:
        modelfile.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for word in words:
        assert word in message, message
    result = CliRunner().invoke(main, ["predict", str(path), "--model", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return message


def test_path_traversal_names_are_refused(tmp_path, good_members):
    for name in ("../evil.json", "/etc/evil", "a\\..\\b", "assets/../../x"):
        path = _zip(tmp_path / "traversal.keras", {**good_members, name: b"{}"})
        _refused(path, "unsafe name")


def test_member_claiming_a_huge_size_is_refused_before_reading(tmp_path, good_members):
    path = _zip(tmp_path / "bomb.keras", good_members, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    # the central directory entry of config.json: its uncompressed size (offset 24) says 2**31 bytes
    at = data.index(b"PK\x01\x02")
    while data[at + 46:at + 46 + len(b"config.json")] != b"config.json":
        at = data.index(b"PK\x01\x02", at + 1)
    data[at + 24:at + 28] = struct.pack("<I", 2**31)
    path.write_bytes(bytes(data))
    _refused(path, "config.json", "declares 2,147,483,648 bytes")


def test_not_a_zip_and_a_truncated_zip_are_refused(tmp_path, good_members):
    path = tmp_path / "notzip.keras"
    path.write_bytes(b"PK\x03\x04 this is no zip at all")
    _refused(path, "zip")
    whole = _zip(tmp_path / "whole.keras", good_members).read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    _refused(path, "zip")


def test_missing_config_and_garbage_json_are_refused(tmp_path, good_members):
    _refused(_zip(tmp_path / "noconfig.keras", {k: v for k, v in good_members.items() if k != "config.json"}),
             "no config.json")
    _refused(_zip(tmp_path / "garbage.keras", {**good_members, "config.json": b"{not json"}),
             "config.json is not valid JSON")
    _refused(_zip(tmp_path / "deep.keras", {**good_members, "config.json": b"[" * 100000}),
             "config.json is not valid JSON")


def test_wrong_weight_shapes_and_missing_weights_are_refused(tmp_path, good_members):
    def weights(shape):
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as f:
            f.create_dataset("layers/dense/vars/0", data=np.zeros(shape, np.float32))
            f.create_dataset("layers/dense/vars/1", data=np.zeros(3, np.float32))
        return buffer.getvalue()

    _refused(_zip(tmp_path / "shape.keras", {**good_members, "model.weights.h5": weights((3, 4))}),
             "layers/dense/vars/0", "shape (3, 4)", "(4, 3)")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((4, 3), np.float32))
    _refused(_zip(tmp_path / "few.keras", {**good_members, "model.weights.h5": buffer.getvalue()}),
             "layers/dense/vars", "kernel, bias")
    _refused(_zip(tmp_path / "noweights.keras",
                  {k: v for k, v in good_members.items() if k != "model.weights.h5"}), "no model.weights.h5")
    _refused(_zip(tmp_path / "nothdf5.keras", {**good_members, "model.weights.h5": b"\0" * 64}),
             "not a readable HDF5")


def test_bad_pipeline_member_is_refused(tmp_path, good_members):
    _refused(_zip(tmp_path / "pipe.keras", {**good_members, "mlpcli/pipeline.json": b'{"record": 3}'}),
             "input pipeline")


def test_an_activation_mapping_that_names_none_is_refused_not_read_as_linear(tmp_path, good_members):
    config = json.loads(good_members["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["activation"] = {"x": 1}
    path = _zip(tmp_path / "odd.keras", {**good_members, "config.json": json.dumps(config).encode()})
    _refused(path, "has an activation that names none")
