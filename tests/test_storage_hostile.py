"""Hostile use of what mlp keeps on disk: run and sweep folders given to the commands that
read them, damaged or not what they seem."""

from click.testing import CliRunner

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
