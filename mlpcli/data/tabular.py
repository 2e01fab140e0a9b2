"""Loader for CSV files with a header row: one label column, features (numbers, or categories
and missing cells as ``table_encoding`` encodes them).

Errors give the file's line number (the header is line 1) and the column
name, as a person would look the cell up in an editor or spreadsheet.

How a CSV file is read (``open_csv``) and how its label cells are read
(``label_cells``) is shared with the reader of rows to
predict from (table_rows.py), so both take and refuse the same files.
"""

import csv
import difflib
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.data.labels import encode_strings, string_class_names
from mlpcli.data.raw import RawData, sample_weights
from mlpcli.data.table_encoding import TableEncoding, TableSettings, fit_encoding, parse_numbers
from mlpcli.errors import DataError, FileSystemError, os_error_text
from mlpcli.files import open_input

_INTEGER = re.compile(r"[+-]?\d{1,18}")
# A longer line is refused before more of it is read: a file without line
# breaks (or /dev/zero) must not be read whole into memory. 100,000 numeric
# columns fit easily.
MAX_LINE_CHARS = 2**20


@dataclass
class CsvFile:
    """A CSV file opened by ``open_csv``: its header, and its data rows, read as they are
    iterated (``rows`` yields (file line, fields), each with the header's number of fields)."""

    path: Path
    header: list[str]
    header_line: int
    rows: Iterator[tuple[int, list[str]]]

    def close(self) -> None:
        """Close the file before its rows are all read."""
        self.rows.close()


