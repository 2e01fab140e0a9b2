"""Features kept as stored and scaled a batch at a time.

MNIST's pixels are uint8: kept that way they take a quarter of float32's
memory, and gathering a shuffled batch moves a quarter of the bytes. Each
batch is scaled (``raw * scale + offset`` in float32, by the same ``scale_into``
that ``apply_preprocessing`` uses for a whole array) into a buffer the caller owns.
"""

import math

import numpy as np

from mlpcli.data.mapped import is_mapped, row_blocks, take_rows
from mlpcli.errors import DataError

_CHECK_ROWS = 4096


def preprocessing_arrays(preprocessing):
    """``{"scale", "offset"}`` (numbers, or nested lists of the feature shape) as float32 arrays."""
    try:
        return (np.asarray(preprocessing["scale"], dtype=np.float32),
                np.asarray(preprocessing["offset"], dtype=np.float32))
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"preprocessing must be {{'scale': ..., 'offset': ...}} numbers or arrays, got {preprocessing!r}"
        ) from None


def check_finite(x: np.ndarray, where: str) -> None:
    """Refuse NaN, infinities and values beyond float32's range (they become infinite when
    scaled), naming the first one's index; checked a block of rows at a time."""
    rows = x.reshape(len(x), math.prod(x.shape[1:]))
    with np.errstate(over="ignore", invalid="ignore"):
        for block_index, block in enumerate(row_blocks(rows, _CHECK_ROWS)):
            bad = ~np.isfinite(block.astype(np.float32))
            if bad.any():
                row, column = divmod(int(np.argmax(bad)), rows.shape[1])
                index = np.unravel_index(column, x.shape[1:])
                index = (block_index * _CHECK_ROWS + row, *map(int, index))
                raise DataError(f"{where} holds {x[index].item()!r} at index {index}; "
                                "features must be finite float32 numbers")


def scale_into(raw, out, scale, offset):
    """out = raw * scale + offset, in float32; ``out`` may be ``raw`` itself."""
    if out is not raw:
        np.copyto(out, raw, casting="unsafe")  # exact for uint8; a plain cast beats a mixed multiply
    out *= scale
    if offset.any():
        out += offset
    return out


class Features:
    """Samples ``raw`` (n, ...) seen by the model as float32 (n, *input_shape).

    ``preprocessing`` is ``{"scale", "offset"}`` (numbers, or arrays of the
    feature shape); ``features[a:b]`` is a scaled float32 copy of those rows and
    ``take(idx, out)`` scales rows ``idx`` into ``out``. ``rows`` (int64): the rows of
    ``raw`` that are the samples, in order (a split of them: no copy is made); None: all.
    ``raw`` may be mapped from a file (``mlpcli.data.mapped``): only the rows asked for are
    read from it.
    """

    def __init__(self, raw, preprocessing, input_shape, rows=None):
        input_shape = tuple(input_shape)
        self.raw = raw.reshape((len(raw),) + input_shape)
        self.rows = rows
        self.shape = (len(raw) if rows is None else len(rows),) + input_shape
        self._mapped = is_mapped(self.raw)
        scale, offset = preprocessing_arrays(preprocessing)
        # per-feature arrays are given in the data's feature shape: broadcast them over the input shape
        self.scale, self.offset = (a.reshape(input_shape) if a.size > 1 else a.reshape(())
                                   for a in (scale, offset))
        self.identity = self.raw.dtype == np.float32 and (scale == 1).all() and not offset.any()
        self._gathered = None

    @classmethod
    def wrap(cls, x):
        """``x`` itself when it is Features, else float32 array ``x`` used as it is."""
        if isinstance(x, cls):
            return x
        return cls(np.asarray(x, np.float32), {"scale": 1.0, "offset": 0.0}, x.shape[1:])

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        if np.ndim(rows) == 0 and not isinstance(rows, slice):  # one sample: the row of a one-row block
            row = range(len(self))[rows]  # (as numpy: negative from the end, IndexError beyond)
            return self[row:row + 1][0]
        if self.rows is not None:
            raw = take_rows(self.raw, self.rows[rows])
        elif self._mapped:  # the slice's row numbers (not an arange of millions for a block)
            raw = take_rows(self.raw, np.arange(*rows.indices(len(self))) if isinstance(rows, slice)
                            else np.arange(len(self))[rows])
        else:
            raw = self.raw[rows]
        return scale_into(raw, np.empty(raw.shape, np.float32), self.scale, self.offset)

    def take_raw(self, idx):
        """Rows ``idx`` (k,) as stored, unscaled: a new array."""
        return take_rows(self.raw, self._source(idx))

    def take(self, idx, out):
        """Rows ``idx`` (k,), scaled, into ``out`` float32 (k, *input_shape)."""
        idx = self._source(idx)
        if self.identity:
            return take_rows(self.raw, idx, out)
        if self._gathered is None or self._gathered.shape[0] < len(idx):
            self._gathered = np.empty((len(idx),) + self.shape[1:], self.raw.dtype)
        raw = take_rows(self.raw, idx, self._gathered[:len(idx)])
        return scale_into(raw, out, self.scale, self.offset)

    def _source(self, idx):
        """The rows of ``raw`` that samples ``idx`` are."""
        return idx if self.rows is None else self.rows[idx]
