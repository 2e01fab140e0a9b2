"""The metrics auc, pr_auc, log_loss and r2 and the curves behind them: scikit-learn's values
(to 1e-6, where scikit-learn is installed: it is in the ``test`` extra), definitions worked
out by brute force, the monitors that use them, and the curves an evaluation report keeps."""

import math

import numpy as np
import pytest

from mlpcli import evaluation_curves
from mlpcli.config import resolve
from mlpcli.errors import ConfigError
from mlpcli.nn import metrics, metrics_curves

TOL = 1e-6


def softmax_outputs(rng, n, k, dtype=np.float32):
    logits = rng.normal(scale=2.0, size=(n, k))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def tied(rng, n, levels=8):
    """Sigmoid outputs (n, 1) on a few levels, so many scores tie."""
    return (rng.integers(0, levels + 1, size=(n, 1)) / levels).astype(np.float32)


# ---------------------------------------------------------------- by definition (no scikit-learn)

def pairwise_auc(positive, score):
    """P(a positive outscores a negative), a tie counting a half: the ROC area by definition."""
    pos, neg = score[positive], score[~positive]
    return ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def threshold_ap(positive, score):
    """Average precision by looping over the distinct thresholds, highest first."""
    total, last_recall = 0.0, 0.0
    for t in sorted(set(score.tolist()), reverse=True):
        chosen = score >= t
        recall = (chosen & positive).sum() / positive.sum()
        total += (recall - last_recall) * (chosen & positive).sum() / chosen.sum()
        last_recall = recall
    return total


def test_documented_values():
    y, p = np.array([0, 0, 1, 1]), np.array([[0.1], [0.4], [0.35], [0.8]], np.float32)
    assert metrics.auc(y, p) == pytest.approx(0.75, abs=TOL)
    assert metrics.pr_auc(y, p) == pytest.approx(0.8333333333, abs=TOL)
    two = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.65, 0.35]])  # ["spam", "ham", "ham", "spam"]
    assert metrics.log_loss(np.array([0, 1, 1, 0]), two) == pytest.approx(
        -np.log([0.9, 0.9, 0.8, 0.65]).mean(), abs=1e-12)
    assert metrics.r2(np.array([[3], [-0.5], [2], [7]], np.float32),
                      np.array([[2.5], [0.0], [2], [8]], np.float32)) == pytest.approx(0.9486081370, abs=TOL)


@pytest.mark.parametrize("seed", range(4))
def test_areas_match_their_definitions_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = tied(rng, 300, levels=5)
    positive = y == 1
    assert metrics.auc(y, p) == pytest.approx(pairwise_auc(positive, p[:, 0]), abs=1e-12)
    assert metrics.pr_auc(y, p) == pytest.approx(threshold_ap(positive, p[:, 0]), abs=1e-12)
    out = softmax_outputs(rng, 200, 4)
    out = np.round(out * 10) / 10  # ties in every column
    labels = rng.integers(0, 4, 200)
    assert metrics.auc(labels, out) == pytest.approx(
        np.mean([pairwise_auc(labels == c, out[:, c]) for c in range(4)]), abs=1e-12)
    assert metrics.pr_auc(labels, out) == pytest.approx(
        np.mean([threshold_ap(labels == c, out[:, c]) for c in range(4)]), abs=1e-12)


def test_a_class_absent_from_the_data_is_left_out_and_none_left_is_nan():
    rng = np.random.default_rng(1)
    out = softmax_outputs(rng, 120, 4)
    labels = rng.choice([0, 1, 3], 120)  # no sample of class 2
    assert metrics_curves.scored_classes(labels, 4) == [0, 1, 3]
    assert metrics.auc(labels, out) == pytest.approx(
        np.mean([pairwise_auc(labels == c, out[:, c]) for c in (0, 1, 3)]), abs=1e-12)
    assert math.isnan(metrics.auc(np.ones(10, np.int64), rng.random((10, 1))))  # only positives
    assert math.isnan(metrics.pr_auc(np.zeros(10, np.int64), rng.random((10, 1))))  # no positive
    curves = evaluation_curves.classifier_curves(labels, out, ["a", "b", "c", "d"])["curves"]
    assert [c["class"] for c in curves["roc"]["classes"]] == ["a", "b", "d"]
    assert curves["left_out"]["classes"] == ["c"]
    assert curves["roc"]["macro"]["auc"] == pytest.approx(metrics.auc(labels, out), abs=1e-12)


