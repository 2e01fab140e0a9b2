"""Read images of the common formats, fit them to a model's size, write what a model saw;
and normalize handwritten digits the way MNIST was made.

``decode_image`` is the one image reader: ``mlp predict`` and the image_folder
dataset both decode through it, so training and prediction see the same
pixels (16-bit images scaled, transparency on white, the size limit).
``encode_png`` is the one writer of the pixels a model saw.

MNIST digits were cropped, scaled to fit a 20x20 box (keeping the aspect
ratio), and placed in a 28x28 field so that their intensity-weighted centre
of mass sits at its centre, as white ink on black. ``to_mnist`` repeats that
for any photo or scan, so a model trained on MNIST sees familiar input.

Pillow is imported inside the functions that decode, so that importing this
module stays cheap for CLI commands that never read an image.
"""

import contextlib
import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np

from mlpcli.errors import DataError, FileSystemError, ImageTooLargeError, os_error_text
from mlpcli.files import open_input

# The formats decode_image reads, as Pillow names them (the only plugins it may use),
# and the file names a folder's images have.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Refuse larger images before decoding them: a small file can claim a huge
# size (a decompression bomb) and exhaust memory once decoded.
MAX_PIXELS = 50_000_000
# Pillow's modes of 16-bit grayscale ("I" for PNG in Pillow < 10), scaled down to float32
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# Pillow's mode of 32-bit floating-point grayscale (TIFF), kept as float32
FLOAT_MODE = "F"
# Images of these modes decode to float32, all others to uint8.
FLOAT32_MODES = (*SIXTEEN_BIT_MODES, FLOAT_MODE)

# What decode_image gives for each color mode: one gray channel, or three.
COLOR_MODES = ("grayscale", "rgb")

MNIST_SIZE = 28
DIGIT_BOX = 20
# Where the centre of mass lands, in (row, column) pixel-index coordinates:
# the bundled MNIST digits average (13.99, 14.00), so MNIST used 14, not 13.5.
CENTER = (14.0, 14.0)
# The outermost ring of this many pixels is taken to be paper, not ink.
BORDER = 2
# Ink must stand out from the paper by this many grey levels (of 255);
# anything fainter is scanner or compression noise, not a digit.
MIN_CONTRAST = 16.0
# For the bounding box only: pixels below this fraction of the strongest
# ink are paper noise or a faint antialiasing fringe; counting them would
# widen the box and so shrink the digit.
BOX_THRESHOLD = 0.1


def read_image(path, data: bytes | None = None) -> np.ndarray:
    """Grayscale pixels of the image file at ``path``: float32 (H, W) in [0, 255], 255 = white.

    See ``decode_image``, whose grayscale pixels these are.
    """
    return decode_image(path, data=data).astype(np.float32, copy=False)


def decode_image(path, color_mode: str = "grayscale", data: bytes | None = None) -> np.ndarray:
    """The pixels of the image file at ``path``: (H, W) for "grayscale", (H, W, 3) for "rgb".

    Any of IMAGE_FORMATS is read, whatever the file's name; of a file holding
    several frames (an animated GIF or WebP, a multi-page TIFF) the first is
    read. Values are in [0, 255]: uint8 for 8-bit images; 16-bit images are
    scaled down to float32, keeping their finer levels, and floating-point
    images are taken as grey levels of 0..255 (as Pillow converts them),
    clipped to that range. Transparent parts are composited onto white (a
    transparent background is white paper). Raises DataError, with a message
    starting with the path, for a missing, empty, unreadable, too large,
    truncated or corrupt file (``FileSystemError`` for a folder, a FIFO, a
    device or a read the system refuses, see ``mlpcli.files``); the size limit
    (MAX_PIXELS) is checked before any pixel data is decoded (``ImageTooLargeError``).
    ``data``: the file's bytes, already in memory (an upload), ``path`` then only names it.
    """
    path = Path(path)
    with (io.BytesIO(data) if data is not None else _open_image_file(path)) as f, _opened_image(f, path) as image:
        image.load()
        return _pixels(image, color_mode, path)


