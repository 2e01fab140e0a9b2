"""Images of every format mlp reads (mlpcli.images.decode_image), folders of them, fitting an
image to a model's size, and writing what a model saw as a PNG."""

import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, features

from mlpcli import images, predict
from mlpcli.errors import DataError
from mlpcli.images import (
    IMAGE_FORMATS,
    decode_image,
    encode_png,
    fit_image,
    image_size,
    list_images,
    load_image,
)

WEBP = pytest.mark.skipif(not features.check("webp"), reason="this Pillow was built without WebP")

# Pillow's save options that keep each format lossless (GIF: a palette of <= 256 colours),
# and JPEG close (its default halves the colour resolution, blurring sharp colour edges).
FAITHFUL = {"PNG": {}, "BMP": {}, "GIF": {}, "TIFF": {}, "WEBP": {"lossless": True},
            "JPEG": {"quality": 95, "subsampling": 0}}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif"}
FORMATS = [pytest.param(f, marks=WEBP) if f == "WEBP" else f for f in IMAGE_FORMATS]


def gray_picture():
    """A 24x32 grayscale picture with smooth and sharp parts (JPEG's error stays small)."""
    rows, cols = np.indices((24, 32))
    picture = (rows * 8 + cols * 3).astype(np.uint8)
    picture[6:18, 10:14] = 0
    return picture


def rgb_picture():
    picture = np.stack([gray_picture(), gray_picture()[::-1], np.full((24, 32), 90, np.uint8)], axis=2)
    return picture


def save(path, image, fmt, **options):
    image.save(path, format=fmt, **options)
    return path


