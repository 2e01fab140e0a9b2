"""The ``predict`` stage: classes and probabilities for PNG images or rows of a .npy array.

Images are brought to MNIST's form (see ``mlpcli.images``), then scaled as the
model's training data was (the scaling stored in the model file); ``.npy``
rows are raw features, scaled the same way.
"""

import contextlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import files, modelfile, runs
from mlpcli.data import apply_preprocessing, fit_preprocessing
from mlpcli.data.features import check_finite
from mlpcli.data.npy import read_npy
from mlpcli.errors import DataError, MlpError

IMAGE_SIZE = 28
SAVED_SUFFIX = f"-{IMAGE_SIZE}x{IMAGE_SIZE}.png"  # --save-preprocessed: <input name>-28x28.png


@dataclass
class Prediction:
    source: str  # file name, or "<file>[row]"
    label: str
    probability: float
    top: list  # [(label, probability), ...], best first

    def as_dict(self):
        return {"source": self.source, "class": self.label, "probability": self.probability,
                "top_k": [{"class": c, "probability": p} for c, p in self.top]}


def open_model(run_dir=None, model_path=None, runs_root="runs", note=None):
    """The model file of ``--model``, else of ``--run`` (default: the newest run; a sweep folder
    gives its recommended trial; ``note`` is told where a link led and which trial)."""
    if model_path is not None:
        return modelfile.load(model_path)
    run_dir = runs.model_folder(run_dir, runs_root, note)
    path = run_dir / runs.MODEL_FILE
    if not path.exists():
        raise MlpError(f"{run_dir}: no {runs.MODEL_FILE} (the run is still training, or was stopped: "
                       f"`mlp train --resume {run_dir}` finishes it)")
    return modelfile.load(path)


def predict(inputs=(), *, run_dir=None, model_path=None, npy=None, top_k=3,
            save_preprocessed=None, runs_root="runs", note=None):
    """Predictions for every PNG in ``inputs`` (files or folders) and every row of ``npy``."""
    if not inputs and npy is None:
        raise MlpError("nothing to predict: give PNG files or folders, or --npy FILE")
    loaded = open_model(run_dir, model_path, runs_root, note)
    model = loaded.model
    # a foreign Keras file does not say how it scaled its inputs: assume Keras's usual x / 255
    preprocessing = loaded.preprocessing or fit_preprocessing(None, "unit")
    names = _class_names(loaded)
    batches = []
    if inputs:
        _require_image_model(model)
        from mlpcli import images

        paths = images.list_pngs(inputs)
        digits = np.stack([images.load_digit(p) for p in paths])
        if save_preprocessed is not None:
            _save_digits(Path(save_preprocessed), paths, digits)
        batches.append(([p.name for p in paths], digits))
    if npy is not None:
        rows = _load_npy(Path(npy), model)
        batches.append(([f"{Path(npy).name}[{i}]" for i in range(len(rows))], rows))
    results = []
    for sources, raw in batches:
        x = _scaled(raw, preprocessing).reshape((len(raw),) + model.input_shape)
        results += _decode(sources, model.predict(x).reshape(len(raw), -1), names, top_k)
    return results


def _scaled(raw, preprocessing):
    """Scale raw samples as in training: per-feature scaling applies in the training data's
    own feature shape, which may differ from the model's input shape."""
    shape = np.shape(preprocessing["scale"])
    if shape and raw.shape[1:] != shape:
        if int(np.prod(raw.shape[1:])) != int(np.prod(shape)):
            raise DataError(f"samples of shape {raw.shape[1:]} do not fit the training data's "
                            f"feature shape {shape}")
        raw = raw.reshape((len(raw),) + shape)
    return apply_preprocessing(raw, preprocessing)


def _require_image_model(model):
    if int(np.prod(model.input_shape)) != IMAGE_SIZE * IMAGE_SIZE:
        raise MlpError(f"the model's input shape is {list(model.input_shape)}, not a 28x28 image "
                       "(784 values); predict on arrays with --npy instead")


def _class_names(loaded):
    n = loaded.model.n_outputs
    count = 2 if n == 1 else n
    if loaded.class_names and len(loaded.class_names) == count:
        return list(loaded.class_names)
    return [str(i) for i in range(count)]