def image_size(path) -> tuple[int, int, bool]:
    """(width, height, float) of the image file at ``path``, read from its header alone:
    nothing is decoded; float says whether ``decode_image`` gives float32 (else uint8).
    Refuses what ``decode_image`` refuses before decoding."""
    path = Path(path)
    with _open_image_file(path) as f, _opened_image(f, path) as image:
        return (*image.size, image.mode in FLOAT32_MODES)


def _open_image_file(path: Path):
    try:
        return open_input(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


@contextlib.contextmanager
def _opened_image(f, path: Path):
    """The image in the open file ``f`` as a Pillow image, its header checked (format, pixel
    limit) and nothing decoded yet; what goes wrong in it, decoding included, is a DataError."""
    from PIL import Image, UnidentifiedImageError

    head = _head(f, path)
    try:
        with warnings.catch_warnings(record=True) as pillow_warnings:
            # Pillow's own check, when opening, fails from 179M pixels and
            # warns from 89M; those are over our lower limit, checked next.
            # Its other warnings say why a file was not identified.
            warnings.simplefilter("always")
            image = Image.open(f, formats=IMAGE_FORMATS)
        with image:
            _check_pixels(image, path)
            yield image
    except Image.DecompressionBombError:
        raise ImageTooLargeError(_too_large(path)) from None
    except UnidentifiedImageError:
        raise DataError(_unidentified(path, head, pillow_warnings)) from None
    except _DECODER_ERRORS as e:
        raise DataError(_corrupt(path, head, str(e))) from None


# What Pillow raises on malformed bytes: OSError, SyntaxError, ValueError and EOFError
# from its decoders (30,000 randomly damaged files of these formats raised nothing
# else), and the errors Image.open itself takes to mean "not this format".
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


def _head(f, path: Path) -> bytes:
    """The first bytes of the open file ``f`` (rewound); DataError when it is empty."""
    try:
        head = f.read(16)
        f.seek(0)
    except OSError as e:
        raise FileSystemError(os_error_text(e, path)) from None
    if not head:
        raise DataError(f"{path}: empty file (0 bytes), not an image")
    return head


def _unidentified(path: Path, head: bytes, pillow_warnings) -> str:
    """Why the file starting with ``head`` was not read: it claims to be one of
    IMAGE_FORMATS but its header is broken, or it is none of them."""
    reasons = "; ".join(str(w.message) for w in pillow_warnings)
    if _claimed_format(head) and not reasons:
        return _corrupt(path, head, "its header cannot be read")
    accepted = ", ".join(IMAGE_FORMATS)
    return f"{path}: not an image mlp can read (accepted formats: {accepted})" + (
        f": {reasons}" if reasons else "")


def _corrupt(path: Path, head: bytes, detail: str) -> str:
    kind = " ".join(filter(None, [_claimed_format(head), "image"]))
    return f"{path}: truncated or corrupt {kind} ({detail})"


def _claimed_format(head: bytes) -> str | None:
    """Which of IMAGE_FORMATS a file starting with ``head`` says it is, by the test Pillow
    identifies that format by (its plugins are loaded once Image.open has looked)."""
    from PIL import Image

    return next((name for name in IMAGE_FORMATS
                 if name in Image.OPEN and Image.OPEN[name][1](head) is True), None)


def _too_large(path: Path) -> str:
    return f"{path}: image is too large (more than {MAX_PIXELS:,} pixels)"


def _check_pixels(image, path: Path) -> None:
    """Refuse an opened image over MAX_PIXELS, from its header: nothing is decoded yet."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageTooLargeError(f"{_too_large(path)}: {width}x{height} = {width * height:,} pixels")


def _pixels(image, color_mode: str, path: Path) -> np.ndarray:
    """A decoded Pillow image as (H, W) gray or (H, W, 3) RGB in [0, 255], alpha composited on white."""
    from PIL import Image

    if image.mode in FLOAT32_MODES:
        # Pillow's convert("L") clips 16-bit levels at 255 instead of scaling, and
        # rounds floats: scale here, and keep the fractions.
        raw = np.asarray(image)
        gray = raw.astype(np.float32) / (1 if image.mode == FLOAT_MODE else 257)
        if not np.isfinite(gray).all():
            raise DataError(f"{path}: holds pixel values that are not finite numbers")
        gray = np.clip(gray, 0, 255)
        if "transparency" in image.info:  # tRNS: one gray value marks transparent pixels
            gray[raw == image.info["transparency"]] = 255
        return gray if color_mode == "grayscale" else np.repeat(gray[..., None], 3, axis=2)
    target = "L" if color_mode == "grayscale" else "RGB"
    if image.mode in ("L", "RGB") and "transparency" not in image.info:
        # opaque: the same pixels as composited below, without a 4-channel copy of a large image
        return np.asarray(image.convert(target))
    # RGBA covers every 8-bit mode (CMYK, YCbCr, LAB and palettes included), with
    # alpha from an alpha channel, a palette's alpha entries or a tRNS colour key
    # (opaque when none).
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, "white")
    flat = Image.alpha_composite(paper, rgba)
    return np.asarray(flat.convert(target))


def fit_image(pixels: np.ndarray, height: int, width: int) -> tuple[np.ndarray, bool]:
    """``pixels`` ((H, W) gray or (H, W, 3) RGB) as float32 of (height, width), and whether
    it had to be resized; values stay within the range of the original's.

    Resizing is bilinear, as Keras's ``image_dataset_from_directory`` resizes by
    default; Pillow's bilinear filter also averages over the whole footprint when
    shrinking (antialiasing), where TensorFlow's default samples 2x2 pixels.
    """
    from PIL import Image

    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.shape[:2] == (height, width):
        return pixels, False
    channels = pixels[..., None] if pixels.ndim == 2 else pixels
    # Pillow resizes 32-bit float ("F") images one channel at a time, without rounding.
    resized = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c]), mode="F")
                                   .resize((width, height), Image.BILINEAR))
                        for c in range(channels.shape[2])], axis=2)
    resized = np.clip(resized, pixels.min(), pixels.max())  # float rounding may overshoot
    return (resized[..., 0] if pixels.ndim == 2 else resized), True


def load_image(path, height: int, width: int, color_mode: str = "grayscale",
               data: bytes | None = None) -> tuple[np.ndarray, tuple | None]:
    """The image file at ``path`` (or its bytes ``data``) as a model of (height, width) input sees
    it: float32 (height, width) or (height, width, 3) in [0, 255] (see ``decode_image``), and the
    (width, height) it had when it was resized to that (see ``fit_image``), else None."""
    pixels = decode_image(path, color_mode, data)
    fitted, resized = fit_image(pixels, height, width)
    return fitted, (pixels.shape[1], pixels.shape[0]) if resized else None


def encode_png(target, pixels: np.ndarray) -> None:
    """Write ``pixels`` ((H, W) gray or (H, W, 3) RGB, in [0, 255]) as an 8-bit PNG to
    ``target``, a path or a binary file; values are rounded to whole levels."""
    from PIL import Image

    pixels = np.asarray(pixels)
    if pixels.ndim not in (2, 3) or pixels.ndim == 3 and pixels.shape[2] != 3:
        raise ValueError(f"expected (H, W) or (H, W, 3) pixels, got shape {pixels.shape}")
    levels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    Image.fromarray(levels, mode="L" if levels.ndim == 2 else "RGB").save(target, format="PNG")


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """A grayscale digit image normalized like MNIST: float32 (28, 28) in [0, 255], white on black.

    ``gray`` is a (H, W) array in [0, 255], dark ink on light paper or
    light ink on dark. The paper (the median of the border ring) becomes
    black, the ink is cropped to its bounding box, scaled so its longer side
    is 20 px, placed with its centre of mass at CENTER, and stretched so its
    brightest pixel is 255. Raises DataError when there is no ink.
    """
    from PIL import Image

    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale array, got shape {gray.shape}")
    ink = _ink(gray)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise DataError("no digit found: the image is blank")
    marked = ink > BOX_THRESHOLD * peak
    rows = np.flatnonzero(marked.any(axis=1))
    cols = np.flatnonzero(marked.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Shrinking averages each output pixel's area (the antialiasing that gave
    # MNIST its grey edges) instead of sampling, which would drop or double
    # thin strokes; enlarging interpolates instead of making blocks. Neither
    # filter has negative weights, so the ink stays >= 0 and its maximum > 0.
    resample = Image.BOX if scale < 1 else Image.BILINEAR
    fitted = np.asarray(Image.fromarray(crop, mode="F").resize(size, resample))
    return _centre(fitted) * (255 / fitted.max())


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink intensity of float32 (H, W) ``gray``: float32 (H, W) >= 0, paper at 0.

    The border ring is assumed to be paper: if it is light, the image is dark
    ink on light paper and is inverted. Subtracting the paper level keeps
    grey paper from counting as ink.
    """
    inner = np.zeros(gray.shape, dtype=bool)
    inner[BORDER:-BORDER, BORDER:-BORDER] = True
    paper = median(gray[~inner])
    if paper > 127:
        gray, paper = 255 - gray, 255 - paper
    return np.clip(gray - paper, 0, None)


def median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a non-empty 1-D array, NaN when one is NaN, computed as
    np.median computes it (the mean of the two middle values in the array's dtype) without
    np.median's import of numpy.ma (a share of `mlp predict digit.png`'s start-up)."""
    ordered = np.sort(values)  # NaN sorts last
    middle = len(ordered) // 2
    if np.isnan(ordered[-1]):
        return float("nan")
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def _centre(digit: np.ndarray) -> np.ndarray:
    """Place float32 (h, w) ``digit`` (h, w <= 20) on a black float32 (28, 28) canvas.

    The shift is a whole number of pixels putting the intensity-weighted
    centre of mass as close to CENTER as the canvas allows.
    """
    height, width = digit.shape
    total = digit.sum()
    cy = (digit.sum(axis=1) @ np.arange(height)) / total
    cx = (digit.sum(axis=0) @ np.arange(width)) / total
    top = int(np.clip(round(CENTER[0] - cy), 0, MNIST_SIZE - height))
    left = int(np.clip(round(CENTER[1] - cx), 0, MNIST_SIZE - width))
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    canvas[top : top + height, left : left + width] = digit
    return canvas


def load_digit(path, data: bytes | None = None) -> np.ndarray:
    """The digit image at ``path`` (or its bytes ``data``, named ``path``) as MNIST input: float32
    (28, 28) in [0, 255], white on black."""
    gray = read_image(path, data)
    try:
        return to_mnist(gray)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def list_images(paths) -> list[Path]:
    """Expand ``paths`` (one path or an iterable of them) into a list of image files.

    A folder becomes its image files (names ending in one of IMAGE_SUFFIXES, in
    any case; names starting with "." such as macOS "._x.png" metadata are
    skipped), sorted by name; a file is kept as given, whatever its name, for
    decode_image to check. Raises DataError for a missing path or a folder
    without image files.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += _folder_images(path)
        elif path.exists():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found


def is_image_name(path: Path) -> bool:
    """Whether ``path``'s name is that of a visible image file (by IMAGE_SUFFIXES)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _folder_images(folder: Path) -> list[Path]:
    """The visible image files directly in ``folder``, sorted; DataError when there are none."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot list: {e.strerror or e}") from None
    found = [p for p in entries if is_image_name(p) and p.is_file()]
    if not found:
        raise DataError(f"{folder}: folder holds no image files (names ending in "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    return found
