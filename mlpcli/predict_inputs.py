"""Raw inputs of every kind, read in chunks and prepared for a model by its ``Predictor``.

An input is an image file (any format ``mlpcli.images`` reads), a folder of
them, a ``.csv`` of rows (columns matched to the model's by header name), a
``.npy`` array of samples or an ``.npz`` archive (its ``x``, ``x_test`` or
``x_train`` array, with ``y``, ``y_test`` or ``y_train`` as labels). Images are prepared as the model's
training images were: MNIST's digit centring for a digits model, its
training loader's size and colour mode for an image-folder model.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpcli import images
from mlpcli.data.mapped import row_blocks
from mlpcli.data.npy import NpzArchive, read_npy

# Imported here, before `mlp predict --out` opens its file: imported inside that window, where
# SIGTERM and SIGHUP raise KeyboardInterrupt, the CSV reader's import made `python -m mlpcli`
# end by SIGINT instead of exit 130 about one time in ten (test_predict_hostile).
from mlpcli.data.table_rows import read_table_rows
from mlpcli.data.tabular import unseen_warning
from mlpcli.errors import DataError, MlpError
from mlpcli.pipeline import DIGITS_SHAPE

CSV_SUFFIX, NPY_SUFFIX, NPZ_SUFFIX = ".csv", ".npy", ".npz"
ARRAY_SUFFIXES = (CSV_SUFFIX, NPY_SUFFIX, NPZ_SUFFIX)
IMAGE_CHUNK = 256
IMAGE_STEPS = ("digits", "resize")  # --images: how a foreign model's images are prepared
NPZ_FEATURES = ("x", "x_test", "x_train")  # the arrays of an .npz predicted, in order of preference
NPZ_LABELS = {"x": "y", "x_test": "y_test", "x_train": "y_train"}


@dataclass
class Batch:
    sources: list  # what each row came from, by its path as given (a folder's images joined to
    # it): "<image>", "<array file>[i]" or "<csv>:<line>"; so inputs of one name in two folders differ
    x: np.ndarray  # float32 (k, *input_shape), prepared
    y: np.ndarray | None = None  # class indices or targets, when the input has labels
    seen: np.ndarray | None = None  # images as the model saw them before scaling (--save-preprocessed)
    paths: list | None = None  # the image files of ``seen``


@dataclass
class Notices:
    """One-line notes gathered while reading, printed once at the end."""

    resized: list = field(default_factory=list)  # (path, (width, height) it had) of resized images
    size: tuple = ()  # (height, width) they were resized to
    ignored_columns: dict = field(default_factory=dict)  # csv path -> columns not used
    unseen: dict = field(default_factory=dict)  # (csv path, column) -> (rows of unseen categories, one)
    lines: list = field(default_factory=list)

    def text(self):
        out = list(self.lines)
        if self.resized:
            path, (w, h) = self.resized[0]
            size = self.size
            out.append(f"Note: {len(self.resized)} image(s) were resized to the model's {size[1]}x{size[0]} "
                       f"pixels (bilinear), e.g. {path} ({w}x{h})")
        for path, columns in self.ignored_columns.items():
            shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
            out.append(f"Note: {path}: column(s) not used by the model: {shown}")
        out += [unseen_warning(path, column, count, example)
                for (path, column), (count, example) in self.unseen.items()]
        return out


def read_batches(predictor, inputs, *, chunk_rows=8192, image_steps=None, notices=None):
    """Batches of every input, in the order given (a folder's images sorted by name)."""
    notices = notices if notices is not None else Notices()
    pending = []  # consecutive image files, read together
    for path in map(Path, inputs):
        if path.is_dir() or path.suffix.lower() not in ARRAY_SUFFIXES:
            pending += images.list_images([path])
            continue
        if pending:
            yield from image_batches(predictor, pending, image_steps, notices)
            pending = []
        suffix = path.suffix.lower()
        if suffix == CSV_SUFFIX:
            yield from _csv_batches(predictor, path, chunk_rows, notices)
        elif suffix == NPY_SUFFIX:
            yield from _array_batches(predictor, read_npy(path, mapped=True), None, str(path), str(path),
                                      chunk_rows)
        else:
            yield from _npz_batches(predictor, path, chunk_rows)
    if pending:
        yield from image_batches(predictor, pending, image_steps, notices)


# ---------------------------------------------------------------- arrays

def _array_batches(predictor, stored, labels, where, name, chunk_rows):
    if stored.dtype.kind not in "fiub":
        raise DataError(f"{where}: holds {stored.dtype} values, not numbers")
    if stored.size == 0:
        raise DataError(f"{where}: holds no values (shape {stored.shape}); nothing to predict")
    if stored.ndim == 0:
        raise DataError(f"{where}: holds a single number (shape ()), not samples")
    shape = predictor.feature_shape
    if stored.shape in (tuple(shape), tuple(predictor.model.input_shape)):
        stored = stored[None]  # a single sample
    for start, part in zip(range(0, len(stored), chunk_rows), row_blocks(stored, chunk_rows)):
        y = None if labels is None else labels[start:start + chunk_rows]
        yield Batch([f"{name}[{i}]" for i in range(start, start + len(part))], predictor.prepare(part, where), y)


def _npz_batches(predictor, path, chunk_rows):
    with NpzArchive(path) as archive:
        names = archive.names
        chosen = next((n for n in NPZ_FEATURES if n in names), names[0] if len(names) == 1 else None)
        if chosen is None:
            raise DataError(f"{path}: holds {', '.join(sorted(names)) or 'no arrays'}; expected an array "
                            f"named {' or '.join(NPZ_FEATURES)} (with {' or '.join(NPZ_LABELS.values())} "
                            "as labels), or a single array")
        label_name = NPZ_LABELS.get(chosen)
        arrays = archive.read([chosen] + ([label_name] if label_name in names else []), mapped={chosen})
    labels = arrays.get(label_name)
    if labels is not None:
        if len(labels) != len(arrays[chosen]):
            raise DataError(f"{path}: {chosen} has {len(arrays[chosen])} rows but {label_name} has {len(labels)}")
        labels = _targets(predictor, labels, f"{path}: {label_name}")
    yield from _array_batches(predictor, arrays[chosen], labels, f"{path}: {chosen}", str(path), chunk_rows)


def _targets(predictor, labels, where):
    """Labels of an input as the model's class indices, or float32 targets (n, outputs)."""
    if predictor.task == "classification":
        if labels.dtype.kind == "f":
            if not (np.isfinite(labels) & (labels == np.round(labels))).all():
                raise DataError(f"{where}: class labels must be whole numbers or names")
            labels = labels.astype(np.int64)
        return predictor.encode_labels(labels, where)
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{where}: regression targets must be numbers, got {labels.dtype}")
    targets = labels.astype(np.float32).reshape(len(labels), -1)
    if targets.shape[1] != predictor.model.n_outputs or not np.isfinite(targets).all():
        raise DataError(f"{where}: expected {predictor.model.n_outputs} finite target value(s) per row")
    return targets


# ---------------------------------------------------------------- CSV

def _csv_batches(predictor, path, chunk_rows, notices):
    pipeline = predictor.pipeline
    table = pipeline if pipeline is not None and pipeline.kind == "table" else None
    rows = read_table_rows(path, table.table if table else None,
                           table.label_column if table else "label",
                           n_features=math.prod(predictor.model.input_shape), chunk_rows=chunk_rows)
    if rows.ignored:
        notices.ignored_columns[str(path)] = list(rows.ignored)
    for chunk in rows:
        for column, (count, example) in chunk.unseen.items():
            before = notices.unseen.get((str(path), column), (0, example))
            notices.unseen[(str(path), column)] = (before[0] + count, before[1])
        y = None
        if chunk.labels is not None:
            y = _csv_targets(predictor, chunk, path, rows.label_column)
        yield Batch([f"{path}:{line}" for line in chunk.lines], predictor.prepare(chunk.x, str(path)), y)


def _csv_targets(predictor, chunk, path, label_column):
    """A chunk's label cells as class indices, or regression targets parsed as the training
    loader parses them (a bad cell is named by its line and column)."""
    from mlpcli.data.tabular import parse_numbers

    where = f"{path}: column {label_column!r}"
    if predictor.task == "classification":
        return predictor.encode_labels(chunk.labels, where, lambda i: f"line {chunk.lines[i]}")
    values = parse_numbers(chunk.labels[:, None], [0], [label_column], path, chunk.lines)
    return _targets(predictor, values, where)


# ---------------------------------------------------------------- images

def image_steps_of(predictor, asked=None):
    """("digits", None) or ("resize", (height, width, color_mode)): how this model's images are
    prepared; DataError when it does not take images. ``asked`` is --images (foreign files only)."""
    pipeline, shape = predictor.pipeline, tuple(predictor.model.input_shape)
    if pipeline is not None:
        if asked is not None:
            raise MlpError(f"--images: {predictor.path} records how its images were prepared "
                           f"({pipeline.kind}); --images is for model files that do not")
        if pipeline.kind == "digits":
            return "digits", None
        if pipeline.kind == "image":
            return "resize", (*pipeline.image_size, pipeline.color_mode)
        what = "table rows (give a .csv)" if pipeline.kind == "table" else "arrays (give a .npy or .npz)"
        raise DataError(f"{predictor.path}: the model was trained on {what}, not images")
    if len(shape) in (2, 3) and (len(shape) == 2 or shape[2] in (1, 3)):
        size = (shape[0], shape[1], "rgb" if len(shape) == 3 and shape[2] == 3 else "grayscale")
    else:
        count = math.prod(shape)
        gray, rgb = math.isqrt(count), math.isqrt(count // 3)
        size = (gray, gray, "grayscale") if gray * gray == count else \
            (rgb, rgb, "rgb") if 3 * rgb * rgb == count else None
    if asked == "digits" or (asked is None and size is not None and size[:2] == DIGITS_SHAPE
                             and size[2] == "grayscale" and len(shape) == 1):
        if math.prod(shape) != math.prod(DIGITS_SHAPE):
            raise MlpError(f"--images digits: the model takes {math.prod(shape)} values, not a 28x28 digit")
        return "digits", None
    if size is None:
        raise DataError(f"{predictor.path}: the model takes {list(shape)} values, which is no image size; "
                        "give .npy, .npz or .csv rows")
    return "resize", size


def image_batches(predictor, paths, asked, notices):
    """Batches of the image files ``paths``, each prepared as the model's images were (see
    ``image_steps_of``; ``asked`` is --images); what was resized goes to ``notices``."""
    steps, size = image_steps_of(predictor, asked)
    if predictor.pipeline is None and asked is None:
        how = "centred as MNIST digits (28x28)" if steps == "digits" else \
            f"resized to {size[1]}x{size[0]} {size[2]}"
        other = "resize" if steps == "digits" else "digits"
        line = (f"Note: {predictor.path} does not record how its images were prepared; they are {how} "
                f"(pass --images {other} for the other way)")
        if line not in notices.lines:
            notices.lines.append(line)
    for start in range(0, len(paths), IMAGE_CHUNK):
        part = paths[start:start + IMAGE_CHUNK]
        loaded = []
        for path in part:
            pixels, original = _seen_image(steps, size, path)
            if original is not None:
                notices.resized.append((path, original))
                notices.size = size[:2]
            loaded.append(pixels)
        seen = np.stack(loaded)
        yield Batch([str(p) for p in part], predictor.prepare(seen, str(part[0].parent), pixels=True),
                    None, seen, part)


def _seen_image(steps, size, path, data=None):
    """The image file ``path`` (or its bytes ``data``) as the model sees it before scaling, and
    the (width, height) it had when it was resized (else None); ``steps``, ``size``: see
    ``image_steps_of``."""
    if steps == "digits":
        return images.load_digit(path, data), None
    return images.load_image(path, size[0], size[1], size[2], data)


# ---------------------------------------------------------------- inputs in memory (mlp serve)

def image_rows(predictor, uploads):
    """Images given as ``(name, bytes)`` pairs, prepared together as ``image_batches`` prepares
    files (a message names the image by ``name``)."""
    steps, size = image_steps_of(predictor)
    seen = np.stack([_seen_image(steps, size, name, data)[0] for name, data in uploads])
    return predictor.prepare(seen, "the images", pixels=True)


def array_rows(predictor, values, where):
    """Samples given as nested lists of numbers (flat rows, shaped samples, or one sample), as a
    .npy of them would be read and prepared."""
    try:
        stored = np.asarray(values)
    except (ValueError, TypeError):  # ragged lists
        raise DataError(f"{where}: rows of different lengths; the model takes {predictor.expects()} "
                        "per row") from None
    if stored.dtype == bool:  # JSON's true and false are no feature values
        raise DataError(f"{where}: true/false where numbers belong; the model takes numbers")
    batches = _array_batches(predictor, stored, None, where, where, max(len(stored) if stored.ndim else 1, 1))
    return np.concatenate([batch.x for batch in batches])


def column_rows(predictor, columns, where):
    """A table's rows given by column (``{name: [cell, ...]}``, cells numbers or text, None for a
    missing one), encoded as the CSV rows of ``mlp predict`` are: every feature column of the
    model must be given, and no other."""
    pipeline = predictor.pipeline
    encoding = pipeline.table if pipeline is not None and pipeline.kind == "table" else None
    if encoding is None:
        raise DataError(f"{where}: the model records no named columns; give rows of "
                        f"{predictor.expects()}")
    unknown = [name for name in columns if name not in encoding.columns]
    missing = [name for name in encoding.columns if name not in columns]
    if unknown or missing:
        raise DataError(f"{where}: " + "; ".join(
            ([f"unknown column(s) {', '.join(map(repr, unknown[:10]))}"] if unknown else [])
            + ([f"missing column(s) {', '.join(map(repr, missing[:10]))}"] if missing else []))
            + f"; the model's columns are {', '.join(map(repr, encoding.columns))}")
    cells = [columns[name] for name in encoding.columns]
    lengths = {len(c) if isinstance(c, list) else -1 for c in cells}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        raise DataError(f"{where}: each column must be a non-empty list of cells, all of one length")
    text = [[_cell_text(cell, name, where) for cell in column] for name, column in zip(encoding.columns, cells)]
    rows = list(zip(*text))
    encoded = encoding.encode(rows, list(range(len(text))), where, range(1, len(rows) + 1), drop=False)
    return predictor.prepare(encoded.x, where)


def _cell_text(cell, column, where):
    """A JSON cell as the text a CSV would hold (None: a missing cell)."""
    if cell is None:
        return ""
    if isinstance(cell, bool) or not isinstance(cell, (int, float, str)):
        raise DataError(f"{where}: column {column!r}: {cell!r} is not a number or text")
    return cell if isinstance(cell, str) else repr(cell)
