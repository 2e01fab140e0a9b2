"""The one inference path: what goes into a model at prediction time is what it needs, said
by its record or by --scaling, never guessed in silence; evaluate and predict agree."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlpcli import modelfile
from mlpcli.cli import main
from mlpcli.errors import MlpError
from mlpcli.nn.model import Sequential
from mlpcli.predictor import Predictor

LEGACY = Path(__file__).parent / "data" / "legacy"


def mlp(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def foreign_model(path, inputs=784, classes=10, seed=0):
    """A Keras-layout file with no mlpcli record (as Keras writes one): weights only."""
    model = Sequential([{"type": "dense", "units": 16, "activation": "relu"},
                        {"type": "dense", "units": classes, "activation": "softmax"}],
                       (inputs,)).build(np.random.default_rng(seed))
    modelfile.save(path, model, loss="categorical_crossentropy")
    return model


def pixels(n=12, seed=1):
    """Rows of 784 'pixels' in 0..255, as MNIST's are."""
    return np.random.default_rng(seed).integers(0, 256, (n, 784)).astype(np.uint8)


def json_rows(output):
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def probabilities(row):
    return {t["class"]: t["probability"] for t in row["top_k"]}


def test_pre_scaled_rows_reach_a_foreign_model_as_they_are(tmp_path):
    """The Keras tutorial's X_test /= 255; model.predict(X_test): the rows are given as they are
    (today they were divided by 255 a second time)."""
    model = foreign_model(tmp_path / "m.h5")
    rows = pixels().astype(np.float32) / 255
    np.save(tmp_path / "rows.npy", rows)
    result = mlp("predict", tmp_path / "rows.npy", "--model", tmp_path / "m.h5", "--json", "--top-k", "10")
    assert result.exit_code == 0, result.output
    expected = model.predict(rows)
    for row, want in zip(json_rows(result.stdout), expected):
        got = probabilities(row)
        np.testing.assert_allclose([got[str(k)] for k in range(10)], want, rtol=1e-6)
    assert "Warning" not in result.output  # every value <= 1 and nothing divides: nothing to say


def test_raw_pixels_into_a_foreign_model_warn_and_name_the_option(tmp_path):
    model = foreign_model(tmp_path / "m.h5")
    np.save(tmp_path / "raw.npy", pixels())
    result = mlp("predict", tmp_path / "raw.npy", "--model", tmp_path / "m.h5", "--json")
    assert result.exit_code == 0, result.output
    assert "--scaling unit" in result.stderr and "does not record how its inputs were scaled" in result.stderr
    result = mlp("predict", tmp_path / "raw.npy", "--model", tmp_path / "m.h5", "--json", "--top-k", "10",
                 "--scaling", "unit")
    assert result.exit_code == 0 and "Warning" not in result.stderr
    expected = model.predict(pixels().astype(np.float32) / np.float32(255))
    got = probabilities(json_rows(result.stdout)[0])
    np.testing.assert_allclose([got[str(k)] for k in range(10)], expected[0], rtol=1e-5)


