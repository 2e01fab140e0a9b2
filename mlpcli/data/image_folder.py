"""Loader for a folder of PNG images, one sub-folder per class.

Names starting with "." (such as .DS_Store) are ignored; every other entry
must be a class sub-folder holding only PNG files. Images are decoded by
``mlpcli.images.decode_png``, as ``mlp predict`` decodes them.
"""

from pathlib import Path

import numpy as np

from mlpcli.data.raw import RawData
from mlpcli.errors import DataError
from mlpcli.images import decode_png


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
            f"{root}: no class sub-folders; expected one sub-folder of PNG files per class"
        )
    return folders


def _read_png(path: Path, color_mode: str) -> np.ndarray:
    """One PNG of a class folder: (H, W) or (H, W, 3), uint8 (float32 for 16-bit images)."""
    if path.suffix.lower() != ".png" or not path.is_file():
        raise DataError(f"{path}: not a PNG file; class folders may hold only .png images")
    return decode_png(path, color_mode)


def _load_split(
    root: Path, color_mode: str, class_names: list[str], shape: tuple | None
) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W[, 3]) and int64 labels (n,) of the class folders in ``root``.

    Each sub-folder of ``root`` must be one of ``class_names``; all images
    must share ``shape`` (or the first image's shape when None).
    """
    images, labels = [], []
    for name, folder in _class_folders(root).items():
        if name not in class_names:
            raise DataError(
                f"{folder}: class {name!r} is not one of the training classes {class_names}"
            )
        files = _visible(folder)
        if not files:
            raise DataError(f"{folder}: class folder holds no images")
        for path in files:
            pixels = _read_png(path, color_mode)
            shape = shape or pixels.shape
            if pixels.shape != shape:
                raise DataError(
                    f"{path}: image is {_size(pixels.shape)}, but the others are {_size(shape)}; "
                    "all images must have the same size"
                )
            images.append(pixels)
            labels.append(class_names.index(name))
    return np.stack(images), np.array(labels, dtype=np.int64)


def _size(shape: tuple) -> str:
    return f"{shape[1]}x{shape[0]} pixels"


def load_image_folder(
    path, *, color_mode: str = "grayscale", test_path=None, validation_path=None
) -> RawData:
    """Load PNG images from ``path/<class>/*.png`` (and optional val/test folders).

    class_names are the sorted sub-folder names of ``path``; x is (n, H, W)
    for grayscale or (n, H, W, 3) for rgb, uint8 in [0, 255] (float32 if any
    image is 16-bit, see ``decode_png``); y is int64 (n,).
    """
    root = Path(path)
    class_names = list(_class_folders(root))
    x_train, y_train = _load_split(root, color_mode, class_names, None)
    shape = x_train.shape[1:]
    val = (
        _load_split(Path(validation_path), color_mode, class_names, shape)
        if validation_path
        else (None, None)
    )
    test = _load_split(Path(test_path), color_mode, class_names, shape) if test_path else (None, None)
    return RawData(
        x_train=x_train,
        y_train=y_train,
        x_val=val[0],
        y_val=val[1],
        x_test=test[0],
        y_test=test[1],
        class_names=class_names,
    )
