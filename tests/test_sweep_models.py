"""A sweep is a run to every command: `latest` names it, and evaluate, predict and plot given a
sweep folder (or nothing, when it is the newest) use its recommended trial, the one `mlp
compare` recommends, saying which; a trial's folder is a run folder; a sweep with no finished
trial is a clean error; --resume of a sweep through `mlp train` points at `mlp sweep`. And a
run's parameter count is stored as a number (old runs: counted from their model)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mlpcli import runs
from mlpcli.cli import main
from mlpcli.compare import compare
from mlpcli.errors import MlpError

SWEEP = ["sweep", "configs/quick.yaml", "--grid", "model.layers[0].units=24,8",
         "--set", "data.max_train_samples=300", "--set", "data.max_test_samples=100",
         "--set", "training.epochs=1", "--set", "training.threads=1", "--workers", "1", "--no-plots", "-q"]
QUICK_PARAMS = 50_890  # configs/quick.yaml: 784 -> 64 -> 10


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def clean_error(result, *words):
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished sweep of two trials, the newest thing under its runs root; (root, sweep folder,
    the name of the trial `mlp compare` recommends)."""
    root = tmp_path_factory.mktemp("sweeps")
    result = invoke(*SWEEP, "--runs-root", root)
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    return root, folder, compare([folder], plots=False).recommended.label


def note_of(folder, trial):
    return f"Sweep {folder}: using its recommended trial {trial} (best val_loss "


def test_latest_names_the_sweep_and_commands_given_no_folder_use_its_recommended_trial(sweep, tmp_path):
    root, folder, trial = sweep
    assert (root / "latest").is_symlink() and (root / "latest").resolve() == folder.resolve()

    result = invoke("evaluate", "--runs-root", root, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the report alone; the choice is a note on stderr
    assert report["model_file"] == str((folder / trial / "model.h5").resolve())
    assert note_of(folder, trial) in result.stderr and "give " in result.stderr
    assert (folder / trial / "evaluation.json").is_file()

    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((2, 784), dtype=np.uint8))
    result = invoke("predict", "--run", root / "latest", "--npy", rows, "--json")
    assert result.exit_code == 0, result.output
    sources = [json.loads(line)["source"] for line in result.stdout.splitlines()]
    assert sources == [f"{rows}[0]", f"{rows}[1]"]
    assert note_of(folder, trial) in result.stderr

    result = invoke("plot", "--runs-root", root)
    assert result.exit_code == 0, result.output
    assert note_of(folder, trial) in result.stderr
    assert (folder / trial / "plots" / "loss.png").is_file()


def test_a_sweep_folder_and_a_trial_folder_are_run_folders_to_every_command(sweep, tmp_path):
    _, folder, trial = sweep
    result = invoke("evaluate", folder)
    assert result.exit_code == 0, result.output
    assert note_of(folder, trial) in result.stderr
    other = "trial-001" if trial != "trial-001" else "trial-002"
    result = invoke("evaluate", folder / other, "--checkpoint", "last")
    assert result.exit_code == 0, result.output
    assert "recommended" not in result.stderr
    assert (folder / other / "evaluation-model-01.json").is_file()
    result = invoke("predict", "--run", folder / other, "--npy", _rows(tmp_path))
    assert result.exit_code == 0 and "recommended" not in result.stderr, result.output
    result = invoke("plot", folder / other)
    assert result.exit_code == 0, result.output
    assert (folder / other / "plots" / "confusion_matrix-model-01.png").is_file()


def _rows(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.zeros(784, dtype=np.float32))
    return path


def test_the_recommended_trial_is_the_one_compare_recommends(tmp_path):
    """Hand-made trials: trial-002 is within 2% of the best with fewer parameters; trial-003
    finished after its sweep was killed (results.csv still says pending) and is ranked too."""
    sweep = hand_made_sweep(tmp_path / "s", {
        "trial-001": (5000, [0.5, 0.100]), "trial-002": (900, [0.5, 0.101]),
        "trial-003": (100, [0.5, 0.1015]), "trial-004": None})
    c = compare([sweep], plots=False)
    assert c.recommended.label == "trial-003" and c.best.label == "trial-001"
    assert [e.label for e in c.unranked] == ["trial-004"]
    notes = []
    assert runs.model_folder(sweep, note=notes.append) == sweep / "trial-003"
    assert notes == [(f"Sweep {sweep}: using its recommended trial trial-003 (best val_loss 0.1015, "
                      f"100 params); give {sweep}/trial-NNN for another")]


