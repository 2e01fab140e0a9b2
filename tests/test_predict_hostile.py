"""What goes into a model at prediction time, tried as a hostile user would: an --out that is
one of the inputs, a kill while --out is written, dark images, bad label cells deep in a CSV,
and evaluate --data FOLDER, which must prepare images as mlp predict does."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlpcli import modelfile
from mlpcli.cli import main
from mlpcli.nn.model import Sequential

REPO = Path(__file__).resolve().parent.parent
BREAST_CANCER_TEST = REPO / "configs" / "data" / "breast_cancer_test.csv"
DIABETES_TEST = REPO / "configs" / "data" / "diabetes_test.csv"
GRAY, SIZE = 40, (12, 16)  # the image model's training images: (height, width)


def mlp(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def trained(tmp_path_factory, name, config, *overrides):
    run_dir = tmp_path_factory.mktemp(name) / "run"
    args = ["train", config, "--run-dir", run_dir, "-q", "--no-plots", "--set", "training.epochs=1"]
    for override in overrides:
        args += ["--set", override]
    result = mlp(*args)
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    return trained(tmp_path_factory, "diab", REPO / "configs" / "diabetes-regression.yaml")


def class_folders(root, size, classes=("cat", "dog"), per_class=3, seed=0):
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A grayscale image-folder model of 12x16 images (scaling unit)."""
    root = tmp_path_factory.mktemp("images")
    class_folders(root / "train", SIZE, per_class=4)
    config = root / "images.yaml"
    config.write_text(f"""name: images
seed: 0
data: {{dataset: image_folder, path: {root / 'train'}, validation_split: 0.25}}
model:
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 8, activation: relu}}
    - {{type: dense, units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
training: {{epochs: 1, batch_size: 4}}
""")
    return trained(tmp_path_factory, "image-run", config)


# ---------------------------------------------------------------- --out is never an input

@pytest.mark.parametrize("how", ["same name", "symbolic link", "hard link"])
def test_an_out_that_is_one_of_the_inputs_is_refused_even_with_overwrite(csv_run, tmp_path, how):
    data = tmp_path / "rows.csv"
    data.write_bytes(BREAST_CANCER_TEST.read_bytes())
    given = data
    if how == "symbolic link":
        given = tmp_path / "link.csv"
        given.symlink_to(data)
    elif how == "hard link":
        given = tmp_path / "hard.csv"
        os.link(data, given)
    result = mlp("predict", given, "--run", csv_run, "--out", data, "--overwrite")
    assert result.exit_code == 2, result.output
    assert f"--out {data}: is the input {given}" in result.output
    assert data.read_bytes() == BREAST_CANCER_TEST.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({data.name, given.name})


# ---------------------------------------------------------------- a kill while --out is written

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_while_predicting_to_out_leaves_nothing(csv_run, tmp_path, sig):
    header, *rows = BREAST_CANCER_TEST.read_text().splitlines()
    big = tmp_path / "big.csv"
    big.write_text("\n".join([header] + rows * 1000) + "\n")  # 114,000 rows: seconds of predicting
    out = tmp_path / "out" / "p.csv"
    out.parent.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "mlpcli", "predict", str(big), "--run", str(csv_run),
                                "--out", str(out)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out.parent.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # until the temporary file of --out exists
    assert process.poll() is None, "the prediction ended before it could be stopped"
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Interrupted" in err
    assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------- warnings

def test_a_reader_that_goes_away_ends_predict_quietly(tiny_run, tmp_path):
    """`mlp predict many.npy | head -2`: the pipe closes early; no traceback, no error line."""
    np.save(tmp_path / "many.npy", np.zeros((20000, 784), np.uint8))
    reader = subprocess.Popen(["head", "-2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.Popen([sys.executable, "-m", "mlpcli", "predict", str(tmp_path / "many.npy"), "--run",
                               str(tiny_run)], stdout=reader.stdin, stderr=subprocess.PIPE)
    reader.stdin.close()  # only head holds the pipe's reading end open
    _, err = writer.communicate(timeout=120)
    assert len(reader.stdout.read().splitlines()) == 2 and reader.wait(timeout=30) == 0
    assert writer.returncode == 128 + signal.SIGPIPE and err == b"", err.decode()


def test_a_dark_image_never_draws_the_already_scaled_warning(image_run, tmp_path):
    """Pixels from an image file are levels of 0..255 however dark it is: --scaling none
    would be the wrong advice."""
    pixels = np.zeros(SIZE, np.uint8)
    pixels[3, 3] = 1
    Image.fromarray(pixels).save(tmp_path / "night.png")
    result = mlp("predict", tmp_path / "night.png", "--run", image_run)
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    np.save(tmp_path / "scaled.npy", np.full((1, *SIZE), 0.5, np.float32))  # arrays still draw it
    result = mlp("predict", tmp_path / "night.png", tmp_path / "scaled.npy", "--run", image_run)
    assert result.exit_code == 0, result.output
    assert "Warning: input values range over [0.5, 0.5], yet they are divided by 255" in result.output


# ---------------------------------------------------------------- CSV cells named by line and column

