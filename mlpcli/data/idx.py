"""Reader for IDX files (the MNIST file format), gzip-compressed or plain.

An IDX file is a 4-byte magic (0x00, 0x00, dtype code, ndim), ndim
big-endian uint32 dimension sizes, then the values, big-endian, row-major.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from mlpcli.errors import DataError

# IDX dtype code -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path) -> bytes:
    """Return the (decompressed) bytes of an IDX file.

    Compression is detected from the content, not the name: a gzip stream
    starts with 0x1f 0x8b and an IDX file with 0x00 0x00, so a misnamed file
    still reads.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data: {e}") from None


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode IDX bytes into an array of shape dims, in native byte order.

    ``source`` names the file in error messages.
    """
    if len(data) < 4:
        raise DataError(f"{source}: not an IDX file: only {len(data)} bytes")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00":
        raise DataError(f"{source}: not an IDX file: magic starts with {zero.hex()}, expected 0000")
    if code not in IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX dtype code 0x{code:02X}")
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = dtype.itemsize * int(np.prod(dims, dtype=object))
    actual = len(data) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX data {what}: dims {dims} need {expected} bytes "
            f"of {dtype.name}, found {actual}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    if values.dtype.itemsize == 1:
        # uint8/int8 have no byte order: use the bytes as they are (read-only), not a second copy
        return values
    return values.astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file (gzip'd or plain) into an array of shape dims."""
    return parse_idx(_read_bytes(path), str(path))
