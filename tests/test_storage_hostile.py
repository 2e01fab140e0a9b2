"""Hostile use of what mlp keeps on disk: run and sweep folders given to the commands that
read them, damaged or not what they seem."""

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlpcli import runs
from mlpcli.cli import main


def mlp(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_plot_of_a_folder_that_holds_no_run_is_an_error_and_draws_nothing(tmp_path):
    """A mistyped or empty folder is no success: exit 2 naming it, and no plots/ made in it."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, why in ((tmp_path / "typo", "no such run folder"),
                        (empty, "not a run folder (no config.yaml or history.csv)")):
        result = mlp("plot", folder)
        assert result.exit_code == 2, result.output
        assert f"Error: {folder}: {why}" in result.output
    assert list(empty.iterdir()) == [] and not (tmp_path / "typo").exists()


@pytest.fixture(scope="module")
def trained(csv_run):
    """A finished run of one epoch, evaluated: copy it before changing it."""
    assert mlp("evaluate", csv_run).exit_code == 0
    return csv_run


def copy_run(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


@pytest.mark.parametrize("name", [runs.PARAMS_FILE, runs.RESULTS_FILE, "evaluation.json"])
def test_a_run_file_nested_too_deeply_for_the_json_parser_is_unreadable_not_a_crash(trained, tmp_path, name):
    run = copy_run(trained, tmp_path)
    (run / name).write_text("[" * 100_000 + "]" * 100_000)
    for args in (["compare", run, "--no-plots"], ["plot", run]):
        result = mlp(*args)
        assert result.exit_code == 0 and result.exception is None, (args, result.output)
    if name == "evaluation.json":
        assert "evaluation.json unreadable" in mlp("plot", run).output
    else:
        assert runs.read_record(run).params == 513  # counted from model.h5 when params.json is unreadable


def test_a_data_path_given_with_set_is_stored_absolute_so_the_run_reads_it_from_any_folder(
        tmp_path, monkeypatch):
    """--set data.path=rows.csv is relative to the current folder (as in mlp sweep); the run's
    config.yaml names the file itself, so evaluate from elsewhere reads the same file."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy("configs/data/breast_cancer_train.csv", data / "rows.csv")
    config = Path("configs/breast-cancer.yaml").resolve()
    run = tmp_path / "run"
    monkeypatch.chdir(data)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = mlp("train", config, "--run-dir", run, "-q", "--no-plots", "--set", "data.path=rows.csv",
                 "--set", "training.epochs=1", "--set", "data.test_path=~/data/../data/rows.csv")
    assert result.exit_code == 0, result.output
    stored = yaml.safe_load((run / runs.CONFIG_FILE).read_text())["data"]
    assert stored["path"] == str(data / "rows.csv")
    assert stored["test_path"] == str(data / "rows.csv")  # ~ expanded, .. resolved
    monkeypatch.chdir(tmp_path)
    result = mlp("evaluate", run)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A finished sweep of two trials (the newest under its root): (root, sweep folder)."""
    root = tmp_path_factory.mktemp("sweeps")
    result = mlp("sweep", "configs/breast-cancer.yaml", "--grid", "model.layers[0].units=8,2",
                 "--set", "training.epochs=2", "--set", "training.threads=1", "--runs-root", root,
                 "--no-plots", "-q")
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    return root, folder


def test_compare_of_a_sweep_whose_results_csv_is_damaged_still_ranks_its_trials(small_sweep, tmp_path):
    """The trials' folders say which finished; results.csv only how the others fared. So compare
    recommends what evaluate uses, and warns, rather than refusing the whole sweep."""
    folder = tmp_path / "sweep"
    shutil.copytree(small_sweep[1], folder)
    (folder / "results.csv").write_bytes(b"\xff\xfe not a csv")
    result = mlp("compare", folder, "--no-plots")
    assert result.exit_code == 0, result.output
    assert f"Warning: {folder / 'results.csv'}: cannot be read" in result.stderr
    trial = runs.model_folder(folder).name
    assert f"Recommended: {trial} " in result.stdout
    assert (folder / "results.csv").read_bytes() == b"\xff\xfe not a csv"  # left as it was


def test_resume_refuses_data_whose_columns_were_reordered_since(tmp_path):
    """Same count of columns, another order: the weights would take one feature for another."""
    rows = [line.split(",") for line in Path("configs/data/breast_cancer_train.csv").read_text().splitlines()]
    data = tmp_path / "rows.csv"
    data.write_text("\n".join(",".join(r) for r in rows) + "\n")
    run = tmp_path / "run"
    result = mlp("train", "configs/breast-cancer.yaml", "--run-dir", run, "-q", "--no-plots",
                 "--set", f"data.path={data}", "--set", "data.test_path=null", "--set", "training.epochs=1",
                 "--set", "early_stopping=null")
    assert result.exit_code == 0, result.output
    data.write_text("\n".join(",".join([r[1], r[0], *r[2:]]) for r in rows) + "\n")
    history = (run / runs.HISTORY_FILE).read_bytes()
    result = mlp("train", "--resume", run, "--set", "training.epochs=2", "--no-plots")
    assert result.exit_code == 2, result.output
    assert (f"Error: {run}: the run was trained on 30 columns, #1 '{rows[0][0]}', but the data now gives "
            f"30 columns, #1 '{rows[0][1]}'; the data changed since") in result.output
    assert (run / runs.HISTORY_FILE).read_bytes() == history