@pytest.mark.parametrize("color_mode, picture", [("grayscale", gray_picture), ("rgb", rgb_picture)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_decodes_to_the_pixels_of_the_png(fmt, color_mode, picture, tmp_path):
    image = Image.fromarray(picture())
    if fmt == "GIF" and color_mode == "rgb":  # GIF holds 256 colours: compare with the same palette
        image = image.quantize(256).convert("RGB")
    png = decode_image(save(tmp_path / "x.png", image, "PNG"), color_mode)
    other = decode_image(save(tmp_path / f"x{SUFFIX[fmt]}", image, fmt, **FAITHFUL[fmt]),
                         color_mode)
    assert other.dtype == png.dtype == np.uint8 and other.shape == png.shape
    if fmt == "JPEG":
        assert np.abs(other.astype(int) - png).mean() < 3 and np.abs(other.astype(int) - png).max() < 40
    else:
        np.testing.assert_array_equal(other, png)


@pytest.mark.parametrize("fmt", [pytest.param("WEBP", marks=WEBP), "TIFF", "PNG"])
def test_transparency_is_white_paper_in_every_format_with_alpha(fmt, tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]  # the rest: transparent black
    path = save(tmp_path / f"x{SUFFIX[fmt]}", Image.fromarray(rgba, "RGBA"), fmt, **FAITHFUL[fmt])
    rgb = decode_image(path, "rgb")
    assert rgb[0, 0].tolist() == [10, 20, 30] and (rgb.reshape(-1, 3)[1:] == 255).all()


# A picture in each of Pillow's modes, stored as TIFF unless said, and the gray levels expected
# (the 8-bit modes: what Pillow's own conversion gives, alpha composited on white).
def modes():
    gray = gray_picture()
    rgb = Image.fromarray(rgb_picture())
    return {
        "CMYK": (rgb.convert("CMYK"), "TIFF"),
        "CMYK-JPEG": (rgb.convert("CMYK"), "JPEG"),
        "YCbCr": (rgb.convert("YCbCr"), "TIFF"),
        "P": (rgb.quantize(64), "GIF"),
        "LA": (Image.merge("LA", [Image.fromarray(gray), Image.new("L", (32, 24), 255)]), "TIFF"),
        "RGBA": (rgb.convert("RGBA"), "TIFF"),
        "1": (Image.fromarray(gray > 100), "TIFF"),
    }


@pytest.mark.parametrize("name", list(modes()))
def test_every_mode_reads_as_pillow_converts_it(name, tmp_path):
    image, fmt = modes()[name]
    path = save(tmp_path / f"x{SUFFIX[fmt]}", image, fmt)
    with Image.open(path) as stored:
        assert stored.mode == image.mode  # the file really holds that mode
        expected = np.asarray(stored.convert("RGB"))
    np.testing.assert_array_equal(decode_image(path, "rgb"), expected)
    np.testing.assert_array_equal(decode_image(path), np.asarray(Image.fromarray(expected).convert("L")))


@pytest.mark.parametrize("fmt, dtype", [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2")])
def test_16_bit_images_are_scaled_not_clipped(fmt, dtype, tmp_path):
    levels = np.array([[0, 1000, 32768, 65535]], dtype=dtype)
    path = save(tmp_path / f"x{SUFFIX[fmt]}", Image.fromarray(levels), fmt)
    pixels = decode_image(path)
    assert pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, levels / 257, rtol=1e-6)
    assert image_size(path) == (4, 1, True)


def test_floating_point_tiff_keeps_its_fractions_clipped_to_0_255(tmp_path):
    path = save(tmp_path / "x.tif", Image.fromarray(np.array([[-3, 0.25, 99.5, 300]], np.float32)), "TIFF")
    np.testing.assert_array_equal(decode_image(path), [[0, 0.25, 99.5, 255]])
    np.testing.assert_array_equal(decode_image(path, "rgb")[0, 2], [99.5] * 3)
    assert image_size(path) == (4, 1, True)


def test_a_floating_point_tiff_holding_nan_is_refused(tmp_path):
    path = save(tmp_path / "x.tif", Image.fromarray(np.array([[1, np.nan]], np.float32)), "TIFF")
    with pytest.raises(DataError, match=r"x\.tif: holds pixel values that are not finite numbers$"):
        decode_image(path)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", pytest.param("WEBP", marks=WEBP)])
def test_of_several_frames_the_first_is_read(fmt, tmp_path):
    frames = [Image.fromarray(np.full((4, 5), level, np.uint8)).convert("RGB") for level in (30, 200, 90)]
    path = tmp_path / f"x{SUFFIX[fmt]}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], **FAITHFUL[fmt])
    with Image.open(path) as stored:
        assert stored.n_frames == 3
    np.testing.assert_array_equal(decode_image(path), np.full((4, 5), 30))


@pytest.mark.parametrize("content", [b"hello, I am text\n", bytes(range(256)), b"%PDF-1.4\n" + bytes(64)],
                         ids=["text", "binary", "pdf"])
@pytest.mark.parametrize("name", ["x.jpg", "x.png", "x"])
def test_a_file_that_is_no_image_is_refused_in_one_line(content, name, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        decode_image(path)
    assert str(error.value) == (f"{path}: not an image mlp can read (accepted formats: "
                                "PNG, JPEG, BMP, GIF, WEBP, TIFF)")


def encoded(fmt, **options):
    out = io.BytesIO()
    Image.fromarray(gray_picture()).save(out, format=fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_of_each_format_is_refused_naming_it(fmt, tmp_path):
    data = encoded(fmt, **FAITHFUL[fmt])
    for cut in (len(data) // 2, 20, 3):
        path = tmp_path / f"cut{cut}{SUFFIX[fmt]}"
        path.write_bytes(data[:cut])
        with pytest.raises(DataError, match=r"^\S*cut\d+\.\w+: (truncated or corrupt|not an image mlp)"):
            decode_image(path)


@pytest.fixture
def decoded(monkeypatch):
    """The Pillow images decoded from now on (none is: decoding them is left out)."""
    images_decoded = []
    for cls in image_file_classes():  # every load decodes (plugins override ImageFile.load)
        if "load" in vars(cls):
            monkeypatch.setattr(cls, "load", lambda self: images_decoded.append(self))
    return images_decoded


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_pixel_limit_is_checked_before_decoding_in_every_format(fmt, tmp_path, monkeypatch, decoded):
    path = save(tmp_path / f"x{SUFFIX[fmt]}", Image.fromarray(gray_picture()), fmt)
    monkeypatch.setattr(images, "MAX_PIXELS", 24 * 32 - 1)
    with pytest.raises(DataError, match=r"image is too large \(more than 767 pixels\): 32x24 = 768 pixels"):
        decode_image(path)
    with pytest.raises(DataError, match="too large"):
        image_size(path)
    assert decoded == []


def image_file_classes(cls=ImageFile.ImageFile):
    return [cls] + [sub for child in cls.__subclasses__() for sub in image_file_classes(child)]


def jpeg_claiming(width, height):
    """A small JPEG whose header (SOF0) claims width x height pixels."""
    data = bytearray(encoded("JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_a_small_jpeg_claiming_a_huge_size_is_refused_before_decoding(tmp_path, decoded):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(jpeg_claiming(10_000, 10_000))
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"bomb\.jpg: image is too large .*10000x10000 = 100,000,000"):
        decode_image(path)
    assert time.perf_counter() - start < 2
    assert decoded == []  # libjpeg would decode it, padding the missing data


def test_list_images_takes_every_image_suffix_and_skips_the_rest(tmp_path):
    names = ["a.png", "b.JPG", "c.jpeg", "d.bmp", "e.Gif", "f.webp", "g.tif", "h.TIFF"]
    for name in [*names, "notes.txt", "x.pdf", ".hidden.jpg", "png", "raw.heic"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    assert list_images(tmp_path) == [tmp_path / name for name in names]


def test_fit_image_resizes_gray_and_rgb_bilinearly_within_the_range(tmp_path):
    gray = gray_picture().astype(np.float32)
    out, resized = fit_image(gray, 12, 16)
    assert resized and out.shape == (12, 16) and out.dtype == np.float32
    expected = np.asarray(Image.fromarray(gray, "F").resize((16, 12), Image.BILINEAR))
    np.testing.assert_allclose(out, expected, atol=1e-4)
    rgb, resized = fit_image(rgb_picture(), 50, 40)  # uint8 in, enlarged
    assert resized and rgb.shape == (50, 40, 3) and rgb.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(rgb[..., c], fit_image(rgb_picture()[..., c], 50, 40)[0])
        assert rgb_picture()[..., c].min() <= rgb[..., c].min() <= rgb[..., c].max() <= rgb_picture()[..., c].max()
    assert len(np.unique(rgb[..., 0])) > len(np.unique(rgb_picture()[..., 0]))  # interpolated, not blocks


def test_fit_image_leaves_an_image_of_the_size_alone():
    out, resized = fit_image(rgb_picture(), 24, 32)
    assert not resized and out.dtype == np.float32
    np.testing.assert_array_equal(out, rgb_picture())


def test_load_image_decodes_and_fits(tmp_path):
    path = save(tmp_path / "x.bmp", Image.fromarray(rgb_picture()), "BMP")
    pixels, original = load_image(path, 24, 32, "rgb")
    assert original is None and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, rgb_picture())
    pixels, original = load_image(path, 28, 28)
    assert original == (32, 24) and pixels.shape == (28, 28) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, fit_image(decode_image(path), 28, 28)[0])


@pytest.mark.parametrize("picture", [gray_picture, rgb_picture])
def test_encode_png_round_trips(picture, tmp_path):
    pixels = picture().astype(np.float32)
    pixels[0, 0] = 254.6  # rounded to 255, not cut to 254
    encode_png(tmp_path / "x.png", pixels)
    mode = "grayscale" if pixels.ndim == 2 else "rgb"
    np.testing.assert_array_equal(decode_image(tmp_path / "x.png", mode), np.rint(pixels))
    out = io.BytesIO()
    encode_png(out, pixels)
    assert out.getvalue() == (tmp_path / "x.png").read_bytes()


def test_encode_png_refuses_other_shapes():
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\).*\(2, 2, 4\)"):
        encode_png(io.BytesIO(), np.zeros((2, 2, 4)))


def test_save_preprocessed_writes_rgb_and_gray_pictures(tmp_path):
    sources = [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"]
    seen = np.stack([rgb_picture(), rgb_picture()[::-1]]).astype(np.float32)
    predict._save_seen(tmp_path / "seen", sources, seen)
    height, width = seen.shape[1:3]  # named by the size the model saw
    for picture, name in zip(seen, ["a", "b"]):
        np.testing.assert_array_equal(decode_image(tmp_path / "seen" / f"{name}-{width}x{height}.png", "rgb"),
                                      picture)
    predict._save_seen(tmp_path / "gray", sources[:1], seen[:1, ..., 0])
    np.testing.assert_array_equal(decode_image(tmp_path / "gray" / f"a-{width}x{height}.png"), seen[0, ..., 0])


def small(fmt):
    out = io.BytesIO()
    Image.fromarray(gray_picture()[:6, :5]).save(out, format=fmt, **FAITHFUL[fmt])
    return out.getvalue()


SMALL = {fmt: small(fmt) for fmt in IMAGE_FORMATS if fmt != "WEBP" or features.check("webp")}


def mutated(data, edits):
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(SMALL)),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       cut=st.floats(0.01, 1))
def test_damaged_files_of_every_format_give_pixels_or_data_error(fmt, edits, cut, fuzz_dir):
    good = SMALL[fmt]
    path = fuzz_dir / "fuzz.img"
    path.write_bytes(mutated(good, edits)[: max(1, int(len(good) * cut))])
    try:
        pixels = decode_image(path, "rgb")
    except DataError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    else:
        assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype in (np.uint8, np.float32)
        assert pixels.min() >= 0 and pixels.max() <= 255


@pytest.mark.parametrize("picture", [gray_picture, rgb_picture])
@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_an_opaque_image_reads_as_if_composited_on_white(tmp_path, picture, color_mode):
    """Opaque L and RGB images skip the RGBA compositing (a 4-channel copy of a large image):
    the pixels must be the same as through it."""
    image = Image.fromarray(picture())
    path = save(tmp_path / "x.png", image, "PNG")
    composited = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    expected = np.asarray(composited.convert("L" if color_mode == "grayscale" else "RGB"))
    np.testing.assert_array_equal(decode_image(path, color_mode), expected)
