"""Arrays read straight from a file's pages (a memory map) instead of copied into memory.

A mapped array costs no memory of its own: the kernel reads its pages on first touch
and keeps them in its page cache. But every page the process has touched counts in its
resident memory until it lets go of it, so a pass over a 3 GB file would leave the
process 3 GB resident. ``PageBudget`` lets go (``madvise(MADV_DONTNEED)``: the pages
stay cached, only this process's claim on them goes) each time its file pages have grown
by ``RESIDENT_BUDGET``. It measures rather than estimates: one row read at random brings
64 KiB of pages (Linux's fault-around) or, where the page cache holds 2 MiB folios, 2 MiB.
Letting go has a price: the next read of those pages faults again (a few microseconds).

Rows read at random (a shuffled batch) do not go through the map at all: each is read with
one ``pread`` into the batch's buffer. Through the map, each such row faulted in 64 KiB
that was soon let go of again: 6.5 µs a row on a 3 GB file against 2 µs for the read
(measured on this project's 2-core machine), and the read leaves no file pages resident.
"""

import mmap
import os

import numpy as np

from mlpcli.errors import DataError

# how far a process's resident file pages may grow before a mapped array's are let go of
RESIDENT_BUDGET = 128 * 2**20
STATM = "/proc/self/statm"  # Linux: sizes in pages; the third is the resident file-backed ones


class FileMap(mmap.mmap):
    """A read-only map of a file that keeps the file open (``file``, at ``path``) so that
    rows can also be read from it without the map; ``start``: the address the map begins at."""


def map_array(path, shape, dtype, offset) -> np.ndarray:
    """The read-only array of ``shape`` and ``dtype`` stored row by row (C order) at byte
    ``offset`` of the file ``path``, mapped (the caller has checked that the file holds it)."""
    file = open(path, "rb")
    pages = FileMap(file.fileno(), 0, access=mmap.ACCESS_READ)
    pages.file, pages.path = file, path
    pages.start = np.frombuffer(pages, np.uint8, count=1).ctypes.data  # reads no page
    return np.ndarray(shape, dtype, buffer=pages, offset=offset)


def file_pages(x):
    """The ``mmap`` that array ``x`` (or the array it views) reads from; None when ``x`` is
    held in memory."""
    while x is not None and not isinstance(x, mmap.mmap):
        x = getattr(x, "base", None)
    return x


def is_mapped(x) -> bool:
    return file_pages(x) is not None


def resident_file_bytes():
    """This process's resident file-backed (and shared) memory; None where the system does not say."""
    try:
        with open(STATM, "rb") as f:
            return int(f.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


class PageBudget:
    """Lets go of a mapped array's resident pages each time the process's file pages have grown
    by ``RESIDENT_BUDGET`` since the last time; does nothing for an array held in memory."""

    def __init__(self, x):
        self._pages = file_pages(x)
        self._since = resident_file_bytes() if self._pages is not None else None

    def take(self, x, rows, out=None):
        """``x[rows]`` (into ``out`` when given: C-contiguous) for the array ``x`` this budget
        is of; a mapped ``x`` is read from its file a row at a time (``read_rows``)."""
        if out is None:
            out = np.empty((len(rows),) + x.shape[1:], x.dtype)
        if self._since is None:
            return np.take(x, rows, axis=0, out=out)
        if not hasattr(os, "preadv"):  # Windows: through the map
            np.take(x, rows, axis=0, out=out)
            self.read()
            return out
        return read_rows(self._pages, x, rows, out)

    def read(self):
        """Some rows were read: let go of the pages if they have grown past the budget."""
        if self._since is None:
            return
        now = resident_file_bytes()
        if now - self._since >= RESIDENT_BUDGET:
            self._pages.madvise(mmap.MADV_DONTNEED)
            self._since = resident_file_bytes()


def read_rows(pages, x, rows, out):
    """``x[rows]`` into ``out`` (C-contiguous, x's dtype), for ``x`` C-contiguous in the map
    ``pages``: one ``pread`` a row from the file. A row-at-a-time loop, because numpy has no
    scattered read and each read is a system call either way (the map's is a page fault)."""
    row_bytes = x.strides[0] if len(x) else 0
    first = x.ctypes.data - pages.start  # x[0]'s place in the file (the map begins at byte 0)
    fd = pages.file.fileno()
    buffer = memoryview(out.reshape(-1).view(np.uint8))
    for i, row in enumerate(rows.tolist()):
        try:
            got = os.preadv(fd, [buffer[i * row_bytes:(i + 1) * row_bytes]], first + row * row_bytes)
        except OSError as exc:
            raise DataError(f"{pages.path}: could not read row {row}: {exc.strerror or exc}") from None
        if got != row_bytes:
            raise DataError(f"{pages.path}: the file ended before row {row}; it was changed while being read")
    return out


def row_blocks(x, rows):
    """``x``'s consecutive blocks of ``rows`` rows, a mapped ``x``'s pages let go of as they go."""
    budget = PageBudget(x)
    for start in range(0, len(x), rows):
        block = x[start:start + rows]
        yield block
        budget.read()
