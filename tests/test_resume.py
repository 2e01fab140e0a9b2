"""Resume, interruptions and faults, with real processes and signals."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import history, same_weights

from mlpcli import files, modelfile, runs
from mlpcli.cli import main

# dropout, Nadam (u_product state), reduce-on-plateau and early stopping with best weights:
# every kind of state that must survive a restart
SETTINGS = ["--set", "data.max_train_samples=24000", "--set", "data.max_test_samples=500",
            "--set", "training.epochs=5", "--set", "optimizer=nadam",
            "--set", "schedule={type: reduce_on_plateau, patience: 1, factor: 0.5}",
            "--set", "early_stopping={monitor: val_loss, patience: 3, restore_best_weights: true}",
            "--no-plots", "-q"]


def start(run_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "mlpcli", "train", "configs/mnist.yaml",
                             "--run-dir", str(run_dir), *SETTINGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resume(run_dir, *extra):
    return subprocess.run([sys.executable, "-m", "mlpcli", "train", "--resume", str(run_dir),
                           "--no-plots", "-q", *extra], capture_output=True, text=True)


def wait_for(path, proc, timeout=60):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    proc = start(run_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return run_dir


def test_sigkill_mid_epoch_then_resume_is_bit_identical(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(run_dir / "resume" / "epoch-0002.h5", proc)
    time.sleep(0.15)  # into epoch 3
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = resume(run_dir)
    assert done.returncode == 0, done.stderr
    assert same_weights(uninterrupted / "model.h5", run_dir / "model.h5")
    ours, theirs = history(run_dir), history(uninterrupted)
    assert [r["epoch"] for r in ours] == [r["epoch"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_batch_saves_and_resumes_exactly(uninterrupted, tmp_path, sig, code):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(run_dir / "resume" / "epoch-0001.h5", proc)
    time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"mlp train --resume {run_dir}" in err and "Traceback" not in err
    saved = sorted(p.name for p in (run_dir / "resume").iterdir())
    assert any("batch" in name for name in saved) or "epoch-0002.h5" in saved
    done = resume(run_dir)
    assert done.returncode == 0, done.stderr
    assert same_weights(uninterrupted / "model.h5", run_dir / "model.h5")
    assert [r["epoch"] for r in history(run_dir)] == [r["epoch"] for r in history(uninterrupted)]


def wide_run(tmp_path, samples, epochs):
    """A config whose every saved state is about 40 MB (784 x 4096 weights and Adam's two
    slots), so that a save lasts long enough to be seen under way and killed or interrupted
    in the middle, on random data of ``samples`` rows: 16 a batch, one in five for
    validation, so the batches cost little and start-up is quick."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "wide.npz", x_train=rng.random((samples, 784), np.float32),
             y_train=rng.integers(0, 10, samples))
    config = tmp_path / "wide.yaml"
    config.write_text(f"""
name: wide
data: {{dataset: npz, path: {tmp_path / "wide.npz"}, validation_split: 0.2}}
model:
  input_shape: [784]
  layers: [{{type: dense, units: 4096, activation: relu}}, {{type: dense, units: 10, activation: softmax}}]
loss: sparse_categorical_crossentropy
training: {{epochs: {epochs}, batch_size: 16, processes: 1}}
checkpoint: {{save_best_only: false}}
""")
    return config, tmp_path / "run"


