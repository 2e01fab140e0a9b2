"""`mlp sweep` end to end on tiny MNIST trials: local processes, a real Dask LocalCluster,
failed trials, --resume, the expansion of grids, random ranges and sweep: sections, and a
sweep's processes under Ctrl-C, SIGTERM and SIGKILL (real processes and signals)."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import invoke, read_rows, sweep_dir

from mlpcli.config import load_config
from mlpcli.errors import ConfigError, MlpError
from mlpcli.parallel import usable_processes
from mlpcli.sweep_spec import format_value, plan_sweep, random_trials

TINY = ["--set", "data.max_train_samples=600", "--set", "data.max_test_samples=200",
        "--set", "training.epochs=2", "--set", "training.threads=1"]
GRID = ["--grid", "training.batch_size=32,64", "--grid", "optimizer.learning_rate=0.001,0.01"]
METRICS = ("params", "best_epoch", "monitor", "best_value", "final_loss", "final_accuracy",
           "final_val_loss", "final_val_accuracy")
RUN_FILES = {"config.yaml", "summary.txt", "history.csv", "model.h5", "results.json",
             "diagnostics.json", "train.log", "checkpoints", "resume"}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    result = invoke(["sweep", "configs/quick.yaml", *GRID, *TINY, "--workers", 2, "--no-plots",
                     "--runs-root", root])
    assert result.exit_code == 0, result.output
    return sweep_dir(root), result.output


@pytest.fixture(scope="module")
def dask_sweep(tmp_path_factory):
    pytest.importorskip("dask.distributed")
    root = tmp_path_factory.mktemp("dask")
    result = invoke(["sweep", "configs/quick.yaml", *GRID, *TINY, "--workers", 2, "--no-plots",
                     "--executor", "dask", "--runs-root", root])
    assert result.exit_code == 0, result.output
    return sweep_dir(root), result.output


def test_local_grid_makes_one_run_folder_per_trial(local_sweep):
    folder, output = local_sweep
    assert folder.name.startswith("quick-sweep-")
    rows = read_rows(folder)
    assert [r["trial"] for r in rows] == ["trial-001", "trial-002", "trial-003", "trial-004"]
    assert [(r["training.batch_size"], r["optimizer.learning_rate"]) for r in rows] == [
        ("32", "0.001"), ("32", "0.01"), ("64", "0.001"), ("64", "0.01")]
    assert all(r["status"] == "ok" and r["error"] == "" for r in rows)
    assert {r["params"] for r in rows} == {"50890"} and {r["monitor"] for r in rows} == {"val_loss"}
    for row in rows:
        assert row["best_epoch"] in ("1", "2") and float(row["seconds"]) > 0
        assert float(row["best_value"]) <= float(row["final_val_loss"]) + 1e-12
        trial = folder / row["trial"]
        assert RUN_FILES <= {p.name for p in trial.iterdir()}
        cfg = yaml.safe_load((trial / "config.yaml").read_text())
        assert cfg["training"]["batch_size"] == int(row["training.batch_size"])
        assert cfg["optimizer"]["learning_rate"] == float(row["optimizer.learning_rate"])
        assert cfg["seed"] == 0 and cfg["training"]["threads"] == 1 and cfg["training"]["epochs"] == 2
    # different learning rates really trained differently
    assert rows[0]["final_loss"] != rows[1]["final_loss"]
    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    assert spec["grid"] == {"training.batch_size": [32, 64], "optimizer.learning_rate": [0.001, 0.01]}
    assert "training.epochs=2" in spec["set"] and spec["executor"] == "local" and spec["workers"] == 2
    assert (folder / "compare-loss.png").read_bytes().startswith(b"\x89PNG")
    assert (folder / "compare-accuracy.png").is_file()
    for n in range(1, 5):
        assert f"[{n}/4] trial-00" in output
    assert "Recommended: trial-00" in output and "<- recommended" in output


def test_dask_local_cluster_gives_the_same_metrics(local_sweep, dask_sweep):
    local_rows, dask_rows = read_rows(local_sweep[0]), read_rows(dask_sweep[0])
    assert len(dask_rows) == 4
    for a, b in zip(local_rows, dask_rows):
        assert b["status"] == "ok", b
        assert {k: a[k] for k in ("trial", *METRICS)} == {k: b[k] for k in ("trial", *METRICS)}
    for row in dask_rows:
        trial = dask_sweep[0] / row["trial"]
        assert RUN_FILES <= {p.name for p in trial.iterdir()}
        # the run was trained in a temporary folder on the worker and its files shipped back
        assert "mlp-trial-" in (trial / "train.log").read_text().splitlines()[0]
        assert (trial / "checkpoints" / "model-02.h5").stat().st_size > 0
        local = local_sweep[0] / row["trial"] / "history.csv"
        strip = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]
        assert strip((trial / "history.csv").read_text()) == strip(local.read_text())
    assert "Dask LocalCluster of 2 worker(s)" in dask_sweep[1]


def test_dask_scheduler_address(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        result = invoke(["sweep", "configs/quick.yaml", "--grid", "seed=1,2", *TINY, "--no-plots",
                         "--executor", "dask", "--scheduler", address, "--runs-root", tmp_path])
    assert result.exit_code == 0, result.output
    assert f"on Dask scheduler {address}" in result.output
    rows = read_rows(sweep_dir(tmp_path))
    assert [(r["seed"], r["status"]) for r in rows] == [("1", "ok"), ("2", "ok")]
    assert rows[0]["final_loss"] != rows[1]["final_loss"]  # the grid varies the seed
    assert yaml.safe_load((sweep_dir(tmp_path) / "sweep.yaml").read_text())["scheduler"] == address


def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    result = invoke(["sweep", "configs/quick.yaml", "--grid", "training.batch_size=64,0",
                     "--grid", "optimizer.learning_rate=0.001,1.0e+30", *TINY, "--no-plots",
                     "--runs-root", tmp_path])
    assert result.exit_code == 0, result.output
    rows = {r["trial"]: r for r in read_rows(sweep_dir(tmp_path))}
    assert rows["trial-001"]["status"] == "ok" and float(rows["trial-001"]["best_value"]) > 0
    assert rows["trial-002"]["status"] == "failed" and "nan" in rows["trial-002"]["error"]
    for name in ("trial-003", "trial-004"):  # batch_size 0: a bad value, refused before training
        assert rows[name]["status"] == "failed"
        assert "training.batch_size: must be in [1, inf), got 0" in rows[name]["error"]
    assert "trial-002 FAILED" in result.output and "Traceback" not in result.output


def test_resume_runs_only_the_unfinished_trials(local_sweep, tmp_path):
    folder = tmp_path / local_sweep[0].name
    shutil.copytree(local_sweep[0], folder)
    before = read_rows(folder)
    rows = [dict(r, status="pending") if r["trial"] == "trial-002" else r
            for r in before if r["trial"] != "trial-004"]  # trial-004 never started
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(before[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.rmtree(folder / "trial-004")
    (folder / "trial-002" / "results.json").unlink()  # as if killed mid-run
    kept = {n: (folder / n / "model.h5").stat().st_mtime_ns for n in ("trial-001", "trial-003")}

    result = invoke(["sweep", "--resume", folder, "--workers", 1])
    assert result.exit_code == 0, result.output
    assert "2 of 4 trial(s) to run" in result.output
    assert "trial-002 ok" in result.output and "trial-004 ok" in result.output
    assert "trial-001 ok" not in result.output and "trial-003 ok" not in result.output
    assert {n: (folder / n / "model.h5").stat().st_mtime_ns for n in kept} == kept
    after = read_rows(folder)
    assert all(r["status"] == "ok" for r in after)
    for a, b in zip(before, after):  # the same seeds give the same numbers again
        assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}
    assert (folder / "trial-004" / "model.h5").is_file()


def interrupted_copy(local_sweep, tmp_path):
    """A copy of the local sweep whose trial-002 stopped after its first epoch of two."""
    folder = tmp_path / local_sweep[0].name
    shutil.copytree(local_sweep[0], folder)
    before = read_rows(folder)
    trial = folder / "trial-002"
    config = yaml.safe_load((trial / "config.yaml").read_text())
    shutil.rmtree(trial)
    one_epoch = tmp_path / "one-epoch.yaml"
    one_epoch.write_text(yaml.safe_dump({**config, "training": {**config["training"], "epochs": 1}}))
    result = invoke(["train", one_epoch, "--run-dir", trial, "-q", "--no-plots"])
    assert result.exit_code == 0, result.output
    (trial / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (trial / "results.json").unlink()
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(before[0]))
        writer.writeheader()
        writer.writerows(dict(r, status="interrupted") if r["trial"] == "trial-002" else r for r in before)
    return folder, trial


def test_resume_continues_an_interrupted_trial_from_its_saved_state(local_sweep, tmp_path):
    folder, trial = interrupted_copy(local_sweep, tmp_path)
    before = read_rows(local_sweep[0])

    result = invoke(["sweep", "--resume", folder, "--workers", 1])
    assert result.exit_code == 0, result.output
    assert "1 of 4 trial(s) to run" in result.output and "(1 continuing where interrupted)" in result.output
    assert "Resuming" in (trial / "train.log").read_text()
    with open(trial / "history.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]
    # continued, it ends exactly where the uninterrupted trial did
    (a,) = [r for r in before if r["trial"] == "trial-002"]
    (b,) = [r for r in read_rows(folder) if r["trial"] == "trial-002"]
    assert b["status"] == "ok" and {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}


def test_bad_sweeps_are_refused_cleanly(tmp_path, monkeypatch):
    cases = [
        (["--grid", "training.batchsize=32,64"], "training.batchsize: unknown key (did you mean 'batch_size'?)"),
        (["--grid", "training.batch_size=0,-1"], "training.batch_size: must be in [1, inf), got -1"),
        ([], "nothing to sweep"),
        (["--random", 3], "--random N needs one or more --range"),
        (["--random", 3, "--range", "optimizer.learning_rate=0:0.1:log"], "log range needs a low end above 0"),
        (["--grid", "training.epochs=1", "--random", 2, "--range", "seed=1:5"], "not both"),
        (["--grid", "training.epochs=1", "--scheduler", "tcp://127.0.0.1:8786"], "use it with --executor dask"),
    ]
    for args, message in cases:
        result = invoke(["sweep", "configs/quick.yaml", *args, "--runs-root", tmp_path])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output, (args, result.output)
    result = invoke(["sweep", "--resume", tmp_path / "nope"])
    assert result.exit_code == 2 and "no such sweep folder" in result.output
    result = invoke(["sweep", "--resume", tmp_path, "--grid", "seed=1,2"])
    assert result.exit_code == 2 and "give no CONFIG, --grid" in result.output
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "sweep.yaml").write_text("trials: [{name: ../../victim, overrides: {}}]\n")
    result = invoke(["sweep", "--resume", hostile])
    assert result.exit_code == 2 and "each with a name trial-NNN" in result.output
    shutil.rmtree(hostile)
    # without Dask installed, --executor dask says how to get it
    for name in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)
    result = invoke(["sweep", "configs/quick.yaml", "--grid", "seed=1,2", "--executor", "dask",
                     "--runs-root", tmp_path])
    assert result.exit_code == 2 and "pip install 'mlpcli[dask]'" in result.output
    assert not any(tmp_path.iterdir())  # nothing was created by any refused sweep


def test_sweep_section_in_the_config(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        **yaml.safe_load(open("configs/quick.yaml")),
        "data": {"dataset": "csv", "path": "data.csv"},
        "sweep": {"name": "lr-sweep", "grid": {"optimizer.learning_rate": ["1e-4", 0.01]},
                  "set": {"training.epochs": 4}, "workers": 3}}))
    plan = plan_sweep(config, sets=["training.batch_size=16"])
    assert plan.name == "lr-sweep" and plan.workers == 3
    assert [t["overrides"] for t in plan.trials] == [{"optimizer.learning_rate": 0.0001},
                                                     {"optimizer.learning_rate": 0.01}]
    base = yaml.safe_load(plan.base_text)
    assert "sweep" not in base and base["training"] == {"epochs": 4, "batch_size": 16}
    assert base["data"]["path"] == str(tmp_path / "data.csv")  # relative to the config file
    # the command line replaces the section's grid
    plan = plan_sweep(config, grid_items=["seed=1,2,3"])
    assert [t["name"] for t in plan.trials] == ["trial-001", "trial-002", "trial-003"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {layers: [{type: dense, units: 1}]}\nsweep: {grid: {training.epochs: 3}, "
                   "colour: red}\n")
    with pytest.raises(ConfigError) as err:
        plan_sweep(bad)
    assert "sweep.grid.training.epochs: must be a non-empty list" in str(err.value)
    assert "sweep.colour: unknown key" in str(err.value)


def test_mnist_batch_sweep_config():
    plan = plan_sweep("configs/mnist-batch-sweep.yaml")
    assert [t["overrides"] for t in plan.trials] == [{"training.batch_size": b} for b in (64, 128, 256)]
    base = yaml.safe_load(plan.base_text)
    assert base["model"] == yaml.safe_load(open("configs/mnist.yaml"))["model"]


def test_random_trials_are_reproducible_and_log_uniform():
    ranges = {"optimizer.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
              "training.batch_size": {"low": 16, "high": 256, "log": False},
              "model.layers[2].rate": {"low": 0.1, "high": 0.5, "log": False}}
    cfg = load_config("configs/mnist.yaml")
    trials = random_trials(ranges, 400, 0, cfg)
    assert trials == random_trials(ranges, 400, 0, cfg) != random_trials(ranges, 400, 1, cfg)
    lrs = [t["optimizer.learning_rate"] for t in trials]
    assert all(1e-4 <= v <= 1e-2 for v in lrs)
    # log-uniform: about half below the geometric middle 1e-3 (uniform would put ~9% there)
    assert 0.4 < sum(v < 1e-3 for v in lrs) / len(lrs) < 0.6
    assert all(isinstance(t["training.batch_size"], int) and 16 <= t["training.batch_size"] <= 256
               for t in trials)
    assert all(isinstance(t["model.layers[2].rate"], float) for t in trials)


def test_override_values_read_back_as_given():
    for value in (1e-30, 0.001, 2.5e+20, 64, -3, "relu", "1e-4", [1, 2.5e-05], True, None,
                  {"type": "l2", "l2": 1e-05}):
        assert yaml.safe_load(format_value(value)) == value, value


def test_grid_option_errors_name_the_key():
    with pytest.raises(MlpError, match="--grid training.epochs: no values given"):
        plan_sweep("configs/quick.yaml", grid_items=["training.epochs="])


# ---------------------------------------------------------------- a sweep's processes and signals

SMALL = ["--set", "data.max_train_samples=2000", "--set", "data.max_test_samples=200", "--no-plots"]


def start_sweep(root, *args):
    """`mlp sweep` in a child process, in a session of its own (as a shell starts a job)."""
    return subprocess.Popen([sys.executable, "-m", "mlpcli", "sweep", "configs/quick.yaml", *SMALL,
                             "--runs-root", str(root), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_until(check, proc, what, timeout=120):
    deadline = time.time() + timeout
    while not check():
        assert proc.poll() is None, (what, proc.communicate())
        assert time.time() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.01)


def saved_state(root, *trials):
    """A check: each of ``trials`` has saved a state (resume/ keeps only the two newest)."""
    return lambda: all(any(root.glob(f"*/{name}/resume/epoch-*.h5")) for name in trials)


def descendants(pid):
    """The pids of every process below ``pid``, from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def running(pid):
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def assert_all_end(pids, timeout=10):
    deadline = time.time() + timeout
    while any(running(p) for p in pids):
        left = {p: Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")[:80] for p in pids
                if running(p)}
        assert time.time() < deadline, f"still running {timeout} s after the sweep ended: {left}"
        time.sleep(0.05)


