"""mlp export --format onnx: the exported graph, run in onnxruntime on raw inputs as mlp predict
reads them, gives mlpcli's own probabilities and classes; what it cannot express is refused
naming the layer; nothing the user has is overwritten."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlpcli import __version__, modelfile, onnx_export
from mlpcli.cli import main
from mlpcli.data.builtin import load_builtin
from mlpcli.nn import activations, layers
from mlpcli.nn.model import Sequential
from mlpcli.onnx_opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from mlpcli.predictor import Predictor

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

BREAST_CANCER_TEST = Path("configs/data/breast_cancer_test.csv")


def mlp(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def session(path_or_model):
    model = onnx.load(path_or_model) if isinstance(path_or_model, (str, Path)) else path_or_model
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(path_or_model, raw):
    """{output name: array} of the ONNX model on ``raw`` samples."""
    s = session(path_or_model)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {"input": np.asarray(raw, np.float32)})))


def mlpcli_probabilities(predictor, raw):
    return predictor.probabilities(predictor.outputs(predictor.prepare(raw, "test data")))


def test_mnist_run_matches_mlpcli_on_raw_test_pixels(tiny_run, tmp_path):
    out = tmp_path / "digits.onnx"
    result = mlp("export", tiny_run, "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}" in result.output
    pixels = load_builtin("mnist").x_test[:2000]  # uint8 (n, 28, 28), as mlp predict reads them
    got = run(out, pixels)
    predictor = Predictor.open(tiny_run)
    expected = mlpcli_probabilities(predictor, pixels)
    assert got["probabilities"].shape == (2000, 10)
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)
    assert got["class"].dtype == np.int64
    np.testing.assert_array_equal(got["class"], expected.argmax(axis=1))
    model = onnx.load(out)
    assert model.opset_import[0].version == DEFAULT_OPSET
    assert [n.op_type for n in model.graph.node] == ["Mul", "Reshape", "Gemm", "Relu", "Gemm", "Softmax",
                                                     "Identity", "ArgMax"]  # x / 255 folded in; no Add: offset 0
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["mlpcli.class_names"]) == predictor.class_names
    assert json.loads(props["mlpcli.pipeline"]) == predictor.pipeline.record()
    assert props["mlpcli.version"] == __version__
    assert props["mlpcli.source"] == str(Path(tiny_run) / "model.h5")


def test_standardized_csv_run_matches_mlpcli_on_raw_csv_values(csv_run, tmp_path):
    out = tmp_path / "table.onnx"
    assert mlp("export", csv_run, "--format", "onnx", "--out", out).exit_code == 0
    predictor = Predictor.open(csv_run)
    assert predictor.pipeline.scaling == "standardize" and not predictor.pipeline.categories
    lines = BREAST_CANCER_TEST.read_text().splitlines()
    header = lines[0].split(",")
    cells = np.array([line.split(",") for line in lines[1:]])
    raw = cells[:, [header.index(c) for c in predictor.pipeline.columns]].astype(np.float64)
    got = run(out, raw)
    expected = mlpcli_probabilities(predictor, raw)
    assert expected.shape == (len(raw), 2)  # one sigmoid output: [1 - p, p]
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got["class"], expected.argmax(axis=1))
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(props["mlpcli.class_names"]) == ["benign", "malignant"]
    assert json.loads(props["mlpcli.pipeline"])["columns"] == predictor.pipeline.columns


# ---------------------------------------------------------------- every layer and activation

def every_layer_model(path, seed=0):
    """A model file (no mlpcli record) with every layer type, normalization statistics far from
    their initial values, and several activations, on (4, 6) samples."""
    model = Sequential([
        {"type": "layer_normalization"},
        {"type": "flatten"},
        {"type": "dense", "units": 16, "activation": "gelu"},
        {"type": "batch_normalization", "epsilon": 0.01},
        {"type": "dense", "units": 12, "activation": "selu", "use_bias": False},
        {"type": "activation", "activation": "softsign"},
        {"type": "dropout", "rate": 0.5},
        {"type": "batch_normalization", "center": False, "scale": False},
        {"type": "dense", "units": 8, "activation": "swish"},
        {"type": "layer_normalization", "center": False, "scale": False},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ], (4, 6)).build(np.random.default_rng(seed))
    assert {layer.type for layer in model.layers} == set(layers.LAYERS)  # a new layer type: add it here
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:
        for name, weight in zip(layer.weight_names, layer.weights):
            shift = {"moving_variance": 1.5, "gamma": 1.0}.get(name, 0.0)
            weight[...] = np.abs(rng.normal(size=weight.shape)) * 0.5 + shift if name == "moving_variance" \
                else rng.normal(size=weight.shape) + shift
    modelfile.save(path, model, loss="categorical_crossentropy")
    return path


@pytest.mark.parametrize("opset", [MIN_OPSET, DEFAULT_OPSET, MAX_OPSET])
def test_every_layer_type_matches_mlpcli(tmp_path, opset):
    predictor = Predictor.open(model_path=every_layer_model(tmp_path / "m.h5"))
    model = onnx_export.onnx_model(predictor, opset)
    raw = np.random.default_rng(2).normal(0, 3, (500, 4, 6)).astype(np.float32)
    got = run(model, raw)
    expected = mlpcli_probabilities(predictor, raw)
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got["class"], expected.argmax(axis=1))
    ops = {n.op_type for n in model.graph.node}
    assert "Dropout" not in ops and "BatchNormalization" not in ops  # folded into Mul and Add
    assert ("LayerNormalization" in ops) == (opset >= 17) and ("Gelu" in ops) == (opset >= 20)


@pytest.mark.parametrize("opset", [MIN_OPSET, MAX_OPSET])
@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_every_activation_matches_mlpcli(tmp_path, name, opset):
    """Pre-activations over [-12, 12]: hard_sigmoid's clipping, elu's and selu's negative side."""
    model = Sequential([{"type": "dense", "units": 6, "activation": name}], (5,)).build(np.random.default_rng(0))
    model.layers[0].kernel[...] = np.random.default_rng(1).normal(0, 2, (5, 6))
    modelfile.save(tmp_path / "m.h5", model)
    predictor = Predictor.open(model_path=tmp_path / "m.h5")
    raw = np.random.default_rng(3).uniform(-3, 3, (400, 5)).astype(np.float32)
    got = run(onnx_export.onnx_model(predictor, opset), raw)
    outputs = predictor.outputs(predictor.prepare(raw, "test"))
    if predictor.task == "classification":
        np.testing.assert_allclose(got["probabilities"], predictor.probabilities(outputs), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got["predictions"], outputs, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- refusals and files

@pytest.mark.parametrize("table, entry, words", [
    (onnx_export.LAYERS, "layer_normalization",
     "layer 0 ('layer_normalization', type layer_normalization): a layer_normalization layer"),
    (onnx_export.ACTIVATIONS, "gelu", "layer 2 ('dense', type dense): its activation gelu"),
])
def test_what_onnx_cannot_express_is_refused_naming_the_layer(tmp_path, monkeypatch, table, entry, words):
    model = every_layer_model(tmp_path / "m.h5")
    monkeypatch.delitem(table, entry)  # as a component this writer has no form for
    result = mlp("export", "--model", model, "--format", "onnx")
    assert result.exit_code == 2, result.output
    assert f"Error: {words}, which mlp export --format onnx cannot express" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]  # nothing written, no temporary left