def _decode(sources, outputs, names, top_k):
    """Predictions from model outputs (n, outputs): softmax rows, or one sigmoid column."""
    finite = np.isfinite(outputs).all(axis=1)
    if not finite.all():  # weights that overflow float32 on this input: no probability to show
        raise MlpError(f"{sources[int(np.argmin(finite))]}: the model's outputs are not finite "
                       "numbers (its weights overflow float32 on this input)")
    if outputs.shape[1] == 1:  # binary: P(class 1) = output
        outputs = np.hstack([1.0 - outputs, outputs])
    k = max(1, min(top_k, outputs.shape[1]))
    order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    return [Prediction(src, names[o[0]], float(row[o[0]]), [(names[j], float(row[j])) for j in o])
            for src, row, o in zip(sources, outputs, order)]


def _load_npy(path, model):
    """The rows of the .npy file at ``path`` shaped (n, *model.input_shape); n >= 1."""
    stored = read_npy(path)
    if stored.dtype.kind not in "fiub":
        raise DataError(f"{path}: holds {stored.dtype} values, not numbers")
    if stored.size == 0:
        raise DataError(f"{path}: holds no values (shape {stored.shape}); nothing to predict")
    want = int(np.prod(model.input_shape))
    rows = stored[None] if stored.ndim == len(model.input_shape) else stored  # a single sample
    if rows.ndim < 2 or int(np.prod(rows.shape[1:])) != want:
        raise DataError(f"{path}: shape {stored.shape} does not give rows of {want} values "
                        f"(the model's input shape is {list(model.input_shape)})")
    if rows.dtype.kind == "f":
        check_finite(rows, str(path))
    return rows.reshape(len(rows), *model.input_shape)


def _save_digits(folder, paths, digits):
    """Write each 28x28 the model saw as a PNG under ``folder`` (see ``_preprocessed_names``).

    Every file is new: none is written if one of the names exists, and each is
    linked into place complete, so an existing file is never replaced. On failure,
    what this call made (the PNGs and the folders it created) is removed, so nothing
    half-made is left.
    """
    from PIL import Image

    targets = dict(zip((folder / name for name in _preprocessed_names(paths)), digits))
    existing = [t for t in targets if t.exists()]
    if existing:
        raise _would_overwrite(existing)
    folders = {d for t in targets for d in (t.parent, *t.parent.parents)}
    made = sorted((d for d in folders if not d.exists()), key=lambda d: len(d.parts), reverse=True)
    written = []
    try:
        for target, digit in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            with files.atomic_path(target, replace=False) as tmp:
                Image.fromarray(np.clip(digit, 0, 255).astype(np.uint8), mode="L").save(tmp, format="PNG")
            written.append(target)
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        for path in made:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        if isinstance(exc, FileExistsError):  # appeared after the check above
            raise _would_overwrite([target]) from None
        raise


def _preprocessed_names(paths):
    """Where each input's 28x28 goes, relative to the --save-preprocessed folder: the input's
    path relative to the folder holding all inputs, SAVED_SUFFIX in place of its suffix (its
    whole name is kept when two inputs would share one). Distinct inputs get distinct names;
    an input given twice gets the same one."""
    sources = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([s.parent for s in sources]))
    relative = [s.relative_to(common) for s in sources]
    names = [r.with_name(r.stem + SAVED_SUFFIX) for r in relative]
    inputs_per_name = Counter(name for name, _ in set(zip(names, sources)))
    return [r.with_name(r.name + SAVED_SUFFIX) if inputs_per_name[name] > 1 else name
            for r, name in zip(relative, names)]


def _would_overwrite(paths):
    return MlpError(f"--save-preprocessed: would overwrite {', '.join(map(str, paths[:3]))}; "
                    "choose an empty folder")


def format_predictions(results):
    """One line per input: the class, its probability and the top-k."""
    width = max(len(r.source) for r in results)
    return "\n".join(f"{r.source:<{width}}  {r.label} ({r.probability:.1%})   top: "
                     + ", ".join(f"{c} {p:.1%}" for c, p in r.top) for r in results)
