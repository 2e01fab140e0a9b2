"""Reading CSV rows to predict from, a chunk at a time (data/table_rows.py)."""

import contextlib
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mlpcli.data.table_rows import read_table_rows
from mlpcli.errors import DataError


def write(path, text):
    path.write_text(text)
    return path


def read_all(table):
    chunks = list(table)
    labels = None if chunks[0].labels is None else np.concatenate([c.labels for c in chunks])
    return (np.concatenate([c.lines for c in chunks]), np.concatenate([c.x for c in chunks]),
            labels)


def test_columns_in_any_order_give_the_model_order(tmp_path):
    ordered = write(tmp_path / "a.csv", "x1,x2,x3,label\n1,2,3,cat\n4,5,6e0,dog\n")
    shuffled = write(tmp_path / "b.csv", "label,x3,x1,x2\ncat,3,1,2\ndog,6e0,4,5\n")
    results = [read_all(read_table_rows(p, ["x1", "x2", "x3"], "label")) for p in (ordered, shuffled)]
    for lines, x, labels in results:
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
        assert lines.dtype == np.int64 and lines.tolist() == [2, 3]
        assert labels.tolist() == ["cat", "dog"]


def test_extra_columns_are_ignored_and_listed(tmp_path):
    path = write(tmp_path / "d.csv", "id,b,note,a\n7,2,hello,1\n")
    table = read_table_rows(path, ["a", "b"], "label")
    assert table.columns == ["a", "b"] and table.ignored == ["id", "note"]
    assert not table.has_labels
    (chunk,) = table
    assert chunk.labels is None
    np.testing.assert_array_equal(chunk.x, [[1, 2]])


def test_missing_columns_are_named_with_the_files_columns(tmp_path):
    path = write(tmp_path / "d.csv", "a,c,label\n1,2,0\n")
    with pytest.raises(DataError, match=r"d\.csv: lacks the model's feature column\(s\) 'b', 'd'; "
                                        r"the file's columns are: 'a', 'c', 'label'"):
        read_table_rows(path, ["a", "b", "c", "d"], "label")


def test_without_column_names_every_other_column_is_a_feature_in_file_order(tmp_path):
    path = write(tmp_path / "d.csv", "b,label,a\n1,x,2\n3,y,4\n")
    table = read_table_rows(path, None, "label", n_features=2)
    assert table.columns == ["b", "a"] and table.ignored == [] and table.has_labels
    _, x, labels = read_all(table)
    np.testing.assert_array_equal(x, [[1, 2], [3, 4]])
    assert labels.tolist() == ["x", "y"]
    # without a label column, every column is a feature
    table = read_table_rows(write(tmp_path / "e.csv", "b,a\n1,2\n"), None, "label", n_features=2)
    assert table.columns == ["b", "a"] and not table.has_labels