def test_log_loss_clips_with_the_eps_of_the_outputs_float_type():
    y = np.array([1, 0])
    sure = np.array([[0.0], [0.0]], np.float32)  # row 0's true class gets 0, row 1's gets 1
    for dtype in (np.float32, np.float64):
        eps = np.finfo(dtype).eps
        expected = -(np.log(float(eps)) + np.log(float(dtype(1) - eps))) / 2
        assert metrics.log_loss(y, sure.astype(dtype)) == pytest.approx(expected, rel=1e-12)


def test_r2_constant_outputs_and_too_few_samples():
    true = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]], np.float32)
    assert metrics.r2(true, true) == 1.0
    off = true.copy()
    off[:, 1] = 4.0  # a constant output predicted wrongly scores 0, as scikit-learn's force_finite
    assert metrics.r2(true, off) == pytest.approx(0.5)
    assert math.isnan(metrics.r2(true[:1], true[:1]))


def test_monitors_of_the_new_metrics_go_the_right_way():
    for name in ("val_auc", "auc", "val_pr_auc", "r2", "val_r2"):
        assert metrics.higher_is_better(name)
    assert not metrics.higher_is_better("val_log_loss")
    assert not metrics.higher_is_better("val_auc", mode="min")


def test_configs_take_the_metrics_and_their_monitors():
    cfg = resolve({"name": "m", "data": {"dataset": "mnist", "validation_split": 0.1},
                   "model": {"input_shape": [784], "layers": [{"type": "dense", "units": 10,
                                                               "activation": "softmax"}]},
                   "metrics": ["auc", "pr_auc", "log_loss"], "checkpoint": {"monitor": "val_auc"},
                   "early_stopping": {"monitor": "val_log_loss"}})
    assert [m["type"] for m in cfg["metrics"]] == ["auc", "pr_auc", "log_loss"]
    regression = {"name": "r", "task": "regression", "loss": "mse",
                  "data": {"dataset": "csv", "path": "x.csv", "validation_split": 0.1},
                  "model": {"input_shape": [3], "layers": [{"type": "dense", "units": 2}]},
                  "checkpoint": {"monitor": "val_r2"}}
    assert resolve({**regression, "metrics": ["r2"]})["checkpoint"]["monitor"] == "val_r2"
    with pytest.raises(ConfigError, match=r"metrics\[0\]: 'auc' needs a classification task"):
        resolve({**regression, "metrics": ["auc"], "checkpoint": {}})


def test_curves_are_bounded_and_keep_their_ends():
    rng = np.random.default_rng(2)
    n = 50_000
    labels = rng.integers(0, 12, n)
    out = softmax_outputs(rng, n, 12)
    curves = evaluation_curves.classifier_curves(labels, out, [f"c{i}" for i in range(12)])["curves"]
    roc = curves["roc"]["classes"]
    assert len(roc) == evaluation_curves.CURVE_CLASSES_KEPT and "10 of 12" in curves["classes_kept"]
    for entry in roc:
        assert len(entry["fpr"]) <= evaluation_curves.CURVE_POINTS + 1
        assert (entry["fpr"][0], entry["tpr"][0], entry["fpr"][-1], entry["tpr"][-1]) == (0, 0, 1, 1)
        assert np.all(np.diff(entry["fpr"]) >= 0) and np.all(np.diff(entry["tpr"]) >= 0)
    assert curves["roc"]["macro"]["auc"] == pytest.approx(metrics.auc(labels, out), abs=1e-12)
    assert curves["precision_recall"]["macro"]["average_precision"] == pytest.approx(
        metrics.pr_auc(labels, out), abs=1e-12)
    cal = curves["calibration"]
    assert sum(cal["count"]) == n and len(cal["count"]) == evaluation_curves.CALIBRATION_BINS


def test_regression_points_are_bounded_and_spread_over_the_data():
    y = np.arange(5000, dtype=np.float32).reshape(-1, 1) * np.ones((1, 10), np.float32)
    points = evaluation_curves.regression_points(y, y + 1)["curves"]["predicted_vs_true"]
    assert len(points["true"]) == evaluation_curves.REGRESSION_OUTPUTS_KEPT
    assert len(points["true"][0]) == evaluation_curves.REGRESSION_SAMPLES_KEPT
    assert points["true"][0][0] == 0 and points["true"][0][-1] == 4999
    assert points["predicted"][3][-1] == 5000 and (points["samples"], points["outputs"]) == (5000, 10)


