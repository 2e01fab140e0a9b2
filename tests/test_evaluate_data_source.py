"""Where ``mlp evaluate`` takes its data from: ``--data``, or the config.yaml of the run being
evaluated -- never a path stored inside a model file, which may come from anyone."""

import json

import h5py
import pytest
from click.testing import CliRunner

from mlpcli.cli import main

CONFIG = """
name: csv
data: {dataset: csv, path: train.csv, test_path: test.csv, validation_split: 0.0}
model:
  input_shape: [2]
  layers: [{type: dense, units: 2, activation: softmax}]
loss: sparse_categorical_crossentropy
checkpoint: {monitor: loss}
training: {epochs: 1, batch_size: 2}
"""
ROWS = "x1,x2,label\n0,1,0\n1,0,1\n1,1,0\n0,0,1\n"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def csv_run(tmp_path):
    """A run trained on train.csv with test.csv as its test split."""
    (tmp_path / "train.csv").write_text(ROWS)
    (tmp_path / "test.csv").write_text(ROWS)
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = invoke("train", tmp_path / "c.yaml", "--run-dir", tmp_path / "run", "-q", "--no-plots")
    assert result.exit_code == 0, result.output
    return tmp_path / "run"


def with_stored_data(run_dir, folder, **data):
    """A copy of the run's model file (outside any run) whose stored config reads ``data``."""
    model = folder / "foreign.h5"
    model.write_bytes((run_dir / "model.h5").read_bytes())
    with h5py.File(model, "r+") as f:
        config = json.loads(f["mlpcli"].attrs["config"])
        config["data"].update(data)
        f["mlpcli"].attrs["config"] = json.dumps(config)
    return model


def refused(result, *words):
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error:") and "Traceback" not in result.output
    for word in words:
        assert word in result.output, (word, result.output)


@pytest.mark.parametrize("dataset, key", [("csv", "path"), ("csv", "test_path"),
                                          ("image_folder", "test_path"), ("npz", "path")])
def test_paths_stored_in_a_model_file_are_not_followed(csv_run, tmp_path, dataset, key):
    """A model file naming a local file or folder (/etc/passwd, /) is refused without reading it."""
    target = tmp_path / "private"
    target.mkdir()
    (target / "secret.csv").write_text(ROWS)
    where = target if dataset == "image_folder" else target / "secret.csv"
    model = with_stored_data(csv_run, tmp_path, dataset=dataset, **{key: str(where)})
    refused(invoke("evaluate", "--model", model), str(model), f"data.{key}: {where}", "--data")
    assert not list(tmp_path.glob("evaluation*.json"))


def test_the_user_names_the_data_with_data(csv_run, tmp_path):
    model = with_stored_data(csv_run, tmp_path, path=str(tmp_path / "elsewhere.csv"))
    result = invoke("evaluate", "--model", model, "--data", tmp_path / "test.csv")
    assert result.exit_code == 0, result.output
    [report] = tmp_path.glob("evaluation-foreign-on-test-*.json")
    assert json.loads(report.read_text())["samples"] == 4


def test_a_builtin_dataset_stored_in_a_model_file_is_used(csv_run, tmp_path):
    """mnist is read from the package's own files, whatever path the file stores beside it."""
    model = with_stored_data(csv_run, tmp_path, dataset="mnist", path="/etc/passwd")
    result = invoke("evaluate", "--model", model)
    # the 2-input model cannot take mnist's 784 values: refused after loading mnist, not the path
    refused(result, "784 values", "[2]")


def test_a_run_is_evaluated_on_its_own_config_yaml_paths(csv_run):
    with h5py.File(csv_run / "model.h5", "r+") as f:  # the model file's copy is not what counts
        config = json.loads(f["mlpcli"].attrs["config"])
        config["data"]["test_path"] = "/nonexistent/test.csv"
        f["mlpcli"].attrs["config"] = json.dumps(config)
    result = invoke("evaluate", csv_run)
    assert result.exit_code == 0, result.output
    report = json.loads((csv_run / "evaluation.json").read_text())
    assert report["samples"] == 4 and report["data"].startswith("train.csv test split")
