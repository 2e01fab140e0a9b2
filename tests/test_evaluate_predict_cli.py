"""`mlp evaluate` and `mlp predict` through CliRunner, on a run trained in the test."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlpcli import modelfile
from mlpcli.cli import main
from mlpcli.data.builtin import load_builtin


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """configs/mnist.yaml trained on all 48,000 training images for 6 epochs."""
    root = tmp_path_factory.mktemp("runs")
    result = invoke(["train", "configs/mnist.yaml", "--runs-root", root, "-q",
                     "--set", "training.epochs=6"])
    assert result.exit_code == 0, result.output
    return (root / "latest").resolve()


@pytest.fixture(scope="module")
def mnist_test():
    raw = load_builtin("mnist")
    return raw.x_test, raw.y_test


def test_evaluate_prints_tables_and_writes_json(mnist_run):
    result = invoke(["evaluate", mnist_run])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "accuracy:" in out and "macro avg" in out and "weighted avg" in out
    assert "confusion matrix (rows: true class, columns: predicted)" in out
    report = json.loads((mnist_run / "evaluation.json").read_text())
    assert report["checkpoint"] == "model.h5" and report["samples"] == 10000
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == 10000
    assert report["metrics"]["accuracy"] == pytest.approx(np.trace(cm) / 10000)
    assert report["metrics"]["accuracy"] > 0.97
    supports = [c["support"] for c in report["per_class"]]
    assert supports == cm.sum(axis=1).tolist()
    recall_3 = report["per_class"][3]["recall"]
    assert recall_3 == pytest.approx(cm[3, 3] / cm[3].sum())
    assert len(report["misclassified"]) == min(100, 10000 - np.trace(cm))
    wrong = report["misclassified"][0]
    assert wrong["true"] != wrong["predicted"]


def test_evaluate_checkpoints_never_overwrite_each_other(mnist_run):
    assert invoke(["evaluate", mnist_run, "--checkpoint", "2"]).exit_code == 0
    assert invoke(["evaluate", mnist_run, "--checkpoint", "last"]).exit_code == 0
    first = json.loads((mnist_run / "evaluation-model-02.json").read_text())
    last = json.loads((mnist_run / "evaluation-model-06.json").read_text())
    assert first["checkpoint"] == "model-02.h5" and last["checkpoint"] == "model-06.h5"
    assert first["loss"] != last["loss"]
    result = invoke(["evaluate", mnist_run, "--checkpoint", "best"])
    assert result.exit_code == 0, result.output
    history = (mnist_run / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    val_loss = [float(r.split(",")[header.index("val_loss")]) for r in history[1:]]
    best = int(np.argmin(val_loss)) + 1
    assert (mnist_run / f"evaluation-model-{best:02d}.json").exists()


def test_evaluate_bad_checkpoint_and_missing_run(mnist_run, tmp_path):
    result = invoke(["evaluate", mnist_run, "--checkpoint", "99"])
    assert result.exit_code == 2 and "no checkpoint of epoch 99" in result.output
    result = invoke(["evaluate", tmp_path / "nothing"])
    assert result.exit_code == 2 and "not a run folder" in result.output
    result = invoke(["evaluate", "--runs-root", tmp_path])
    assert result.exit_code == 2 and "no runs found" in result.output


def test_evaluate_foreign_model_file(mnist_run, tmp_path):
    """A model file without mlpcli's extras (as Keras writes) is evaluated on --data mnist."""
    import h5py

    foreign = tmp_path / "foreign.h5"
    foreign.write_bytes((mnist_run / "model.h5").read_bytes())
    with h5py.File(foreign, "a") as f:
        del f["mlpcli"]
    result = invoke(["evaluate", "--model", foreign, "--data", "mnist"])
    assert result.exit_code == 0, result.output
    assert "does not record how its inputs were scaled" in result.output and "--scaling unit" in result.output
    result = invoke(["evaluate", "--model", foreign, "--data", "mnist", "--scaling", "unit"])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    report = json.loads((tmp_path / "evaluation-foreign-on-mnist.json").read_text())
    ours = json.loads((mnist_run / "evaluation.json").read_text())
    assert report["metrics"]["accuracy"] == pytest.approx(ours["metrics"]["accuracy"])


def _save_png(path, array, mode):
    Image.fromarray(array, mode=mode).save(path)


