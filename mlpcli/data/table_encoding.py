"""How a table's cells become a model's features: numeric columns, categorical columns
(one-hot over a vocabulary) and the filling of missing cells.

``fit_encoding`` learns it from the training rows (which columns are categorical and
their vocabularies, what fills each column's missing cells) and ``TableEncoding.encode``
applies it to any rows: the training, validation and test files when training, and the
rows ``mlp predict`` and ``mlp evaluate`` read, a chunk at a time. The model file keeps it
in its input pipeline (``mlpcli.pipeline``), so predictions see their rows as training did.

Rules, each chosen so that nothing is guessed silently:

- a column is categorical when ``data.categorical`` lists it (its numbers are then
  categories too), or when none of its training cells is a number; a column that mixes
  numbers with other text is refused, naming the first cell that is not a number;
- the vocabulary is the column's sorted distinct training values (plus the ``constant``
  fill); a value not in it (at predict time) is all zeros, and counted;
- a cell is missing only for a column that ``data.missing`` gives a strategy: then it is
  one of MISSING_CELLS; without one, an empty cell stays an error naming its line and column.
"""

import collections
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpcli.errors import ConfigError, DataError

# what a missing cell looks like, once stripped (pandas' and the UCI repository's commonest)
MISSING_CELLS = frozenset({"", "?", "NA", "N/A", "NaN", "nan", "null"})
STRATEGIES = ("mean", "median", "most_frequent", "constant", "drop_row")
MAX_CATEGORIES = 1000  # of one column: more is an identifier or free text, not a category


@dataclass(frozen=True)
class Fill:
    """How a column's missing cells are filled: ``value`` (a number for a numeric column,
    a category for a categorical one; None for ``drop_row``, whose rows are left out)."""

    strategy: str
    value: float | str | None


@dataclass
class Encoded:
    x: np.ndarray  # float32 (kept rows, width)
    kept: np.ndarray | None  # bool (rows,): the rows kept (None: all of them)
    unseen: dict = field(default_factory=dict)  # categorical column -> (rows with an unseen value, one of them)


@dataclass
class TableEncoding:
    """The feature ``columns`` in the model's order; ``categories``: categorical column ->
    vocabulary; ``fills``: column -> Fill (a column without one refuses missing cells)."""

    columns: list
    categories: dict = field(default_factory=dict)
    fills: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        """How many values a row gives the model."""
        return sum(len(self.categories.get(c, (None,))) for c in self.columns)

    @property
    def feature_names(self) -> list:
        """A name per feature: the column's, or ``column=category`` for a one-hot."""
        return [name for c in self.columns
                for name in ([f"{c}={v}" for v in self.categories[c]] if c in self.categories else [c])]

    def encode(self, rows: Sequence[Sequence[str]], indices: list, path: Path, lines: Sequence[int],
               drop: bool = True) -> Encoded:
        """The features of ``rows`` (whose cells of ``columns`` are at ``indices``, whose file
        lines are ``lines``). ``drop``: rows with a missing cell in a ``drop_row`` column are
        left out (training); else such a cell is an error (a prediction is made for every row)."""
        kept = None
        dropping = [j for c, j in zip(self.columns, indices) if self._strategy(c) == "drop_row"]
        if drop and dropping:
            kept = np.array([not any(row[j].strip() in MISSING_CELLS for j in dropping) for row in rows], bool)
            rows = [row for row, keep in zip(rows, kept) if keep]
            lines = [line for line, keep in zip(lines, kept) if keep]
        out = Encoded(np.zeros((len(rows), self.width), np.float32), kept)
        numeric, at = [], 0
        for column, j in zip(self.columns, indices):
            if column in self.categories:
                self._one_hot(out, at, column, [row[j].strip() for row in rows], path, lines)
                at += len(self.categories[column])
            else:
                numeric.append((column, j, at))
                at += 1
        if numeric:
            self._numbers(out.x, numeric, rows, path, lines)
        return out

    def _strategy(self, column):
        fill = self.fills.get(column)
        return fill.strategy if fill else None

    def _numbers(self, x, numeric, rows, path, lines):
        columns, indices, at = (list(t) for t in zip(*numeric))
        if not any(c in self.fills for c in columns):  # no cell may be missing: parsed together
            x[:, at] = parse_numbers(rows, indices, columns, path, lines)
            return
        for column, j, k in numeric:
            fill = self.fills.get(column)
            if fill is None:
                x[:, k] = parse_numbers(rows, [j], [column], path, lines)[:, 0]
                continue
            cells = [row[j].strip() for row in rows]
            missing = np.array([c in MISSING_CELLS for c in cells], bool)
            self._refuse_missing(missing, fill, column, path, lines)
            x[:, k] = parse_numbers([(("0",) if m else (c,)) for c, m in zip(cells, missing)], [0], [column],
                                    path, lines)[:, 0]
            x[missing, k] = np.float32(fill.value)

    def _one_hot(self, out, at, column, cells, path, lines):
        fill = self.fills.get(column)
        if fill is not None:
            missing = [c in MISSING_CELLS for c in cells]
            self._refuse_missing(np.array(missing, bool), fill, column, path, lines)
            cells = [fill.value if m else c for c, m in zip(cells, missing)]
        elif "" in cells:
            raise DataError(f"{path}: line {lines[cells.index('')]}, column {column!r}: missing value")
        index = {value: i for i, value in enumerate(self.categories[column])}
        codes = np.array([index.get(c, -1) for c in cells], np.int64)
        seen = codes >= 0
        out.x[np.flatnonzero(seen), at + codes[seen]] = 1.0
        if not seen.all():
            out.unseen[column] = (int((~seen).sum()), cells[int(np.argmin(seen))])

    @staticmethod
    def _refuse_missing(missing, fill, column, path, lines):
        """A missing cell of a ``drop_row`` column, where the row cannot be left out."""
        if fill.value is None and missing.any():
            raise DataError(f"{path}: line {lines[int(np.argmax(missing))]}, column {column!r}: missing value "
                            "(the model was trained with data.missing strategy drop_row here, which leaves "
                            "such rows out of training; a prediction needs the value)")