def rows_of(root):
    return {r["trial"]: r for r in read_rows(sweep_dir(root))}


def test_ctrl_c_starts_no_further_trial_and_resume_finishes_them(tmp_path):
    """One Ctrl-C (SIGINT to the job's process group, as a terminal sends it) during trial 1 of 3
    with one worker: trial 1 stops after its batch with its state saved, trials 2 and 3 never
    start, and --resume finishes all three."""
    proc = start_sweep(tmp_path, "--grid", "training.epochs=20,2,2", "--workers", 1)
    wait_until(saved_state(tmp_path, "trial-001"), proc, "trial-001's first epoch")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    folder = sweep_dir(tmp_path)
    assert f"Resume with: mlp sweep --resume {folder}" in err and "Traceback" not in err
    assert not (folder / "trial-002").exists() and not (folder / "trial-003").exists()
    rows = rows_of(tmp_path)
    assert [rows[n]["status"] for n in ("trial-001", "trial-002", "trial-003")] == [
        "interrupted", "pending", "pending"]
    assert any((folder / "trial-001" / "resume").glob("epoch-*.h5"))

    result = invoke(["sweep", "--resume", folder])
    assert result.exit_code == 0, result.output
    assert "3 of 3 trial(s) to run" in result.output and "(1 continuing where interrupted)" in result.output
    assert all(r["status"] == "ok" for r in read_rows(folder))
    with open(folder / "trial-001" / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 21))


