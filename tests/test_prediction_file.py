"""Prediction files (prediction_file.py): each format's exact content, and that nothing the user
has is overwritten and nothing half-written is left."""

import errno
import json

import numpy as np
import pytest

from mlpcli.errors import DiskFullError, FileSystemError, MlpError
from mlpcli.prediction_file import open_prediction_file

SOFTMAX = np.array([[0.25, 0.5, 0.25], [0.125, 0.125, 0.75], [0.5, 0.5, 0.0]], dtype=np.float32)
NAMES = ["cat", "dog", "a,b"]


def write_in_chunks(path, outputs, sources, chunk=1, **kwargs):
    with open_prediction_file(path, **kwargs) as out:
        for i in range(0, len(outputs), chunk):
            out.write(sources[i:i + chunk], outputs[i:i + chunk])


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_csv_of_class_probabilities(tmp_path):
    path = tmp_path / "p.csv"
    write_in_chunks(path, SOFTMAX, ["x.csv:2", "x.csv:3", "x.csv:4"], class_names=NAMES,
                    n_outputs=3, task="classification")
    # the class is the most probable one, the first of equals (as numpy.argmax)
    assert path.read_text() == ('source,class,prob_cat,prob_dog,"prob_a,b"\n'
                                "x.csv:2,dog,0.25,0.5,0.25\n"
                                "x.csv:3,\"a,b\",0.125,0.125,0.75\n"
                                "x.csv:4,cat,0.5,0.5,0\n")


def test_csv_numbers_keep_full_float32_precision(tmp_path):
    path = tmp_path / "p.csv"
    values = np.array([[0.1], [1 / 3], [3e-38], [123456789]], dtype=np.float32)
    write_in_chunks(path, values, list("abcd"), chunk=4, n_outputs=1, task="regression")
    lines = path.read_text().splitlines()
    assert lines[0] == "source,value"
    back = np.array([float(line.split(",")[1]) for line in lines[1:]], dtype=np.float32)
    np.testing.assert_array_equal(back, values[:, 0])


def test_regression_csv_with_several_values(tmp_path):
    path = tmp_path / "p.csv"
    write_in_chunks(path, np.array([[1.5, -2], [0, 4e10]], np.float32), ["r1", "r2"],
                    n_outputs=2, task="regression")
    assert path.read_text() == "source,value_0,value_1\nr1,1.5,-2\nr2,0,4e+10\n"


def test_binary_sigmoid_gives_two_probability_columns(tmp_path):
    sigmoid = np.array([[0.75], [0.25], [0.5]], dtype=np.float32)
    write_in_chunks(tmp_path / "p.csv", sigmoid, ["a", "b", "c"], n_outputs=1,
                    task="classification")
    assert (tmp_path / "p.csv").read_text() == ("source,class,prob_0,prob_1\n"
                                                "a,1,0.25,0.75\nb,0,0.75,0.25\nc,0,0.5,0.5\n")
    write_in_chunks(tmp_path / "p.npy", sigmoid, ["a", "b", "c"], n_outputs=1,
                    task="classification")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"),
                                  [[0.25, 0.75], [0.75, 0.25], [0.5, 0.5]])


def test_jsonl_objects(tmp_path):
    path = tmp_path / "p.JSONL"
    write_in_chunks(path, SOFTMAX[:2], ["x", "y"], class_names=NAMES, n_outputs=3,
                    task="classification")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"source": "x", "class": "dog", "probability": 0.5,
         "probabilities": {"cat": 0.25, "dog": 0.5, "a,b": 0.25}},
        {"source": "y", "class": "a,b", "probability": 0.75,
         "probabilities": {"cat": 0.125, "dog": 0.125, "a,b": 0.75}},
    ]
    path = tmp_path / "r.jsonl"
    write_in_chunks(path, np.array([[1.5, np.nan], [2, 3]], np.float32), ["x", "y"],
                    n_outputs=2, task="regression")
    assert path.read_text() == ('{"source": "x", "value": [1.5, null]}\n'
                                '{"source": "y", "value": [2.0, 3.0]}\n')
    path = tmp_path / "one.jsonl"
    write_in_chunks(path, np.array([[0.5]], np.float32), ["x"], n_outputs=1, task="regression")
    assert json.loads(path.read_text()) == {"source": "x", "value": 0.5}