def parse_numbers(rows: Sequence[Sequence[str]], indices: list[int], columns: list[str],
                  path: Path, lines: Sequence[int]) -> np.ndarray:
    """Parse the cells at ``indices`` (named ``columns``) of every row, whose file lines are
    ``lines``: float32 (n, len(indices)), all finite. A bad cell is a DataError naming the
    file, its line and its column."""
    if len(indices) == 1:
        j = indices[0]
        cells = [(row[j],) for row in rows]
    else:
        cells = list(map(operator.itemgetter(*indices), rows))
    try:
        with np.errstate(over="ignore"):
            values = np.array(cells, dtype=np.float32).reshape(len(cells), len(indices))
        if np.isfinite(values).all():
            return values
    except ValueError:
        pass
    # Only for bad input: find the first offending cell to name it.
    i, j, problem = next(
        (i, j, p)
        for i, row in enumerate(cells)
        for j, cell in enumerate(row)
        if (p := _cell_problem(cell))
    )
    raise DataError(f"{path}: line {lines[i]}, column {columns[j]!r}: {problem}")


def _cell_problem(cell: str) -> str | None:
    """Why a cell is not a usable number, or None."""
    if not cell.strip():
        return "missing value"
    try:
        with np.errstate(over="ignore"):
            value = np.float32(cell)
    except ValueError:
        return f"not a number: {cell.strip()!r}"
    if not np.isfinite(value):
        return f"not a finite float32 number: {cell.strip()!r}"
    return None


@dataclass(frozen=True)
class TableSettings:
    """What a config's ``data:`` section says about a table: the columns to take as categories,
    ``missing`` (config.py's resolved ``data.missing``, or None) and how many of the training
    rows (kept after ``drop_row``) the encoding is fitted on (None: all); ``weight_column``: the
    column of each training row's weight in the loss, which is no feature (None: none)."""

    categorical: tuple = ()
    missing: dict | None = None
    fit_rows: int | None = None
    weight_column: str | None = None

    @classmethod
    def of(cls, data_cfg):
        """The settings of a resolved csv ``data:`` section: the training rows the encoding is
        fitted on are those ``max_train_samples`` keeps."""
        return cls(categorical=tuple(data_cfg.get("categorical") or ()), missing=data_cfg.get("missing"),
                   fit_rows=data_cfg.get("max_train_samples"), weight_column=data_cfg.get("weight_column"))

    def fill_spec(self, column):
        """``{"strategy", "value"}`` for ``column``, and its key path; (None, None) when its
        missing cells are errors."""
        missing = self.missing or {}
        if column in (missing.get("columns") or {}):
            return missing["columns"][column], f"data.missing.columns.{column}"
        if missing.get("strategy"):
            return missing, "data.missing"
        return None, None


def check_columns(settings: TableSettings, features: list, path: Path) -> None:
    """Every column the settings name must be a feature column of the file: ConfigError else."""
    named = [("data.categorical", c) for c in settings.categorical]
    named += [("data.missing.columns", c) for c in ((settings.missing or {}).get("columns") or {})]
    for key, column in named:
        if column not in features:
            raise ConfigError(f"{key}: {column!r} is not a feature column of {path}; "
                              f"its feature columns are: {', '.join(features[:20])}")


