"""Arrays read straight from a file's pages (a memory map) instead of copied into memory.

A mapped array costs no memory of its own: the kernel reads its pages on first touch
and keeps them in its page cache. But every page the process has touched counts in its
resident memory until it lets go of it, so a pass over a 3 GB file would leave the
process 3 GB resident. ``PageBudget`` lets go (``madvise(MADV_DONTNEED)``: the pages
stay cached, only this process's claim on them goes) each time the rows read since the
last time could hold ``RESIDENT_BUDGET`` bytes of pages.
"""

import math
import mmap

import numpy as np

# the resident pages a mapped array may hold before they are let go of
RESIDENT_BUDGET = 128 * 2**20
# a fault on a cached file page maps up to 16 pages around it (Linux's fault_around_bytes):
# what one row read at random may add to the resident pages
FAULT_AROUND_BYTES = 64 * 2**10


def map_array(path, shape, dtype, offset, fortran_order=False) -> np.ndarray:
    """The read-only array of ``shape`` and ``dtype`` stored at byte ``offset`` of the file
    ``path``, mapped (the caller has checked that the file holds it)."""
    with open(path, "rb") as f:
        pages = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.ndarray(shape, dtype, buffer=pages, offset=offset, order="F" if fortran_order else "C")


def file_pages(x):
    """The ``mmap`` that array ``x`` (or the array it views) reads from; None when ``x`` is
    held in memory."""
    while x is not None and not isinstance(x, mmap.mmap):
        x = getattr(x, "base", None)
    return x


def is_mapped(x) -> bool:
    return file_pages(x) is not None


class PageBudget:
    """Counts the rows read from an array and lets go of its resident pages once they could
    exceed ``RESIDENT_BUDGET``; does nothing for an array held in memory."""

    def __init__(self, x):
        self._pages = file_pages(x)
        row_bytes = x.itemsize * math.prod(x.shape[1:])
        self._random_row = max(row_bytes, FAULT_AROUND_BYTES)
        self._row = row_bytes
        self._used = 0

    def read(self, rows, scattered=True):
        """``rows`` rows were read: at random places (each may bring a fault-around's pages),
        or, with ``scattered=False``, one after another."""
        if self._pages is None:
            return
        self._used += rows * (self._random_row if scattered else self._row)
        if self._used >= RESIDENT_BUDGET:
            self._pages.madvise(mmap.MADV_DONTNEED)
            self._used = 0


def row_blocks(x, rows):
    """``x``'s consecutive blocks of ``rows`` rows, a mapped ``x``'s pages let go of as they go."""
    budget = PageBudget(x)
    for start in range(0, len(x), rows):
        block = x[start:start + rows]
        yield block
        budget.read(len(block), scattered=False)
