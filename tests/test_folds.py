"""K-fold cross-validation: `mlp train --folds K`, `mlp sweep --folds K` and how `mlp compare` ranks
cross-validation runs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from mlpcli import config as config_mod
from mlpcli import runs
from mlpcli.cli import main
from mlpcli.compare import compare, format_comparison
from mlpcli.data.split import kfold_split
from mlpcli.trainer import build_model, random_streams
from mlpcli.training_data import prepare_data

QUICK = ["--no-plots", "--set", "data.max_train_samples=600", "--set", "training.epochs=2"]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def env():
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


# ---------------------------------------------------------------- the split

@pytest.mark.parametrize("k", [2, 3, 5])
def test_stratified_folds_partition_the_samples_and_keep_class_proportions(k):
    y = np.random.default_rng(7).choice(4, size=203, p=[0.5, 0.3, 0.15, 0.05])
    folds = kfold_split(y, k, np.random.default_rng(0))
    joined = np.concatenate(folds)
    assert len(folds) == k
    assert sorted(joined.tolist()) == list(range(len(y)))  # disjoint, and every row in one
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for fold in folds:
        for cls in range(4):
            expected = np.count_nonzero(y == cls) * len(fold) / len(y)
            assert abs(np.count_nonzero(y[fold] == cls) - expected) <= 1


def test_folds_are_seeded():
    y = np.arange(100) % 3
    first = kfold_split(y, 4, np.random.default_rng(5))
    again = kfold_split(y, 4, np.random.default_rng(5))
    other = kfold_split(y, 4, np.random.default_rng(6))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_regression_targets_get_plain_folds():
    y = np.linspace(0, 1, 31, dtype=np.float32)[:, None]
    folds = kfold_split(y, 3, np.random.default_rng(0))
    assert sorted(np.concatenate(folds).tolist()) == list(range(31))
    assert sorted(len(f) for f in folds) == [10, 10, 11]
    with pytest.raises(ValueError, match="31 training samples"):
        kfold_split(y, 32, np.random.default_rng(0))


def test_fold_runs_validate_on_the_folds_of_train_plus_validation_and_keep_the_test_data():
    raw = yaml.safe_load(Path("configs/quick.yaml").read_text())
    raw["data"].update(max_train_samples=300, max_test_samples=50)

    def data(**training):
        cfg = config_mod.resolve({**raw, "training": {**raw["training"], **training}})
        streams = random_streams(cfg["seed"])
        return prepare_data(cfg, build_model(cfg, streams), streams["split"])

    plain = data()
    held_out = [data(folds=3, fold=i) for i in (1, 2, 3)]
    def samples(features):  # the rows of a split, as stored
        return features.take_raw(np.arange(len(features)))

    all_rows = np.concatenate([samples(plain.train[0]), samples(plain.val[0])]).reshape(300, -1)
    for fold in held_out:
        assert len(fold.train[0]) + len(fold.val[0]) == 300
        assert np.array_equal(samples(fold.test[0]), samples(plain.test[0]))
        assert np.array_equal(fold.test[1], plain.test[1])
    validated = np.concatenate([samples(f.val[0]) for f in held_out]).reshape(300, -1)
    # the three validation folds are the 300 rows, each once
    assert sorted(map(bytes, validated)) == sorted(map(bytes, all_rows))
    assert np.array_equal(data(folds=3, fold=2).val[1], held_out[1].val[1])  # the same seed, the same fold


# ---------------------------------------------------------------- mlp train --folds

@pytest.mark.parametrize("args, key", [
    (["--folds", "700"], "training.folds: got 700"),  # above the smallest class of 600 samples
    (["--folds", "3", "--set", "data.max_train_samples=5"], ("has 1 sample(s), and stratified folds need one of "
                                                             "each class in every fold; too few samples for "
                                                             "cross-validation")),  # not "allowed: 2 to 1"
    (["--set", "training.folds=1"], "training.folds"),
    (["--set", "training.fold=2"], "training.fold"),
    (["--set", "training.folds=2", "--set", "training.fold=3"], "training.fold: must be between 1 and"),
    (["--set", "training.folds=2", "--set", "training.fold=" + "9" * 4000],  # a huge number, cut short
     "training.fold: must be between 1 and training.folds (2), got <an integer of"),
])
def test_bad_folds_are_config_errors_and_leave_nothing(tmp_path, args, key):
    result = invoke(["train", "configs/quick.yaml", "--runs-root", tmp_path / "runs", *QUICK, *args])
    assert result.exit_code == 2, result.output
    assert key in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists() or not any(p.name != "latest" for p in (tmp_path / "runs").iterdir())
    assert not (tmp_path / "runs" / "latest").exists()


def test_train_folds_writes_one_run_per_fold_and_their_mean_and_spread(tmp_path):
    run = tmp_path / "cv"
    result = invoke(["train", "configs/quick.yaml", "--run-dir", run, "--folds", "3", *QUICK])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "cross_validation.json").read_text())
    assert summary["folds"] == 3 and len(summary["per_fold"]) == 3
    folds = [json.loads((run / f"fold-{i}" / "results.json").read_text()) for i in (1, 2, 3)]
    assert [yaml.safe_load((run / f"fold-{i}" / "config.yaml").read_text())["training"]["fold"]
            for i in (1, 2, 3)] == [1, 2, 3]
    best = [f["best_value"] for f in folds]
    assert summary["mean"]["best_value"] == pytest.approx(np.mean(best))
    assert summary["std"]["best_value"] == pytest.approx(np.std(best))
    for name in METRICS:
        values = [f["final"][name] for f in folds]
        assert summary["mean"]["final"][name] == pytest.approx(np.mean(values))
        assert summary["std"]["final"][name] == pytest.approx(np.std(values))
        assert f"{name} {np.mean(values):.4f} ± {np.std(values):.4f} over 3 folds" in result.output
    # every fold validated on a third of the 600 samples and trained on the rest
    assert result.output.count("Training on 400 samples, validating on 200") == 3

    # a command that needs one model is told the folds, not given a guess
    evaluated = invoke(["evaluate", run])
    assert evaluated.exit_code == 2 and "cross-validation run of 3 folds" in evaluated.output
    assert str(run / "fold-1") in evaluated.output
    best_fold = int(np.argmin(best)) + 1
    assert f"the best val_loss is fold {best_fold}'s ({min(best):.4f})" in evaluated.output


@pytest.mark.slow
def test_an_interrupted_folds_run_resumes_without_training_finished_folds_again(tmp_path):
    run = tmp_path / "cv"
    proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "train", "configs/quick.yaml", "--run-dir", str(run),
                             "--folds", "3", "--no-plots", "--set", "data.max_train_samples=3000",
                             "--set", "training.epochs=6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.time() + 300
    while not (run / "fold-2" / "resume" / "epoch-0001.h5").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    kept = (run / "fold-1" / "results.json").stat().st_mtime_ns, (run / "fold-1" / "model.h5").read_bytes()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"Resume the cross-validation with: mlp train --resume {run}" in err
    assert not (run / "cross_validation.json").exists()

    done = subprocess.run([sys.executable, "-m", "mlpcli", "train", "--resume", str(run), "--no-plots"],
                          check=False, capture_output=True, text=True, timeout=300, env=env())
    assert done.returncode == 0, done.stderr
    assert f"{run / 'fold-1'} finished; kept" in done.stdout
    assert ((run / "fold-1" / "results.json").stat().st_mtime_ns, (run / "fold-1" / "model.h5").read_bytes()) == kept
    assert f"Resuming {run / 'fold-2'} from" in done.stdout  # fold 2 continued from its saved state
    assert [len((run / f"fold-{i}" / "history.csv").read_text().splitlines()) for i in (1, 2, 3)] == [7, 7, 7]
    assert json.loads((run / "cross_validation.json").read_text())["folds"] == 3


def test_a_folds_run_stopped_before_its_first_fold_trains_is_removed_and_not_offered_for_resume(tmp_path):
    run = tmp_path / "cv"
    proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "train", "configs/quick.yaml", "--run-dir", str(run),
                             "--folds", "3", *QUICK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env())
    deadline = time.time() + 120
    while not (run / "fold-1").exists():  # made before fold 1 loads its data
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM before training started; the new run folder was removed" in err
    assert not run.exists()
    assert "--resume" not in err


# ---------------------------------------------------------------- mlp sweep --folds

def test_sweep_with_folds_writes_the_mean_and_spread_of_each_trial(tmp_path):
    # in its own process: the sweep's worker pool leaves multiprocessing's resource tracker
    # running in the process that made it, which test_parallel takes for a leaked child
    done = subprocess.run([sys.executable, "-m", "mlpcli", "sweep", "configs/quick.yaml", "--runs-root", str(tmp_path),
                           "--folds", "2", "-q", *map(str, QUICK), "--set", "training.epochs=1",
                           "--grid", "model.layers[0].units=8,16"],
                          cwd=Path(__file__).resolve().parents[1], env=env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    sweep = next(p for p in tmp_path.iterdir() if p.name != "latest")
    with (sweep / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for row in rows:
        best = [json.loads((sweep / row["trial"] / f"fold-{i}" / "results.json").read_text())["best_value"]
                for i in (1, 2)]
        assert row["folds"] == "2"
        assert float(row["best_value"]) == pytest.approx(np.mean(best))
        assert float(row["best_value_std"]) == pytest.approx(np.std(best))


# ---------------------------------------------------------------- mlp compare

def make_fold_run(folder, params, fold_losses):
    """A cross-validation run's folder by hand: one fold per list of val_loss values per epoch."""
    (folder).mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"checkpoint": {"monitor": "val_loss", "mode": "auto"},
                                                        "training": {"folds": len(fold_losses), "fold": None}}))
    runs.write_param_count(folder, params)
    for i, losses in enumerate(fold_losses, 1):
        fold = folder / f"fold-{i}"
        fold.mkdir()
        rows = ["epoch,loss,accuracy,val_loss,val_accuracy,seconds"]
        rows += [f"{e + 1},1.0,0.5,{v},0.5,1.0" for e, v in enumerate(losses)]
        (fold / "history.csv").write_text("\n".join(rows) + "\n")
    (folder / "cross_validation.json").write_text(json.dumps({"seconds": 3.0}))
    return folder