def fit_encoding(rows: Sequence[Sequence[str]], indices: list, columns: list, path: Path,
                 lines: Sequence[int], settings: TableSettings) -> TableEncoding:
    """The encoding of the training ``rows`` (see the module docstring); fill values and
    vocabularies come from the rows kept after ``drop_row``, the first ``settings.fit_rows``."""
    check_columns(settings, columns, path)
    if not settings.categorical and not settings.missing and _all_numbers(rows[:settings.fit_rows], indices):
        return TableEncoding(list(columns))  # the common case, at numpy's speed
    specs = {c: settings.fill_spec(c) for c in columns}
    dropping = [j for c, j in zip(columns, indices) if (specs[c][0] or {}).get("strategy") == "drop_row"]
    fitted = [(row, line) for row, line in zip(rows, lines)
              if not any(row[j].strip() in MISSING_CELLS for j in dropping)][:settings.fit_rows]
    if not fitted:
        raise DataError(f"{path}: every row has a missing cell in a column of data.missing strategy drop_row; "
                        "no training rows are left")
    fit_lines = [line for _, line in fitted]
    encoding = TableEncoding(list(columns))
    for column, j in zip(columns, indices):
        spec, key = specs[column]
        cells = [row[j].strip() for row, _ in fitted]
        missing = [c in MISSING_CELLS for c in cells] if spec else [not c for c in cells]
        present = [(c, line) for c, m, line in zip(cells, missing, fit_lines) if not m]
        categorical = column in settings.categorical or _is_categorical(column, present, path)
        if spec is not None:
            encoding.fills[column] = _fill(column, spec, key, [c for c, _ in present], categorical, path)
        if categorical:
            encoding.categories[column] = _vocabulary(column, present, encoding.fills.get(column), path)
    return encoding


def _all_numbers(rows, indices):
    try:
        with np.errstate(over="ignore"):
            np.array([[row[j] for j in indices] for row in rows], dtype=np.float32)
        return True
    except ValueError:
        return False


def _is_categorical(column, present, path):
    """Whether no cell of ``present`` ((cell, line) pairs) is a number; DataError for a mix."""
    try:
        with np.errstate(over="ignore"):
            np.array([c for c, _ in present], dtype=np.float32)
        return False
    except ValueError:
        pass
    numbers = [_is_number(c) for c, _ in present]
    if not any(numbers):
        return True
    cell, line = present[numbers.index(False)]
    hint = ("set data.missing to fill missing cells" if cell in MISSING_CELLS else
            "list the column in data.categorical to take all its values as categories")
    raise DataError(f"{path}: line {line}, column {column!r}: not a number: {cell!r}; the column's other "
                    f"cells are numbers ({hint})")


def _is_number(cell):
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _fill(column, spec, key, present, categorical, path):
    strategy, value = spec["strategy"], spec.get("value")
    if strategy == "drop_row":
        return Fill(strategy, None)
    if categorical:
        if strategy in ("mean", "median"):
            if key != "data.missing":
                raise ConfigError(f"{key}.strategy: {strategy!r} needs numbers, and {column!r} is a "
                                  "categorical column; use most_frequent or constant")
            strategy = "most_frequent"  # the global strategy, for a column it cannot average
        if strategy == "constant":
            return Fill(strategy, str(value))
    elif strategy == "constant":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}.value: {column!r} is a numeric column, so the constant must be a "
                              f"number, got {value!r}")
        return Fill(strategy, float(np.float32(value)))
    if not present:
        raise DataError(f"{path}: column {column!r} has no value in the training rows to fit "
                        f"data.missing strategy {strategy} on")
    if categorical:  # the most frequent category; of equally frequent ones, the first in sorted order
        counts = collections.Counter(present)
        return Fill(strategy, min(counts, key=lambda c: (-counts[c], c)))
    values = np.array(present, dtype=np.float32)
    if strategy == "mean":
        return Fill(strategy, float(np.float32(values.mean(dtype=np.float64))))
    if strategy == "median":
        return Fill(strategy, float(np.float32(np.median(values.astype(np.float64)))))
    distinct, counts = np.unique(values, return_counts=True)  # sorted: ties go to the smallest
    return Fill(strategy, float(distinct[int(np.argmax(counts))]))


def _vocabulary(column, present, fill, path):
    values = {c for c, _ in present}
    if fill is not None and fill.strategy == "constant":
        values.add(fill.value)
    if len(values) > MAX_CATEGORIES:
        raise DataError(f"{path}: column {column!r} has {len(values):,} distinct values in the training rows, "
                        f"more than the {MAX_CATEGORIES:,} a categorical column may have (an identifier or "
                        "free text is no category: leave the column out of the file)")
    return sorted(values)
