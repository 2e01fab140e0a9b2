"""Loader for a folder of images, one sub-folder per class.

Names starting with "." (such as .DS_Store) are ignored; every other entry
must be a class sub-folder holding only image files (named by
``mlpcli.images.IMAGE_SUFFIXES``). Images are decoded by
``mlpcli.images.decode_image``, as ``mlp predict`` decodes them.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli.machine import available_memory
from mlpcli.data.raw import RawData
from mlpcli.errors import DataError
from mlpcli.images import IMAGE_SUFFIXES, decode_image, image_size, is_image_name


def _visible(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        raise DataError(f"{folder}: folder not found") from None
    except NotADirectoryError:
        raise DataError(
            f"{folder}: is a file; expected a folder with one sub-folder per class"
        ) from None
    except OSError as e:
        raise DataError(f"{folder}: cannot list: {e.strerror or e}") from None


def _class_folders(root: Path) -> dict[str, Path]:
    """Class name -> sub-folder, sorted by name; refuses stray files and empty classes."""
    folders = {}
    for entry in _visible(root):
        if not entry.is_dir():
            raise DataError(
                f"{entry}: unexpected file; {root} must hold only one sub-folder per class"
            )
        folders[entry.name] = entry
    if not folders:
        raise DataError(
            f"{root}: no class sub-folders; expected one sub-folder of images per class"
        )
    return folders


@dataclass
class _Split:
    """A folder's image files and their labels, listed and sized from the headers alone."""

    folder: Path
    files: list[Path]
    labels: np.ndarray  # int64 (n,)
    floats: bool  # some image decodes to float32 (16-bit or floating point), so all do (else uint8)

    def decoded_bytes(self, shape: tuple) -> int:
        return len(self.files) * math.prod(shape) * (4 if self.floats else 1)


def _list_split(
    root: Path, color_mode: str, class_names: list[str], shape: tuple | None
) -> tuple[_Split, tuple]:
    """The images of the class folders in ``root`` and the shape they decode to.

    Each sub-folder of ``root`` must be one of ``class_names``; all images
    must share ``shape`` (or the first image's shape when None). Only the
    images' headers are read.
    """
    files, labels, floats = [], [], False
    for name, folder in _class_folders(root).items():
        if name not in class_names:
            raise DataError(
                f"{folder}: class {name!r} is not one of the training classes {class_names}"
            )
        entries = _visible(folder)
        if not entries:
            raise DataError(f"{folder}: class folder holds no images")
        for path in entries:
            size, decodes_to_float = _image_size(path, color_mode)
            shape = shape or size
            _check_size(path, size, shape)
            floats |= decodes_to_float
            files.append(path)
            labels.append(class_names.index(name))
    return _Split(root, files, np.array(labels, dtype=np.int64), floats), shape


def labelled_images(root) -> tuple[list[Path], list[str]]:
    """The image files of the class sub-folders of ``root``, sorted, and the class (its
    folder's name) of each; stray files, empty class folders and files that are not images
    are refused as the loader refuses them. No image is opened."""
    files, classes = [], []
    for name, folder in _class_folders(Path(root)).items():
        entries = _visible(folder)
        if not entries:
            raise DataError(f"{folder}: class folder holds no images")
        for path in entries:
            _check_image_name(path)
            files.append(path)
            classes.append(name)
    return files, classes


def _check_image_name(path: Path) -> None:
    if not (is_image_name(path) and path.is_file()):
        raise DataError(f"{path}: not an image file; class folders may hold only images "
                        f"(names ending in {', '.join(IMAGE_SUFFIXES)})")


def _image_size(path: Path, color_mode: str) -> tuple[tuple, bool]:
    """The shape the image at ``path`` decodes to in ``color_mode``, and whether it is
    decodes to float32 (16-bit or floating point); only its header is read."""
    _check_image_name(path)
    width, height, decodes_to_float = image_size(path)
    return ((height, width) if color_mode == "grayscale" else (height, width, 3)), decodes_to_float


def image_shape(path, color_mode: str = "grayscale") -> tuple[tuple, Path]:
    """The shape the images under ``path`` decode to, and the image it was read from: the
    first image of the first class folder, whose header alone is read (the loader checks
    that every image has this size)."""
    folder = next(iter(_class_folders(Path(path)).values()))
    entries = _visible(folder)
    if not entries:
        raise DataError(f"{folder}: class folder holds no images")
    return _image_size(entries[0], color_mode)[0], entries[0]


def _check_size(path: Path, size: tuple, shape: tuple) -> None:
    if size != shape:
        raise DataError(
            f"{path}: image is {_size(size)}, but the others are {_size(shape)}; "
            "all images must have the same size"
        )


def _check_memory(root: Path, splits: list[_Split], shape: tuple) -> None:
    """Refuse images whose decoded pixels would not fit in the memory available."""
    needed = sum(split.decoded_bytes(shape) for split in splits)
    available = available_memory()
    if available is not None and needed > available:
        count = sum(len(split.files) for split in splits)
        channels = f", {shape[2]} channels" if len(shape) == 3 else ""
        raise DataError(
            f"{root}: {count:,} images of {_size(shape)}{channels} need {needed / 2**30:,.1f} GiB "
            f"once decoded, more than the {available / 2**30:,.1f} GiB of memory available"
        )


def _decode(split: _Split, color_mode: str, shape: tuple) -> np.ndarray:
    """The images of ``split`` (n, *shape), each decoded into its place."""
    x = np.empty((len(split.files), *shape), dtype=np.float32 if split.floats else np.uint8)
    for i, path in enumerate(split.files):
        pixels = decode_image(path, color_mode)
        _check_size(path, pixels.shape, shape)  # the file may have changed since its header was read
        x[i] = pixels
    return x


def _size(shape: tuple) -> str:
    return f"{shape[1]}x{shape[0]} pixels"


def load_image_folder(
    path, *, color_mode: str = "grayscale", test_path=None, validation_path=None
) -> RawData:
    """Load images from ``path/<class>/*.<png|jpg|...>`` (and optional val/test folders).

    class_names are the sorted sub-folder names of ``path``; x is (n, H, W)
    for grayscale or (n, H, W, 3) for rgb, uint8 in [0, 255] (float32 if any
    image is 16-bit or floating point, see ``decode_image``); y is int64 (n,).
    """
    root = Path(path)
    class_names = list(_class_folders(root))
    train, shape = _list_split(root, color_mode, class_names, None)
    val, test = (
        _list_split(Path(folder), color_mode, class_names, shape)[0] if folder else None
        for folder in (validation_path, test_path)
    )
    _check_memory(root, [split for split in (train, val, test) if split], shape)
    x_val, x_test = (_decode(split, color_mode, shape) if split else None for split in (val, test))
    return RawData(
        x_train=_decode(train, color_mode, shape),
        y_train=train.labels,
        x_val=x_val,
        y_val=val.labels if val else None,
        x_test=x_test,
        y_test=test.labels if test else None,
        class_names=class_names,
    )
