"""Prediction files (`mlp predict --out FILE`): the one module that writes them.

The format follows FILE's suffix (``SUFFIXES``): a CSV table, JSON lines, or a
float32 .npy array. Predictions are written a chunk at a time as they are made,
so a million rows need no more memory than one chunk, into a temporary file
beside FILE (files.atomic_path) that takes FILE's name only once it is whole: a
failed or interrupted run leaves nothing, and an existing FILE is replaced only
when the caller says so (``overwrite``).

Numbers are written with the nine significant digits that give back the
float32 exactly. The class of a row is the first of its most probable classes.
"""

import contextlib
import csv
import io
import json
import struct
from pathlib import Path

import numpy as np

from mlpcli.errors import MlpError, printable
from mlpcli.files import atomic_path, check_new_file, exists_error

SUFFIXES = (".csv", ".jsonl", ".npy")
_NUMBER = "%.9g"  # every float32 reads back exactly from 9 significant digits


def open_prediction_file(path, *, class_names=None, n_outputs: int, task: str, overwrite=False):
    """A context manager whose ``write(sources, outputs)`` adds rows to the prediction file
    ``path``, which appears when the ``with`` block ends without an error.

    ``outputs`` are float32 (k, n_outputs) model outputs: softmax probabilities,
    one sigmoid column (the probability of class 1) or, for task "regression",
    values; ``class_names`` default to "0", "1", .... A suffix not in SUFFIXES
    and an existing ``path`` (unless ``overwrite``) are refused here, before
    anything is predicted.
    """
    path = Path(path)
    writer = _WRITERS.get(path.suffix.lower())
    if writer is None:
        raise MlpError(f"{path}: cannot write predictions to a {path.suffix or 'suffix-less'} file; "
                       f"the name must end in {', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]}")
    check_new_file(path, "predictions", overwrite)
    return _writing(path, writer, _Outputs(task, n_outputs, class_names), overwrite)




@contextlib.contextmanager
def _writing(path, writer_type, meaning, overwrite):
    try:
        with atomic_path(path, replace=overwrite) as tmp, open(tmp, "wb") as f:
            writer = writer_type(f, meaning)
            yield _PredictionFile(writer, meaning)
            writer.finish()
    except FileExistsError:  # it appeared while the predictions were being made
        raise exists_error(path) from None


class _Outputs:
    """What a model's outputs are: class probabilities (with the classes' names) or values."""

    def __init__(self, task, n_outputs, class_names):
        self.n_outputs = n_outputs
        self.classification = task == "classification"
        self.sigmoid = self.classification and n_outputs == 1
        width = 2 if self.sigmoid else n_outputs
        if self.classification:
            self.class_names = ([str(i) for i in range(width)] if class_names is None
                                else [str(name) for name in class_names])
            if len(self.class_names) != width:
                raise ValueError(f"{len(self.class_names)} class names for {width} classes")
        self.width = width  # numbers per row in the file

    def numbers(self, outputs):
        """float32 (k, width): each class's probability, or the values."""
        if self.sigmoid:
            return np.concatenate([np.float32(1) - outputs, outputs], axis=1)
        return outputs


class _PredictionFile:
    def __init__(self, writer, meaning):
        self._writer = writer
        self._meaning = meaning

    def write(self, sources, outputs):
        """Add one row per source; ``outputs`` float32 (len(sources), n_outputs)."""
        outputs = np.asarray(outputs, dtype=np.float32)
        if outputs.shape != (len(sources), self._meaning.n_outputs):
            raise ValueError(f"outputs of shape {outputs.shape} for {len(sources)} sources and "
                             f"{self._meaning.n_outputs} outputs")
        numbers = self._meaning.numbers(outputs)
        classes = np.argmax(numbers, axis=1) if self._meaning.classification else None
        self._writer.write([printable(str(s)) for s in sources], numbers, classes)


class _CsvWriter:
    """source,class,prob_<class>... or source,value (source,value_0,... for several values)."""

    def __init__(self, f, meaning):
        self._f = f
        self._meaning = meaning
        if meaning.classification:
            header = ["source", "class", *(f"prob_{name}" for name in meaning.class_names)]
        else:
            header = ["source", *(["value"] if meaning.width == 1 else
                                  [f"value_{j}" for j in range(meaning.width)])]
        self._write_rows([header])

    def write(self, sources, numbers, classes):
        columns = [list(map(_NUMBER.__mod__, column)) for column in numbers.T.tolist()]
        if classes is None:
            self._write_rows(zip(sources, *columns))
        else:
            names = [self._meaning.class_names[c] for c in classes.tolist()]
            self._write_rows(zip(sources, names, *columns))

    def _write_rows(self, rows):
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        self._f.write(text.getvalue().encode("utf-8"))

    def finish(self):
        pass


class _JsonLinesWriter:
    """One object per row: {source, class, probability, probabilities: {class: p}} or
    {source, value} (a list for several values); a number that is not finite is null."""

    def __init__(self, f, meaning):
        self._f = f
        self._meaning = meaning

    def write(self, sources, numbers, classes):
        rows = [[_json_number(text) for text in map(_NUMBER.__mod__, row)]
                for row in numbers.tolist()]
        if classes is None:
            objects = ({"source": s, "value": row if len(row) > 1 else row[0]}
                       for s, row in zip(sources, rows))
        else:
            names = self._meaning.class_names
            objects = ({"source": s, "class": names[c], "probability": row[c],
                        "probabilities": dict(zip(names, row))}
                       for s, c, row in zip(sources, classes.tolist(), rows))
        self._f.write("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
                      .encode("utf-8"))

    def finish(self):
        pass


def _json_number(text):
    value = float(text)
    return value if np.isfinite(value) else None  # JSON has no NaN or infinity


class _NpyWriter:
    """A float32 (n, width) array, little-endian. The header is written first with room for
    any row count and rewritten with the final one at the end, so rows go straight to disk."""

    _HEADER_BYTES = 128  # a multiple of 64, as the format asks; fits any int64 row count

    def __init__(self, f, meaning):
        self._f = f
        self._width = meaning.width
        self._rows = 0
        f.write(self._header())

    def write(self, sources, numbers, classes):
        self._f.write(numbers.astype("<f4").tobytes())
        self._rows += len(numbers)

    def finish(self):
        self._f.seek(0)
        self._f.write(self._header())

    def _header(self):
        """Format version 1.0: magic, version, header length, then the array's description
        as a Python dict literal padded with spaces and ended by a newline."""
        text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({self._rows}, {self._width}), }}"
        size = self._HEADER_BYTES - 10
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", size) + (text.ljust(size - 1) + "\n").encode("ascii")


_WRITERS = {".csv": _CsvWriter, ".jsonl": _JsonLinesWriter, ".npy": _NpyWriter}
