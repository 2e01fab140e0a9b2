"""Features kept as stored and scaled a batch at a time.

MNIST's pixels are uint8: kept that way they take a quarter of float32's
memory, and gathering a shuffled batch moves a quarter of the bytes. Each
batch is scaled (``raw * scale + offset`` in float32, exactly as
``apply_preprocessing`` does for a whole array) into a buffer the caller owns.
"""

import numpy as np


class Features:
    """Samples ``raw`` (n, ...) seen by the model as float32 (n, *input_shape).

    ``preprocessing`` is ``{"scale", "offset"}`` (numbers, or arrays of the
    feature shape); ``features[a:b]`` is a scaled float32 copy of those rows and
    ``take(idx, out)`` scales rows ``idx`` into ``out``.
    """

    def __init__(self, raw, preprocessing, input_shape):
        input_shape = tuple(input_shape)
        self.raw = raw.reshape((len(raw),) + input_shape)
        self.shape = self.raw.shape
        self.scale = np.asarray(preprocessing["scale"], np.float32).reshape(-1)
        self.offset = np.asarray(preprocessing["offset"], np.float32).reshape(-1)
        if self.scale.size > 1:  # per feature: broadcast over the input shape
            self.scale = self.scale.reshape(input_shape)
            self.offset = self.offset.reshape(input_shape)
        else:
            self.scale, self.offset = self.scale[0], self.offset[0]
        self._has_offset = bool(np.any(self.offset))
        self.identity = self.raw.dtype == np.float32 and np.all(self.scale == 1) and not self._has_offset
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
        raw = self.raw[rows]
        out = np.empty(raw.shape, np.float32)
        self._scale_into(raw, out)
        return out

    def take(self, idx, out):
        """Rows ``idx`` (k,), scaled, into ``out`` float32 (k, *input_shape)."""
        if self.identity:
            np.take(self.raw, idx, axis=0, out=out)
            return out
        if self._gathered is None or self._gathered.shape[0] < len(idx):
            self._gathered = np.empty((len(idx),) + self.shape[1:], self.raw.dtype)
        raw = self._gathered[:len(idx)]
        np.take(self.raw, idx, axis=0, out=raw)
        self._scale_into(raw, out)
        return out

    def _scale_into(self, raw, out):
        np.copyto(out, raw, casting="unsafe")  # exact for uint8; a plain cast is faster than a mixed multiply
        out *= self.scale
        if self._has_offset:
            out += self.offset