def test_an_unknown_label_is_named_by_its_file_line_and_column(csv_run, tmp_path):
    header, *rows = BREAST_CANCER_TEST.read_text().splitlines()
    rows[5] = rows[5].rsplit(",", 1)[0] + ",cancerous"  # file line 7
    (tmp_path / "rows.csv").write_text("\n".join([header] + rows) + "\n")
    for command in (["predict", tmp_path / "rows.csv", "--run", csv_run],
                    ["evaluate", csv_run, "--data", tmp_path / "rows.csv"]):
        result = mlp(*command)
        assert result.exit_code == 2, result.output
        assert ("rows.csv: column 'diagnosis': label 'cancerous' (line 7) is not one of the model's "
                "classes: benign, malignant") in result.output


def test_a_bad_regression_target_is_named_by_its_file_line_and_column(regression_run, tmp_path):
    header, *rows = DIABETES_TEST.read_text().splitlines()
    rows[2] = rows[2].rsplit(",", 1)[0] + ",1e39"  # file line 4
    (tmp_path / "rows.csv").write_text("\n".join([header] + rows) + "\n")
    result = mlp("predict", tmp_path / "rows.csv", "--run", regression_run)
    assert result.exit_code == 2, result.output
    assert "rows.csv: line 4, column 'progression': not a finite float32 number: '1e39'" in result.output


def test_a_csv_of_the_label_column_alone_says_so(tiny_run, tmp_path):
    (tmp_path / "labels.csv").write_text("label\n3\n")
    result = mlp("predict", tmp_path / "labels.csv", "--run", tiny_run)
    assert result.exit_code == 2, result.output
    assert "labels.csv: has only the label column 'label', no features" in result.output


# ---------------------------------------------------------------- evaluate --data FOLDER

def test_evaluate_a_folder_resizes_its_images_as_predict_does(image_run, tmp_path):
    folder = class_folders(tmp_path / "big", (28, 28), seed=3)  # not the training size
    result = mlp("evaluate", image_run, "--data", folder, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "Note: 6 image(s) were resized to the model's 16x12 pixels" in result.output
    predicted = mlp("predict", folder / "cat", folder / "dog", "--run", image_run, "--json")
    assert predicted.exit_code == 0, predicted.output
    classes = [json.loads(line)["class"] for line in predicted.stdout.splitlines()]
    assert report["metrics"]["accuracy"] == pytest.approx(
        np.mean([c == truth for c, truth in zip(classes, ["cat"] * 3 + ["dog"] * 3)]))


def test_evaluate_a_folder_centres_digits_for_a_digit_model_as_predict_does(tiny_run, tmp_path):
    paper = np.full((100, 90), 255, np.uint8)
    paper[20:80, 40:52] = 0  # a dark "1" on white, nothing like a 28x28 MNIST array
    (tmp_path / "digits" / "1").mkdir(parents=True)
    Image.fromarray(paper).save(tmp_path / "digits" / "1" / "one.png")
    result = mlp("evaluate", tiny_run, "--data", tmp_path / "digits", "--json")
    assert result.exit_code == 0, result.output
    predicted = mlp("predict", tmp_path / "digits" / "1" / "one.png", "--run", tiny_run, "--json", "--top-k", "10")
    top = {t["class"]: t["probability"] for t in json.loads(predicted.stdout)["top_k"]}
    assert json.loads(result.stdout)["loss"] == pytest.approx(-math.log(top["1"]), rel=1e-4)


def test_evaluate_a_folder_with_a_table_model_says_it_takes_rows(csv_run, tmp_path):
    folder = class_folders(tmp_path / "images", SIZE)
    result = mlp("evaluate", csv_run, "--data", folder)
    assert result.exit_code == 2, result.output
    assert "the model was trained on table rows (give a .csv), not images" in result.output


def test_evaluate_a_foreign_model_on_class_folders_numbers_them_by_sorted_name(tmp_path):
    model = Sequential([{"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}],
                       (*SIZE, 3)).build(np.random.default_rng(0))
    modelfile.save(tmp_path / "m.h5", model, loss="categorical_crossentropy")
    folder = class_folders(tmp_path / "images", (28, 28, 3), classes=("ant", "bee", "cow"), per_class=2)
    result = mlp("evaluate", "--model", tmp_path / "m.h5", "--data", folder, "--images", "resize", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["confusion_matrix"][2] != [0, 0, 0]  # cow is class 2
    assert "resized to the model's 16x12 pixels" in result.output
    (folder / "dog").mkdir()
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(folder / "dog" / "0.png")
    result = mlp("evaluate", "--model", tmp_path / "m.h5", "--data", folder)
    assert result.exit_code == 2, result.output
    assert f"label 3 (folder {folder / 'dog'}) is not one of the model's classes: 0, 1, 2" in result.output


def test_evaluate_images_option_is_for_a_data_folder(tiny_run):
    result = mlp("evaluate", tiny_run, "--images", "digits")
    assert result.exit_code == 2 and "--images: is for --data FOLDER" in result.output


def test_evaluate_data_of_the_wrong_shape_says_so_before_its_labels(csv_run):
    result = mlp("evaluate", csv_run, "--data", "mnist")
    assert result.exit_code == 2, result.output
    assert "mnist: samples of shape [28, 28] (784 values); the model takes 30 values" in result.output
