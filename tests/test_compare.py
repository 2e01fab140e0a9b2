"""`mlp compare` and the recommendation rule, on hand-made run and sweep folders."""

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from mlpcli.cli import main
from mlpcli import runs
from mlpcli.compare import compare
from mlpcli.ranking import recommend


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def make_run(folder, params, val_loss, val_accuracy=None, loss=None, monitor="val_loss", seconds=1.5):
    folder.mkdir(parents=True)
    n = len(val_loss)
    loss = loss or [1.0 - 0.1 * i for i in range(n)]
    val_accuracy = val_accuracy or [0.5 + 0.01 * i for i in range(n)]
    rows = ["epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds"]
    rows += [f"{i + 1},{loss[i]},{0.9 + 0.001 * i},{val_loss[i]},{val_accuracy[i]},0.001,0.5"
             for i in range(n)]
    (folder / "history.csv").write_text("\n".join(rows) + "\n")
    runs.write_param_count(folder, params)
    (folder / "config.yaml").write_text(yaml.safe_dump({"checkpoint": {"monitor": monitor, "mode": "auto"}}))
    (folder / "results.json").write_text(json.dumps({"seconds": seconds}))
    return folder


def test_recommend_fewest_parameters_within_tolerance():
    # accuracy goes up: within 0.002 (absolute) of the best 0.980 are 0.980, 0.979, 0.9785
    scores, params = [0.980, 0.979, 0.975, 0.9785], [1000, 500, 100, 400]
    assert recommend(scores, params, higher=True) == (0, 3)
    assert recommend(scores, params, higher=True, tolerance=0.0) == (0, 0)
    assert recommend(scores, params, higher=True, tolerance=0.01) == (0, 2)
    # loss goes down: within 2% (relative) of the best 0.100 means up to 0.102
    losses = [0.100, 0.101, 0.103, 0.1019]
    assert recommend(losses, params, higher=False) == (0, 3)
    assert recommend(losses, params, higher=False, tolerance=0.05) == (0, 2)
    assert recommend([0.50, 0.505, 0.51], [10, 10, 10], higher=False) == (0, 0)  # ties: better score
    assert recommend([0.2, 0.2], [10, 10], higher=False) == (0, 0)  # then the earlier run
    # no score: nothing to recommend; NaN and None are not scores
    assert recommend([], [], higher=True) == (None, None)
    assert recommend([None, math.nan, 0.3], [1, 1, 5], higher=False) == (2, 2)
    # an unknown parameter count loses against a known one within the tolerance
    assert recommend([0.100, 0.1001], [None, 900], higher=False) == (0, 1)
    assert recommend([0.100, 0.5], [None, 900], higher=False) == (0, 0)


def test_compare_runs_ranks_and_recommends(tmp_path):
    big = make_run(tmp_path / "big", 118_282, [0.30, 0.20, 0.100])
    small = make_run(tmp_path / "small", 50_890, [0.30, 0.21, 0.1015])  # within 2% of 0.100
    bad = make_run(tmp_path / "bad", 10_000, [0.40, 0.30, 0.25])  # fewest parameters, too far off
    out = tmp_path / "cmp"
    result = invoke(["compare", big, small, bad, "--out", out])
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [line.split()[:3] for line in table] == [["1", "big", "118,282"], ["2", "small", "50,890"],
                                                    ["3", "bad", "10,000"]]
    assert [line.endswith("<- recommended") for line in table] == [False, True, False]
    assert "Recommended: small (50,890 parameters, val_loss 0.1015): the fewest parameters within " \
           "2% of the best (0.1000, big)" in result.output
    assert (out / "compare-loss.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "compare-accuracy.png").is_file()
    c = compare([big, small, bad], plots=False)
    assert (c.best.label, c.recommended.label) == ("big", "small")
    assert c.monitor == "val_loss" and not c.higher and c.tolerance == 0.02
    assert c.recommended.best_epoch == 3 and c.recommended.seconds == 1.5
    assert compare([big, small, bad], tolerance=0.001, plots=False).recommended.label == "big"
    # a run that is best before it overfits: ranked by its best epoch, with a note
    over = make_run(tmp_path / "over", 200_000, [0.20, 0.09, 0.12, 0.15], loss=[0.5, 0.3, 0.2, 0.1])
    c = compare([big, small, bad, over], plots=False)
    assert (c.best.label, c.recommended.label) == ("over", "over")
    assert c.ranked[0].notes == ["overfits from epoch 3"] and c.ranked[0].best_epoch == 2
    result = invoke(["compare", big, over, "--no-plots"])
    assert "overfits from epoch 3" in result.output
    assert "overfits from epoch N: validation loss rose" in result.output


def test_compare_by_accuracy(tmp_path):
    a = make_run(tmp_path / "a", 1000, [0.3, 0.2], val_accuracy=[0.97, 0.980], monitor="val_accuracy")
    b = make_run(tmp_path / "b", 400, [0.3, 0.2], val_accuracy=[0.9785, 0.90], monitor="val_accuracy")
    c = compare([a, b], plots=False)
    assert c.monitor == "val_accuracy" and c.higher and c.tolerance == 0.002
    assert (c.best.label, c.recommended.label) == ("a", "b")
    assert c.recommended.best_epoch == 1 and c.recommended.score == pytest.approx(0.9785)
    c = compare([a, b], monitor="val_loss", plots=False)
    assert c.monitor == "val_loss" and not c.higher


def test_compare_a_sweep_folder_with_a_failed_trial(tmp_path):
    sweep = tmp_path / "lr-sweep"
    make_run(sweep / "trial-001", 5000, [0.5, 0.4])
    make_run(sweep / "trial-002", 5000, [0.5, 0.3])
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({"trials": [
        {"name": f"trial-00{i}", "overrides": {"optimizer.learning_rate": lr}}
        for i, lr in ((1, 0.001), (2, 0.01), (3, 1e30))]}))
    (sweep / "results.csv").write_text(
        "trial,status,optimizer.learning_rate,seconds,error\n"
        "trial-001,ok,0.001,2.0,\ntrial-002,ok,0.01,3.0,\n"
        "trial-003,failed,1e+30,0.5,loss became nan in epoch 1\n")
    result = invoke(["compare", sweep])
    assert result.exit_code == 0, result.output
    assert "learning_rate" in result.output
    failed = next(line for line in result.output.splitlines() if line.strip().startswith("failed"))
    assert "trial-003" in failed and "loss became nan" in failed
    assert (sweep / "compare-loss.png").is_file()  # a sweep's figures go into the sweep folder
    c = compare([sweep], plots=False)
    assert [e.label for e in c.ranked] == ["trial-002", "trial-001"]
    assert c.ranked[0].values == {"optimizer.learning_rate": 0.01} and c.ranked[0].seconds == 3.0


def test_compare_bad_input_is_a_clean_error(tmp_path):
    (tmp_path / "empty").mkdir()
    run = make_run(tmp_path / "run", 10, [0.3, 0.2])
    for args, message in (([tmp_path / "nope"], "no such run or sweep folder"),
                          ([tmp_path / "empty"], "not a run folder (no history.csv) or a sweep folder"),
                          ([run, "--monitor", "val_f1"], "--monitor val_f1: no compared run logged it"),
                          ([run, "--tolerance", "-1"], "--tolerance must be a number >= 0")):
        result = invoke(["compare", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert invoke(["compare"]).exit_code == 2
