"""Missing cells of a CSV: data.missing's strategies, fitted on the training rows and kept in
the model file; per-column scaling."""

import subprocess
import sys

import numpy as np
import pytest

from mlpcli import config
from mlpcli.data import load_dataset
from mlpcli.data.table_encoding import TableSettings
from mlpcli.data.tabular import load_csv
from mlpcli.errors import ConfigError, DataError

# x: 1, 2, 2, 7 and two missing cells (empty, "NA"); c: a category column with one missing ("?")
TRAIN = "x,c,label\n1,u,0\n2,v,1\n,v,0\n2,?,1\n7,u,0\nNA,v,1\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("strategy, value, x_fill, c_fill", [
    ("mean", None, 3.0, "v"),  # a categorical column takes the most frequent value
    ("median", None, 2.0, "v"),
    ("most_frequent", None, 2.0, "v"),
    ("constant", -1, -1.0, "-1"),
])
def test_each_strategy_fills_with_the_training_values(tmp_path, strategy, value, x_fill, c_fill):
    raw = load_csv(write(tmp_path / "t.csv", TRAIN),
                   settings=TableSettings(missing={"strategy": strategy, "value": value}))
    x_column = raw.x_train[:, 0]
    assert x_column.tolist() == [1, 2, x_fill, 2, 7, x_fill]
    vocabulary = raw.table.categories["c"]
    assert vocabulary == sorted({"u", "v", c_fill})
    assert raw.x_train[3, 1 + vocabulary.index(c_fill)] == 1


def test_fill_values_are_fitted_on_the_rows_max_train_samples_keeps(tmp_path):
    raw = load_csv(write(tmp_path / "t.csv", TRAIN),
                   settings=TableSettings(missing={"strategy": "mean"}, fit_rows=2))
    assert raw.x_train[2, 0] == 1.5  # the mean of 1 and 2 only


def test_a_column_of_its_own_strategy(tmp_path):
    missing = {"strategy": None, "columns": {"x": {"strategy": "median"}}}
    with pytest.raises(DataError, match=r"line 5, column 'c'"):  # "?" is a category, "" an error: none here
        raw = load_csv(write(tmp_path / "t.csv", TRAIN.replace("?", "")), settings=TableSettings(missing=missing))
    raw = load_csv(write(tmp_path / "t.csv", TRAIN), settings=TableSettings(missing=missing))
    assert raw.table.categories["c"] == ["?", "u", "v"]
    assert raw.x_train[2, 0] == 2.0


def test_mean_of_a_categorical_column_named_on_its_own_is_a_config_error(tmp_path):
    missing = {"strategy": "median", "columns": {"c": {"strategy": "mean"}}}
    with pytest.raises(ConfigError, match=r"data\.missing\.columns\.c\.strategy: 'mean' needs numbers"):
        load_csv(write(tmp_path / "t.csv", TRAIN), settings=TableSettings(missing=missing))


def test_without_data_missing_an_empty_cell_is_still_an_error(tmp_path):
    with pytest.raises(DataError, match=r"t\.csv: line 4, column 'x': missing value"):
        load_csv(write(tmp_path / "t.csv", TRAIN.replace("NA", "3")))
    with pytest.raises(DataError, match=r"line 7, column 'x': not a number: 'NA'.*set data\.missing"):
        load_csv(write(tmp_path / "t.csv", TRAIN))


def trained_with_missing(folder, strategy):
    """``mlp train`` (a real process) on folder/train.csv with data.missing's ``strategy``, into
    folder/run; the command line that runs mlp, for the next step."""
    write(folder / "cfg.yaml", f"data: {{dataset: csv, path: train.csv, missing: {{strategy: {strategy}}}}}\n"
          "model: {layers: [{type: dense, units: 2, activation: softmax}]}\ntraining: {epochs: 1}\n")
    run = [sys.executable, "-m", "mlpcli"]
    done = subprocess.run(run + ["train", "cfg.yaml", "--run-dir", "run", "-q", "--no-plots"], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return run


def test_drop_row_leaves_the_rows_out_in_training_and_refuses_them_in_predict(tmp_path):
    write(tmp_path / "train.csv", "".join(["x,y,label\n"] + [f"{i % 5},{'' if i % 4 == 0 else i},{i % 2}\n"
                                                             for i in range(40)]))
    raw = load_csv(tmp_path / "train.csv", settings=TableSettings(missing={"strategy": "drop_row"}))
    assert len(raw.x_train) == 30 and raw.x_train[0].tolist() == [1, 1]
    run = trained_with_missing(tmp_path, "drop_row")
    write(tmp_path / "rows.csv", "x,y\n1,2\n3,\n")
    done = subprocess.run(run + ["predict", "rows.csv", "--model", "run/model.h5"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "rows.csv: line 3, column 'y': missing value (the model was trained with data.missing " \
           "strategy drop_row" in done.stderr


def test_predict_fills_missing_cells_with_the_training_values(tmp_path):
    write(tmp_path / "train.csv", TRAIN)
    run = trained_with_missing(tmp_path, "median")
    write(tmp_path / "rows.csv", "c,x\n,\nv,2\n?,NA\nu,2\n")
    done = subprocess.run(run + ["predict", "rows.csv", "--model", "run/model.h5", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    probabilities = [line.split('"top_k"')[1] for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(probabilities) == 4
    assert probabilities[0] == probabilities[1] == probabilities[2] != probabilities[3]


def test_scaling_per_column_leaves_one_hots_alone(tmp_path):
    write(tmp_path / "t.csv", "a,b,c,label\n0,10,u,0\n2,30,v,1\n")
    data = {"dataset": "csv", "path": str(tmp_path / "t.csv"), "label_column": "label",
            "scaling": {"default": "standardize", "columns": {"b": "unit"}}}
    dataset = load_dataset(data)
    assert dataset.preprocessing["scale"] == pytest.approx([1.0, 1 / 255, 1, 1])
    assert dataset.preprocessing["offset"] == pytest.approx([-1.0, 0, 0, 0])
    assert np.allclose(dataset.x_train, [[-1, 10 / 255, 1, 0], [1, 30 / 255, 0, 1]])
    data["scaling"]["columns"] = {"z": "none"}
    with pytest.raises(ConfigError, match=r"data\.scaling\.columns: 'z' is not a feature column"):
        load_dataset(data)


@pytest.mark.parametrize("data, message", [
    ({"missing": {"strategy": "average"}}, "data.missing.strategy: unknown strategy 'average'"),
    ({"missing": {"strategy": "constant"}}, "data.missing.value: strategy constant needs a value"),
    ({"missing": {"columns": {"x": {"strategy": "mean", "value": 1}}}},
     "data.missing.columns.x.value: is for strategy constant"),
    ({"scaling": {"default": "log"}}, "data.scaling.default: unknown scaling 'log'"),
    ({"categorical": "zip"}, "data.categorical: must be a list of column names"),
])
def test_config_errors_name_the_key(data, message):
    raw = {"data": {"dataset": "csv", "path": "t.csv", **data},
           "model": {"input_shape": [2], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}}
    with pytest.raises(ConfigError, match=message):
        config.resolve(raw)


def test_an_inferred_input_shape_counts_the_categories(tmp_path):
    write(tmp_path / "t.csv", TRAIN)
    raw = {"data": {"dataset": "csv", "path": str(tmp_path / "t.csv"), "missing": {"strategy": "mean"}},
           "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}}
    notes = []
    assert config.resolve_with_data(raw, notes.append)["model"]["input_shape"] == [3]
    assert "1 of them categorical (2 categories)" in notes[0]