def test_evaluate_a_foreign_model_on_scaled_npz_uses_the_rows_as_they_are(tmp_path):
    model = foreign_model(tmp_path / "m.h5")
    x = pixels(40).astype(np.float32) / 255
    y = model.predict(x).argmax(axis=1)
    y[:10] = (y[:10] + 1) % 10  # 30 of 40 right
    np.savez(tmp_path / "scaled.npz", x_test=x, y_test=y)
    result = mlp("evaluate", "--model", tmp_path / "m.h5", "--data", tmp_path / "scaled.npz", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["accuracy"] == pytest.approx(0.75) and report["scaling"] == "none"
    result = mlp("evaluate", "--model", tmp_path / "m.h5", "--data", tmp_path / "scaled.npz", "--json",
                 "--scaling", "unit")
    assert "every" not in result.stderr and "already scaled" in result.stderr and "--scaling none" in result.stderr


def test_pre_scaled_rows_for_an_mlpcli_model_warn_and_scaling_none_takes_them(tiny_run, tmp_path):
    raw = pixels(5)
    np.save(tmp_path / "scaled.npy", raw.astype(np.float32) / 255)
    np.save(tmp_path / "raw.npy", raw)
    warned = mlp("predict", tmp_path / "scaled.npy", "--run", tiny_run, "--json")
    assert warned.exit_code == 0 and "already scaled" in warned.stderr and "--scaling none" in warned.stderr
    as_is = mlp("predict", tmp_path / "scaled.npy", "--run", tiny_run, "--json", "--scaling", "none")
    trained = mlp("predict", tmp_path / "raw.npy", "--run", tiny_run, "--json")
    assert "Warning" not in as_is.stderr + trained.stderr
    for a, b in zip(json_rows(as_is.stdout), json_rows(trained.stdout)):
        assert a["class"] == b["class"] and a["probability"] == pytest.approx(b["probability"], rel=1e-5)
    raw_unscaled = mlp("predict", tmp_path / "raw.npy", "--run", tiny_run, "--scaling", "none")
    assert "trained on values divided by 255" in raw_unscaled.stderr


def test_standardize_needs_the_numbers_only_training_records(tmp_path, tiny_run):
    foreign_model(tmp_path / "m.h5")
    np.save(tmp_path / "rows.npy", pixels(2))
    result = mlp("predict", tmp_path / "rows.npy", "--model", tmp_path / "m.h5", "--scaling", "standardize")
    assert result.exit_code == 2 and "does not record the training data's mean" in result.output
    result = mlp("predict", tmp_path / "rows.npy", "--run", tiny_run, "--scaling", "standardize")
    assert result.exit_code == 2 and "trained with scaling unit" in result.output


def test_a_sample_of_the_wrong_size_says_what_the_model_takes(tiny_run, tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((2, 30), np.float32))
    result = mlp("predict", tmp_path / "rows.npy", "--run", tiny_run)
    assert result.exit_code == 2
    assert "samples of shape [30] (30 values); the model takes 784 values (shape [28, 28])" in result.output


def test_npz_inputs_are_predicted_and_their_labels_scored(tiny_run, tmp_path):
    x = pixels(20)
    predictor = Predictor.open(tiny_run)
    y = predictor.outputs(predictor.prepare(x, "x")).argmax(axis=1)
    y[:5] = (y[:5] + 1) % 10
    np.savez(tmp_path / "new.npz", x=x, y=y)
    result = mlp("predict", tmp_path / "new.npz", "--run", tiny_run, "--json")
    assert result.exit_code == 0, result.output
    assert len(json_rows(result.stdout)) == 20 and json_rows(result.stdout)[3]["source"] == f"{tmp_path / 'new.npz'}[3]"
    assert "Accuracy on the 20 labelled inputs: 0.7500" in result.stderr


def test_an_old_model_file_loads_and_predicts_the_same():
    """tests/data/legacy: files mlpcli wrote before the pipeline record, and what it predicted then."""
    then = json.loads((LEGACY / "predictions.json").read_text())
    pngs = [LEGACY / name for name in ("one.png", "zero.png", "seven.png")]
    result = mlp("predict", *pngs, "--model", LEGACY / "digits-model.h5", "--json", "--top-k", "10")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr
    for row in json_rows(result.stdout):
        assert probabilities(row) == pytest.approx(then["digits_png"][Path(row["source"]).name], rel=1e-6)


def test_an_old_csv_model_predicts_the_same_from_the_csv_itself(tmp_path):
    then = json.loads((LEGACY / "predictions.json").read_text())["table_rows"]
    lines = Path("configs/data/breast_cancer_test.csv").read_text().splitlines()[:6]
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    result = mlp("predict", tmp_path / "rows.csv", "--model", LEGACY / "table-model.h5", "--json")
    assert result.exit_code == 0, result.output
    rows = json_rows(result.stdout)
    assert len(rows) == 5
    for row, old in zip(rows, then):
        assert probabilities(row) == pytest.approx(old, rel=1e-6)


def test_predictor_refuses_scaling_it_does_not_know(tiny_run):
    with pytest.raises(MlpError, match="--scaling: must be one of unit, none, standardize"):
        Predictor.open(tiny_run, scaling="log")


def write_columns(path, header, rows, order):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(r[j] for j in order) for r in [header] + rows) + "\n")
    return path


def test_csv_columns_in_any_order_predict_the_same(csv_run, tmp_path):
    lines = Path("configs/data/breast_cancer_test.csv").read_text().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    order = list(range(len(header)))
    shuffled = list(np.random.default_rng(0).permutation(order))
    a = write_columns(tmp_path / "a" / "new.csv", header, rows, order)
    b = write_columns(tmp_path / "b" / "new.csv", header + ["note"], [r + ["x"] for r in rows],
                      shuffled + [len(header)])
    first = mlp("predict", a, "--run", csv_run, "--out", tmp_path / "a.csv")
    second = mlp("predict", b, "--run", csv_run, "--out", tmp_path / "b.csv")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    def without_sources(path):  # a/new.csv:2 and b/new.csv:2: the same rows of two files
        return [line.split(",", 1)[1] for line in path.read_text().splitlines()]
    assert without_sources(tmp_path / "a.csv") == without_sources(tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text().splitlines()[1].startswith(f"{b}:2,")
    assert f"Wrote {len(rows)} predictions" in first.output
    assert "Accuracy on the" in first.output  # the label column is used for a score
    assert "column(s) not used by the model: note" in second.output
    missing = write_columns(tmp_path / "c" / "new.csv", header, rows, order[1:])
    result = mlp("predict", missing, "--run", csv_run)
    assert result.exit_code == 2 and header[0] in result.output and "new.csv" in result.output


def test_csv_predictions_equal_evaluate_on_the_same_file(csv_run, tmp_path):
    data = Path("configs/data/breast_cancer_test.csv")
    result = mlp("evaluate", csv_run, "--data", data, "--json")
    assert result.exit_code == 0, result.output
    accuracy = json.loads(result.stdout)["metrics"]["accuracy"]
    result = mlp("predict", data, "--run", csv_run, "--out", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    assert f"Accuracy on the 114 labelled inputs: {accuracy:.4f}" in result.output
    predicted = [json.loads(line)["class"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert set(predicted) <= {"benign", "malignant"} and len(predicted) == 114


def test_a_foreign_flat_model_resizes_images_when_told_and_says_so(tmp_path):
    """A Keras file of 784 flat inputs: digit centring by default (with a note naming --images),
    a plain resize with --images resize, whose note gives the size resized to."""
    from PIL import Image

    foreign_model(tmp_path / "m.h5")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (56, 56)).astype(np.uint8)).save(tmp_path / "big.png")
    result = mlp("predict", tmp_path / "big.png", "--model", tmp_path / "m.h5", "--images", "resize")
    assert result.exit_code == 0, result.output
    assert "resized to the model's 28x28 pixels" in result.stderr and "(56x56)" in result.stderr
    result = mlp("predict", tmp_path / "big.png", "--model", tmp_path / "m.h5")
    assert result.exit_code == 0 and "centred as MNIST digits" in result.stderr and "--images resize" in result.stderr
