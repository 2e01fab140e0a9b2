"""mlpcli.pipeline: the input pipeline record a model file carries, written by training,
read back by every consumer, versioned; and the files written before it existed."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mlpcli import modelfile
from mlpcli.cli import main
from mlpcli.errors import ModelFileError
from mlpcli.nn.model import Sequential
from mlpcli.pipeline import VERSION, InputPipeline

LEGACY = Path(__file__).parent / "data" / "legacy"


def model_of(input_shape, units=3):
    return Sequential([{"type": "flatten"}, {"type": "dense", "units": units, "activation": "softmax"}],
                      input_shape).build(np.random.default_rng(0))


PIPELINES = [
    InputPipeline(kind="digits", feature_shape=(28, 28), scaling="unit", scale=np.float32(1 / 255),
                  offset=np.float32(0), class_names=[str(i) for i in range(3)]),
    InputPipeline(kind="image", feature_shape=(12, 20, 3), scaling="unit", scale=np.float32(1 / 255),
                  offset=np.float32(0), class_names=["left", "right", "none"], color_mode="rgb"),
    InputPipeline(kind="table", feature_shape=(3,), scaling="standardize",
                  scale=np.array([0.5, 2, 4], np.float32), offset=np.array([-1, 0, 1], np.float32),
                  class_names=["a", "b", "c"], columns=["x", "y", "z"], label_column="kind"),
    InputPipeline(kind="array", feature_shape=(2, 3), scaling="none", scale=np.float32(1),
                  offset=np.float32(0), task="regression"),
]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.kind)
def test_every_kind_is_written_and_read_back(tmp_path, pipeline):
    model = model_of(pipeline.feature_shape, units=1 if pipeline.task == "regression" else 3)
    path = tmp_path / "m.h5"
    modelfile.save(path, model, pipeline=pipeline)
    got = modelfile.load(path).pipeline
    assert got.record() == pipeline.record()
    np.testing.assert_array_equal(got.scale, pipeline.scale)
    np.testing.assert_array_equal(got.offset, pipeline.offset)
    assert got.scale.dtype == np.float32
    with h5py.File(path) as f:  # JSON and numeric arrays, nothing else
        group = f["mlpcli/pipeline"]
        assert set(group) == {"scale", "offset"} and set(group.attrs) == {"record"}
        assert json.loads(group.attrs["record"])["version"] == VERSION


def damage(path, change):
    with h5py.File(path, "r+") as f:
        record = json.loads(f["mlpcli/pipeline"].attrs["record"])
        change(record, f)
        f["mlpcli/pipeline"].attrs["record"] = json.dumps(record)


@pytest.mark.parametrize("change, message", [
    (lambda r, f: r.update(version=VERSION + 1), "written by a newer mlpcli"),
    (lambda r, f: r.update(version="1"), "has no valid version"),
    (lambda r, f: r.update(kind="python"), "has kind 'python'; expected one of digits, image, table, array"),
    (lambda r, f: r.update(columns=["x", "y"]), "names 2 columns for feature_shape [3]"),
    (lambda r, f: r.update(feature_shape=[4], columns=list("abcd")), "has scale of shape (3,); expected () or (4,)"),
    (lambda r, f: r.update(scaling="log"), "has scaling 'log'"),
    (lambda r, f: r.update(class_names=[1, 2, 3]), "class_names that is not a list of strings"),
    (lambda r, f: f.__delitem__("mlpcli/pipeline/offset"),
     "has no offset array"),
    # hand-edited records that type-check but do not hold together
    (lambda r, f: r.update(columns=["x", "x", "z"]), "has columns with an empty or repeated name"),
    (lambda r, f: r.update(columns=["x", "", "z"]), "has columns with an empty or repeated name"),
    (lambda r, f: r.update(columns=["x", "kind", "z"]), "or the label column 'kind'"),
    (lambda r, f: r.update(label_column=""), "has label_column '', not a column name"),
    (lambda r, f: r.update(class_names=["a", "a", "c"]), "has class_names with an empty or repeated name"),
    (lambda r, f: r.update(class_names=["a", "", "c"]), "has class_names with an empty or repeated name"),
    (lambda r, f: r.update(task="regression"), "names classes for a regression model"),
    (lambda r, f: r.update(feature_shape=[3, 1], columns=None), "has a table feature_shape [3, 1]; expected [columns]"),
    (lambda r, f: r.update(class_names=["a", "b"]), "names 2 classes, but the model has 3 output(s), for 3 classes"),
    (lambda r, f: r.update(feature_shape=[1] * 33, kind="array"), "has an invalid feature_shape"),
])
def test_a_damaged_or_newer_record_is_refused(tmp_path, change, message):
    path = tmp_path / "m.h5"
    modelfile.save(path, model_of((3,)), pipeline=PIPELINES[2])
    damage(path, change)
    with pytest.raises(ModelFileError) as info:
        modelfile.load(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_training_records_a_table_pipeline_with_its_columns(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "configs/breast-cancer.yaml", "--run-dir", str(run), "-q",
                                       "--no-plots", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    pipeline = modelfile.load(run / "model.h5").pipeline
    header = Path("configs/data/breast_cancer_train.csv").read_text().splitlines()[0].split(",")
    assert pipeline.kind == "table" and pipeline.label_column == "diagnosis"
    assert pipeline.columns == [c for c in header if c != "diagnosis"]
    assert pipeline.scaling == "standardize" and pipeline.scale.shape == (30,)
    assert pipeline.class_names == ["benign", "malignant"] and pipeline.task == "classification"


def test_a_file_written_before_the_record_is_read_from_its_config():
    digits = modelfile.load(LEGACY / "digits-model.h5").pipeline
    assert (digits.kind, digits.feature_shape, digits.scaling) == ("digits", (28, 28), "unit")
    assert digits.scale == np.float32(1 / 255)
    table = modelfile.load(LEGACY / "table-model.h5").pipeline
    assert (table.kind, table.feature_shape, table.scaling, table.label_column) == \
        ("table", (30,), "standardize", "diagnosis")
    assert table.columns is None  # not recorded then: a CSV's columns are taken in file order
    assert table.class_names == ["benign", "malignant"]


def test_a_legacy_image_model_without_its_size_takes_arrays_and_says_so(tmp_path):
    path = tmp_path / "old.h5"
    shutil.copy(LEGACY / "digits-model.h5", path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f["mlpcli"].attrs["config"])
        config["data"] = {**config["data"], "dataset": "image_folder", "path": "x"}
        f["mlpcli"].attrs["config"] = json.dumps(config)
    pipeline = modelfile.load(path).pipeline
    assert pipeline.kind == "array" and "did not record its images' size" in pipeline.notes[0]


def test_a_group_without_its_record_is_refused(tmp_path):
    path = tmp_path / "m.h5"
    modelfile.save(path, model_of((3,)), pipeline=PIPELINES[2])
    with h5py.File(path, "r+") as f:
        del f["mlpcli/pipeline"].attrs["record"]
    with pytest.raises(ModelFileError, match="has no 'record' attribute"):
        modelfile.load(path)


def test_a_record_that_does_not_fit_the_model_is_refused(tmp_path):
    path = tmp_path / "m.h5"
    modelfile.save(path, model_of((12, 20, 3)), pipeline=PIPELINES[1])
    damage(path, lambda r, f: r.update(feature_shape=[12, 19, 3]))
    with pytest.raises(ModelFileError, match=r"samples of shape \[12, 19, 3\], which do not fit the model's "
                                             r"input shape \[12, 20, 3\]"):
        modelfile.load(path)


@pytest.mark.parametrize("shape", [[14, 56], [28, 28, 1], [784]])
def test_a_digits_record_of_another_shape_is_refused(tmp_path, shape):
    """MNIST's centring makes 28x28 digits, whatever the record says; another shape (even of
    784 values) would be filled with them in the wrong order."""
    path = tmp_path / "m.h5"
    modelfile.save(path, model_of((28, 28)), pipeline=PIPELINES[0])
    damage(path, lambda r, f: r.update(feature_shape=shape))
    with pytest.raises(ModelFileError, match=r"has a digits feature_shape .*; expected \[28, 28\]"):
        modelfile.load(path)


def test_a_legacy_file_whose_class_names_do_not_fit_its_outputs_loads_without_them(tmp_path):
    """As the mlpcli that wrote it did: the names are ignored and classes shown by index."""
    path = tmp_path / "old.h5"
    shutil.copy(LEGACY / "digits-model.h5", path)
    with h5py.File(path, "r+") as f:
        f["mlpcli"].attrs["class_names"] = json.dumps(["a", "b", "c"])
    assert modelfile.load(path).pipeline.class_names is None


def test_samples_of_many_axes_train_into_a_model_that_evaluates(tmp_path):
    """The record takes every sample shape training takes (here (2, 2, 2, 2)): a run never
    writes a model file that its own reader refuses."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.standard_normal((24, 2, 2, 2, 2)).astype(np.float32),
             y_train=np.arange(24) % 2, x_test=rng.standard_normal((4, 2, 2, 2, 2)).astype(np.float32),
             y_test=np.arange(4) % 2)
    (tmp_path / "c.yaml").write_text(
        "data: {dataset: npz, path: d.npz, validation_split: 0.25}\n"
        "model: {layers: [{type: flatten}, {type: dense, units: 2, activation: softmax}]}\n"
        "loss: sparse_categorical_crossentropy\ntraining: {epochs: 1, batch_size: 8}\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(tmp_path / "c.yaml"), "--run-dir", str(run), "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert modelfile.load(run / "model.h5").pipeline.feature_shape == (2, 2, 2, 2)
    result = CliRunner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
