"""Categorical columns of a CSV: one-hot over the training vocabulary, kept in the model file,
applied by mlp predict (an unseen category is all zeros, and counted)."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mlpcli.data.table_encoding import Fill, TableEncoding, TableSettings
from mlpcli.data.table_rows import read_table_rows
from mlpcli.data.tabular import load_csv
from mlpcli.errors import DataError

TRAIN = "size,color,zip,label\n1,red,100,a\n2,blue,200,b\n3,red,100,a\n4,green,300,b\n5,blue,100,a\n6,red,200,b\n"


def write(path, text):
    path.write_text(text)
    return path


def mlp(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mlpcli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_a_string_column_is_one_hot_over_its_sorted_training_values(tmp_path):
    raw = load_csv(write(tmp_path / "t.csv", TRAIN))
    assert raw.table.categories == {"color": ["blue", "green", "red"]}
    assert raw.table.feature_names == ["size", "color=blue", "color=green", "color=red", "zip"]
    assert raw.x_train[:2].tolist() == [[1, 0, 0, 1, 100], [2, 1, 0, 0, 200]]


def test_a_column_named_categorical_takes_its_numbers_as_categories(tmp_path):
    raw = load_csv(write(tmp_path / "t.csv", TRAIN), settings=TableSettings(categorical=("zip",)))
    assert raw.table.categories["zip"] == ["100", "200", "300"]
    assert raw.x_train.shape == (6, 7)
    assert raw.x_train[3, 4:].tolist() == [0, 0, 1]


def test_a_column_of_numbers_with_a_stray_word_is_refused_not_made_categorical(tmp_path):
    path = write(tmp_path / "t.csv", "x,label\n1,0\n2,1\nabc,0\n")
    with pytest.raises(DataError, match=r"line 4, column 'x': not a number: 'abc'.*data\.categorical"):
        load_csv(path)


def test_a_column_naming_no_feature_is_a_config_error(tmp_path):
    from mlpcli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data\.categorical: 'colour' is not a feature column"):
        load_csv(write(tmp_path / "t.csv", TRAIN), settings=TableSettings(categorical=("colour",)))


def test_rows_are_encoded_a_chunk_at_a_time_as_whole(tmp_path):
    encoding = TableEncoding(["size", "color"], {"color": ["blue", "red"]}, {"size": Fill("mean", 2.5)})
    path = write(tmp_path / "r.csv", "color,size\nred,1\nblue,\npink,3\n,4\nred,NA\n")
    with pytest.raises(DataError, match=r"line 5, column 'color': missing value"):
        list(read_table_rows(path, encoding, None, chunk_rows=2))
    path = write(tmp_path / "r.csv", "color,size\nred,1\nblue,\npink,3\nred,NA\nblue,5\n")
    chunks = list(read_table_rows(path, encoding, None, chunk_rows=2))
    assert len(chunks) == 3
    x = np.concatenate([c.x for c in chunks])
    assert x.tolist() == [[1, 0, 1], [2.5, 1, 0], [3, 0, 0], [2.5, 0, 1], [5, 1, 0]]
    assert [c.unseen for c in chunks] == [{}, {"color": (1, "pink")}, {}]


def test_train_records_the_vocabulary_and_predict_warns_of_unseen_categories(tmp_path):
    rows = "".join(f"{i % 7},{['red', 'blue', 'green'][i % 3]},{'a' if i % 3 else 'b'}\n" for i in range(60))
    write(tmp_path / "train.csv", "size,color,label\n" + rows)
    write(tmp_path / "cfg.yaml", "data: {dataset: csv, path: train.csv}\n"
          "model: {layers: [{type: dense, units: 2, activation: softmax}]}\ntraining: {epochs: 1}\n")
    done = mlp("train", "cfg.yaml", "--run-dir", "run", "-q", "--no-plots", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "run" / "model.h5") as f:
        record = json.loads(f["mlpcli/pipeline"].attrs["record"])
    assert record["version"] == 2 and record["feature_shape"] == [4]
    assert record["categories"] == {"color": ["blue", "green", "red"]}
    write(tmp_path / "rows.csv", "color,size\nred,1\npurple,2\nblue,3\npurple,4\n")
    done = mlp("predict", "rows.csv", "--model", "run/model.h5", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len([line for line in done.stdout.splitlines() if line.startswith("{")]) == 4
    assert "column 'color': 2 row(s) hold a category not seen in training (e.g. 'purple')" in done.stderr
