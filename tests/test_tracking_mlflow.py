"""`logging.mlflow`: a run logged to a local file store and read back with MLflow's client (params,
metrics per epoch equal to history.csv, artifacts, tags), the default `mlruns/` beside the runs
root, an unreachable tracking server (warned once, training goes on), a resumed run continuing
the same MLflow run and TensorBoard folder (real processes and SIGINT), and a sweep as a parent
run with one nested run per trial."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import history, interrupt_training

from mlpcli import __version__
from mlpcli.cli import main

mlflow_tracking = pytest.importorskip("mlflow.tracking")

TINY = ["--set", "data.max_train_samples=300", "--set", "data.max_test_samples=100",
        "--set", "training.epochs=2", "--set", "training.threads=1"]
LONG = "x" * 7000  # longer than any MLflow param value may be


def client(uri):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store on request
    return mlflow_tracking.MlflowClient(uri)


def recorded(folder):
    return json.loads((folder / "mlflow.json").read_text())


def assert_metrics_equal_history(mlflow, run_id, run_dir):
    rows = history(run_dir)
    for column in (c for c in rows[0] if c != "epoch"):
        logged = sorted((m.step, m.value) for m in mlflow.get_metric_history(run_id, column))
        assert logged == [(int(r["epoch"]), float(r[column])) for r in rows], column


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory):
    """A run logged with logging.mlflow: true, so to the default store beside its runs root."""
    root = tmp_path_factory.mktemp("mlflow")
    run_dir = root / "runs" / "run"
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--runs-root", str(root / "runs"),
                                       "--run-dir", str(run_dir), "-q", *TINY,
                                       "--set", "logging.mlflow=true", "--set", f"sweep.note={LONG}"])
    assert result.exit_code == 0, result.output
    return root, run_dir


def test_the_default_store_is_mlruns_beside_the_runs_root(mlflow_run):
    root, run_dir = mlflow_run
    uri = (root / "mlruns").as_uri()
    assert recorded(run_dir)["tracking_uri"] == uri
    assert f"tracking_uri: {uri}" in (run_dir / "config.yaml").read_text()
    (experiment,) = client(uri).search_experiments(filter_string="name = 'mlpcli'")
    (run,) = client(uri).search_runs([experiment.experiment_id])
    assert run.info.run_id == recorded(run_dir)["run_id"]
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert f"MLflow: run {run.info.run_id} in experiment mlpcli at {uri}\n" in (run_dir / "train.log").read_text()


def test_params_metrics_tags_and_artifacts(mlflow_run):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    _, run_dir = mlflow_run
    mlflow = client(recorded(run_dir)["tracking_uri"])
    run_id = recorded(run_dir)["run_id"]
    run = mlflow.get_run(run_id)
    params = run.data.params
    assert params["training.epochs"] == "2" and params["model.layers.0.units"] == "64"
    assert params["optimizer.type"] == "adam" and params["data.max_train_samples"] == "300"
    assert params["logging.mlflow.parent_run_id"] == "null"
    assert params["sweep.note"] == LONG[:MAX_PARAM_VAL_LENGTH]  # cut to MLflow's limit, not refused
    assert run.data.tags["mlpcli.version"] == __version__
    assert run.data.tags["mlpcli.run_folder"] == str(run_dir.resolve())
    assert "mlflow.parentRunId" not in run.data.tags
    assert_metrics_equal_history(mlflow, run_id, run_dir)
    test = json.loads((run_dir / "results.json").read_text())["test"]
    assert {k: run.data.metrics[f"test_{k}"] for k in test} == test
    top = {a.path for a in mlflow.list_artifacts(run_id)}
    assert top == {"model.h5", "history.csv", "config.yaml", "plots"}
    plots = {a.path for a in mlflow.list_artifacts(run_id, "plots")}
    assert plots and plots == {f"plots/{p.name}" for p in (run_dir / "plots").iterdir()}


@pytest.mark.parametrize("setting, message", [
    ("logging.mlflow.experiment=5", "logging.mlflow.experiment: must be a string, got 5"),
    ("logging.mlflow.uri=x", "logging.mlflow.uri: unknown key"),
    ("logging.mlflow=[1]", "logging.mlflow: must be true, false, null or a mapping"),
])
def test_mlflow_config_errors_name_the_key(tmp_path, setting, message):
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "run"),
                                       "--set", setting])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_missing_mlflow_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    for name in ("mlflow", "mlflow.tracking"):  # what a missing package gives: ImportError
        monkeypatch.setitem(sys.modules, name, None)
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(tmp_path / "run"),
                                       *TINY, "--set", f"logging.mlflow.tracking_uri={tmp_path.as_uri()}"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "pip install 'mlpcli[mlflow]'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_unreachable_tracking_server_is_warned_once_and_training_goes_on(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST_")}  # as a user has it
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", "configs/quick.yaml", "--run-dir",
                           str(tmp_path / "run"), "-q", "--no-plots", *TINY,
                           "--set", f"logging.mlflow.tracking_uri={uri}"],
                          check=False, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60  # MLflow's own retries held it about 4 minutes
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning: MLflow")]
    assert len(warnings) == 1 and uri in warnings[0] and "training goes on" in warnings[0]
    assert (tmp_path / "run" / "results.json").exists()
    assert [int(r["epoch"]) for r in history(tmp_path / "run")] == [1, 2]
    assert not (tmp_path / "run" / "mlflow.json").exists()


@pytest.mark.slow
def test_resume_continues_the_same_mlflow_run_and_tensorboard_folder(tmp_path):
    """SIGINT in epoch 2, then --resume: one MLflow run with each epoch once, as history.csv says;
    the TensorBoard folder gets a second event file whose purge drops what an earlier session
    logged for an epoch the saved state does not hold (a step-2 loss of 99 written in between)."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboardX import SummaryWriter

    run_dir, uri = tmp_path / "run", (tmp_path / "mlruns").as_uri()
    settings = ["--set", "data.max_train_samples=24000", "--set", "data.max_test_samples=500",
                "--set", "training.epochs=3", "--set", "training.processes=1", "--set", "training.threads=1",
                "--no-plots", "--tensorboard", "--set", f"logging.mlflow.tracking_uri={uri}"]
    interrupt_training(run_dir, settings, after_epoch=1)
    run_id = recorded(run_dir)["run_id"]
    with SummaryWriter(str(run_dir / "tensorboard")) as stray:  # an epoch logged after the saved state
        stray.add_scalar("loss", 99.0, 2)
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", "--resume", str(run_dir), "--no-plots", "-q"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    mlflow = client(uri)
    assert recorded(run_dir)["run_id"] == run_id
    (run,) = mlflow.search_runs([mlflow.get_experiment_by_name("mlpcli").experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert_metrics_equal_history(mlflow, run_id, run_dir)

    reader = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"),
                                                size_guidance={event_accumulator.SCALARS: 0})
    reader.Reload()
    losses = [(e.step, e.value) for e in reader.Scalars("loss")]
    assert losses == [(int(r["epoch"]), pytest.approx(float(r["loss"]), rel=1e-6)) for r in history(run_dir)]
    assert len(list((run_dir / "tensorboard").iterdir())) == 3  # two sessions and the stray writer


@pytest.mark.slow
def test_a_sweep_is_a_parent_run_with_a_nested_run_per_trial(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    result = CliRunner().invoke(main, ["sweep", "configs/quick.yaml", "--grid", "training.batch_size=32,64",
                                       *TINY, "--workers", "2", "--no-plots", "--runs-root", str(tmp_path / "runs"),
                                       "--set", f"logging.mlflow.tracking_uri={uri}"])
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in (tmp_path / "runs").iterdir() if not p.is_symlink()]
    mlflow = client(uri)
    runs = {r.info.run_id: r for r in mlflow.search_runs([mlflow.get_experiment_by_name("mlpcli").experiment_id])}
    parent = runs.pop(recorded(folder)["run_id"])
    assert parent.info.run_name == folder.name and parent.info.status == "FINISHED"
    assert "results.csv" in {a.path for a in mlflow.list_artifacts(parent.info.run_id)}
    with open(folder / "results.csv", newline="") as f:
        trials = [row["trial"] for row in csv.DictReader(f)]
    assert sorted(r.info.run_name for r in runs.values()) == trials == ["trial-001", "trial-002"]
    for trial in trials:
        child = runs[recorded(folder / trial)["run_id"]]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert_metrics_equal_history(mlflow, child.info.run_id, folder / trial)


def test_a_cross_validation_run_is_a_parent_run_with_its_folds_nested_and_their_mean(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    run_dir = tmp_path / "cv"
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--folds", "2", *TINY, "--no-plots",
                                       "--run-dir", str(run_dir), "--set", f"logging.mlflow.tracking_uri={uri}"])
    assert result.exit_code == 0, result.output
    mlflow = client(uri)
    runs = {r.info.run_id: r for r in mlflow.search_runs([mlflow.get_experiment_by_name("mlpcli").experiment_id])}
    parent = runs.pop(recorded(run_dir)["run_id"])
    assert f"MLflow: run {parent.info.run_id} at {uri}, one nested run per fold" in result.output
    assert parent.info.run_name == "cv" and parent.info.status == "FINISHED"
    assert parent.data.params["training.folds"] == "2"
    summary = json.loads((run_dir / "cross_validation.json").read_text())
    for stat in ("mean", "std"):
        assert parent.data.metrics[f"val_accuracy_{stat}"] == pytest.approx(summary[stat]["final"]["val_accuracy"])
        assert parent.data.metrics[f"best_val_loss_{stat}"] == pytest.approx(summary[stat]["best_value"])
        assert parent.data.metrics[f"test_loss_{stat}"] == pytest.approx(summary[stat]["test"]["loss"])
    assert "cross_validation.json" in {a.path for a in mlflow.list_artifacts(parent.info.run_id)}
    assert sorted(r.info.run_name for r in runs.values()) == ["fold-1", "fold-2"]
    for fold in ("fold-1", "fold-2"):
        child = runs[recorded(run_dir / fold)["run_id"]]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert_metrics_equal_history(mlflow, child.info.run_id, run_dir / fold)
