"""The image-folder loader (class folders of PNG, JPEG, BMP, GIF, WebP or TIFF images)."""

import re
import time

import numpy as np
import pytest
from conftest import png_bytes
from PIL import Image

from click.testing import CliRunner

from mlpcli import images
from mlpcli.cli import main
from mlpcli.data import load_dataset
from mlpcli.data.image_folder import load_image_folder
from mlpcli.errors import DataError


def png(path, pixels, mode=None, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode).save(path, format=fmt)
    return path


def pixels(seed, shape=(4, 5)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """train/<cat|dog>/*.png of 4x5 (H x W) grayscale images; returns (root, {file: pixels})."""
    root = tmp_path / "train"
    images = {}
    for i, name in enumerate(["dog/a.png", "dog/b.png", "cat/x.png", "dog/c.PNG", "cat/y.png"]):
        images[name] = pixels(i)
        png(root / name, images[name])
    return root, images


def test_two_classes(folder):
    root, images = folder
    raw = load_image_folder(root)
    assert raw.class_names == ["cat", "dog"]
    assert raw.x_train.shape == (5, 4, 5) and raw.x_train.dtype == np.uint8
    # Class folders in sorted order, files sorted within each.
    order = ["cat/x.png", "cat/y.png", "dog/a.png", "dog/b.png", "dog/c.PNG"]
    np.testing.assert_array_equal(raw.x_train, np.stack([images[n] for n in order]))
    assert raw.y_train.tolist() == [0, 0, 1, 1, 1] and raw.y_train.dtype == np.int64
    assert raw.x_test is None


def test_rgb_mode(tmp_path):
    color = np.random.default_rng(0).integers(0, 256, (3, 2, 3)).astype(np.uint8)
    png(tmp_path / "d" / "red" / "1.png", color, "RGB")
    png(tmp_path / "d" / "blue" / "1.png", pixels(1, (3, 2)))
    raw = load_image_folder(tmp_path / "d", color_mode="rgb")
    assert raw.x_train.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(raw.x_train[1], color)  # "red" sorts after "blue"
    # A grayscale image becomes three equal channels.
    assert (raw.x_train[0, ..., 0] == raw.x_train[0, ..., 2]).all()


def test_load_dataset_scales_to_unit_and_reads_test_folder(folder, tmp_path):
    root, images = folder
    png(tmp_path / "test" / "dog" / "t.png", pixels(9))
    data = load_dataset(
        {"dataset": "image_folder", "path": str(root), "test_path": str(tmp_path / "test")}
    )
    assert data.x_train.dtype == np.float32 and data.x_train.max() <= 1.0
    np.testing.assert_allclose(data.x_train[0], images["cat/x.png"] / 255, atol=1e-6)
    # The test folder may lack classes; its labels are training class indices.
    assert data.y_test.tolist() == [1]
    np.testing.assert_allclose(data.x_test[0], pixels(9) / 255, atol=1e-6)
    assert data.name == "train"


def test_hidden_files_are_ignored(folder):
    root, _ = folder
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / ".thumbs").write_bytes(b"junk")
    assert len(load_image_folder(root).x_train) == 5


def test_stray_file_in_a_class_folder_is_refused_naming_the_suffixes(folder):
    root, _ = folder
    (root / "dog" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"dog/notes\.txt: not an image file; class folders may hold "
                                        r"only images \(names ending in \.png, \.jpg, \.jpeg, \.bmp, "
                                        r"\.gif, \.webp, \.tif, \.tiff\)$"):
        load_image_folder(root)


def test_text_file_named_jpg_is_refused_in_one_line(folder):
    root, _ = folder
    (root / "cat" / "z.jpg").write_text("not a picture\n")
    with pytest.raises(DataError, match=r"^\S*cat/z\.jpg: not an image mlp can read \(accepted formats: "
                                        r"PNG, JPEG, BMP, GIF, WEBP, TIFF\)$"):
        load_image_folder(root)


def test_a_file_is_read_by_its_content_not_its_name(folder):
    root, _ = folder
    png(root / "cat" / "z.png", pixels(3), fmt="BMP")
    raw = load_image_folder(root)
    np.testing.assert_array_equal(raw.x_train[2], pixels(3))  # cat/x, cat/y, cat/z


def test_jpeg_and_bmp_classes_load_and_train(tmp_path):
    """Class folders of JPEG and BMP files (any case of suffix) load like PNGs, and train."""
    rng = np.random.default_rng(0)
    light, dark = (rng.integers(170, 256, (12, 8, 10)), rng.integers(0, 86, (12, 8, 10)))
    for i in range(12):
        png(tmp_path / "d" / "light" / f"{i}.jpg", light[i], fmt="JPEG")
        png(tmp_path / "d" / "dark" / f"{i}.BMP", dark[i], fmt="BMP")
    raw = load_image_folder(tmp_path / "d")
    assert raw.class_names == ["dark", "light"] and raw.x_train.shape == (24, 8, 10)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.tolist() == [0] * 12 + [1] * 12
    np.testing.assert_array_equal(raw.x_train[:12], np.stack(  # BMP: lossless, in name order
        [dark[int(name)] for name in sorted(str(i) for i in range(12))]))
    jpegs = sorted((tmp_path / "d" / "light").iterdir())
    np.testing.assert_array_equal(raw.x_train[12:], np.stack([np.asarray(Image.open(p)) for p in jpegs]))
    assert raw.x_train[12:].min() > 128  # lossy, still light
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{dataset: image_folder, path: '{tmp_path / 'd'}'}}\n"
                      "model:\n  input_shape: [80]\n  layers:\n"
                      "    - {type: dense, units: 2, activation: softmax}\n"
                      "loss: sparse_categorical_crossentropy\noptimizer: adam\n"
                      "training: {epochs: 2, batch_size: 8}\n")
    result = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run"),
                                       "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.h5").exists()


