"""Reading digit images and normalizing them to MNIST style (mlpcli.images); the other
formats, fitting and writing images are in tests/test_image_formats.py."""

import time
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import chunk, png_bytes
from mlpcli.data.builtin import load_builtin
from mlpcli.errors import DataError, FileSystemError
from mlpcli.images import (
    CENTER,
    MAX_PIXELS,
    list_images,
    load_digit,
    read_image,
    to_mnist,
)

N_DIGITS = 50
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits():
    """The first N_DIGITS MNIST test digits: uint8 (N_DIGITS, 28, 28), white ink on black."""
    return load_builtin("mnist").x_test[:N_DIGITS]


def centre_of_mass(image):
    """Intensity-weighted (row, column) centre of a (H, W) array."""
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / image.sum(), (cols * image).sum() / image.sum()


def ink_box(image):
    """(height, width) of the bounding box of the pixels > 0."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def pearson(a, b):
    return np.corrcoef(np.ravel(a).astype(float), np.ravel(b).astype(float))[0, 1]


def paper(digit):
    """Dark ink on white paper: uint8 (28, 28)."""
    return 255 - digit


def enlarged(digit, size=250):
    """Dark ink on white paper, scaled up to (size, size) uint8."""
    return np.asarray(Image.fromarray(paper(digit)).resize((size, size), Image.BICUBIC))


# Each style turns an MNIST digit (uint8 (28, 28), white on black) into a Pillow image.
def as_is(d):
    return Image.fromarray(d)


def inverted(d):
    return Image.fromarray(paper(d))


def scaled_up(d):
    return Image.fromarray(enlarged(d))


def rgb_navy_ink(d):
    ink = d[..., None] / 255
    navy = np.array([0, 0, 128])
    return Image.fromarray((255 * (1 - ink) + navy * ink).round().astype(np.uint8))


def rgba_transparent(d):
    # Black everywhere, alpha = ink: read as opaque, the whole image would be black.
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 3] = d
    return Image.fromarray(rgba)


def palette(d):
    return Image.fromarray(enlarged(d, 200)).convert("RGB").quantize(16)


def palette_transparent(d):
    # 4 grey levels of ink on a transparent background whose colour is black.
    levels = (d // 64).astype(np.uint8)  # 0 = background
    image = Image.fromarray(levels, mode="L").convert("P")
    image.putpalette([0, 0, 0] + [255 - 85 * i for i in range(1, 4) for _ in range(3)])
    image.info["transparency"] = 0
    return image


def sixteen_bit(d):
    return Image.fromarray(paper(d).astype(np.uint16) * 257)


def off_centre_on_canvas(d):
    canvas = np.full((400, 600), 235, dtype=np.uint8)  # light grey paper
    canvas[40:160, 420:540] = np.minimum(enlarged(d, 120), 235)
    return Image.fromarray(canvas)


STYLES = [
    as_is,
    inverted,
    scaled_up,
    rgb_navy_ink,
    rgba_transparent,
    palette,
    palette_transparent,
    sixteen_bit,
    off_centre_on_canvas,
]


@pytest.mark.parametrize("style", STYLES, ids=lambda s: s.__name__)
def test_load_digit_matches_mnist(style, digits, tmp_path):
    correlations = []
    for i, digit in enumerate(digits):
        path = tmp_path / f"{i}.png"
        style(digit).save(path)
        out = load_digit(path)
        assert out.shape == (28, 28) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() == pytest.approx(255)
        assert np.hypot(*np.subtract(centre_of_mass(out), CENTER)) <= 0.75
        assert 19 <= max(ink_box(out)) <= 20 and min(ink_box(out)) <= 20
        correlations.append(pearson(out, digit))
    assert np.mean(correlations) > 0.9, np.round(correlations, 2)


def test_mnist_digits_come_back_unchanged(digits):
    # MNIST was made this way, so its digits are almost fixed points: only a
    # faint fringe, left out of the bounding box, can make one slightly larger.
    outs = [to_mnist(d.astype(np.float32)) for d in digits]
    same = [
        np.allclose(out, d * (255 / d.max()), atol=1e-3)
        for out, d in zip(outs, digits, strict=True)
    ]
    assert np.mean(same) > 0.6
    assert min(pearson(out, d) for out, d in zip(outs, digits, strict=True)) > 0.99


def test_mnist_centre_of_mass_is_the_target(digits):
    centres = np.array([centre_of_mass(d.astype(float)) for d in digits])
    np.testing.assert_allclose(centres.mean(axis=0), CENTER, atol=0.2)


def square(size=60, side=10, ink=255.0, background=0.0, top=5, left=30):
    image = np.full((size, size), background, dtype=np.float32)
    image[top : top + side, left : left + side] = ink
    return image


def assert_centred_block(out, height, width):
    assert out.dtype == np.float32 and out.shape == (28, 28)
    assert ink_box(out) == (height, width)
    rows, cols = np.nonzero(out)
    np.testing.assert_allclose(out[rows, cols], 255, rtol=1e-5)
    assert np.abs(np.subtract(centre_of_mass(out), CENTER)).max() <= 0.5


def test_white_square_on_black_fills_20x20_centred():
    assert_centred_block(to_mnist(square()), 20, 20)


def test_large_square_is_shrunk_to_20x20():
    assert_centred_block(to_mnist(square(size=300, side=100, top=150, left=10)), 20, 20)


def test_tall_bar_keeps_its_aspect_ratio():
    bar = np.zeros((200, 200), dtype=np.float32)
    bar[20:120, 50:70] = 255  # 100 high, 20 wide -> 20 high, 4 wide
    assert_centred_block(to_mnist(bar), 20, 4)


def test_shrinking_averages_fine_detail():
    stripes = np.zeros((100, 100), dtype=np.float32)
    stripes[::2] = 255  # 1-px lines: sampling them would give stripes, averaging grey
    out = to_mnist(stripes)
    assert ink_box(out) == (20, 20)
    assert (out > 0).sum() == 400 and out[out > 0].min() > 0.5 * 255


def test_enlarging_interpolates():
    dot = np.zeros((9, 9), dtype=np.float32)
    dot[3:6, 3:6] = [[50, 100, 50], [100, 255, 100], [50, 100, 50]]
    out = to_mnist(dot)  # 3x3 -> 20x20: blocks would have only 3 grey levels
    assert len(np.unique(out[out > 0])) > 10


def test_dark_ink_on_light_paper_is_inverted():
    np.testing.assert_allclose(to_mnist(square(ink=0, background=255)), to_mnist(square()))


def test_grey_paper_is_background():
    out = to_mnist(square(ink=0, background=200))
    np.testing.assert_allclose(out, to_mnist(square()))
    assert (out == 0).sum() == 28 * 28 - 400


def test_dim_light_ink_on_dark_grey_paper():
    np.testing.assert_allclose(to_mnist(square(ink=120, background=40)), to_mnist(square()))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((28, 28), np.float32),
        np.full((50, 40), 255, np.float32),
        np.full((50, 40), 180, np.float32),
        # Faint noise on white paper is not a digit.
        255 - np.random.default_rng(0).integers(0, 6, (50, 40)).astype(np.float32),
    ],
    ids=["black", "white", "grey", "faint-noise"],
)
def test_blank_image_is_refused(image):
    with pytest.raises(DataError, match="no digit found: the image is blank"):
        to_mnist(image)


def test_to_mnist_wants_a_2d_array():
    with pytest.raises(ValueError, match="2-D"):
        to_mnist(np.zeros((28, 28, 3), np.float32))


def keyed(image, transparent):
    """``image`` with the pixel value ``transparent`` marked transparent when saved."""
    image.info["transparency"] = transparent
    return image


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.fromarray(np.array([[0, 100, 255]], np.uint8)), [0, 100, 255]),
        (Image.fromarray(np.array([[0, 100, 255]], np.uint16) * 257), [0, 100, 255]),
        (Image.fromarray(np.array([[0, 1, 0]], bool)), [0, 255, 0]),
        (Image.fromarray(np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)), [76, 0]),
        # Alpha 0 -> white paper, 255 -> the colour, 128 -> about half way.
        (Image.fromarray(np.array([[[0, 0], [0, 255], [0, 128]]], np.uint8), "LA"), [255, 0, 127]),
        (
            Image.fromarray(np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 255]]], np.uint8)),
            [255, 0, 76],
        ),
        # A tRNS chunk: one grey level, colour or palette index is transparent.
        (keyed(Image.fromarray(np.array([[0, 100, 255]], np.uint8)), 0), [255, 100, 255]),
        (keyed(Image.fromarray(np.array([[[0, 0, 0], [0, 0, 9]]], np.uint8)), (0, 0, 0)), [255, 1]),
        (
            keyed(Image.fromarray(np.array([[0, 100, 200]], np.uint8)).convert("P"), 100),
            [0, 255, 200],
        ),
    ],
    ids=["L", "I;16", "1", "RGB", "LA", "RGBA", "L-tRNS", "RGB-tRNS", "P-tRNS"],
)
def test_read_image_gray_levels(image, expected, tmp_path):
    path = tmp_path / "x.png"
    image.save(path)
    pixels = read_image(path)
    assert pixels.dtype == np.float32 and pixels.shape == (1, len(expected))
    np.testing.assert_allclose(pixels[0], expected, atol=1)


def test_read_image_16bit_with_transparent_value(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.array([[0, 1000, 65535]], np.uint16)).save(path, transparency=0)
    np.testing.assert_allclose(read_image(path)[0], [255, 1000 / 257, 255], atol=0.01)


# The 6x5 pixels 0..29 compressed, each row led by its filter type byte (0: none).
SMALL_IDAT = zlib.compress(b"".join(b"\0" + bytes(range(r, r + 6)) for r in range(0, 30, 6)))
SMALL_PNG = png_bytes(6, 5, SMALL_IDAT)


# Refused by our limit, by it after Pillow's warning, and by Pillow's error.
@pytest.mark.parametrize("side", [8_000, 10_000, 20_000])
def test_huge_image_is_refused_before_decoding(side, tmp_path):
    assert side * side > MAX_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(side, side))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The pixel data is missing, so only a refusal before decoding says "too large".
        with pytest.raises(
            DataError, match=r"bomb\.png: image is too large \(more than 50,000,000"
        ):
            read_image(path)
    assert time.perf_counter() - start < 1
    assert not caught  # Pillow's DecompressionBombWarning is not passed on


def test_image_at_the_limit_is_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr("mlpcli.images.MAX_PIXELS", 12)
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(path)
    assert read_image(path).shape == (3, 4)
    Image.fromarray(np.zeros((1, 13), np.uint8)).save(path)
    with pytest.raises(
        DataError, match=r"x\.png: image is too large \(more than 12 pixels\): 13x1 = 13 pixels"
    ):
        read_image(path)


def half_a_png(tmp_path):
    """The first half of a valid 100x100 PNG's bytes."""
    path = tmp_path / "valid.png"
    noise = np.random.default_rng(0).integers(0, 256, (100, 100), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    return data[: len(data) // 2]


def jpeg_bytes(tmp_path):
    path = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG")
    return path.read_bytes()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"hello, I am text\n", r"not an image mlp can read \(accepted formats: PNG, JPEG, BMP"),
        (lambda t: jpeg_bytes(t)[:40], "truncated or corrupt JPEG image"),
        (b"GIF89a" + bytes(40), "truncated or corrupt GIF image"),
        (half_a_png, "truncated or corrupt PNG"),
        (PNG_SIGNATURE + b"garbage" * 10, "truncated or corrupt PNG"),
        (png_bytes(10, 10, idat=b"not zlib data"), "truncated or corrupt PNG"),
        (PNG_SIGNATURE + chunk(b"IHDR", bytes(5)), "truncated or corrupt PNG"),
        (
            # The pixel data goes on in a chunk whose type is not letters.
            png_bytes(
                6, 5, chunks=[chunk(b"IDAT", SMALL_IDAT[:5]), chunk(b"\1\2\3\4", SMALL_IDAT[5:])]
            ),
            "truncated or corrupt PNG",
        ),
    ],
    ids=[
        "zero-bytes",
        "text",
        "truncated-jpeg",
        "broken-gif",
        "truncated",
        "garbage",
        "bad-idat",
        "short-ihdr",
        "broken-chunk",
    ],
)
def test_bad_files_are_refused(content, message, tmp_path):
    path = tmp_path / "digit 7.png"
    path.write_bytes(content(tmp_path) if callable(content) else content)
    with pytest.raises(DataError, match=message) as error:
        load_digit(path)
    assert str(error.value).startswith(f"{path}: ")


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"^.*nope\.png: file not found$"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(FileSystemError, match=r"Is a directory$"):
        read_image(tmp_path)