# ---------------------------------------------------------------- against scikit-learn

@pytest.fixture(scope="module")
def skm():
    pytest.importorskip("sklearn")
    from sklearn import metrics as sk_metrics

    return sk_metrics


@pytest.mark.parametrize("seed", range(3))
def test_binary_matches_scikit_learn(skm, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    for p in (tied(rng, 400), rng.random((400, 1)).astype(np.float32)):
        assert metrics.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p[:, 0]), abs=TOL)
        assert metrics.pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p[:, 0]), abs=TOL)
        assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p[:, 0], labels=[0, 1]), abs=TOL)


@pytest.mark.parametrize("k", [2, 3, 10])
def test_multiclass_matches_scikit_learn(skm, k):
    from sklearn.preprocessing import label_binarize

    rng = np.random.default_rng(k)
    out = softmax_outputs(rng, 600, k, np.float64)
    y = rng.integers(0, k, 600)
    for scores in (out, np.round(out * 20) / 20):  # and with ties
        scores = scores / scores.sum(axis=1, keepdims=True)
        assert metrics.auc(y, scores) == pytest.approx(
            skm.roc_auc_score(y, scores if k > 2 else scores[:, 1], multi_class="ovr", average="macro"), abs=TOL)
        onehot = label_binarize(y, classes=range(k)) if k > 2 else np.eye(2)[y]
        assert metrics.pr_auc(y, scores) == pytest.approx(
            skm.average_precision_score(onehot, scores, average="macro"), abs=TOL)
    out32 = out.astype(np.float32)
    assert metrics.log_loss(y, out32) == pytest.approx(skm.log_loss(y, out32, labels=list(range(k))), abs=TOL)


def test_absent_class_matches_scikit_learn_over_the_classes_present(skm):
    rng = np.random.default_rng(5)
    out = softmax_outputs(rng, 300, 4, np.float64)
    y = rng.choice([0, 2, 3], 300)
    # scikit-learn refuses (or, told the labels, gives NaN, and counts the class's average
    # precision as 0); mlpcli leaves class 1 out of both averages
    with pytest.raises(ValueError):
        skm.roc_auc_score(y, out, multi_class="ovr")
    present = [0, 2, 3]
    assert metrics.auc(y, out) == pytest.approx(
        np.mean([skm.roc_auc_score(y == c, out[:, c]) for c in present]), abs=TOL)
    assert metrics.pr_auc(y, out) == pytest.approx(
        np.mean([skm.average_precision_score(y == c, out[:, c]) for c in present]), abs=TOL)
    assert metrics.log_loss(y, out) == pytest.approx(skm.log_loss(y, out, labels=[0, 1, 2, 3]), abs=TOL)


def test_r2_matches_scikit_learn_with_several_outputs(skm):
    rng = np.random.default_rng(3)
    true = rng.normal(size=(250, 4)).astype(np.float32)
    pred = (true + rng.normal(scale=0.7, size=true.shape)).astype(np.float32)
    true[:, 3] = 2.0  # a constant output
    assert metrics.r2(true, pred) == pytest.approx(skm.r2_score(true.astype(float), pred.astype(float)), abs=TOL)
    assert metrics.r2(true[:, :1], pred[:, :1]) == pytest.approx(
        skm.r2_score(true[:, 0].astype(float), pred[:, 0].astype(float)), abs=TOL)


def test_curves_and_calibration_match_scikit_learn(skm):
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    p = tied(rng, 500, levels=40)[:, 0]
    fpr, tpr = metrics_curves.roc_curve(y == 1, p)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=TOL)
    np.testing.assert_allclose(tpr, sk_tpr, atol=TOL)
    recall, precision = metrics_curves.precision_recall_curve(y == 1, p)
    sk_precision, sk_recall, _ = skm.precision_recall_curve(y, p)
    np.testing.assert_allclose(recall, sk_recall[::-1], atol=TOL)
    np.testing.assert_allclose(precision, sk_precision[::-1], atol=TOL)
    _, count, mean, share = metrics_curves.calibration_bins(y == 1, p, 10)
    sk_share, sk_mean = calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(mean[count > 0], sk_mean, atol=TOL)
    np.testing.assert_allclose(share[count > 0], sk_share, atol=TOL)
