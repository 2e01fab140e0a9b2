"""Reading the rows of a CSV file to predict from, a chunk at a time.

The file is read as the training loader reads one (tabular.py: the same limits,
header checks and cell rules, and errors naming the file, line and column), but
never whole: memory stays flat however many rows it has. Columns are matched to
the model's feature columns by name, so their order in the file does not matter.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.data.table_encoding import TableEncoding
from mlpcli.data.tabular import CsvFile, label_cells, open_csv
from mlpcli.errors import DataError

CHUNK_ROWS = 8192
_NAMES_SHOWN = 20  # a file may have 100,000 columns; an error lists this many of them


@dataclass
class RowChunk:
    """Consecutive data rows of the file."""

    lines: np.ndarray  # int64 (k,): the file line of each row (the header is line 1, or later)
    x: np.ndarray  # float32 (k, encoding width), finite
    labels: np.ndarray | None  # str (k,): the label cells, stripped; None without a label column
    unseen: dict  # categorical column -> (rows with a category not seen in training, one of them)


class TableRows:
    """A CSV file's rows as chunks of features in the model's column order; read once, as a
    file is (iterating to the end, or ``close``, or leaving a ``with`` block closes it)."""

    def __init__(self, csv_file: CsvFile, encoding: TableEncoding, label_column: str | None,
                 chunk_rows: int):
        self._file = csv_file
        self._encoding = encoding
        self._chunk_rows = chunk_rows
        positions = {name: j for j, name in enumerate(csv_file.header)}
        columns = self.columns = encoding.columns  # the feature columns used, in the model's order
        self.has_labels = label_column is not None and label_column in positions
        self.label_column = label_column if self.has_labels else None
        used = set(columns) | {self.label_column}
        self.ignored = [name for name in csv_file.header if name not in used]  # columns not used
        self._indices = [positions[name] for name in columns]
        self._label_index = positions.get(self.label_column)

    def __iter__(self) -> Iterator[RowChunk]:
        path = self._file.path
        try:
            while block := list(itertools.islice(self._file.rows, self._chunk_rows)):
                lines, records = zip(*block)
                encoded = self._encoding.encode(records, self._indices, path, lines, drop=False)
                labels = None
                if self.has_labels:
                    labels = np.array(label_cells(records, self._label_index, self.label_column,
                                                  path, lines), dtype=str)
                yield RowChunk(np.array(lines, dtype=np.int64), encoded.x, labels, encoded.unseen)
        finally:  # also when a bad cell stops the reading, or the reader stops early
            self.close()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def read_table_rows(path, columns: list[str] | TableEncoding | None, label_column: str | None, *,
                    n_features: int | None = None, chunk_rows: int = CHUNK_ROWS) -> TableRows:
    """Open the CSV file ``path`` to read its rows for a model.

    ``columns`` are the model's feature columns, by name, or its TableEncoding
    (categories, missing cells): each column must be in the header, in any order;
    other columns are ignored (``TableRows.ignored``), but ``label_column``, when
    there, gives the labels. A model that does not know its column names
    (``columns`` None) takes every column but ``label_column``, as numbers, in
    file order, and there must be ``n_features`` of them when that is given.
    The header and the first row are read here, so a file that does not fit the
    model is refused before anything is predicted.
    """
    csv_file = open_csv(Path(path))
    try:
        header = csv_file.header
        if columns is None:
            columns = [name for name in header if name != label_column]
            _check_count(csv_file, columns, label_column, n_features)
        else:
            in_file = set(header)
            names = columns.columns if isinstance(columns, TableEncoding) else columns
            missing = [name for name in names if name not in in_file]
            if missing:
                raise DataError(f"{csv_file.path}: lacks the model's feature column(s) "
                                f"{_listed(missing)}; the file's columns are: {_listed(header)}")
        encoding = columns if isinstance(columns, TableEncoding) else TableEncoding(list(columns))
        return TableRows(csv_file, encoding, label_column, chunk_rows)
    except BaseException:
        csv_file.close()
        raise


def _check_count(csv_file: CsvFile, features: list[str], label_column: str | None,
                 n_features: int | None) -> None:
    if not features:
        raise DataError(f"{csv_file.path}: has only the label column {label_column!r}, no features")
    if n_features is not None and len(features) != n_features:
        besides = (f" besides the label column {label_column!r}"
                   if label_column in csv_file.header else "")
        raise DataError(f"{csv_file.path}: the model takes {n_features} values per row, and the "
                        f"file has {len(features)} feature column(s){besides}: {_listed(features)}")


def _listed(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:_NAMES_SHOWN]))
    return shown if len(names) <= _NAMES_SHOWN else f"{shown}, ... ({len(names)} in all)"