def train_process(*args):
    return subprocess.Popen([sys.executable, "-m", "mlpcli", "train", *args, "--no-plots", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def poll(condition, proc, timeout=120):
    """``condition()``'s first true value, checked every millisecond while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)
    return value


reads_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"),
                                reason="watches the trainer's open files and signal handlers in /proc")


def model_files_being_written(proc, *folders):
    """The model files in these folders that ``proc`` has open for writing, whatever their
    names (read from /proc, so a save is seen even if it wrote to the final name)."""
    folders, found = {folder.resolve() for folder in folders}, set()
    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            path = Path(os.readlink(f"/proc/{proc.pid}/fd/{fd}"))
            with open(f"/proc/{proc.pid}/fdinfo/{fd}") as info:
                flags = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
            if path.parent in folders and path.suffix == ".h5" and flags & (os.O_WRONLY | os.O_RDWR):
                found.add(path)
    return found


def trainings_started(run_dir):
    """How many times training has started in ``run_dir`` (a start, each resume): its log's
    "Training on" lines, written once a signal no longer cuts the setup short but asks
    training to stop after its batch."""
    try:
        return (run_dir / runs.LOG_FILE).read_text(encoding="utf-8").count("\nTraining on ")
    except FileNotFoundError:
        return 0


def files_under_final_names_open(run_dir):
    for path in run_dir.rglob("*"):
        if path.name.startswith(files.TMP_PREFIX) or path.is_dir():
            continue
        if path.suffix == ".h5":
            modelfile.load(path)  # raises if partial
        elif path.name == "history.csv":
            rows = history(run_dir)
            assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))


@reads_proc
def test_second_ctrl_c_exits_at_once_and_files_stay_whole(tmp_path):
    config, run_dir = wide_run(tmp_path, samples=600, epochs=2)  # 30 batches an epoch
    states = run_dir / "resume"
    # how long writing a whole state takes here: epoch 1's, from its temporary file to its name
    first = train_process(str(config), "--run-dir", str(run_dir))
    poll(lambda: model_files_being_written(first, states), first)
    began = time.monotonic()
    poll(lambda: (states / "epoch-0001.h5").exists(), first)
    save_seconds = time.monotonic() - began
    first.kill()
    first.communicate()

    proc = train_process("--resume", str(run_dir))
    poll(lambda: trainings_started(run_dir) == 2, proc)  # epoch 2 is under way
    proc.send_signal(signal.SIGINT)
    # the first Ctrl-C was seen: the state of the middle of epoch 2 is being written
    (writing,) = poll(lambda: model_files_being_written(proc, states), proc)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    exit_seconds = time.monotonic() - sent
    assert proc.returncode == 130, err
    # it ended inside that write: sooner than a whole write takes, the state never got its
    # name, and the first Ctrl-C's way out (finish the save, say how to resume) never ran
    assert exit_seconds < save_seconds, (exit_seconds, save_seconds)
    assert writing.exists()
    assert sorted(p.name for p in states.glob("epoch-*")) == ["epoch-0001.h5"]
    assert "Resume with" not in err and "Traceback" not in err
    files_under_final_names_open(run_dir)
    # the next start removes the half-written file and finishes from epoch 1's state
    done = train_process("--resume", str(run_dir))
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert not writing.exists()
    assert [r["epoch"] for r in history(run_dir)] == ["1", "2"]


@reads_proc
def test_killed_many_times_while_writing_every_file_left_is_whole(tmp_path):
    config, run_dir = wide_run(tmp_path, samples=40, epochs=3)
    folders = run_dir / "checkpoints", run_dir / "resume"
    proc = train_process(str(config), "--run-dir", str(run_dir))
    # each epoch writes its checkpoint, then its state; counting from each start, the first
    # kill falls inside the 3rd write (epoch 2's checkpoint: epoch 1's state is whole, there
    # is something to resume from), the others alternately inside a checkpoint and a state
    for nth_write in (3, 1, 2, 1, 2, 1, 2, 1):
        seen = set()
        for _ in range(nth_write):
            (writing,) = poll(lambda: model_files_being_written(proc, *folders) - seen, proc)
            seen.add(writing)
        proc.kill()
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        files_under_final_names_open(run_dir)
        assert writing.exists(), "the kill came after the write had ended"
        proc = train_process("--resume", str(run_dir))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not list(run_dir.rglob(f"{files.TMP_PREFIX}*"))
    assert [r["epoch"] for r in history(run_dir)] == ["1", "2", "3"]


def test_damaged_newest_checkpoint_falls_back_with_warning(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(run_dir / "resume" / "epoch-0003.h5", proc)
    proc.kill()
    proc.wait()
    newest = sorted((run_dir / "resume").glob("epoch-*.h5"))[-1]
    newest.write_bytes(newest.read_bytes()[:5000])  # truncated
    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", "--resume", str(run_dir), "--no-plots"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"Warning: {newest} is not a usable checkpoint" in done.stderr  # warnings: stderr, even with -q
    assert same_weights(uninterrupted / "model.h5", run_dir / "model.h5")


def test_no_valid_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(run_dir / "resume" / "epoch-0001.h5", proc)
    proc.kill()
    proc.wait()
    for path in (run_dir / "resume").glob("*.h5"):
        path.write_bytes(b"garbage")
    done = resume(run_dir)
    assert done.returncode == 2
    assert "no valid checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert not (run_dir / "model.h5").exists()


def test_resume_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--resume", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such run folder" in result.output
    run_dir = tmp_path / "run"
    args = ["train", "configs/quick.yaml", "--run-dir", str(run_dir), "-q", "--no-plots",
            "--set", "data.max_train_samples=500", "--set", "training.epochs=2"]
    assert runner.invoke(main, args).exit_code == 0
    result = runner.invoke(main, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 2 and "already finished (2 epochs)" in result.output
    assert "--set training.epochs=N" in result.output
    result = runner.invoke(main, ["train", "--resume", str(run_dir), "-q", "--no-plots",
                                  "--set", "training.epochs=3"])
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in history(run_dir)] == ["1", "2", "3"]
    text = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(text.replace("batch_size: 128", "batch_size: -5"))
    result = runner.invoke(main, ["train", "--resume", str(run_dir), "--set", "training.epochs=4"])
    assert result.exit_code == 2 and "no longer validates" in result.output
    assert "training.batch_size: must be in [1, inf), got -5" in result.output
    result = runner.invoke(main, ["train", "configs/quick.yaml", "--resume", str(run_dir)])
    assert result.exit_code == 2 and "--resume RUN_DIR" in result.output


def test_second_trainer_on_the_same_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("")
    with runs.RunLock(run_dir):
        result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(run_dir)])
        assert result.exit_code == 2  # not empty: refused before even locking
        os.unlink(run_dir / "config.yaml")
    proc = start(tmp_path / "busy", "--set", "training.epochs=30")
    wait_for(tmp_path / "busy" / "resume" / "epoch-0001.h5", proc)
    second = resume(tmp_path / "busy")
    readers = [subprocess.run([sys.executable, "-m", "mlpcli", "evaluate", str(tmp_path / "busy"),
                               "--checkpoint", "last"], capture_output=True, text=True),
               subprocess.run([sys.executable, "-m", "mlpcli", "plot", str(tmp_path / "busy")],
                              capture_output=True, text=True)]
    proc.kill()
    proc.wait()
    assert second.returncode == 2 and "another `mlp train`" in second.stderr
    for reader in readers:
        assert reader.returncode == 0, reader.stderr


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import h5py

    run_dir = tmp_path / "run"
    real_save, real_create = modelfile.save, h5py.Group.create_dataset
    failing = {"on": False}

    def save(path, *args, **kwargs):
        failing["on"] = path.name == "model-02.h5"
        try:
            return real_save(path, *args, **kwargs)
        finally:
            failing["on"] = False

    def create_dataset(self, *args, **kwargs):
        if failing["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_create(self, *args, **kwargs)

    monkeypatch.setattr(modelfile, "save", save)
    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--run-dir", str(run_dir), "--no-plots",
                                       "--set", "data.max_train_samples=500", "--set", "training.epochs=3"])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert "model-02.h5: no space left on the device" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["model-01.h5"]
    modelfile.load(run_dir / "checkpoints" / "model-01.h5")
    assert not list(run_dir.rglob(f"{files.TMP_PREFIX}*"))
    # the run can go on from its last good state once there is space again
    done = CliRunner().invoke(main, ["train", "--resume", str(run_dir), "--no-plots", "-q"])
    assert done.exit_code == 0, done.output
    assert [r["epoch"] for r in history(run_dir)] == ["1", "2", "3"]