def test_corrupt_png_is_refused(folder):
    root, _ = folder
    data = (root / "cat" / "x.png").read_bytes()
    (root / "cat" / "x.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cat/x\.png: truncated or corrupt PNG"):
        load_image_folder(root)


def test_inconsistent_size_is_refused(folder):
    root, _ = folder
    png(root / "dog" / "d.png", pixels(0, (4, 6)))
    with pytest.raises(DataError, match=r"dog/d\.png: image is 6x4 pixels, but the others are 5x4"):
        load_image_folder(root)


def test_test_folder_size_must_match_training(folder, tmp_path):
    root, _ = folder
    png(tmp_path / "test" / "cat" / "t.png", pixels(0, (5, 5)))
    with pytest.raises(DataError, match=r"t\.png: image is 5x5 pixels, but the others are 5x4"):
        load_image_folder(root, test_path=tmp_path / "test")


def test_unknown_class_in_test_folder(folder, tmp_path):
    png(tmp_path / "test" / "cow" / "t.png", pixels(0))
    with pytest.raises(DataError, match="class 'cow' is not one of the training classes"):
        load_image_folder(folder[0], test_path=tmp_path / "test")


def test_stray_file_and_empty_folders(tmp_path):
    png(tmp_path / "d" / "cat" / "a.png", pixels(0))
    (tmp_path / "d" / "readme.md").write_text("hi")
    with pytest.raises(DataError, match=r"readme\.md: unexpected file"):
        load_image_folder(tmp_path / "d")
    (tmp_path / "e" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="class folder holds no images"):
        load_image_folder(tmp_path / "e")
    (tmp_path / "f").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "f")
    with pytest.raises(DataError, match="folder not found"):
        load_image_folder(tmp_path / "nope")


def test_16bit_png_gives_the_pixels_predict_reads(tmp_path):
    """A 16-bit image is scaled to 0..255 (not clipped at 255), exactly as mlp predict reads it."""
    levels = np.linspace(0, 65535, 20).astype(np.uint16).reshape(4, 5)
    path = tmp_path / "d" / "cat" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(levels).save(path)
    png(tmp_path / "d" / "dog" / "b.png", pixels(1))
    gray = load_image_folder(tmp_path / "d").x_train[0]
    np.testing.assert_array_equal(gray, images.read_image(path))
    np.testing.assert_allclose(gray, levels / 257, rtol=1e-6)
    assert gray.mean() == pytest.approx(127.5, abs=0.1)  # convert("L") gave 254.5
    rgb = load_image_folder(tmp_path / "d", color_mode="rgb").x_train[0]
    np.testing.assert_array_equal(rgb, np.repeat(gray[..., None], 3, axis=2))


def test_transparency_is_white_paper_as_in_predict(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    rgba[0, 0] = [10, 20, 30, 255]
    path = png(tmp_path / "d" / "cat" / "a.png", rgba, "RGBA")
    gray = load_image_folder(tmp_path / "d").x_train[0]
    np.testing.assert_array_equal(gray, images.read_image(path))
    assert gray[1, 1] == 255
    rgb = load_image_folder(tmp_path / "d", color_mode="rgb").x_train[0]
    assert rgb[1, 1].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [10, 20, 30]




@pytest.mark.parametrize("side", [8000, 20000])
def test_image_claiming_a_huge_size_is_refused_before_decoding(folder, side):
    root, _ = folder
    bomb = root / "dog" / "bomb.png"
    bomb.write_bytes(png_bytes(side, side))
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"dog/bomb\.png: image is too large"):
        load_image_folder(root)
    assert time.perf_counter() - start < 5


def test_images_too_large_for_memory_are_refused_from_their_headers(tmp_path, monkeypatch):
    """16 small files whose headers claim 7000x7000 pixels (2.2 GiB decoded as rgb) are refused
    before any is decoded (their pixel data is empty: decoding one would fail otherwise)."""
    from mlpcli.data import image_folder

    monkeypatch.setattr(image_folder, "available_memory", lambda: 2**30)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(8):
            (tmp_path / name / f"{i}.png").write_bytes(png_bytes(7000, 7000))
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path))}: 16 images of 7000x7000 pixels, "
                                        r"3 channels need 2\.2 GiB once decoded, more than the 1\.0 GiB"):
        load_image_folder(tmp_path, color_mode="rgb")
    assert time.perf_counter() - start < 10
