"""Arrays of a file that are not loaded: mapped for their shape, dtype and views, and read
from the file only where rows are asked for.

A ``FileMap`` keeps its file open, and every read of a mapped array's rows (a shuffled
batch, a block of validation or prediction rows, the finite check) is a ``pread`` from
that file into memory the caller owns: runs of consecutive rows in one call, other rows
one call each. Nothing goes through the map's pages, so the process holds none of the
file (reading a 3 GB file through the map left it 3 GB resident unless its pages were let
go of, and each row read at random then faulted in 64 KiB again: 6.5 µs a row against
2 µs for its ``pread``, measured on this project's 2-core machine), and a file cut short
by another program while it is read is an error naming it instead of a SIGBUS.
"""

import mmap
import os

import numpy as np

from mlpcli.errors import DataError


class FileMap(mmap.mmap):
    """A read-only map of a file that keeps the file open (``file``, at ``path``) for reading
    rows without the map; ``start``: the address the map begins at."""


def map_array(path, shape, dtype, offset) -> np.ndarray:
    """The read-only array of ``shape`` and ``dtype`` stored row by row (C order) at byte
    ``offset`` of the file ``path``, mapped (the caller has checked that the file holds it)."""
    file = open(path, "rb")
    pages = FileMap(file.fileno(), 0, access=mmap.ACCESS_READ)
    pages.file, pages.path = file, path
    pages.start = np.frombuffer(pages, np.uint8, count=1).ctypes.data  # reads no page
    return np.ndarray(shape, dtype, buffer=pages, offset=offset)


def file_pages(x):
    """The ``FileMap`` that array ``x`` (or the array it views) is of; None when ``x`` is
    held in memory."""
    while x is not None and not isinstance(x, mmap.mmap):
        x = getattr(x, "base", None)
    return x if isinstance(x, FileMap) else None


def is_mapped(x) -> bool:
    return file_pages(x) is not None


def take_rows(x, rows, out=None):
    """``x[rows]`` (``rows``: int array) into ``out`` (C-contiguous, of x's dtype; a new
    array when None): read from the file for a mapped ``x``, by ``np.take`` otherwise."""
    if out is None:
        out = np.empty((len(rows),) + x.shape[1:], x.dtype)
    pages = file_pages(x)
    if pages is None or not hasattr(os, "preadv"):  # (Windows has no preadv: through the map)
        return np.take(x, rows, axis=0, out=out)
    return _read_rows(pages, x, rows, out)


def row_blocks(x, rows):
    """``x``'s consecutive blocks of ``rows`` rows: views of an array held in memory, new
    arrays read from the file for a mapped one."""
    mapped = is_mapped(x)
    for start in range(0, len(x), rows):
        stop = min(start + rows, len(x))
        yield take_rows(x, np.arange(start, stop)) if mapped else x[start:stop]


def _read_rows(pages, x, rows, out):
    """Rows ``rows`` of ``x`` (C-contiguous in the map ``pages``) read from the file into
    ``out``. A loop over runs of consecutive rows, because numpy has no scattered read: a
    shuffled batch costs a system call a row (through the map, each was a page fault)."""
    rows = np.asarray(rows, np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(x)):
        raise IndexError(f"rows {rows.min()}..{rows.max()} of an array of {len(x)}")
    if not x.flags.c_contiguous or not out.flags.c_contiguous or out.dtype != x.dtype:
        raise ValueError("reading rows from a file needs C-ordered arrays of one dtype")
    row_bytes = x.itemsize * (x.size // len(x)) if len(x) else 0
    first = x.ctypes.data - pages.start  # x[0]'s place in the file (the map begins at byte 0)
    buffer = memoryview(out.reshape(-1).view(np.uint8))
    starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)  # where each run of consecutive rows begins
    ends = (np.append(starts[1:], len(rows)) * row_bytes).tolist()
    fd = pages.file.fileno()
    run = 0
    try:
        for run, (start, end, offset) in enumerate(zip((starts * row_bytes).tolist(), ends,
                                                       (first + rows[starts] * row_bytes).tolist())):
            if os.preadv(fd, [buffer[start:end]], offset) != end - start:
                _read_on(pages, fd, buffer[start:end], offset, int(rows[starts[run]]), row_bytes)
    except OSError as exc:
        raise DataError(f"{pages.path}: could not read row {int(rows[starts[run]])}: "
                        f"{exc.strerror or exc}") from None
    return out


def _read_on(pages, fd, buffer, offset, row, row_bytes):
    """Fill ``buffer`` (rows from ``row`` on) from byte ``offset`` of the file after a read
    that returned less than asked, as a signal or a network file system may make it."""
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], offset + done)
        if got == 0:
            raise DataError(f"{pages.path}: the file ended before row {row + done // row_bytes}; "
                            "it was changed while being read")
        done += got