def test_opset_is_selectable_within_the_stated_range(tmp_path):
    model = every_layer_model(tmp_path / "m.h5")
    result = mlp("export", "--model", model, "--format", "onnx", "--opset", 13)
    assert result.exit_code == 0, result.output
    assert onnx.load(tmp_path / "m.onnx").opset_import[0].version == 13  # default out: beside the model
    for bad in (MIN_OPSET - 1, MAX_OPSET + 1):
        result = mlp("export", "--model", model, "--format", "onnx", "--opset", bad, "--out", tmp_path / "x.onnx")
        assert result.exit_code == 2
        assert f"--opset {bad}: mlp export writes opsets {MIN_OPSET} to {MAX_OPSET}" in result.output
    result = mlp("export", "--model", model, "--format", "keras", "--opset", 17)
    assert result.exit_code == 2 and "--opset: only for --format onnx" in result.output
    assert not (tmp_path / "x.onnx").exists()


def test_an_existing_out_is_kept_unless_overwrite(tmp_path):
    model = every_layer_model(tmp_path / "m.h5")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    result = mlp("export", "--model", model, "--format", "onnx")
    assert result.exit_code == 2 and f"{out}: already exists" in result.output and "--overwrite" in result.output
    assert out.read_bytes() == b"keep me"
    result = mlp("export", "--model", model, "--format", "onnx", "--out", model, "--overwrite")
    assert result.exit_code == 2 and "is the model being exported" in result.output
    assert modelfile.load(model).model.n_outputs == 3
    assert mlp("export", "--model", model, "--format", "onnx", "--overwrite").exit_code == 0
    onnx.checker.check_model(onnx.load(out))


def test_a_run_exports_beside_its_model_file(tiny_run, tmp_path):
    run_dir = shutil.copytree(tiny_run, tmp_path / "run")  # tiny_run itself is not to be written into
    result = mlp("export", run_dir, "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert (run_dir / "model.onnx").is_file()
    again = mlp("export", run_dir, "--format", "onnx")
    assert again.exit_code == 2 and "already exists" in again.output
    checkpoint = Predictor.open(run_dir, checkpoint="last").path
    assert mlp("export", run_dir, "--format", "onnx", "--checkpoint", "last").exit_code == 0
    assert (run_dir / f"{checkpoint.stem}.onnx").is_file()  # in the run folder, not among the checkpoints


def test_missing_onnx_package_is_one_line_naming_the_install(tmp_path, monkeypatch):
    model = every_layer_model(tmp_path / "m.h5")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    result = mlp("export", "--model", model, "--format", "onnx")
    assert result.exit_code == 2
    assert result.output == "Error: mlp export --format onnx needs the onnx package: pip install 'mlpcli[onnx]'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]


def test_export_help_runs():
    result = mlp("export", "--help")
    assert result.exit_code == 0
    assert f"The ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})" in " ".join(result.output.split())


def test_overwrite_never_replaces_what_is_not_a_regular_file(tmp_path):
    import os
    import stat

    model = every_layer_model(tmp_path / "m.h5")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = mlp("export", "--model", model, "--format", "onnx", "--out", str(fifo), "--overwrite")
    assert result.exit_code == 1 and "is not a regular file" in result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO it was