def test_blank_png_names_the_file(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(path)
    with pytest.raises(DataError, match=r"blank\.png: no digit found: the image is blank"):
        load_digit(path)


def test_list_images_expands_folders(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ["b.png", "c.png", "a.PNG", "notes.txt", "._b.png"]:
        (folder / name).write_bytes(b"x")
    (folder / "sub.png").mkdir()
    single = tmp_path / "single.dat"
    single.write_bytes(b"x")
    assert list_images([folder]) == [folder / "a.PNG", folder / "b.png", folder / "c.png"]
    assert list_images([single, str(folder)])[0] == single
    assert list_images(str(single)) == [single]


def test_list_images_refuses_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match=r"missing\.png: no such file or folder"):
        list_images([tmp_path / "missing.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: folder holds no image files \(names ending in "
                                        r"\.png, \.jpg, \.jpeg, \.bmp, \.gif, \.webp, \.tif, \.tiff\)"):
        list_images([empty])
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="no image files"):
        list_images([empty])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def mutated(data, edits):
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


def test_handmade_png_is_valid(fuzz_dir):
    path = fuzz_dir / "small.png"
    path.write_bytes(SMALL_PNG)
    np.testing.assert_array_equal(read_image(path), np.arange(30).reshape(5, 6))


FUZZ_INPUTS = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: PNG_SIGNATURE + b),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4).map(
        lambda edits: mutated(SMALL_PNG, edits)
    ),
    st.integers(0, len(SMALL_PNG)).map(lambda n: SMALL_PNG[:n]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=FUZZ_INPUTS)
def test_read_image_fuzz_returns_pixels_or_data_error(content, fuzz_dir):
    path = fuzz_dir / "fuzz.png"
    path.write_bytes(content)
    try:
        pixels = read_image(path)
    except DataError as e:
        assert str(e).startswith(str(path))
    else:
        assert pixels.dtype == np.float32 and pixels.ndim == 2
        assert pixels.min() >= 0 and pixels.max() <= 255
