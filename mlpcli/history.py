"""A run's training history (history.csv): reading it and what it shows.

Pure functions, no drawing: the best epoch by a monitored quantity (what the
curves say about overfitting is ``mlpcli.curve_verdicts``).
"""

import csv
import io
import math
import numbers

from mlpcli.files import read_text


def finite(value):
    """A finite real number (numpy scalars such as float32 included; bools are not numbers)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def as_columns(history):
    """History as {column: [values]}; accepts that or a list of per-epoch row dicts."""
    if isinstance(history, dict):
        return history
    names = []
    for row in history:
        names += [k for k in row if k not in names]
    return {k: [row.get(k, math.nan) for row in history] for k in names}


def epoch_numbers(cols):
    n = max((len(v) for v in cols.values()), default=0)
    epochs = cols.get("epoch")
    if epochs and len(epochs) == n and all(finite(e) for e in epochs):
        return [int(e) if float(e).is_integer() else e for e in epochs]
    return list(range(1, n + 1))


def has_values(cols, name):
    return name in cols and any(finite(v) for v in cols[name])


def monitored_column(history, monitor):
    """The column that best-epoch marking uses: ``monitor`` when logged, else ``loss`` (or None)."""
    cols = as_columns(history)
    if monitor and has_values(cols, monitor):
        return monitor
    return "loss" if has_values(cols, "loss") else None


def best_epoch(history, monitor="val_loss", mode="auto"):
    """The epoch with the best value of ``monitor``, or None when nothing is logged.

    ``history`` is ``{column: [values per epoch]}`` (as read from
    history.csv; an ``epoch`` column gives the epoch numbers, else 1, 2, ...)
    or a list of per-epoch row dicts. ``mode`` is "min", "max" or "auto"
    (see ``mlpcli.nn.metrics.higher_is_better``). When ``monitor`` is not
    logged, the training ``loss`` is used instead (lower is better, whatever
    ``mode`` says). Ties go to the earliest epoch, as Keras checkpoints do.
    """
    from mlpcli.nn.metrics import higher_is_better

    cols = as_columns(history)
    column = monitored_column(cols, monitor)
    if column is None:
        return None
    best = best_index(cols[column], higher_is_better(column, mode if column == monitor else "auto"))
    return None if best is None else epoch_numbers(cols)[best]


def best_index(values, higher):
    """Position of the best finite value (the first on a tie), or None when there is none."""
    best = None
    for i, v in enumerate(values):
        if finite(v) and (best is None or (v > values[best] if higher else v < values[best])):
            best = i
    return best


def number_or_nan(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_history(path):
    """history.csv as {column: [float per epoch]} (missing or non-numeric cells are NaN).

    Raises OSError, UnicodeDecodeError, csv.Error or ValueError when the file
    cannot be read or has no header.
    """
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise ValueError("no header line")
        names = [h.strip() for h in header]
        cols = {name: [] for name in names if name}
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            for i, name in enumerate(names):
                if name:
                    cols[name].append(number_or_nan(row[i]) if i < len(row) else math.nan)
    return cols
