"""Read .npy arrays and .npz archives of them as untrusted data.

Each array's header (shape and dtype) is read and checked before any of its
data: object dtypes (pickled Python objects) are refused, the bytes the
header claims must be in the file, and the arrays must fit in the memory
available. An .npz member that decompresses to far more than its stored
size is refused as well, so a small archive cannot make us allocate
gigabytes (a zip bomb).
"""

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from mlpcli.errors import DataError, FileSystemError, os_error_text
from mlpcli.files import open_input
from mlpcli.machine import available_memory

NPY_SUFFIX = ".npy"
ZIP_SIGNATURE = b"PK\x03\x04"
# Deflate tops out near 1032:1, on nothing but one repeated byte; real data
# compresses far less. A larger member above this ratio is taken for a bomb.
MAX_COMPRESSION_RATIO = 1000
# Members smaller than this are read whatever their ratio: they cannot hurt.
RATIO_EXEMPT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ArrayHeader:
    """What an .npy header declares; ``where`` names the array in messages."""

    where: str
    shape: tuple
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        return f"shape {self.shape} of {self.dtype} ({self.nbytes:,} bytes)"


def read_npy(path) -> np.ndarray:
    """The array in the .npy file at ``path``; DataError, naming the file, for anything else."""
    path = Path(path)
    try:
        with open_input(path) as f:
            if f.read(len(ZIP_SIGNATURE)) == ZIP_SIGNATURE:
                raise DataError(f"{path}: is an .npz archive; expected a single .npy array (np.save)")
            f.seek(0)
            header = _read_header(f, str(path))
            _check_present(header, os.fstat(f.fileno()).st_size - f.tell())
            _check_memory([header], str(path))
            f.seek(0)
            return _read_array(f, header)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise FileSystemError(os_error_text(e, path)) from None


class NpzArchive:
    """The arrays of an .npz file (a zip of .npy members), read only through ``read``."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._file = open_input(self.path)
        except FileNotFoundError:
            raise DataError(f"{self.path}: file not found") from None
        try:
            self._zip = _zip_archive(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._members = {info.filename[: -len(NPY_SUFFIX)]: info for info in self._zip.infolist()
                         if info.filename.endswith(NPY_SUFFIX)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._zip.close()
        self._file.close()

    @property
    def names(self) -> list[str]:
        """The names of the arrays (members ``<name>.npy``)."""
        return list(self._members)

    def read(self, names) -> dict[str, np.ndarray]:
        """{name: array} for ``names``; every header is checked before any data is read."""
        headers = {name: self.header(name) for name in names}
        _check_memory(headers.values(), str(self.path))
        arrays = {}
        for name, header in headers.items():
            with self._open(name) as stream:
                arrays[name] = _read_array(stream, header)
        return arrays

    def _open(self, name):
        try:
            return self._zip.open(self._members[name])
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as e:
            raise DataError(f"{self.path}: array {name!r} cannot be read: {e}") from None

    def header(self, name) -> ArrayHeader:
        """The checked header of array ``name`` (shape, dtype); none of its data is read."""
        info = self._members[name]
        where = f"{self.path}: array {name!r}"
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_EXEMPT_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise DataError(
                f"{where} would decompress from {info.compress_size:,} to {info.file_size:,} bytes "
                f"({ratio:,.0f}:1, over the {MAX_COMPRESSION_RATIO}:1 that real data reaches): "
                "refused as a decompression bomb; a genuine file can be saved with np.savez "
                "(uncompressed)")
        with self._open(name) as stream:
            try:
                header = _read_header(stream, where)
                header_bytes = stream.tell()
            except (zipfile.BadZipFile, EOFError, OSError) as e:
                raise DataError(f"{where} cannot be read: {e}") from None
        _check_present(header, info.file_size - header_bytes)
        return header


def _zip_archive(f, path: Path) -> zipfile.ZipFile:
    """The zip archive in the open file ``f``; DataError unless it is one."""
    try:
        if f.read(len(ZIP_SIGNATURE)) != ZIP_SIGNATURE:
            f.seek(0)
            if f.read(len(npy_format.MAGIC_PREFIX)) == npy_format.MAGIC_PREFIX:
                raise DataError(f"{path}: is a single .npy array; expected an .npz archive (np.savez)")
            raise DataError(f"{path}: not a readable .npz archive (not a zip file)")
        f.seek(0)
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    except OSError as e:
        raise FileSystemError(os_error_text(e, path)) from None


def _read_header(stream, where: str) -> ArrayHeader:
    """The header at the start of an .npy ``stream``; no array data is read."""
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise DataError(f"{where}: .npy format version {version} is not supported")
    except ValueError as e:
        raise DataError(f"{where}: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{where} has object dtype (pickled Python objects), which is refused "
                        "for safety; save plain numeric (or string label) arrays")
    return ArrayHeader(where, shape, dtype)


def _check_present(header: ArrayHeader, data_bytes: int) -> None:
    """Refuse a header that claims more data than follows it."""
    if header.nbytes > data_bytes:
        raise DataError(f"{header.where}: the header claims {header.describe()}, "
                        f"but only {max(data_bytes, 0):,} bytes of data follow it")


def _check_memory(headers, where: str) -> None:
    """Refuse arrays that together would not fit in the memory available."""
    headers = list(headers)
    needed = sum(h.nbytes for h in headers)
    budget = available_memory()
    if budget is not None and needed > budget:
        biggest = max(headers, key=lambda h: h.nbytes)
        raise DataError(f"{where}: the arrays need {needed / 2**30:,.1f} GiB ({biggest.where}: "
                        f"{biggest.describe()}), more than the {budget / 2**30:,.1f} GiB "
                        "of memory available")


def _read_array(stream, header: ArrayHeader) -> np.ndarray:
    """The array of an .npy ``stream`` positioned at its start, whose header passed the checks."""
    try:
        return npy_format.read_array(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{header.where}: cannot be read: {e}") from None
    except MemoryError:
        raise DataError(f"{header.where}: not enough memory for {header.describe()}") from None
