"""The CSV loader: labels, targets, and errors that point at the cell."""

import subprocess
import sys

import numpy as np
import pytest

from mlpcli.data import load_dataset
from mlpcli.data.tabular import load_csv
from mlpcli.errors import DataError


def write(path, text):
    path.write_text(text)
    return path


def test_integer_labels(tmp_path):
    path = write(tmp_path / "d.csv", "x1,label,x2\n1.5,0,2\n-3,2,4e1\n0,1,0.25\n")
    raw = load_csv(path)
    assert raw.x_train.dtype == np.float32
    np.testing.assert_array_equal(raw.x_train, [[1.5, 2], [-3, 40], [0, 0.25]])
    assert raw.y_train.dtype == np.int64 and raw.y_train.tolist() == [0, 2, 1]
    assert raw.class_names is None
    assert raw.x_test is None and raw.x_val is None


def test_string_labels_map_to_sorted_class_names(tmp_path):
    train = write(tmp_path / "train.csv", "a,b,species\n1,2,virginica\n3,4,setosa\n5,6,virginica\n")
    test = write(tmp_path / "test.csv", "species,b,a\nsetosa,20,10\n")
    raw = load_csv(train, "species", test_path=test)
    assert raw.class_names == ["setosa", "virginica"]
    assert raw.y_train.tolist() == [1, 0, 1]
    # Columns are matched by name, so a reordered test file lines up.
    np.testing.assert_array_equal(raw.x_test, [[10, 20]])
    assert raw.y_test.tolist() == [0]


def test_test_label_not_in_training_file(tmp_path):
    train = write(tmp_path / "train.csv", "a,label\n1,cat\n2,dog\n")
    test = write(tmp_path / "test.csv", "a,label\n1,cat\n2,cow\n")
    with pytest.raises(
        DataError, match=r"test\.csv: line 3, column 'label': label 'cow' does not occur"
    ):
        load_csv(train, test_path=test)


def test_regression_targets_and_validation_file(tmp_path):
    train = write(tmp_path / "train.csv", "x,y\n1,0.5\n2,1.5\n")
    val = write(tmp_path / "val.csv", "x,y\n3,2.5\n")
    data = load_dataset(
        {"dataset": "csv", "path": str(train), "validation_path": str(val), "label_column": "y"},
        task="regression",
    )
    assert data.y_train.dtype == np.float32 and data.y_train.shape == (2, 1)
    assert data.y_train[:, 0].tolist() == [0.5, 1.5]
    assert data.x_val.tolist() == [[3.0]] and data.y_val.tolist() == [[2.5]]
    assert data.name == "train.csv"


