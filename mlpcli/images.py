"""Read PNG images, and normalize handwritten digits the way MNIST was made.

``decode_png`` is the one PNG reader: ``mlp predict`` and the image_folder
dataset both decode through it, so training and prediction see the same
pixels (16-bit images scaled, transparency on white, the size limit).

MNIST digits were cropped, scaled to fit a 20x20 box (keeping the aspect
ratio), and placed in a 28x28 field so that their intensity-weighted centre
of mass sits at its centre, as white ink on black. ``to_mnist`` repeats that
for any photo or scan, so a model trained on MNIST sees familiar input.

Pillow is imported inside the functions that decode, so that importing this
module stays cheap for CLI commands that never read an image.
"""

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np

from mlpcli.errors import DataError, FileSystemError, os_error_text
from mlpcli.files import open_input

# Refuse larger images before decoding them: a small file can claim a huge
# size (a decompression bomb) and exhaust memory once decoded.
MAX_PIXELS = 50_000_000
# Pillow's modes of 16-bit grayscale ("I" in Pillow < 10), decoded to float32
SIXTEEN_BIT_MODES = ("I", "I;16")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What decode_png gives for each color mode: one gray channel, or three.
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


def read_image(path) -> np.ndarray:
    """Grayscale pixels of the PNG file at ``path``: float32 (H, W) in [0, 255], 255 = white.

    See ``decode_png``, whose grayscale pixels these are.
    """
    return decode_png(path).astype(np.float32, copy=False)


def decode_png(path, color_mode: str = "grayscale") -> np.ndarray:
    """The pixels of the PNG file at ``path``: (H, W) for "grayscale", (H, W, 3) for "rgb".

    Values are in [0, 255]: uint8 for 8-bit images; 16-bit images are scaled
    down to float32, keeping their finer levels. Transparent parts are
    composited onto white (a transparent background is white paper). Raises
    DataError, with a message starting with the path, for a missing, empty,
    non-PNG, too large, truncated or corrupt file (``FileSystemError`` for a
    folder, a FIFO, a device or a read the system refuses, see
    ``mlpcli.files``); the size limit (MAX_PIXELS) is checked before any pixel
    data is decoded.
    """
    path = Path(path)
    with _open_png(path) as f:
        return _decode_open_png(f, path, color_mode)


def _open_png(path):
    try:
        return open_input(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


def png_size(path) -> tuple[int, int, bool]:
    """(width, height, 16-bit) of the PNG file at ``path``, read from its header alone:
    nothing is decoded. Refuses what ``decode_png`` refuses before decoding."""
    path = Path(path)
    with _open_png(path) as f, _png_image(f, path) as image:
        return (*image.size, image.mode in SIXTEEN_BIT_MODES)


def _decode_open_png(f, path: Path, color_mode: str) -> np.ndarray:
    with _png_image(f, path) as image:
        image.load()
        return _pixels(image, color_mode)


@contextlib.contextmanager
def _png_image(f, path: Path):
    """The PNG in the open file ``f`` as a Pillow image, its header checked (signature, pixel
    limit) and nothing decoded yet; what goes wrong in it, decoding included, is a DataError."""
    from PIL import Image

    _check_signature(f, path)
    try:
        with warnings.catch_warnings():
            # Pillow's own check, when opening, fails from 179M pixels and
            # warns from 89M; those are over our lower limit, checked next.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f, formats=["PNG"]) as image:
                _check_pixels(image, path)
                yield image
    except Image.DecompressionBombError:
        raise DataError(_too_large(path)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: truncated or corrupt PNG ({e})") from None


def _too_large(path: Path) -> str:
    return f"{path}: image is too large (more than {MAX_PIXELS:,} pixels)"


def _check_pixels(image, path: Path) -> None:
    """Refuse an opened image over MAX_PIXELS, from its header: nothing is decoded yet."""
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(f"{_too_large(path)}: {width}x{height} = {width * height:,} pixels")


def _check_signature(f, path: Path) -> None:
    """Raise DataError unless the open file ``f`` is non-empty and starts like a PNG."""
    try:
        head = f.read(len(PNG_SIGNATURE))
        f.seek(0)
    except OSError as e:
        raise FileSystemError(os_error_text(e, path)) from None
    if not head:
        raise DataError(f"{path}: empty file (0 bytes), not a PNG image")
    if head != PNG_SIGNATURE:
        raise DataError(f"{path}: not a PNG file (it does not start with the PNG signature)")


def _pixels(image, color_mode: str) -> np.ndarray:
    """A decoded Pillow image as (H, W) gray or (H, W, 3) RGB in [0, 255], alpha composited on white."""
    from PIL import Image

    if image.mode in SIXTEEN_BIT_MODES:
        # 16-bit grayscale (mode "I" in Pillow < 10): Pillow's convert("L")
        # clips at 255 instead of scaling, so scale here.
        raw = np.asarray(image)
        gray = raw.astype(np.float32) / 257
        if "transparency" in image.info:  # tRNS: one gray value marks transparent pixels
            gray[raw == image.info["transparency"]] = 255
        return gray if color_mode == "grayscale" else np.repeat(gray[..., None], 3, axis=2)
    # RGBA covers every 8-bit mode, with alpha from an alpha channel, a
    # palette's alpha entries or a tRNS colour key (opaque when none).
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, "white")
    flat = Image.alpha_composite(paper, rgba)
    return np.asarray(flat.convert("L" if color_mode == "grayscale" else "RGB"))


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
    paper = float(np.median(gray[~inner]))
    if paper > 127:
        gray, paper = 255 - gray, 255 - paper
    return np.clip(gray - paper, 0, None)


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


def load_digit(path) -> np.ndarray:
    """The PNG digit at ``path`` as MNIST input: float32 (28, 28) in [0, 255], white on black."""
    gray = read_image(path)
    try:
        return to_mnist(gray)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def list_pngs(paths) -> list[Path]:
    """Expand ``paths`` (one path or an iterable of them) into a list of image files.

    A folder becomes its *.png files (any case of ".png"; names starting with
    "." such as macOS "._x.png" metadata are skipped), sorted by name; a file
    is kept as given, whatever its name, for read_image to check. Raises
    DataError for a missing path or a folder without PNG files.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += _folder_pngs(path)
        elif path.exists():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found


def _folder_pngs(folder: Path) -> list[Path]:
    """The visible *.png files directly in ``folder``, sorted; DataError when there are none."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot list: {e.strerror or e}") from None
    pngs = [
        p
        for p in entries
        if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()
    ]
    if not pngs:
        raise DataError(f"{folder}: folder holds no .png files")
    return pngs
