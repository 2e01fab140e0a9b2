"""An image-folder model predicts images through its own training loader's steps (size, colour
mode, scaling), never MNIST's digit centring, and predicts its test images as evaluate scores them."""

import csv
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from mlpcli.cli import main


def mlp(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def square_image(side, height, width, rgb, rng):
    """A bright square in the left or right half of a dark, noisy picture."""
    pixels = rng.integers(0, 40, (height, width)).astype(np.uint8)
    size = max(2, min(height, width // 2) // 2)
    top = rng.integers(0, height - size + 1)
    left = rng.integers(0, width // 2 - size + 1) + (width // 2 if side == "right" else 0)
    pixels[top:top + size, left:left + size] = 230
    if rgb:
        pixels = np.stack([pixels, pixels // 2, 255 - pixels], axis=2)
    return Image.fromarray(pixels)


def image_folder(root, height, width, rgb, per_class, seed):
    rng = np.random.default_rng(seed)
    for side in ("left", "right"):
        (root / side).mkdir(parents=True)
        for i in range(per_class):
            square_image(side, height, width, rgb, rng).save(root / side / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module", params=[(28, 28, False), (12, 20, True)], ids=["28x28-gray", "12x20-rgb"])
def shapes_run(request, tmp_path_factory):
    height, width, rgb = request.param
    root = tmp_path_factory.mktemp("shapes")
    image_folder(root / "train", height, width, rgb, 40, seed=0)
    image_folder(root / "test", height, width, rgb, 10, seed=1)
    config = {"name": "shapes", "seed": 0,
              "data": {"dataset": "image_folder", "path": str(root / "train"), "test_path": str(root / "test"),
                       "color_mode": "rgb" if rgb else "grayscale", "validation_split": 0.2},
              "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 16, "activation": "relu"},
                                   {"type": "dense", "units": 2, "activation": "softmax"}]},
              "loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
              "training": {"epochs": 15, "batch_size": 16}}
    (root / "shapes.yaml").write_text(yaml.safe_dump(config))
    result = mlp("train", root / "shapes.yaml", "--run-dir", root / "run", "-q", "--no-plots")
    assert result.exit_code == 0, result.output
    return root, (height, width, rgb)


def test_an_image_folder_model_predicts_its_test_images_as_evaluate_scores_them(shapes_run):
    root, _ = shapes_run
    result = mlp("evaluate", root / "run", "--json")
    assert result.exit_code == 0, result.output
    accuracy = json.loads(result.stdout)["metrics"]["accuracy"]
    assert accuracy >= 0.9  # the classes are easy: a model that sees the images right gets them
    result = mlp("predict", root / "test" / "left", root / "test" / "right", "--run", root / "run",
                 "--out", root / "predictions.csv")
    assert result.exit_code == 0, result.output
    assert "Wrote 20 predictions" in result.output and "resized" not in result.output
    with open(root / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    truth = ["left"] * 10 + ["right"] * 10
    assert np.mean([row["class"] == want for row, want in zip(rows, truth)]) == pytest.approx(accuracy)


def test_an_image_of_another_size_is_resized_with_a_notice(shapes_run, tmp_path):
    root, (height, width, rgb) = shapes_run
    big = square_image("right", height * 3, width * 3, rgb, np.random.default_rng(5))
    big.save(tmp_path / "big.png")
    result = mlp("predict", tmp_path / "big.png", "--run", root / "run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["class"] == "right"
    assert f"resized to the model's {width}x{height} pixels" in result.stderr and "big.png" in result.stderr


def test_the_image_the_model_saw_can_be_saved(shapes_run, tmp_path):
    root, (height, width, rgb) = shapes_run
    result = mlp("predict", root / "test" / "left" / "00.png", "--run", root / "run",
                 "--save-preprocessed", tmp_path / "seen")
    assert result.exit_code == 0, result.output
    [saved] = (tmp_path / "seen").iterdir()
    assert saved.name == f"00-{width}x{height}.png"
    seen = np.asarray(Image.open(saved))
    assert seen.shape == ((height, width, 3) if rgb else (height, width))
    np.testing.assert_array_equal(seen, np.asarray(Image.open(root / "test" / "left" / "00.png")))