def test_regression_target_must_be_numeric(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,0.5\n2,high\n")
    with pytest.raises(DataError, match=r"d\.csv: line 3, column 'y': not a number: 'high'"):
        load_csv(path, "y", task="regression")


def test_missing_value_names_line_and_column(tmp_path):
    path = write(tmp_path / "d.csv", "x1,x2,label\n1,2,0\n3,,1\n")
    with pytest.raises(DataError, match=r"d\.csv: line 3, column 'x2': missing value"):
        load_csv(path)


def test_non_numeric_cell_names_line_and_column(tmp_path):
    # The blank line is skipped but still counted, as an editor counts lines.
    path = write(tmp_path / "d.csv", "x1,x2,x3,label\n1,2,3,0\n\n4,5,abc,1\n")
    with pytest.raises(DataError, match=r"d\.csv: line 4, column 'x3': not a number: 'abc'"):
        load_csv(path)


def test_nan_and_overflow_are_refused(tmp_path):
    path = write(tmp_path / "d.csv", "x,label\nnan,0\n")
    with pytest.raises(DataError, match="line 2, column 'x': not a finite float32 number: 'nan'"):
        load_csv(path)
    path = write(tmp_path / "e.csv", "x,label\n1,0\n1e39,0\n")
    with pytest.raises(DataError, match="line 3, column 'x': not a finite float32 number: '1e39'"):
        load_csv(path)


def test_missing_label(tmp_path):
    path = write(tmp_path / "d.csv", "x,label\n1,0\n2, \n")
    with pytest.raises(DataError, match="line 3, column 'label': missing label"):
        load_csv(path)


def test_unknown_label_column_suggests_a_name(tmp_path):
    path = write(tmp_path / "d.csv", "x1,x2,Label\n1,2,0\n")
    with pytest.raises(
        DataError,
        match=r"d\.csv: no label column named 'lable' \(did you mean 'Label'\?\); "
        r"the columns are: x1, x2, Label",
    ):
        load_csv(path, "lable")


def test_wrong_field_count(tmp_path):
    path = write(tmp_path / "d.csv", "x1,x2,label\n1,2,0\n1,2\n")
    with pytest.raises(DataError, match=r"line 3: 2 fields, but the header \(line 1\) has 3"):
        load_csv(path)


def test_other_file_with_different_columns(tmp_path):
    train = write(tmp_path / "train.csv", "a,b,label\n1,2,0\n")
    test = write(tmp_path / "test.csv", "a,c,label\n1,2,0\n")
    with pytest.raises(
        DataError, match=r"test\.csv: lacks column\(s\) 'b' and has unexpected column\(s\) 'c'"
    ):
        load_csv(train, test_path=test)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the file is empty"),
        ("x,label\n", "has a header but no data rows"),
        ("x,x,label\n1,2,0\n", "column name 'x' appears more than once"),
        ("x,,label\n1,2,0\n", "column 2 of the header has no name"),
        ("label\n0\n", "has only the label column 'label', no features"),
        ("\nx,label\n1\n", r"line 3: 1 fields, but the header \(line 2\) has 2"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    path = write(tmp_path / "d.csv", text)
    with pytest.raises(DataError, match=message):
        load_csv(path)


def test_negative_integer_label(tmp_path):
    path = write(tmp_path / "d.csv", "x,label\n1,0\n2,-1\n")
    with pytest.raises(DataError, match="line 3, column 'label': class labels must be >= 0"):
        load_csv(path)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"x,label\n\xff\xfe,0\n")
    with pytest.raises(DataError, match=r"d\.csv: not UTF-8 text"):
        load_csv(path)
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_csv(tmp_path / "nope.csv")


def test_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufeffx,label\r\n1,0\r\n2,1\r\n".encode("utf-8"))
    raw = load_csv(path)
    assert raw.x_train[:, 0].tolist() == [1.0, 2.0] and raw.y_train.tolist() == [0, 1]


def test_100000_columns_load_in_linear_time(tmp_path):
    """Reading once took a list search per cell (47 s for 10^5 columns); a child process with a
    generous deadline loads a training and a test file of 10^5 columns and checks the values."""
    columns = 100_000
    header = ",".join(f"c{j}" for j in range(columns)) + ",label\n"
    rows = "".join(",".join(str((i + j) % 7) for j in range(columns)) + f",{i}\n" for i in range(3))
    write(tmp_path / "train.csv", header + rows)
    write(tmp_path / "test.csv", header + rows)
    check = (
        "import numpy as np; from mlpcli.data.tabular import load_csv; "
        "raw = load_csv('train.csv', test_path='test.csv'); "
        f"expected = (np.arange(3)[:, None] + np.arange({columns})) % 7; "
        "assert (raw.x_train == expected).all() and (raw.x_test == expected).all(); "
        "assert raw.y_train.tolist() == [0, 1, 2]; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_overlong_line_is_refused_naming_it(tmp_path):
    path = write(tmp_path / "d.csv", "x,label\n1,0\n" + "1" * 2_000_000 + ",0\n")
    with pytest.raises(DataError, match=r"d\.csv: line 3 is longer than 1,048,576 characters"):
        load_csv(path)


def test_dev_zero_as_csv_is_refused_quickly(tmp_path):
    """/dev/zero, which has no line breaks and no end, is refused before a byte is read: it is
    a device, not a file (the child is killed after a generous deadline otherwise)."""
    config = write(tmp_path / "c.yaml", """
data: {dataset: csv, path: /dev/zero}
model: {input_shape: [1], layers: [{type: dense, units: 2, activation: softmax}]}
checkpoint: {monitor: loss}
""")
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", str(config), "--runs-root",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Error: /dev/zero: is a character device, not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()
