"""Read .npy arrays and .npz archives of them as untrusted data.

Each array's header (shape and dtype) is read and checked before any of its
data: object dtypes (pickled Python objects) are refused, the bytes the
header claims must be in the file, and the arrays must fit in the memory
available. An .npz member that decompresses to far more than its stored
size is refused as well, so a small archive cannot make us allocate
gigabytes (a zip bomb).

Features too large to copy are mapped instead (``mapped``): an .npy file, or an .npz
member stored without compression, is read through a memory map of its file
(``mlpcli.data.mapped``) after the same checks, and costs no memory of its own; a
compressed member cannot be mapped and is read into memory.
"""

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from mlpcli.data.mapped import map_array
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
# a zip member's local header: signature, then fixed fields, the name's and the extra field's lengths last
ZIP_LOCAL_HEADER = struct.Struct("<4s22xHH")


@dataclass(frozen=True)
class ArrayHeader:
    """What an .npy header declares; ``where`` names the array in messages."""

    where: str
    shape: tuple
    dtype: np.dtype
    fortran_order: bool = False

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        return f"shape {self.shape} of {self.dtype} ({self.nbytes:,} bytes)"


def read_npy(path, mapped=False) -> np.ndarray:
    """The array in the .npy file at ``path`` (``mapped``: read through a memory map, not
    copied, unless it is stored in Fortran order, whose rows are not contiguous);
    DataError, naming the file, for anything else."""
    path = Path(path)
    try:
        with open_input(path) as f:
            header, data_offset = _npy_file_header(f, path)
            if mapped and not header.fortran_order:
                return _map(path, header, data_offset)
            _check_memory([header], str(path))
            f.seek(0)
            return _read_array(f, header)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise FileSystemError(os_error_text(e, path)) from None


def _npy_file_header(f, path: Path) -> tuple[ArrayHeader, int]:
    """The checked header of the open .npy file ``f`` and where its data starts."""
    if f.read(len(ZIP_SIGNATURE)) == ZIP_SIGNATURE:
        raise DataError(f"{path}: is an .npz archive; expected a single .npy array (np.save)")
    f.seek(0)
    header = _read_header(f, str(path))
    _check_present(header, os.fstat(f.fileno()).st_size - f.tell())
    return header, f.tell()


class NpyFolder:
    """The arrays of a folder of .npy files (``<name>.npy``), read as an ``NpzArchive``'s."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError(f"{self.path}: not a folder (of .npy files: x_train.npy, y_train.npy, ...)")
        try:
            self._files = {p.name[: -len(NPY_SUFFIX)]: p for p in sorted(self.path.iterdir())
                           if p.name.endswith(NPY_SUFFIX)}
        except OSError as e:
            raise FileSystemError(os_error_text(e, self.path)) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    @property
    def names(self) -> list[str]:
        """The names of the arrays (files ``<name>.npy``)."""
        return list(self._files)

    def header(self, name) -> ArrayHeader:
        """The checked header of array ``name``; none of its data is read."""
        return self._header(name)[0]

    def _header(self, name):
        path = self._files[name]
        try:
            with open_input(path) as f:
                return _npy_file_header(f, path)
        except OSError as e:
            raise FileSystemError(os_error_text(e, path)) from None

    def read(self, names, mapped=()) -> dict[str, np.ndarray]:
        """{name: array} for ``names`` (those in ``mapped`` read through a memory map);
        every header is checked before any data is read."""
        headers = {name: self._header(name) for name in names}
        mapped = {name for name in mapped if not headers[name][0].fortran_order}
        _check_memory([header for name, (header, _) in headers.items() if name not in mapped], str(self.path))
        return {name: _map(self._files[name], header, offset) if name in mapped else read_npy(self._files[name])
                for name, (header, offset) in headers.items()}


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

    def read(self, names, mapped=()) -> dict[str, np.ndarray]:
        """{name: array} for ``names``: those in ``mapped`` read through a memory map when
        they are stored without compression; every header is checked before any data is read."""
        headers = {name: self._header(name) for name in names}
        offsets = {name: self._data_offset(name, header_bytes)
                   for name, (header, header_bytes) in headers.items()
                   if name in mapped and not header.fortran_order}
        offsets = {name: offset for name, offset in offsets.items() if offset is not None}
        _check_memory([header for name, (header, _) in headers.items() if name not in offsets], str(self.path))
        arrays = {}
        for name, (header, _) in headers.items():
            if name in offsets:
                arrays[name] = _map(self.path, header, offsets[name])
                continue
            with self._open(name) as stream:
                arrays[name] = _read_array(stream, header)
        return arrays

    def _data_offset(self, name, header_bytes) -> int | None:
        """Where in the file the data of member ``name`` starts, when it is stored as is
        (not compressed, not encrypted); None when it is not and has to be decompressed."""
        info = self._members[name]
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            return None
        try:
            self._file.seek(info.header_offset)
            local = self._file.read(ZIP_LOCAL_HEADER.size)
        except OSError as e:
            raise FileSystemError(os_error_text(e, self.path)) from None
        if len(local) < ZIP_LOCAL_HEADER.size or not local.startswith(ZIP_SIGNATURE):
            raise DataError(f"{self.path}: array {name!r} cannot be read: its zip header is damaged")
        _, name_bytes, extra_bytes = ZIP_LOCAL_HEADER.unpack(local)
        return info.header_offset + ZIP_LOCAL_HEADER.size + name_bytes + extra_bytes + header_bytes

    def _open(self, name):
        try:
            return self._zip.open(self._members[name])
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError) as e:
            raise DataError(f"{self.path}: array {name!r} cannot be read: {e}") from None

    def header(self, name) -> ArrayHeader:
        """The checked header of array ``name`` (shape, dtype); none of its data is read."""
        return self._header(name)[0]

    def _header(self, name) -> tuple[ArrayHeader, int]:
        """The checked header of array ``name`` and its length in bytes."""
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
        return header, header_bytes


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
            shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
        else:
            raise DataError(f"{where}: .npy format version {version} is not supported")
    except ValueError as e:
        raise DataError(f"{where}: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise DataError(f"{where} has object dtype (pickled Python objects), which is refused "
                        "for safety; save plain numeric (or string label) arrays")
    return ArrayHeader(where, shape, dtype, fortran_order)


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


def _map(path, header: ArrayHeader, data_offset: int) -> np.ndarray:
    """The array of ``header`` whose data starts at ``data_offset`` of file ``path``, mapped."""
    try:
        return map_array(path, header.shape, header.dtype, data_offset)
    except (OSError, ValueError) as e:
        raise DataError(f"{header.where}: cannot be mapped: {e}") from None


def _read_array(stream, header: ArrayHeader) -> np.ndarray:
    """The array of an .npy ``stream`` positioned at its start, whose header passed the checks."""
    try:
        return npy_format.read_array(stream, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{header.where}: cannot be read: {e}") from None
    except MemoryError:
        raise DataError(f"{header.where}: not enough memory for {header.describe()}") from None
