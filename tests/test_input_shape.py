"""model.input_shape left out of a config: read from the data's headers (csv, npz,
image_folder) by load_config, written into the run, checked against the layers; resolve
itself reads no file."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from mlpcli import modelfile
from mlpcli.cli import main
from mlpcli.config import load_config, resolve
from mlpcli.data.npy import NpzArchive
from mlpcli.errors import ConfigError, DataError

LAYERS = "[{type: dense, units: 4, activation: relu}, {type: dense, units: 2, activation: softmax}]"


def write_csv(path, features=3, rows=40):
    rng = np.random.default_rng(0)
    lines = [",".join([f"f{j}" for j in range(features)] + ["label"])]
    lines += [",".join([*(f"{v:.3f}" for v in rng.standard_normal(features)), str(i % 2)]) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(folder, data, layers=LAYERS, extra=""):
    """A config without model.input_shape; ``data`` is the YAML flow mapping of its data section."""
    path = folder / "c.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: shape
        data: {data}
        model: {{layers: {layers}}}
        training: {{epochs: 2, batch_size: 8}}
        {extra}"""))
    return path


def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args), "--no-plots"])


def test_resolve_reads_no_file_and_leaves_the_shape_to_load_config(tmp_path):
    cfg = resolve({"data": {"dataset": "csv", "path": str(tmp_path / "absent.csv")},
                   "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}})
    assert cfg["model"]["input_shape"] is None


def test_csv_shape_is_read_from_the_header_and_written_into_the_run(tmp_path):
    write_csv(tmp_path / "train.csv", features=3)
    config = write_config(tmp_path, "{dataset: csv, path: train.csv}")
    run_dir = tmp_path / "run"
    result = train(config, "--run-dir", run_dir)
    assert result.exit_code == 0, result.output
    assert "model.input_shape: [3] (inferred from train.csv: 3 feature columns)" in result.output
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["input_shape"] == [3]
    assert (run_dir / "config.yaml").read_text().count("input_shape:\n  - 3\n")  # a plain list
    loaded = modelfile.load(run_dir / "model.h5")
    assert loaded.model.input_shape == (3,) and loaded.config["model"]["input_shape"] == [3]
    # the run's config.yaml is complete: resuming it reads no header and goes on
    result = train("--resume", run_dir, "--set", "training.epochs=3")
    assert result.exit_code == 0, result.output
    assert "inferred" not in result.output and "Epoch 3/3" in result.output


def test_only_headers_are_read(tmp_path, monkeypatch):
    """The data of an .npz array is left to the loader; a CSV file's rows are read (its categorical
    columns add a feature per category), and a bad row is the loader's error."""
    (tmp_path / "train.csv").write_text("a,b,label\n1,2\n" + "9" * 3_000_000 + "\n")
    with pytest.raises(DataError, match=r"train\.csv: line 2: 2 fields, but the header \(line 1\) has 3"):
        load_config(write_config(tmp_path, "{dataset: csv, path: train.csv}"))

    def no_data(*_):
        raise AssertionError("the array data was read")

    monkeypatch.setattr(NpzArchive, "read", no_data)
    np.savez_compressed(tmp_path / "d.npz", x_train=np.zeros((6, 7)), y_train=np.zeros(6))
    assert load_config(write_config(tmp_path, "{dataset: npz, path: d.npz}"))["model"]["input_shape"] == [7]


@pytest.mark.parametrize("text, problem", [("", "the file is empty"), ("a,a,label\n", "appears more than once"),
                                           ("a,b,target\n", "no label column named 'label'"),
                                           ("label\n", "has only the label column")])
def test_a_header_that_gives_no_features_is_the_loaders_error(tmp_path, text, problem):
    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        load_config(write_config(tmp_path, "{dataset: csv, path: train.csv}"))
    assert str(info.value).startswith(f"{tmp_path / 'train.csv'}: ")


def test_dry_run_shows_where_the_shape_came_from(tmp_path):
    write_csv(tmp_path / "train.csv", features=5)
    result = train(write_config(tmp_path, "{dataset: csv, path: train.csv}"), "--dry-run")
    assert result.exit_code == 0, result.output
    first, rest = result.output.split("\n", 1)
    assert first == "model.input_shape: [5] (inferred from train.csv: 5 feature columns)"
    assert yaml.safe_load(rest.split("Model:")[0].split("Layer (type)")[0])["model"]["input_shape"] == [5]


def test_a_given_shape_prints_no_inference_line(tmp_path):
    write_csv(tmp_path / "train.csv", features=5)
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{dataset: csv, path: train.csv}}\nmodel: {{input_shape: [5], layers: {LAYERS}}}\n")
    result = train(config, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "inferred" not in result.output


def test_npz_shape_is_x_train_sample_shape_read_from_its_header(tmp_path):
    np.savez_compressed(tmp_path / "d.npz", x_train=np.zeros((6, 4, 5), np.float32),
                        y_train=np.arange(6) % 2)
    cfg = load_config(write_config(tmp_path, "{dataset: npz, path: d.npz}",
                                   layers=f"[{{type: flatten}}, {LAYERS[1:]}"))
    assert cfg["model"]["input_shape"] == [4, 5]


def test_a_layer_that_does_not_fit_the_inferred_shape_is_a_config_error(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((6, 4, 5), np.float32), y_train=np.arange(6) % 2)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, "{dataset: npz, path: d.npz}"))
    (problem,) = info.value.problems
    assert problem.startswith("model.layers[0]: ")
    assert f"(model.input_shape [4, 5] was inferred from {tmp_path / 'd.npz'})" in problem


@pytest.mark.parametrize("color_mode, shape", [("grayscale", [5, 7]), ("rgb", [5, 7, 3])])
def test_image_folder_shape_is_the_first_image_size(tmp_path, color_mode, shape):
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        Image.new("L", (7, 5)).save(tmp_path / "images" / label / "0.png")  # 7 wide, 5 high
    cfg = load_config(write_config(tmp_path, f"{{dataset: image_folder, path: images, color_mode: {color_mode}}}",
                                   layers=f"[{{type: flatten}}, {LAYERS[1:]}"))
    assert cfg["model"]["input_shape"] == shape


@pytest.mark.parametrize("data, named", [("{dataset: csv, path: gone.csv}", "gone.csv: file not found"),
                                         ("{dataset: npz, path: gone.npz}", "gone.npz: file not found"),
                                         ("{dataset: image_folder, path: gone}", "gone: folder not found")])
def test_data_that_cannot_be_read_is_the_loaders_error_not_a_traceback(tmp_path, data, named):
    config = write_config(tmp_path, data)
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", str(config), "--runs-root",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and named in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()


def test_sweep_over_a_config_without_shape(tmp_path):
    write_csv(tmp_path / "train.csv", features=3)
    config = write_config(tmp_path, "{dataset: csv, path: train.csv}")  # a path relative to the config
    # a process of its own: the pool's spawn context leaves multiprocessing's resource tracker as a
    # child of whoever ran the sweep, which later tests that count child processes would see
    done = subprocess.run([sys.executable, "-m", "mlpcli", "sweep", str(config), "--grid", "training.batch_size=8,16",
                           "--set", "training.epochs=1", "--no-plots", "--runs-root", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    (folder,) = (p for p in (tmp_path / "runs").iterdir() if not p.is_symlink())  # latest names it too
    trials = sorted(p for p in folder.iterdir() if p.name.startswith("trial-"))
    assert len(trials) == 2
    for trial in trials:
        assert yaml.safe_load((trial / "config.yaml").read_text())["model"]["input_shape"] == [3]
