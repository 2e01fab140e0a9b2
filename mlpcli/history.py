"""A run's training history (history.csv): reading it and what it shows.

Pure functions, no drawing: the best epoch by a monitored quantity and the
epoch where overfitting set in. ``mlpcli.plots`` draws them,
``mlpcli.diagnostics`` and ``mlpcli.compare`` report them.
"""

import csv
import io
import math
import numbers

from mlpcli.files import read_text


def finite(value):
    """A finite real number (numpy scalars such as float32 included; bools are not numbers)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def overfitting_onset(train_loss, val_loss) -> int | None:
    """The epoch (1-based position in the curves) at which overfitting set in, or None.

    Let ``m`` be the epoch of the lowest validation loss (the first one on a
    tie). The onset is the first epoch ``e`` after ``m`` such that

    * the validation loss stays strictly above its minimum from ``e`` to the
      last epoch, and
    * the training loss at the last epoch is lower than at ``e`` (training
      kept improving while validation got worse).

    So the last epoch is never an onset (the training loss must fall after
    it), curves whose validation loss is lowest at the end give None, and
    fewer than 3 epochs always give None. Non-finite values are ignored for
    the minimum and never satisfy a condition; curves of different lengths
    are compared over the common length.
    """
    n = min(len(train_loss), len(val_loss))
    train = [float(v) if finite(v) else math.nan for v in train_loss[:n]]
    val = [float(v) if finite(v) else math.nan for v in val_loss[:n]]
    finite_val = [(v, i) for i, v in enumerate(val) if not math.isnan(v)]
    if n < 3 or not finite_val or math.isnan(train[-1]):
        return None
    low, m = min(finite_val)  # ties: the smallest index
    # stays_above[i]: val[j] > low for every j >= i
    stays_above = [False] * n
    ok = True
    for i in range(n - 1, -1, -1):
        ok = ok and val[i] > low  # NaN > low is False
        stays_above[i] = ok
    for e in range(m + 1, n):
        if stays_above[e] and train[-1] < train[e]:
            return e + 1
    return None


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