def test_a_sweep_without_a_finished_trial_is_a_clean_error(tmp_path):
    sweep = hand_made_sweep(tmp_path / "runs" / "s", {"trial-001": None, "trial-002": None})
    (tmp_path / "runs" / "latest").symlink_to("s")
    for args in (["evaluate", sweep], ["predict", "--run", sweep, "--npy", _rows(tmp_path)], ["plot", sweep],
                 ["evaluate", "--runs-root", tmp_path / "runs"]):
        clean_error(invoke(*args), f"{sweep}: no trial of this sweep has finished yet")


def test_a_hand_made_sweep_without_finished_trials_refuses_the_api_too(tmp_path):
    sweep = hand_made_sweep(tmp_path / "s", {"trial-001": None})
    with pytest.raises(MlpError, match="no trial of this sweep has finished yet"):
        runs.model_folder(sweep)


def test_train_resume_of_a_sweep_points_at_sweep_resume(tmp_path):
    sweep = hand_made_sweep(tmp_path / "s", {"trial-001": None})
    clean_error(invoke("train", "--resume", sweep), f"--resume {sweep}: is a sweep folder",
                f"mlp sweep --resume {sweep}")


def test_the_newest_folder_may_be_a_sweep_when_there_is_no_latest_link(tmp_path):
    run = hand_made_run(tmp_path / "a-run", 10, [0.3])
    sweep = hand_made_sweep(tmp_path / "b-sweep", {"trial-001": (10, [0.2])})
    os.utime(run, (1, 1))
    assert runs.latest_run(tmp_path) == sweep
    assert runs.model_folder(None, tmp_path) == sweep / "trial-001"


def test_model_folder_of_a_model_file_is_its_run(tiny_run, tmp_path):
    assert runs.model_folder(tiny_run / "model.h5") == tiny_run
    (checkpoint,) = (tiny_run / "checkpoints").iterdir()
    assert runs.model_folder(checkpoint) == tiny_run
    stray = tmp_path / "model.h5"
    shutil.copy(tiny_run / "model.h5", stray)
    assert runs.model_folder(stray) is None


# ---------------------------------------------------------------- the parameter count

def test_parameter_count_is_stored_as_a_number_and_old_runs_count_their_model(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "summary.txt").unlink()  # not read back: it is text for people
    assert runs.param_count(run) == QUICK_PARAMS
    assert compare([run], plots=False).ranked[0].params == QUICK_PARAMS
    assert json.loads((run / runs.PARAMS_FILE).read_text()) == {"params": QUICK_PARAMS}
    (run / runs.PARAMS_FILE).unlink()  # a run made before the count was stored: its model says
    assert runs.param_count(run) == QUICK_PARAMS
    (run / "model.h5").unlink()  # stopped before model.h5: its newest checkpoint says
    assert runs.param_count(run) == QUICK_PARAMS
    shutil.rmtree(run / "checkpoints")
    assert runs.param_count(run) is None
    (run / runs.PARAMS_FILE).write_text('{"params": "many"}')
    assert runs.param_count(run) is None


def test_a_run_under_way_has_its_parameter_count(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "train", "configs/quick.yaml", "--run-dir", run,
                             "-q", "--no-plots", "--set", "data.max_train_samples=200",
                             "--set", "training.epochs=1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 120
        while not (run / "history.csv").is_file():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the first epoch never ended"
            time.sleep(0.05)
        (run / "summary.txt").unlink()  # text for people, not read back
        assert runs.param_count(run) == QUICK_PARAMS and not (run / "model.h5").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)


# ---------------------------------------------------------------- hand-made folders

def hand_made_run(folder, params, val_loss):
    """A finished run folder as compare reads it: history, config, parameter count, results."""
    folder.mkdir(parents=True)
    rows = ["epoch,loss,val_loss"] + [f"{i + 1},{1.0 - 0.1 * i},{v}" for i, v in enumerate(val_loss)]
    (folder / "history.csv").write_text("\n".join(rows) + "\n")
    cfg = {"checkpoint": {"monitor": "val_loss", "mode": "auto"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    runs.write_param_count(folder, params)
    (folder / "results.json").write_text("{}")
    return folder


def hand_made_sweep(folder, trials):
    """A sweep folder of ``trials`` ({name: (params, val_loss) of a finished run, or None: no
    folder}); its results.csv says only the first trial finished."""
    folder.mkdir(parents=True)
    for name, run in trials.items():
        if run is not None:
            hand_made_run(folder / name, *run)
    spec = {"trials": [{"name": n, "overrides": {}} for n in trials]}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec))
    first, *rest = trials
    (folder / "results.csv").write_text("trial,status,seconds,error\n" + f"{first},ok,1.0,\n"
                                        + "".join(f"{n},pending,,\n" for n in rest))
    return folder
