"""The ``export`` stage: a model, opened with its input pipeline, written in another format.

The model is opened as ``mlp predict`` opens it (``Predictor.open``: a run, a sweep's
recommended trial, a checkpoint, a model file), so what it records about its inputs
goes with it. The file goes into the run folder, named after the model file (``<run>/model.onnx``
for model.h5, ``<run>/model-03.onnx`` for the checkpoint model-03.h5), or beside a
``--model`` file, unless ``--out`` says where; it is written atomically and never over
an existing file without ``--overwrite``, nor ever over the model it came from.
"""

import contextlib
import os
from pathlib import Path

from mlpcli.errors import MlpError
from mlpcli.files import atomic_path, check_new_file, exists_error
from mlpcli.predictor import Predictor

FORMATS = {"onnx": ".onnx", "keras": ".keras"}  # format -> the suffix of its files


def export(run_dir=None, *, fmt, model_path=None, checkpoint=None, out=None, opset=None, overwrite=False,
           runs_root="runs", note=None):
    """Write the model as ``fmt`` (a key of ``FORMATS``); returns the path written."""
    if fmt not in FORMATS:
        raise MlpError(f"--format {fmt}: must be one of {', '.join(FORMATS)}")
    if opset is not None and fmt != "onnx":
        raise MlpError("--opset: only for --format onnx")
    write = _writer(fmt, opset)
    predictor = Predictor.open(run_dir, model_path=model_path, checkpoint=checkpoint, runs_root=runs_root,
                               note=note)
    if out is None:  # a run's model or checkpoint: into the run folder; a model file: beside it
        folder = predictor.run_dir if model_path is None else predictor.path.parent
        out = folder / (predictor.path.stem + FORMATS[fmt])
    out = Path(out)
    _check_out(out, predictor.path, overwrite)
    try:
        with atomic_path(out, replace=overwrite) as tmp:
            write(tmp, predictor)
    except FileExistsError:  # it appeared while the model was being written
        raise exists_error(out) from None
    return out


def _writer(fmt, opset):
    """``write(path, predictor)`` of ``fmt``."""
    if fmt == "onnx":
        from mlpcli.onnx_export import write_onnx
        from mlpcli.onnx_opsets import DEFAULT_OPSET

        return lambda path, predictor: write_onnx(path, predictor, DEFAULT_OPSET if opset is None else opset)
    from mlpcli.keras_file import write_keras

    return write_keras


def _check_out(out, model_path, overwrite):
    """Refuse an ``out`` that is the model itself (--overwrite or not), a folder, in a missing
    folder, or (without ``overwrite``) an existing file."""
    if os.path.lexists(out):
        with contextlib.suppress(OSError):
            if os.path.samefile(out, model_path):
                raise MlpError(f"--out {out}: is the model being exported; choose another --out")
    check_new_file(out, "the model", overwrite)