def test_compare_ranks_cross_validation_runs_by_the_mean_over_folds(tmp_path):
    # a has the single best fold (0.10) but the worse mean (0.3667 against 0.30)
    a = make_fold_run(tmp_path / "a", 100, [[0.2, 0.1], [0.5, 0.6], [0.5, 0.5]])
    b = make_fold_run(tmp_path / "b", 200, [[0.31, 0.30], [0.29], [0.31, 0.35]])
    c = compare([a, b], plots=False)
    assert [e.label for e in c.ranked] == ["b", "a"]
    assert c.ranked[0].score == pytest.approx(np.mean([0.30, 0.29, 0.31]))
    assert c.ranked[0].spread[0] == pytest.approx(np.std([0.30, 0.29, 0.31]))
    assert c.ranked[0].best_epoch == "2/1/1"
    text = format_comparison(c)
    assert f"{np.mean([0.30, 0.29, 0.31]):.4f} ± {np.std([0.30, 0.29, 0.31]):.4f}" in text


def test_compare_says_when_the_folds_cannot_tell_the_top_runs_apart(tmp_path):
    wide = make_fold_run(tmp_path / "wide", 900, [[0.30], [0.50], [0.40]])  # mean 0.40, spread 0.1
    narrow = make_fold_run(tmp_path / "narrow", 100, [[0.44], [0.40], [0.42]])  # mean 0.42
    c = compare([wide, narrow], plots=False)
    assert [e.label for e in c.tied] == ["wide", "narrow"]
    assert c.recommended.label == "narrow"  # the fewest parameters of the two, though 5% worse
    text = format_comparison(c)
    assert "Not distinguishable by these folds: wide (0.4000 ± 0.0816), narrow (0.4200 ± 0.0163)" in text
    assert "Recommended among them: narrow" in text