def test_without_column_names_the_count_must_match_the_model(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,c,label\n1,2,3,0\n")
    with pytest.raises(DataError, match=r"d\.csv: the model takes 2 values per row, and the file "
                                        r"has 3 feature column\(s\) besides the label column "
                                        r"'label': 'a', 'b', 'c'"):
        read_table_rows(path, None, "label", n_features=2)


def test_chunks_of_three_over_ten_rows_keep_every_row_and_its_line(tmp_path):
    # a blank line after the header is skipped but counted, as an editor counts lines
    rows = "".join(f"{i},{-i}\n" for i in range(10))
    path = write(tmp_path / "d.csv", "a,b\n\n" + rows)
    chunks = list(read_table_rows(path, ["b", "a"], None, chunk_rows=3))
    assert [len(c.lines) for c in chunks] == [3, 3, 3, 1]
    lines = np.concatenate([c.lines for c in chunks])
    x = np.concatenate([c.x for c in chunks])
    assert lines.tolist() == list(range(3, 13))
    np.testing.assert_array_equal(x, [[-i, i] for i in range(10)])


@pytest.mark.parametrize("cell, problem", [
    ("abc", "not a number: 'abc'"),
    ("", "missing value"),
    ("1e39", "not a finite float32 number: '1e39'"),
])
def test_bad_cell_names_file_line_and_column(tmp_path, cell, problem):
    rows = "".join(f"{i},{i}\n" for i in range(5))
    path = write(tmp_path / "d.csv", f"a,b\n{rows}7,{cell}\n")
    table = read_table_rows(path, ["a", "b"], None, chunk_rows=2)
    with pytest.raises(DataError, match=rf"d\.csv: line 7, column 'b': {problem}"):
        list(table)


def test_missing_label_names_its_line(tmp_path):
    path = write(tmp_path / "d.csv", "a,label\n1,cat\n2, \n")
    with pytest.raises(DataError, match=r"d\.csv: line 3, column 'label': missing label"):
        list(read_table_rows(path, ["a"], "label"))


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("a,b\n", "has a header but no data rows"),
    ("a,a\n1,2\n", "column name 'a' appears more than once"),
    ("a,,b\n1,2,3\n", "column 2 of the header has no name"),
    ("label\n0\n", "has only the label column 'label', no features"),
])
def test_bad_files_are_refused_when_opened(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_table_rows(write(tmp_path / "d.csv", text), None, "label")


def test_row_with_wrong_field_count_names_its_line(tmp_path):
    path = write(tmp_path / "d.csv", "a,b\n1,2\n3\n")
    table = read_table_rows(path, ["a", "b"], None)
    with pytest.raises(DataError, match=r"d\.csv: line 3: 1 fields, but the header \(line 1\) has 2"):
        list(table)


def test_overlong_line_and_missing_file(tmp_path):
    path = write(tmp_path / "d.csv", "a\n1\n" + "1" * 2_000_000 + "\n")
    with pytest.raises(DataError, match=r"d\.csv: line 3 is longer than 1,048,576 characters"):
        list(read_table_rows(path, ["a"], None))
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_table_rows(tmp_path / "nope.csv", ["a"], None)


def test_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufeffa,label\r\n1,x\r\n2,y\r\n".encode("utf-8"))
    _, x, labels = read_all(read_table_rows(path, ["a"], "label"))
    assert x[:, 0].tolist() == [1.0, 2.0] and labels.tolist() == ["x", "y"]


def test_memory_stays_flat_however_many_rows(tmp_path):
    """Python's allocations while 60,000 rows are read in chunks of 1,000 stay far below what
    holding the rows would take (over 10 MB of cells and lists)."""
    path = write(tmp_path / "d.csv", "a,b,c\n" + "1.5,2.5,3.5\n" * 60_000)
    tracemalloc.start()
    try:
        rows = sum(len(chunk.lines) for chunk in read_table_rows(path, ["c", "a"], None,
                                                                 chunk_rows=1000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 60_000
    assert peak < 2_000_000, f"peak {peak:,} bytes"


def open_descriptors(path):
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    found = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                found.append(fd)
    return len(found)


def test_the_file_is_closed_after_the_last_row_and_by_close(tmp_path):
    path = write(tmp_path / "d.csv", "a\n1\n2\n")
    table = read_table_rows(path, ["a"], None, chunk_rows=1)
    chunks = iter(table)
    next(chunks)
    assert open_descriptors(path) == 1
    table.close()
    assert open_descriptors(path) == 0
    assert list(chunks) == []
    with read_table_rows(path, ["a"], None) as table:
        assert [c.x.tolist() for c in table] == [[[1.0], [2.0]]]
        assert open_descriptors(path) == 0  # read to the end
    with pytest.raises(DataError, match="lacks"):
        read_table_rows(path, ["b"], None)
    assert open_descriptors(path) == 0
    bad = write(tmp_path / "bad.csv", "a\n1\nx\n3\n")
    table = read_table_rows(bad, ["a"], None, chunk_rows=1)
    with pytest.raises(DataError, match="line 3, column 'a': not a number"):
        list(table)
    assert open_descriptors(bad) == 0
    for _ in read_table_rows(path, ["a"], None, chunk_rows=1):
        break  # the reader stops early
    assert open_descriptors(path) == 0