@dataclass
class _Table:
    """A CSV file's header and data rows; lines[i] is the file line of rows[i]."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def __post_init__(self):
        self.positions = {name: j for j, name in enumerate(self.header)}


def _limited_lines(f, path: Path):
    """The lines of text file ``f``; DataError for one longer than MAX_LINE_CHARS, before more
    of it is read."""
    number = 0
    while line := f.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DataError(f"{path}: line {number} is longer than {MAX_LINE_CHARS:,} characters; "
                            "expected a CSV file with one row per line")
        yield line


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(file line, fields) of each record of a CSV file, blank lines skipped; every problem
    with the file is a DataError or FileSystemError naming it."""
    try:
        with io.TextIOWrapper(open_input(path), encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(_limited_lines(f, path))
            try:
                for record in reader:
                    if record and (len(record) > 1 or record[0].strip()):
                        yield reader.line_num, record
            except csv.Error as e:
                raise DataError(f"{path}: line {reader.line_num}: malformed CSV: {e}") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise FileSystemError(os_error_text(e, path)) from None


def open_csv(path: Path) -> CsvFile:
    """Open a CSV file and read its header and first data row: an empty file, a bad header or
    a file without data rows is refused here; a later row with the wrong number of fields
    when it is read."""
    records = _records(path)
    try:
        header_record = next(records, None)
        if header_record is None:
            raise DataError(f"{path}: the file is empty; expected a header row and data rows")
        header_line, names = header_record
        header = [name.strip() for name in names]
        _check_header(header, f"{path}: line {header_line}")
        first = next(records, None)
        if first is None:
            raise DataError(f"{path}: has a header but no data rows")
    except BaseException:
        records.close()
        raise
    return CsvFile(path, header, header_line, _rows_like_header(first, records, path, header_line,
                                                                len(header)))


def _rows_like_header(first, records, path, header_line, width):
    """``first`` and the other ``records``, each checked to have ``width`` fields."""
    try:
        for line, record in itertools.chain([first], records):
            if len(record) != width:
                raise DataError(f"{path}: line {line}: {len(record)} fields, "
                                f"but the header (line {header_line}) has {width}")
            yield line, record
    finally:
        records.close()


def _read_table(path: Path) -> _Table:
    """Read a whole CSV file; blank lines are skipped, every row must match the header."""
    csv_file = open_csv(path)
    rows, lines = [], []
    for line, record in csv_file.rows:
        rows.append(record)
        lines.append(line)
    return _Table(path, csv_file.header, rows, lines)


def table_encoding(path, label_column: str = "label", settings: TableSettings = TableSettings()):
    """The encoding ``load_csv`` fits on the training file at ``path`` (its width is the
    model's input size): the file is read as loading it reads it, labels aside; a header that
    gives no features is refused before the rows are read."""
    _header_features(Path(path), label_column, settings.weight_column)
    table = _read_table(Path(path))
    features = _features(table.path, table.header, label_column, settings.weight_column)
    return fit_encoding(table.rows, [table.positions[c] for c in features], features, table.path,
                        table.lines, settings)


def _header_features(path: Path, label_column: str, weight_column: str | None) -> list[str]:
    """The feature columns that the header line of ``path`` names."""
    records = _records(path)
    try:
        first = next(records, None)
    finally:
        records.close()
    if first is None:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    line, record = first
    header = [name.strip() for name in record]
    _check_header(header, f"{path}: line {line}")
    return _features(path, header, label_column, weight_column)


def _features(path: Path, header: list[str], label_column: str, weight_column: str | None) -> list[str]:
    if label_column not in header:
        close = difflib.get_close_matches(label_column, header, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(
            f"{path}: no label column named {label_column!r}{hint}; "
            f"the columns are: {', '.join(header)}"
        )
    if weight_column is not None and weight_column not in header:
        close = difflib.get_close_matches(weight_column, header, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"{path}: no weight column named {weight_column!r} (data.weight_column){hint}; "
                        f"the columns are: {', '.join(header)}")
    features = [c for c in header if c not in (label_column, weight_column)]
    if not features:
        raise DataError(f"{path}: has only the label column {label_column!r}, no features")
    return features


def _check_header(header: list[str], where: str) -> None:
    """Every column needs a distinct, non-empty name; ``where`` is "file: line N"."""
    seen = set()
    for j, name in enumerate(header):
        if not name:
            raise DataError(f"{where}: column {j + 1} of the header has no name")
        if name in seen:
            raise DataError(f"{where}: column name {name!r} appears more than once")
        seen.add(name)


def _numbers(table: _Table, columns: list[str]) -> np.ndarray:
    return parse_numbers(table.rows, [table.positions[c] for c in columns], columns, table.path,
                         table.lines)


def _align(table: _Table, reference: _Table) -> None:
    """Check that ``table`` has exactly the columns of ``reference`` (any order)."""
    missing = [c for c in reference.header if c not in table.positions]
    extra = [c for c in table.header if c not in reference.positions]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks column(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"has unexpected column(s) {', '.join(map(repr, extra))}")
        raise DataError(
            f"{table.path}: {' and '.join(parts)}; it must have the columns of {reference.path}"
        )


def _align_features(table: _Table, features: list[str]) -> None:
    missing = [c for c in features if c not in table.positions]
    if missing:
        raise DataError(f"{table.path}: lacks the model's feature column(s) {', '.join(map(repr, missing))}")


def label_cells(rows: Sequence[Sequence[str]], index: int, column: str, path: Path,
                lines: Sequence[int]) -> list[str]:
    """The stripped label cells at ``index`` (named ``column``) of every row, whose file lines
    are ``lines``; an empty one is a DataError naming the file, its line and the column."""
    cells = [row[index].strip() for row in rows]
    if not all(cells):
        i = cells.index("")
        raise DataError(f"{path}: line {lines[i]}, column {column!r}: missing label")
    return cells


def _label_cells(table: _Table, column: str) -> list[str]:
    return label_cells(table.rows, table.positions[column], column, table.path, table.lines)


def _class_labels(tables: list[_Table], column: str) -> tuple[list[np.ndarray], list[str] | None]:
    """Encode the label column of each table (training first) as int64 (n,) class ids.

    Integer labels are class indices as written, and class_names is None.
    Otherwise labels are names: class_names are the training file's sorted
    distinct labels, and the other files may use only those.
    """
    cells = [_label_cells(t, column) for t in tables]
    if all(_INTEGER.fullmatch(c) for labels in cells for c in labels):
        encoded = [np.array([int(c) for c in labels], dtype=np.int64) for labels in cells]
        for table, ids in zip(tables, encoded, strict=True):
            if ids.min() < 0:
                i = int(np.argmin(ids))
                raise DataError(
                    f"{table.path}: line {table.lines[i]}, column {column!r}: "
                    f"class labels must be >= 0, found {ids[i]}"
                )
        return encoded, None
    class_names = string_class_names(np.array(cells[0], dtype=str))
    encoded = []
    for table, labels in zip(tables, cells, strict=True):
        ids = encode_strings(np.array(labels, dtype=str), class_names)
        if (ids < 0).any():
            i = int(np.argmax(ids < 0))
            raise DataError(
                f"{table.path}: line {table.lines[i]}, column {column!r}: label "
                f"{labels[i]!r} does not occur in the training file {tables[0].path}"
            )
        encoded.append(ids)
    return encoded, class_names


def load_csv(
    path,
    label_column: str = "label",
    *,
    task: str = "classification",
    test_path=None,
    validation_path=None,
    settings: TableSettings = TableSettings(),
    warn=None,
    encoding: TableEncoding | None = None,
) -> RawData:
    """Load a CSV training file and optional validation and test files.

    Every column but ``label_column`` is a feature, encoded as ``fit_encoding`` learns
    from the training file and ``settings`` (numbers, one-hot categories, missing cells
    filled or their rows left out): x float32 (n, width) in the training file's column
    order. Labels are int64 (n,) class ids (see ``_class_labels``) or, for task
    "regression", float32 (n, 1) targets. ``warn`` is told of categories in the
    validation and test files that the training file lacks (they are all zeros).
    A given ``encoding`` (a model's) is used instead of fitting one.
    """
    train = _read_table(Path(path))
    features = _features(train.path, train.header, label_column, settings.weight_column)
    if encoding is None:
        encoding = fit_encoding(train.rows, [train.positions[c] for c in features], features, train.path,
                                train.lines, settings)
    else:
        features = encoding.columns
        _align_features(train, features)

    splits = {"train": train}
    for split, other_path in (("val", validation_path), ("test", test_path)):
        if other_path is not None:
            splits[split] = _read_table(Path(other_path))
            _align(splits[split], train)

    xs = {}
    for split, table in splits.items():
        encoded = encoding.encode(table.rows, [table.positions[c] for c in features], table.path, table.lines)
        if encoded.kept is not None:
            table.rows = [row for row, keep in zip(table.rows, encoded.kept) if keep]
            table.lines = [line for line, keep in zip(table.lines, encoded.kept) if keep]
        if not table.rows:
            raise DataError(f"{table.path}: every row has a missing cell in a column of data.missing "
                            "strategy drop_row; no rows are left")
        for column, (count, example) in encoded.unseen.items():
            if warn is not None:
                warn(unseen_warning(table.path, column, count, example))
        xs[split] = encoded.x
    if task == "regression":
        ys = {s: _numbers(t, [label_column]) for s, t in splits.items()}
        class_names = None
    else:
        encoded, class_names = _class_labels(list(splits.values()), label_column)
        ys = dict(zip(splits, encoded, strict=True))
    raw = RawData.from_splits(xs, ys, class_names, table=encoding)
    if settings.weight_column is not None:
        raw.w_train = sample_weights(_numbers(train, [settings.weight_column])[:, 0],
                                     f"{train.path}: column {settings.weight_column!r}")
    return raw


def unseen_warning(path, column, count, example):
    """The line that tells of ``count`` cells of ``column`` not in its training vocabulary."""
    return (f"Warning: {path}: column {column!r}: {count} row(s) hold a category not seen in training "
            f"(e.g. {example!r}); they are encoded as all zeros")
