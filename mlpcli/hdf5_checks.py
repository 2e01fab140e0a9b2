"""Reading an untrusted HDF5 file as JSON attributes and numeric arrays, and nothing else.

Shared by the two model-file readers: ``mlpcli.modelfile`` (Keras's legacy whole-model
``.h5``) and ``mlpcli.keras_file`` (the ``model.weights.h5`` inside a ``.keras`` zip).
Each check runs before libhdf5 or numpy is asked for anything it could hang, crash or
allocate without bound on.
"""

import math

import numpy as np

from mlpcli.errors import ModelFileError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
GLOBAL_HEAP = b"GCOL\x01\x00\x00\x00"  # signature, version 1, reserved


def check_global_heaps(data, path):
    """Refuse HDF5 bytes ``data`` (bytes or an mmap) whose global heap collections do not
    hold together; ``path`` names the file in the message.

    HDF5 keeps variable-length strings (model_config, ...) in global heap
    collections; libhdf5 2.0 loops forever reading one whose object sizes are
    damaged (an object of size 0 is parsed again and again), so they are
    walked here first, as libhdf5 walks them. Only files with 8-byte lengths
    at offset 0 are checked; anything else is left to libhdf5.
    """
    version = data[8] if data[:8] == HDF5_SIGNATURE and len(data) > 14 else None
    if version is None or data[14 if version < 2 else 10] != 8:
        return
    at = data.find(GLOBAL_HEAP)
    while at != -1:
        size = int.from_bytes(data[at + 8:at + 16], "little")
        end, p = at + size, at + 16
        while 16 <= size <= len(data) - at and p + 16 <= end:
            index = int.from_bytes(data[p:p + 2], "little")
            length = int.from_bytes(data[p + 8:p + 16], "little")
            # index 0 is the free space (length counts its header); others: header + padded data
            need = length if index == 0 else 16 + -(-length // 8) * 8
            if need == 0 or p + need > end:
                raise ModelFileError(f"{path}: damaged HDF5 file (the global heap at byte {at} "
                                     "is inconsistent)")
            p += need
        at = data.find(GLOBAL_HEAP, at + 1)


def first_line(exc):
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def numeric(dataset, path, where, size, shape=None):
    """The numeric array stored in ``dataset`` of an HDF5 file of ``size`` bytes; with
    ``shape``, only when it has that shape.

    Shapes are checked before reading: a dataset can declare a huge shape
    without storing data, and would be filled out to it when read.
    """
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise ModelFileError(f"{path}: {where} is not a dataset")
    if dataset.dtype.kind not in "fiu":
        raise ModelFileError(f"{path}: {where} has non-numeric dtype {dataset.dtype}")
    if shape is not None and dataset.shape != shape:
        raise ModelFileError(f"{path}: {where} has shape {dataset.shape}, the config needs {shape}")
    if dataset.shape is None or math.prod(dataset.shape) > size:
        raise ModelFileError(f"{path}: {where} declares shape {dataset.shape}, more values than "
                             f"the file holds bytes")
    return np.asarray(dataset[()])


def weight_into(param, dataset, path, where, size):
    """Fill the weight array ``param`` from ``dataset`` (its shape, finite in its dtype)."""
    value = numeric(dataset, path, where, size, param.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        value = value.astype(param.dtype)  # 1e300 (float64) becomes inf here
    if not np.all(np.isfinite(value)):
        raise ModelFileError(f"{path}: {where} holds NaN or infinite values "
                             f"(or values too large for {param.dtype})")
    param[...] = value


def refuse_outside_data(f, path):
    """Refuse soft and external links and datasets stored outside the file: a model file
    is JSON attributes and numeric arrays it holds itself, and reading it opens nothing else."""
    import h5py

    def check(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.external or obj.is_virtual:
                raise ModelFileError(f"{path}: {name} keeps its values outside the file; a model file "
                                     "must hold its data itself")
            return
        for child in obj:
            link = obj.get(child, getlink=True)
            where = f"{name}/{child}" if name else child
            if isinstance(link, h5py.ExternalLink):
                raise ModelFileError(f"{path}: {where} is a link to another file ({link.filename}); a model "
                                     "file must hold its data itself")
            if not isinstance(link, h5py.HardLink):
                raise ModelFileError(f"{path}: {where} is a {type(link).__name__}; a model file has "
                                     "no links")

    check("", f)
    f.visititems(check)  # every object reachable through hard links, each once
