"""Run folders: links resolved once, `latest`, half-made folders, temporaries, resume/ contents,
what --resume may change, and runs interrupted after their last epoch. Real processes and signals."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mlpcli import files, run_models, runs
from mlpcli.cli import main

SMALL = ["--set", "data.max_train_samples=1000", "--set", "data.max_test_samples=200"]


def mlp(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mlpcli", *map(str, args)], capture_output=True,
                          text=True, timeout=300, **kwargs)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "mlpcli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def wait_until(condition, proc=None, timeout=120, what="the condition"):
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{what} never came"
        time.sleep(0.01)


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def snapshot(folder):
    """Every file under ``folder`` with its bytes (but the log and the lock)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("train.log", ".lock")}


def interrupted_run(run_dir, epochs=3, sig=signal.SIGINT):
    """A quick run stopped by ``sig`` in its second epoch or later."""
    proc = start("train", "configs/quick.yaml", "--run-dir", run_dir, "--no-plots", "-q", *SMALL,
                 "--set", f"training.epochs={epochs}")
    wait_until(lambda: (run_dir / "resume" / "epoch-0001.h5").exists(), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    return err


# ---------------------------------------------------------------- 1: links resolved once

def test_resume_through_latest_writes_only_into_its_own_run_while_latest_moves(tmp_path):
    root = tmp_path / "runs"
    quick = ["configs/quick.yaml", "--runs-root", root, "--no-plots", "-q", *SMALL]
    # run A, stopped early; then resumed through `latest` with far more epochs than it will get
    proc = start("train", *quick, "--set", "training.epochs=100000")
    wait_until(lambda: list(root.glob("quick-*/resume/epoch-0001.h5")), proc)
    proc.send_signal(signal.SIGINT)
    assert proc.communicate(timeout=120) and proc.returncode == 130
    first = (root / "latest").resolve()
    resumed = start("train", "--resume", root / "latest", "--no-plots")
    wait_until(lambda: "Resuming" in (first / "train.log").read_text(), resumed)
    # run B starts meanwhile and moves `latest`
    second = mlp("train", *quick, "--set", "training.epochs=1", "--set", "seed=7")
    assert second.returncode == 0, second.stderr
    other = (root / "latest").resolve()
    assert other != first
    # A goes on writing after the move: wait for two more of its epochs, then stop it
    moved_at = len(history(first))
    wait_until(lambda: len(history(first)) >= moved_at + 2, resumed)
    resumed.send_signal(signal.SIGINT)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 130, err
    epochs = history(first)
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= moved_at + 2
    assert f"--resume {first}" in err  # how to go on names the real folder, not the link
    # B holds only what B wrote
    assert history(other) == [1]
    assert [p.name for p in (other / "resume").iterdir()] == ["epoch-0001.h5"]
    assert json.loads((other / "results.json").read_text())["epochs_run"] == 1
    assert "Resuming" not in (other / "train.log").read_text()
    assert f"Run folder: {root / 'latest'} -> {first}" in out


def test_commands_given_a_link_say_where_it_led_and_json_stays_pure(tmp_path):
    root = tmp_path / "runs"
    done = invoke("train", "configs/quick.yaml", "--runs-root", root, "--no-plots", "-q", *SMALL,
                  "--set", "training.epochs=1")
    assert done.exit_code == 0, done.output
    real = (root / "latest").resolve()
    np.save(tmp_path / "rows.npy", np.zeros((2, 784), np.uint8))
    result = mlp("predict", "--npy", tmp_path / "rows.npy", "--run", root / "latest", "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["source"] for line in result.stdout.splitlines()] == [f"{tmp_path / 'rows.npy'}[{i}]" for i in range(2)]
    assert f"Run folder: {root / 'latest'} -> {real}" in result.stderr
    for args in (["evaluate", "--runs-root", root], ["plot", root / "latest"], ["compare", root / "latest"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert f"Run folder: {root / 'latest'} -> {real}" in result.stderr, args


# ---------------------------------------------------------------- 5: what --resume may change

def test_resume_refuses_keys_that_do_not_fit_the_saved_state_before_writing_anything(tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir)
    before = snapshot(run_dir)
    result = invoke("train", "--resume", run_dir, "--set", "data.max_train_samples=2000",
                    "--set", "training.batch_size=64", "--set", "training.epochs=5")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "data.max_train_samples: cannot change when resuming (the run has 1000 (int), --set gives " \
           "2000 (int)); a resumed run may change only training.epochs" in result.output
    assert "training.batch_size: cannot change when resuming" in result.output
    assert "training.epochs: cannot" not in result.output
    assert snapshot(run_dir) == before  # config.yaml, history, states: nothing written
    # a plain --resume still works, and a change of threads is allowed, with a note
    result = invoke("train", "--resume", run_dir, "--no-plots", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert "Note: training.threads changes from null to 1;" in result.output
    assert history(run_dir) == [1, 2, 3]


# ---------------------------------------------------------------- 6: stopped after the last epoch

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_run_stopped_after_its_last_epoch_is_finished_by_resume(tmp_path, sig):
    for attempt in range(4):  # the signal must land between the last epoch and results.json
        run_dir = tmp_path / f"run{attempt}"
        proc = start("train", "configs/quick.yaml", "--run-dir", run_dir, *SMALL, "--set", "training.epochs=2")
        wait_until(lambda: (run_dir / "resume" / "epoch-0002.h5").exists(), proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        if not (run_dir / "results.json").exists():
            break
    else:  # the plots alone take a second or more here: four misses mean the window is gone
        pytest.fail("the signal never landed between the last epoch and results.json in 4 tries")
    assert proc.returncode in ((130,) if sig == signal.SIGINT else (-signal.SIGKILL,)), err
    if sig == signal.SIGINT:
        assert "Traceback" not in err and f"Finish with: mlp train --resume {run_dir}" in err
    done = mlp("train", "--resume", run_dir)
    assert done.returncode == 0, done.stderr
    assert "writing the final files" in done.stdout
    assert history(run_dir) == [1, 2]
    assert json.loads((run_dir / "results.json").read_text())["epochs_run"] == 2
    assert (run_dir / "plots" / "loss.png").is_file()
    assert mlp("evaluate", run_dir).returncode == 0
    again = mlp("train", "--resume", run_dir)
    assert again.returncode == 2 and "already finished (2 epochs)" in again.stderr


# ---------------------------------------------------------------- 7: temporaries of live writers

def test_resume_removes_only_temporaries_whose_writer_is_gone(tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    try:
        (run_dir / "plots").mkdir()
        live = run_dir / "plots" / f"{files.TMP_PREFIX}{writer.pid}-abc123.png"
        live.write_bytes(b"a figure being drawn")
        stale = run_dir / "resume" / f"{files.TMP_PREFIX}{gone}-def456.h5"
        stale.write_bytes(b"half a state")
        foreign = run_dir / f"{files.TMP_PREFIX}notes.txt"
        foreign.write_text("not ours to remove")
        result = invoke("train", "--resume", run_dir, "--no-plots")
        assert result.exit_code == 0, result.output
        assert "Removed 1 temporary file(s)" in result.output
        assert live.read_bytes() == b"a figure being drawn" and foreign.exists() and not stale.exists()
    finally:
        writer.kill()
        writer.wait()


# ---------------------------------------------------------------- 8: making the folder, `latest`

def test_signal_before_training_starts_leaves_no_run_folder(tmp_path):
    root = tmp_path / "runs"
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start("train", "configs/quick.yaml", "--runs-root", root, "--no-plots")
        wait_until(lambda: any(p.name.startswith("quick-") for p in root.glob("*")), proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, err
        assert "before training started; the new run folder was removed" in err and "Traceback" not in err
        assert not root.exists(), "a half-made run folder was left"


def test_latest_that_is_not_our_link_is_used_or_refused_never_replaced(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "latest").write_text("my notes")
    args = ["train", "configs/quick.yaml", "--runs-root", root, "--no-plots", *SMALL, "--set", "training.epochs=1"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert f"Warning: {root / 'latest'} is a file, not a link mlp made, so it was left alone" in result.output
    assert (root / "latest").read_text() == "my notes"
    result = invoke("evaluate", "--runs-root", root)
    assert result.exit_code == 2 and f"{root / 'latest'}: is a file, not a link to a run folder" in result.output
    # a real run folder named latest is what `latest` names
    (root / "latest").unlink()
    assert invoke("train", "configs/quick.yaml", "--run-dir", root / "latest", "--no-plots", "-q", *SMALL,
                  "--set", "training.epochs=1").exit_code == 0
    assert "left alone" in invoke(*args).output and (root / "latest").is_dir()
    result = invoke("evaluate", "--runs-root", root)
    assert result.exit_code == 0 and str(root / "latest" / "evaluation.json") in result.output
    # a link to a run that was removed is named, not skipped
    os.rename(root / "latest", tmp_path / "elsewhere")
    (root / "latest").symlink_to("gone")
    result = invoke("predict", "--npy", "x.npy", "--runs-root", root)
    assert result.exit_code == 2 and "latest: points to gone, which does not exist" in result.output


# ---------------------------------------------------------------- 9: stray entries in resume/

def test_stray_entries_in_resume_are_skipped_with_a_warning(tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir)
    resume = run_dir / "resume"
    (resume / "epoch-abc.h5").write_bytes(b"?")
    (resume / "epoch-0009.h5").mkdir()
    (resume / "notes.txt").write_text("mine")
    result = invoke("train", "--resume", run_dir, "--no-plots")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for name in ("epoch-abc.h5", "notes.txt"):
        assert f"Warning: {resume / name} is not a saved state mlp wrote; ignored" in result.output
    assert f"Warning: {resume / 'epoch-0009.h5'} is not a file; ignored" in result.output
    assert history(run_dir) == [1, 2, 3] and (resume / "notes.txt").read_text() == "mine"


def test_folder_where_model_h5_goes_is_refused_before_training(tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir)
    (run_dir / "model.h5").mkdir()
    before = snapshot(run_dir)
    result = invoke("train", "--resume", run_dir, "--no-plots")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: {run_dir / 'model.h5'}: is a folder, where mlp writes a file" in result.output
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------- 10: names

def test_names_the_file_system_refuses_fail_before_data_and_leave_nothing(tmp_path):
    root = tmp_path / "runs"
    result = invoke("train", "configs/quick.yaml", "--runs-root", root, "--set", "name=" + "n" * 300)
    assert result.exit_code == 1, result.output
    assert f"Error: {root / ('n' * 300)}" in result.output and "File name too long" in result.output
    assert not root.exists()
    long_dir = tmp_path / "deeper" / ("d" * 300)
    result = invoke("train", "configs/quick.yaml", "--run-dir", long_dir)
    assert result.exit_code == 1 and "File name too long" in result.output, result.output
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- found by a hostile review

def test_latest_moves_only_to_a_run_that_a_signal_no_longer_takes_back(tmp_path):
    """A signal while the new run's summary is printed (stdout a slow pipe) stops the run after
    a batch, saved; `latest` never names a folder that was removed."""
    root = tmp_path / "runs"
    wide = tmp_path / "wide.yaml"  # a summary of ~2,000 lines fills the pipe and blocks the print
    layers = [{"type": "dense", "units": 2, "activation": "relu"}] * 2000
    wide.write_text(yaml.safe_dump({"name": "wide", "data": {"dataset": "mnist", "max_train_samples": 200,
                                                              "max_test_samples": 50},
                                    "model": {"input_shape": [784], "layers": [
                                        *layers, {"type": "dense", "units": 10, "activation": "softmax"}]},
                                    "training": {"epochs": 1, "batch_size": 8, "processes": 1}}))
    proc = start("train", wide, "--runs-root", root, "--no-plots")  # nobody reads its stdout yet
    wait_until(lambda: (root / "latest").is_symlink(), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    run_dir = (root / "latest").resolve()
    assert run_dir.is_dir() and (run_dir / runs.CONFIG_FILE).is_file()
    assert run_models.resume_states(run_dir) and f"Resume with: mlp train --resume {run_dir}" in err


def test_resume_refuses_epochs_that_would_drop_the_epoch_under_way(tmp_path):
    for attempt in range(3):  # the signal must land inside epoch 2, not at its edge
        run_dir = tmp_path / f"run{attempt}"
        proc = start("train", "configs/quick.yaml", "--run-dir", run_dir, "--no-plots", "-q", *SMALL,
                     "--set", "training.epochs=3", "--set", "training.batch_size=2")  # 450 batches an epoch
        wait_until(lambda: (run_dir / runs.RESUME_DIR / run_models.resume_state_name(1)).exists(), proc)
        time.sleep(0.05)  # past the end of epoch 1, where a signal stops the run between epochs
        proc.send_signal(signal.SIGINT)
        assert proc.communicate(timeout=120) and proc.returncode == 130
        newest = run_models.resume_states(run_dir)[0].name
        if "batch" in newest:
            break
    assert newest.startswith(run_models.resume_state_name(1)[:-3] + "-batch-"), newest
    done = 1
    before = snapshot(run_dir)
    result = invoke("train", "--resume", run_dir, "--no-plots", "--set", f"training.epochs={done}")
    assert result.exit_code == 2, result.output
    assert f"part-way through epoch {done + 1}" in result.output and f"give {done + 1} or more" in result.output
    assert snapshot(run_dir) == before


def test_a_refused_state_is_not_counted_among_the_two_kept(tmp_path):
    run_dir = tmp_path / "run"
    interrupted_run(run_dir, epochs=4)
    garbage = run_dir / runs.RESUME_DIR / run_models.resume_state_name(9999)
    garbage.write_bytes(b"not a model file")
    result = invoke("train", "--resume", run_dir, "--no-plots")
    assert result.exit_code == 0, result.output
    assert f"Warning: {garbage} is not a usable checkpoint" in result.output
    kept = [p.name for p in run_models.resume_states(run_dir)]
    assert kept == [garbage.name, run_models.resume_state_name(4), run_models.resume_state_name(3)]