def test_compare_picks_confidently_when_the_folds_separate_the_runs(tmp_path):
    good = make_fold_run(tmp_path / "good", 900, [[0.30], [0.31], [0.29]])
    poor = make_fold_run(tmp_path / "poor", 100, [[0.40], [0.41], [0.39]])
    c = compare([good, poor], plots=False)
    assert c.tied == [] and c.recommended.label == "good"
    text = format_comparison(c)
    assert "Not distinguishable" not in text
    assert "Recommended: good (900 parameters, val_loss 0.3000 ± 0.0082): the best score" in text


def test_resume_with_more_epochs_continues_every_fold(tmp_path):
    run = tmp_path / "cv"
    assert invoke(["train", "configs/quick.yaml", "--run-dir", run, "--folds", "2", *QUICK,
                   "--set", "training.epochs=1"]).exit_code == 0
    again = invoke(["train", "--resume", run, "--no-plots", "--set", "training.epochs=2"])
    assert again.exit_code == 0, again.output
    summary = json.loads((run / "cross_validation.json").read_text())
    assert [f["epochs_run"] for f in summary["per_fold"]] == [2, 2]
    assert summary["seconds"] == pytest.approx(sum(f["seconds"] for f in summary["per_fold"]))
    kept = invoke(["train", "--resume", run, "--no-plots"])  # nothing to do: every fold is kept
    assert kept.exit_code == 0 and kept.output.count("finished; kept") == 2
    # what asks for no more epochs (the threads mlp sweep --resume gives a trial) keeps them too
    threads = invoke(["train", "--resume", run, "--no-plots", "--set", "training.threads=1"])
    assert threads.exit_code == 0, threads.output
    assert threads.output.count("finished; kept") == 2
