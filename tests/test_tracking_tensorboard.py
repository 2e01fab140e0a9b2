"""`logging.tensorboard` / `mlp train --tensorboard`: event files read back with TensorBoard's own
reader (scalars equal to history.csv, histograms per layer and epoch, the texts), the config
checks of the `logging:` section, the missing extra, and no import when logging is off."""

import math
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import history

from mlpcli.cli import main

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

SAMPLES, SPLIT, BATCH, EPOCHS = 300, 0.1, 100, 3
TINY = ["--set", f"data.max_train_samples={SAMPLES}", "--set", f"data.validation_split={SPLIT}",
        "--set", f"training.batch_size={BATCH}", "--set", f"training.epochs={EPOCHS}",
        "--set", "data.max_test_samples=100", "--set", "training.threads=1"]


def read_events(run_dir):
    """TensorBoard's reader on RUN/tensorboard, every event kept (size guidance 0)."""
    reader = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0, event_accumulator.TENSORS: 0})
    reader.Reload()
    return reader


def model_weights(run_dir):
    """{(layer name, weight name): number of weights} of the run's model.h5."""
    out = {}
    with h5py.File(run_dir / "model.h5") as f:
        weights = f["model_weights"]
        for layer in weights.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for name in weights[layer].attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                out[(layer, name.rsplit("/", 1)[-1].split(":")[0])] = weights[layer][name].size
    return out


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tensorboard") / "run"
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(run_dir), "-q",
                                       "--no-plots", "--tensorboard", *TINY])
    assert result.exit_code == 0, result.output
    return run_dir


def test_scalars_equal_history_csv_per_epoch(tensorboard_run):
    reader = read_events(tensorboard_run)
    rows = history(tensorboard_run)
    columns = [c for c in rows[0] if c != "epoch"]
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "lr"} <= set(columns)
    assert set(reader.Tags()["scalars"]) == set(columns)
    for column in columns:
        events = reader.Scalars(column)
        assert [e.step for e in events] == [int(r["epoch"]) for r in rows], column
        # event files hold float32
        assert [e.value for e in events] == [float(np.float32(r[column])) for r in rows], column


def test_histograms_per_layer_and_epoch(tensorboard_run):
    reader = read_events(tensorboard_run)
    weights = model_weights(tensorboard_run)
    assert len(weights) == 4  # two dense layers, kernel and bias
    for (layer, name), count in weights.items():
        events = reader.Histograms(f"weights/{layer}/{name}")
        assert [e.step for e in events] == list(range(1, EPOCHS + 1))
        assert all(e.histogram_value.num == count for e in events)
    batches = math.ceil(SAMPLES * (1 - SPLIT) / BATCH)
    layers = sorted({layer for layer, _ in weights})
    assert sorted(t.split("/")[1] for t in reader.Tags()["histograms"] if t.startswith("gradient_norm/")) == layers
    for layer in layers:
        events = reader.Histograms(f"gradient_norm/{layer}")
        assert [e.step for e in events] == list(range(1, EPOCHS + 1))
        for e in events:  # one norm per batch, each a positive finite number
            assert e.histogram_value.num == batches
            assert 0 < e.histogram_value.min <= e.histogram_value.max < math.inf


def test_the_run_says_where_its_event_files_are(tensorboard_run):
    log = (tensorboard_run / "train.log").read_text()
    assert f"TensorBoard: {tensorboard_run / 'tensorboard'} (view: tensorboard --logdir {tensorboard_run.parent})" in log


def test_texts_hold_the_model_summary_and_config(tensorboard_run):
    reader = read_events(tensorboard_run)
    texts = {}
    for tag in ("model_summary", "config"):
        (event,) = reader.Tensors(f"{tag}/text_summary")
        assert event.step == 0
        texts[tag] = event.tensor_proto.string_val[0].decode()
    summary = (tensorboard_run / "summary.txt").read_text().rstrip("\n")
    assert texts["model_summary"] == "\n".join("    " + line for line in summary.splitlines())
    config = (tensorboard_run / "config.yaml").read_text().rstrip("\n")
    assert texts["config"] == "\n".join("    " + line for line in config.splitlines())


@pytest.mark.parametrize("setting, message", [
    ("logging.tensorboard=3", "logging.tensorboard: must be true or false, got 3"),
    ("logging.tensorbord=true", "logging.tensorbord: unknown key"),
    ("logging=5", "logging: must be a mapping, got 5"),
])
def test_logging_config_errors_name_the_key(tmp_path, setting, message):
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "run"),
                                       "--set", setting])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_dry_run_shows_the_logging_section():
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--dry-run", "--tensorboard"])
    assert result.exit_code == 0, result.output
    assert "logging:\n  tensorboard: true\n  mlflow: null\n" in result.output


def test_missing_tensorboardx_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # what a missing package gives: ImportError
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "run"),
                                       "--tensorboard", *TINY])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "pip install 'mlpcli[tensorboard]'" in lines[0]
    assert not (tmp_path / "run").exists()  # refused before training: the new folder is taken back


def test_training_without_logging_imports_no_tracker(tmp_path):
    code = ("import sys\nfrom mlpcli.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in ('tensorboardX', 'mlflow', 'tensorboard') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, "train", "configs/quick.yaml", "--run-dir",
                           str(tmp_path / "run"), "-q", "--no-plots", *TINY, "--set", "training.epochs=1"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_resumed_run_may_turn_tensorboard_on_but_not_change_mlflow():
    from mlpcli.config import load_config, resume_changes
    from mlpcli.errors import ConfigError

    saved = load_config("configs/quick.yaml")
    assert resume_changes(saved, load_config("configs/quick.yaml", ["logging.tensorboard=true"])) == [
        ("logging.tensorboard", False, True)]
    with pytest.raises(ConfigError, match="logging.mlflow: cannot change when resuming"):
        resume_changes(saved, load_config("configs/quick.yaml", ["logging.mlflow=true"]))
