"""Arrays read straight from a file's pages (a memory map) instead of copied into memory.

A mapped array costs no memory of its own: the kernel reads its pages on first touch
and keeps them in its page cache. But every page the process has touched counts in its
resident memory until it lets go of it, so a pass over a 3 GB file would leave the
process 3 GB resident. ``PageBudget`` lets go (``madvise(MADV_DONTNEED)``: the pages
stay cached, only this process's claim on them goes) each time its file pages have grown
by ``RESIDENT_BUDGET``. It measures rather than estimates: one row read at random brings
64 KiB of pages (Linux's fault-around) or, where the page cache holds 2 MiB folios, 2 MiB.
Letting go has a price: the next read of those pages faults again (a few microseconds).
"""

import mmap

import numpy as np

# how far a process's resident file pages may grow before a mapped array's are let go of
RESIDENT_BUDGET = 128 * 2**20
# rows read at random between two looks at the budget: at most 64 MiB of pages (2 MiB each)
SCATTERED_PIECE_ROWS = 32
STATM = "/proc/self/statm"  # Linux: sizes in pages; the third is the resident file-backed ones


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
        """``x[rows]`` (into ``out`` when given) for the array ``x`` this budget is of; a mapped
        ``x`` is read ``SCATTERED_PIECE_ROWS`` rows at a time, the budget looked at after each."""
        if out is None:
            out = np.empty((len(rows),) + x.shape[1:], x.dtype)
        if self._since is None:
            return np.take(x, rows, axis=0, out=out)
        for start in range(0, len(rows), SCATTERED_PIECE_ROWS):
            stop = start + SCATTERED_PIECE_ROWS
            np.take(x, rows[start:stop], axis=0, out=out[start:stop])
            self.read()
        return out

    def read(self):
        """Some rows were read: let go of the pages if they have grown past the budget."""
        if self._since is None:
            return
        now = resident_file_bytes()
        if now - self._since >= RESIDENT_BUDGET:
            self._pages.madvise(mmap.MADV_DONTNEED)
            self._since = resident_file_bytes()


def row_blocks(x, rows):
    """``x``'s consecutive blocks of ``rows`` rows, a mapped ``x``'s pages let go of as they go."""
    budget = PageBudget(x)
    for start in range(0, len(x), rows):
        block = x[start:start + rows]
        yield block
        budget.read()