def test_a_running_sweep_is_locked_and_sigterm_saves_every_trial(tmp_path):
    """While a sweep runs, `--resume` of its folder is refused and changes nothing; SIGTERM to the
    sweep stops both running trials after their batch with their states saved (exit 143), and
    no process of the sweep is left."""
    proc = start_sweep(tmp_path, "--grid", "seed=1,2", "--set", "training.epochs=200", "--workers", 2)
    wait_until(saved_state(tmp_path, "trial-001", "trial-002"), proc, "both trials' first epoch")
    folder = sweep_dir(tmp_path)
    trial_folders = {n: (folder / n).stat().st_ino for n in ("trial-001", "trial-002")}
    results = (folder / "results.csv").read_bytes()
    second = subprocess.run([sys.executable, "-m", "mlpcli", "sweep", "--resume", str(folder)],
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip() == (f"Error: {folder}: another `mlp sweep` (pid {proc.pid}) is writing "
                                     "to this sweep; wait for it to finish or stop it first")
    assert {n: (folder / n).stat().st_ino for n in trial_folders} == trial_folders
    assert (folder / "results.csv").read_bytes() == results

    tree = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Resume with:" in err and "Traceback" not in err
    assert_all_end(tree)
    rows = rows_of(tmp_path)
    for name in trial_folders:
        assert rows[name]["status"] == "interrupted"
        assert any((folder / name / "resume").glob("epoch-*.h5")), name
        assert not (folder / name / "results.json").exists()


def test_killed_sweep_leaves_no_process_and_resume_keeps_the_finished_trial(tmp_path):
    """SIGKILL of the sweep: its workers save their trial's state and end on their own, the
    resource tracker with them; a trial that finished after the sweep last wrote results.csv
    is taken from its folder by --resume, not trained again."""
    proc = start_sweep(tmp_path, "--grid", "training.epochs=30,8", "--workers", 2,
                       "--set", "training.threads=1")
    wait_until(saved_state(tmp_path, "trial-002"), proc, "trial-002's first epoch")
    os.kill(proc.pid, signal.SIGSTOP)  # the sweep records nothing more from here on
    folder = sweep_dir(tmp_path)
    wait_until(lambda: (folder / "trial-002" / "results.json").exists(), proc, "trial-002's end")
    tree = descendants(proc.pid)
    assert len(tree) >= 3  # two workers and the resource tracker
    proc.kill()
    proc.wait()
    assert_all_end(tree, timeout=10)
    rows = rows_of(tmp_path)
    assert rows["trial-002"]["status"] == "pending"  # the sweep never heard it finished
    assert any((folder / "trial-001" / "resume").glob("epoch-*.h5"))
    model = (folder / "trial-002" / "model.h5").stat().st_mtime_ns

    result = invoke(["sweep", "--resume", folder])
    assert result.exit_code == 0, result.output
    assert "1 of 2 trial(s) to run" in result.output and "(1 continuing where interrupted)" in result.output
    assert "trial-002 ok" not in result.output
    assert (folder / "trial-002" / "model.h5").stat().st_mtime_ns == model
    rows = {r["trial"]: r for r in read_rows(folder)}
    assert rows["trial-002"]["status"] == "ok" and rows["trial-002"]["best_epoch"] in map(str, range(1, 9))
    assert rows["trial-001"]["status"] == "ok"


@pytest.mark.skipif(usable_processes(2) < 2, reason="training.processes needs Linux on x86-64 with 2 cores")
def test_killed_sweep_stops_the_training_helpers_of_its_worker(tmp_path):
    """--workers 1 with training.processes: 2: SIGKILL of the sweep mid-epoch leaves none of the
    worker, its forked helper or the resource tracker running."""
    proc = start_sweep(tmp_path, "--grid", "seed=1,2", "--set", "training.epochs=200",
                       "--set", "training.processes=2", "--workers", 1)
    wait_until(lambda: any(descendants(p) for p in descendants(proc.pid)), proc, "a training helper")
    tree = descendants(proc.pid)
    proc.kill()
    proc.wait()
    assert_all_end(tree, timeout=10)


def test_damaged_sweep_folder_files_are_refused_and_change_nothing(tmp_path):
    """`--resume` of a sweep folder whose base-config.yaml, sweep.yaml or results.csv is damaged:
    one line naming the file and the problem, exit 2, and every file left as it was."""
    folder = tmp_path / "quick-sweep"
    (folder / "trial-001" / "resume").mkdir(parents=True)
    (folder / "trial-001" / "config.yaml").write_text("name: quick\n")
    (folder / "trial-001" / "resume" / "epoch-0001.h5").write_bytes(b"state")
    good = {"sweep.yaml": yaml.safe_dump({"name": "quick-sweep", "executor": "local", "workers": 1, "trials": [
                {"name": "trial-001", "overrides": {"seed": 1}}, {"name": "trial-002", "overrides": {"seed": 2}}]}),
            "base-config.yaml": open("configs/quick.yaml").read(),
            "results.csv": "trial,status,seed\ntrial-001,interrupted,1\ntrial-002,pending,2\n"}
    damaged = [
        ("base-config.yaml", b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe binary", "cannot read"),
        ("base-config.yaml", b"model: [1, 2\nseed: 0\n", "invalid YAML at line"),
        ("base-config.yaml", b"- 1\n- 2\n", "the top level must be a mapping of keys, got list"),
        ("base-config.yaml", None, "no such file"),
        ("base-config.yaml", "name: caf\xe9\n".encode("latin-1"), "cannot read"),
        ("base-config.yaml", b"colour: red\n", "colour: unknown key"),
        ("sweep.yaml", b"trials: [\n", "invalid YAML at line"),
        ("sweep.yaml", b"\xff\xfe\x00garbage", "cannot read"),
        ("sweep.yaml", yaml.safe_dump({"trials": [{"name": "trial-001"}, {"name": "trial-001"}]}).encode(),
         "names a trial twice (trial-001)"),
        ("sweep.yaml", yaml.safe_dump({"executor": "slurm", "trials": [{"name": "trial-001"}]}).encode(),
         "executor: must be one of"),
        ("sweep.yaml", yaml.safe_dump({"workers": "many", "trials": [{"name": "trial-001"}]}).encode(),
         "workers: must be a whole"),
        ("sweep.yaml", b"trials: []\n", "has no list of trials"),
        ("results.csv", b"\x00\x00\x00\x01garbage\x00\n\x00", "is not a sweep's results"),
        ("results.csv", b"\xff\xfe\xfa binary", "cannot be read"),
        ("results.csv", b"trial,status\ntrial-001," + b"x" * 200_000 + b"\n", "cannot be read"),
    ]
    for name, content, message in damaged:
        for good_name, text in good.items():
            (folder / good_name).write_text(text)
        if content is None:
            (folder / name).unlink()
        else:
            (folder / name).write_bytes(content)
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
        result = invoke(["sweep", "--resume", folder])
        assert result.exit_code == 2, (name, content, result.output)
        if message == "colour: unknown key":  # every problem named, each with the file
            assert f"  - {folder / name}: colour: unknown key" in result.output, result.output
        else:
            assert result.output.startswith(f"Error: {folder / name}: "), result.output
            assert result.output.count("\n") == 1, result.output
        assert message in result.output and "Traceback" not in result.output, (name, result.output)
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------- found by a hostile review

def test_a_trial_whose_resume_fails_keeps_its_saved_states(local_sweep, tmp_path):
    """Only a trial whose saved states are all unusable starts over; any other failure of its
    resume (here a folder where its model.h5 goes) is recorded and its folder kept."""
    folder, trial = interrupted_copy(local_sweep, tmp_path)
    (trial / "model.h5").unlink()
    (trial / "model.h5").mkdir()
    states = sorted(p.name for p in (trial / "resume").iterdir())
    result = invoke(["sweep", "--resume", folder, "--workers", 1])
    assert result.exit_code == 0, result.output
    (row,) = [r for r in read_rows(folder) if r["trial"] == "trial-002"]
    assert row["status"] == "failed" and "model.h5: is a folder" in row["error"]
    assert sorted(p.name for p in (trial / "resume").iterdir()) == states
    with open(trial / "history.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]


def test_resume_through_a_link_works_on_the_real_sweep_folder(local_sweep, tmp_path):
    folder, trial = interrupted_copy(local_sweep, tmp_path)
    link = tmp_path / "current"
    link.symlink_to(folder, target_is_directory=True)
    result = invoke(["sweep", "--resume", link, "--workers", 1])
    assert result.exit_code == 0, result.output
    assert f"Run folder: {link} -> {folder}" in result.output
    assert f"Sweep folder: {folder}" in result.output
    assert all(r["status"] == "ok" for r in read_rows(folder))


def test_a_signal_while_the_sweep_folder_is_made_leaves_no_half_made_folder(tmp_path):
    for attempt in range(3):
        root = tmp_path / f"runs{attempt}"
        proc = start_sweep(root, "--grid", "training.batch_size=32,64", "--no-plots")
        wait_until(lambda: any(root.glob("*")), proc, "the sweep folder")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143 and "Traceback" not in err, err
        folders = [p for p in root.glob("*") if p.is_dir()]
        # no folder, or a whole one that --resume takes
        assert folders == [] or all((f / "sweep.yaml").is_file() and (f / "base-config.yaml").is_file()
                                    for f in folders), [sorted(os.listdir(f)) for f in folders]
        assert "Resume with" in err or "the sweep folder was removed" in err


def test_compare_without_paths_takes_the_newest_sweep(local_sweep, tmp_path):
    folder = local_sweep[0]
    result = invoke(["compare", "--runs-root", folder.parent, "--no-plots"])
    assert result.exit_code == 0, result.output
    assert f"Comparing the newest sweep: {folder}" in result.output
    assert all(f"trial-00{n}" in result.output for n in (1, 2, 3, 4))
    empty = invoke(["compare", "--runs-root", tmp_path, "--no-plots"])
    assert empty.exit_code == 2 and f"{tmp_path}: no sweeps found" in empty.output