def test_npy_written_in_three_chunks_reads_back_with_np_load(tmp_path):
    path = tmp_path / "p.npy"
    outputs = np.random.default_rng(0).random((7, 3), dtype=np.float32)
    with open_prediction_file(path, n_outputs=3, task="classification") as out:
        for rows in (slice(0, 3), slice(3, 4), slice(4, 7)):
            out.write([f"s{i}" for i in range(rows.start, rows.stop)], outputs[rows])
    back = np.load(path, allow_pickle=False)
    assert back.dtype == np.float32 and back.shape == (7, 3)
    np.testing.assert_array_equal(back, outputs)
    with open_prediction_file(tmp_path / "empty.npy", n_outputs=2, task="regression"):
        pass
    assert np.load(tmp_path / "empty.npy").shape == (0, 2)


def test_existing_file_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("mine\n")
    with pytest.raises(MlpError, match=r"p\.csv: already exists; choose another name, or pass "
                                       r"--overwrite") as caught:
        open_prediction_file(path, n_outputs=2, task="classification")
    assert caught.value.exit_code == 2
    assert path.read_text() == "mine\n" and leftovers(tmp_path) == ["p.csv"]


def test_file_appearing_meanwhile_is_not_replaced(tmp_path):
    path = tmp_path / "p.csv"
    with (pytest.raises(MlpError, match=r"p\.csv: already exists"),
          open_prediction_file(path, n_outputs=2, task="classification") as out):
        out.write(["a"], np.array([[0.5, 0.5]], np.float32))
        path.write_text("someone else's\n")
    assert path.read_text() == "someone else's\n" and leftovers(tmp_path) == ["p.csv"]


def test_overwrite_replaces(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("old\n")
    write_in_chunks(path, np.array([[2.0]], np.float32), ["a"], n_outputs=1, task="regression",
                    overwrite=True)
    assert path.read_text() == "source,value\na,2\n" and leftovers(tmp_path) == ["p.csv"]


@pytest.mark.parametrize("name", ["p.csv", "p.jsonl", "p.npy"])
def test_error_inside_leaves_no_file_and_no_temporary(tmp_path, name):
    with (pytest.raises(KeyboardInterrupt),
          open_prediction_file(tmp_path / name, n_outputs=2, task="classification") as out):
        out.write(["a"], np.array([[0.5, 0.5]], np.float32))
        assert len(leftovers(tmp_path)) == 1  # the temporary
        raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


def test_disk_full_names_the_file_and_leaves_nothing(tmp_path):
    with (pytest.raises(DiskFullError, match=r"p\.npy: no space left on the device"),
          open_prediction_file(tmp_path / "p.npy", n_outputs=2, task="regression") as out):
        out.write(["a"], np.array([[0.5, 0.5]], np.float32))
        raise OSError(errno.ENOSPC, "No space left on device")
    assert leftovers(tmp_path) == []


def test_error_inside_keeps_the_old_file_when_overwriting(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("old\n")
    with (pytest.raises(RuntimeError),
          open_prediction_file(path, n_outputs=2, task="classification", overwrite=True)):
        raise RuntimeError
    assert path.read_text() == "old\n" and leftovers(tmp_path) == ["p.csv"]


@pytest.mark.parametrize("name", ["p.txt", "p", "p.csv.gz"])
def test_unknown_suffix_is_refused_at_open(tmp_path, name):
    with pytest.raises(MlpError, match=r"the name must end in \.csv, \.jsonl or \.npy") as caught:
        open_prediction_file(tmp_path / name, n_outputs=2, task="classification")
    assert caught.value.exit_code == 2 and str(tmp_path / name) in str(caught.value)
    assert leftovers(tmp_path) == []


def test_folder_as_out_is_refused_at_open(tmp_path):
    (tmp_path / "p.csv").mkdir()
    with pytest.raises(MlpError, match=r"p\.csv: is a folder"):
        open_prediction_file(tmp_path / "p.csv", n_outputs=2, task="classification",
                             overwrite=True)


def test_out_in_a_missing_folder_is_refused_at_open(tmp_path):
    with pytest.raises(FileSystemError, match=r"the folder .*nowhere does not exist"):
        open_prediction_file(tmp_path / "nowhere" / "p.csv", n_outputs=2, task="classification")
    assert not (tmp_path / "nowhere").exists()