def _styled_pngs(folder, images, labels):
    """MNIST test digits as a person's PNGs: inverted, scaled up, RGB, RGBA, off-centre."""
    rng = np.random.default_rng(0)
    truth = {}
    for i, (img, label) in enumerate(zip(images, labels)):
        style = i % 5
        name = f"{i:03d}.png"
        big = np.asarray(Image.fromarray(img).resize((int(rng.integers(200, 301)),) * 2, Image.BILINEAR))
        if style == 0:  # black ink on white paper, enlarged
            _save_png(folder / name, 255 - big, "L")
        elif style == 1:  # white on black, enlarged
            _save_png(folder / name, big, "L")
        elif style == 2:  # RGB, dark blue ink on white
            rgb = np.stack([255 - big, 255 - big, 255 - big // 2], axis=-1).astype(np.uint8)
            _save_png(folder / name, rgb, "RGB")
        elif style == 3:  # RGBA: black ink, transparent background
            rgba = np.zeros(big.shape + (4,), np.uint8)
            rgba[..., 3] = big
            _save_png(folder / name, rgba, "RGBA")
        else:  # off-centre on a large white canvas
            canvas = np.full((700, 900), 255, np.uint8)
            y, x = rng.integers(0, 700 - big.shape[0]), rng.integers(0, 900 - big.shape[1])
            canvas[y:y + big.shape[0], x:x + big.shape[1]] = 255 - big
            _save_png(folder / name, canvas, "L")
        truth[name] = str(label)
    return truth


def test_predict_gets_95_percent_of_styled_pngs(mnist_run, mnist_test, tmp_path):
    images, labels = mnist_test
    folder = tmp_path / "pngs"
    folder.mkdir()
    truth = _styled_pngs(folder, images[:300], labels[:300])
    result = invoke(["predict", folder, "--run", mnist_run, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 300
    correct = sum(r["class"] == truth[Path(r["source"]).name] for r in rows)
    assert correct / 300 >= 0.95, correct


def test_predict_output_top_k_and_saved_preprocessed(mnist_run, mnist_test, tmp_path):
    images, labels = mnist_test
    png = tmp_path / "digit.png"
    _save_png(png, 255 - images[0], "L")
    result = invoke(["predict", png, "--run", mnist_run, "--top-k", "5",
                     "--save-preprocessed", tmp_path / "seen"])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith(f"{png}  {labels[0]} (")  # the input as given
    assert line.count("%") == 6  # the probability and five top-k entries
    seen = np.asarray(Image.open(tmp_path / "seen" / "digit-28x28.png"))
    assert seen.shape == (28, 28)
    assert np.corrcoef(seen.ravel().astype(float), images[0].ravel().astype(float))[0, 1] > 0.8
    again = invoke(["predict", png, "--run", mnist_run, "--save-preprocessed", tmp_path / "seen"])
    assert again.exit_code == 2 and "would overwrite" in again.output


def test_predict_json_probabilities(mnist_run, mnist_test, tmp_path):
    images, _ = mnist_test
    _save_png(tmp_path / "a.png", images[1], "L")
    result = invoke(["predict", tmp_path / "a.png", "--run", mnist_run, "--json", "--top-k", "10"])
    row = json.loads(result.output)
    probs = [t["probability"] for t in row["top_k"]]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert row["class"] == row["top_k"][0]["class"]


def test_predict_npy_rows_match_model(mnist_run, mnist_test, tmp_path):
    images, labels = mnist_test
    np.save(tmp_path / "x.npy", images[:50])
    result = invoke(["predict", "--npy", tmp_path / "x.npy", "--run", mnist_run, "--json", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    model = modelfile.load(mnist_run / "model.h5").model
    expected = model.predict(images[:50].reshape(50, 784).astype(np.float32) / 255).argmax(axis=1)
    assert [int(r["class"]) for r in rows] == expected.tolist()
    assert rows[7]["source"] == f"{tmp_path / 'x.npy'}[7]"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty"),
    (b"hello, not an image", "not an image mlp can read"),
])
def test_predict_bad_files_exit_2(mnist_run, tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    result = invoke(["predict", path, "--run", mnist_run])
    assert result.exit_code == 2, result.output
    assert message.lower() in result.output.lower() and "Traceback" not in result.output


def test_predict_refuses_non_image_model(tmp_path):
    result = invoke(["train", "configs/diabetes-regression.yaml", "--run-dir", tmp_path / "r", "-q",
                     "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    png = tmp_path / "d.png"
    _save_png(png, np.eye(28, dtype=np.uint8) * 255, "L")
    result = invoke(["predict", png, "--run", tmp_path / "r"])
    assert result.exit_code == 2 and "the model was trained on table rows (give a .csv), not images" in result.output


def test_evaluate_regression_run_and_csv_data(tmp_path):
    result = invoke(["train", "configs/diabetes-regression.yaml", "--run-dir", tmp_path / "r", "-q",
                     "--set", "training.epochs=3"])
    assert result.exit_code == 0, result.output
    result = invoke(["evaluate", tmp_path / "r"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert set(report["metrics"]) == {"mae", "r2"} and report["samples"] == 88
    assert "per_class" not in report and "confusion matrix" not in result.output
    result = invoke(["evaluate", tmp_path / "r", "--data", "configs/data/diabetes_train.csv"])
    assert result.exit_code == 0, result.output
    assert "diabetes_train.csv (354 samples)" in result.output
    [other_path] = (tmp_path / "r").glob("evaluation-on-diabetes_train-*.json")
    other = json.loads(other_path.read_text())
    assert other["samples"] == 354
    copy = tmp_path / "elsewhere" / "diabetes_train.csv"
    copy.parent.mkdir()
    copy.write_text(Path("configs/data/diabetes_train.csv").read_text())
    assert invoke(["evaluate", tmp_path / "r", "--data", copy]).exit_code == 0
    assert len(list((tmp_path / "r").glob("evaluation-on-diabetes_train-*.json"))) == 2
    assert json.loads((tmp_path / "r" / "evaluation.json").read_text()) == report


def test_evaluation_numbers_match_a_direct_numpy_computation(mnist_run, mnist_test):
    assert invoke(["evaluate", mnist_run]).exit_code == 0
    report = json.loads((mnist_run / "evaluation.json").read_text())
    images, labels = mnist_test
    loaded = modelfile.load(mnist_run / "model.h5")
    p = loaded.model.predict(images.reshape(-1, 784).astype(np.float32) / np.float32(255))
    predicted = p.argmax(axis=1)
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (labels, predicted), 1)
    assert report["confusion_matrix"] == cm.tolist()
    assert report["metrics"]["accuracy"] == pytest.approx((predicted == labels).mean())
    cross_entropy = -np.log(np.clip(p[np.arange(len(labels)), labels], 1e-7, 1)).mean()
    assert report["loss"] == pytest.approx(cross_entropy, rel=1e-4)
    for k in range(10):
        tp = np.sum((predicted == k) & (labels == k))
        precision, recall = tp / np.sum(predicted == k), tp / np.sum(labels == k)
        row = report["per_class"][k]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    f1s = [r["f1"] for r in report["per_class"]]
    assert report["macro_avg"]["f1"] == pytest.approx(np.mean(f1s))
    assert report["weighted_avg"]["f1"] == pytest.approx(np.average(f1s, weights=np.bincount(labels)))
    wrong = np.flatnonzero(predicted != labels)[:100]
    assert [m["index"] for m in report["misclassified"]] == wrong.tolist()


def test_predict_npy_on_a_model_with_per_feature_scaling_of_another_shape(tmp_path):
    """Training data of shape (4, 5), standardized per feature, model input [20]."""
    rng = np.random.default_rng(0)
    x = rng.normal(50, 10, (300, 4, 5)).astype(np.float32)
    y = (x[:, 0, 0] > 50).astype(np.int64)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    (tmp_path / "c.yaml").write_text(
        "data: {dataset: npz, path: d.npz, scaling: standardize, validation_split: 0}\n"
        "model: {input_shape: [20], layers: [{type: dense, units: 1, activation: sigmoid}]}\n"
        "loss: binary_crossentropy\noptimizer: {type: adam, learning_rate: 0.05}\n"
        "training: {epochs: 40}\ncheckpoint: {monitor: loss, save_best_only: true}\n")
    assert invoke(["train", tmp_path / "c.yaml", "--run-dir", tmp_path / "r", "-q", "--no-plots"]).exit_code == 0
    np.save(tmp_path / "rows.npy", x[:50])
    result = invoke(["predict", "--npy", tmp_path / "rows.npy", "--run", tmp_path / "r", "--json", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    predicted = [int(json.loads(line)["class"]) for line in result.output.splitlines()]
    assert np.mean(np.array(predicted) == y[:50]) > 0.9
    np.save(tmp_path / "flat.npy", x[:50].reshape(50, 20))
    flat = invoke(["predict", "--npy", tmp_path / "flat.npy", "--run", tmp_path / "r", "--json", "--top-k", "1"])
    assert [int(json.loads(line)["class"]) for line in flat.output.splitlines()] == predicted


def test_evaluate_json_prints_the_report_alone_on_stdout(tiny_run, tmp_path):
    import shutil
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    done = subprocess.run([sys.executable, "-m", "mlpcli", "evaluate", str(run_dir), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert report == json.loads((run_dir / "evaluation.json").read_text())
    assert set(report["metrics"]) == {"accuracy", "auc", "pr_auc", "log_loss"} and report["samples"] > 0
    assert f"Wrote {run_dir / 'evaluation.json'}" in done.stderr
