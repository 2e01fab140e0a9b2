"""Training metrics counted batch by batch (nn/metrics.py's EpochMetrics) and training
targets encoded batch by batch (nn/losses.py's BatchTargets): the same values as over the
whole epoch at once, through an interrupted epoch too, without an epoch-long array."""

import numpy as np
import pytest

from mlpcli.config import resolve
from mlpcli.nn import losses, metrics
from mlpcli.trainer import EARLIER_OUTPUTS, EpochPaused, Trainer, build_model, random_streams

CLASSIFICATION = [{"type": name} for name in metrics.CLASSIFICATION_METRICS if name != "top_k_accuracy"] + [
    {"type": "top_k_accuracy", "k": 2}]
REGRESSION = [{"type": "mse"}, {"type": "mae"}, {"type": "r2"}]
BATCH_SIZES = (32, 32, 7, 50, 1, 78)  # 200 rows in batches of unequal sizes


def scores(n, outputs, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.random((n, outputs), dtype=np.float32)
    return raw / raw.sum(axis=1, keepdims=True) if outputs > 1 else raw


def batches(n):
    edges = np.cumsum((0,) + BATCH_SIZES)
    assert edges[-1] == n
    return list(zip(edges[:-1], edges[1:]))


def counted(specs, outputs, y_true, y_pred, pause_at=None):
    """EpochMetrics' values over the batches; with ``pause_at``, its state is carried into a
    new EpochMetrics after that many batches, as a resumed run does."""
    epoch = metrics.EpochMetrics(specs, outputs)
    for i, (a, b) in enumerate(batches(len(y_pred))):
        if i == pause_at:
            epoch = metrics.EpochMetrics(specs, outputs, {k: np.copy(v) for k, v in epoch.state().items()})
        epoch.add(y_true[a:b], y_pred[a:b])
    return epoch.values()


@pytest.mark.parametrize("outputs", [1, 2, 5])
@pytest.mark.parametrize("pause_at", [None, 3])
def test_classification_metrics_batch_by_batch_equal_the_whole_epochs(outputs, pause_at):
    y_pred = scores(200, outputs)
    y_true = np.random.default_rng(1).integers(0, max(outputs, 2), 200)
    y_true[:20] = y_pred[:20].argmax(axis=1) if outputs > 1 else (y_pred[:20, 0] > 0.5)  # some right
    whole = metrics.compute(CLASSIFICATION, y_true, y_pred)
    batched = counted(CLASSIFICATION, outputs, y_true, y_pred, pause_at)
    assert batched.keys() == whole.keys()
    for name in whole:
        assert batched[name] == pytest.approx(whole[name], rel=1e-12, abs=1e-15), name
    assert batched["accuracy"] == whole["accuracy"]  # a count: exact


@pytest.mark.parametrize("pause_at", [None, 2])
def test_regression_metrics_batch_by_batch_equal_the_whole_epochs(pause_at):
    rng = np.random.default_rng(3)
    y_true = rng.standard_normal((200, 3)).astype(np.float32)
    y_true[:, 2] = 0.1  # a constant target: r2's special case needs all of them
    y_pred = (y_true + 0.3 * rng.standard_normal((200, 3))).astype(np.float32)
    whole = metrics.compute(REGRESSION, y_true, y_pred)
    batched = counted(REGRESSION, 3, y_true, y_pred, pause_at)
    for name in whole:
        assert batched[name] == pytest.approx(whole[name], rel=1e-12), name


def test_outputs_are_kept_only_for_metrics_that_rank_or_need_the_spread():
    y_pred, y_true = scores(200, 4), np.arange(200) % 4
    streamed = metrics.EpochMetrics([{"type": "accuracy"}, {"type": "f1"}, {"type": "log_loss"}], 4)
    ranked = metrics.EpochMetrics([{"type": "accuracy"}, {"type": "auc"}], 4)
    for a, b in batches(200):
        streamed.add(y_true[a:b], y_pred[a:b])
        ranked.add(y_true[a:b], y_pred[a:b])
    assert streamed.kept_pred == [] and all(v.size <= 16 for v in streamed.state().values())
    assert ranked.state()["kept_pred"].shape == (200, 4)


def test_precision_recall_and_f1_share_one_confusion_matrix():
    specs = [{"type": "precision"}, {"type": "recall"}, {"type": "f1"}, {"type": "accuracy"}]
    epoch = metrics.EpochMetrics(specs, 1000)
    y_pred = scores(64, 1000)
    epoch.add(np.arange(64) * 7 % 1000, y_pred)
    assert sorted(epoch.state()) == [metrics.CONFUSION, "sums3"]
    assert epoch.state()[metrics.CONFUSION].shape == (1000, 1000) and epoch.state()[metrics.CONFUSION].sum() == 64


@pytest.mark.parametrize("specs, damage", [
    ([{"type": "accuracy"}], lambda state: state.pop("sums0")),
    ([{"type": "accuracy"}], lambda state: state.update(sums0=np.zeros(3))),
    ([{"type": "f1"}], lambda state: state.update({metrics.CONFUSION: np.zeros((4, 4), np.int64)})),
    ([{"type": "accuracy"}, {"type": "auc"}], lambda state: state.pop("kept_pred")),
    ([{"type": "auc"}], lambda state: state.update(kept_true=state["kept_true"][:5])),
])
def test_a_state_missing_or_misshapen_sums_is_refused(specs, damage):
    """A damaged resume state must not go on with wrong sums: KeyError makes resuming warn
    and fall back to an older state."""
    epoch = metrics.EpochMetrics(specs, 3)
    epoch.add(np.arange(30) % 3, scores(30, 3))
    state = epoch.state()
    metrics.EpochMetrics(specs, 3, dict(state))  # whole: taken
    damage(state)
    with pytest.raises(KeyError):
        metrics.EpochMetrics(specs, 3, state)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("loss_name, outputs, y", [
    ("categorical_crossentropy", 5, np.arange(40) % 5),
    ("binary_crossentropy", 1, np.arange(40) % 2),
    ("sparse_categorical_crossentropy", 5, np.arange(40) % 5),
    ("mse", 2, np.linspace(-1, 1, 80).reshape(40, 2)),
])
def test_batch_targets_are_the_rows_of_the_whole_encoding(loss_name, outputs, y, smoothing):
    spec = {"type": loss_name, **{p.name: p.default for p in losses.get(loss_name).spec.params}}
    if "label_smoothing" in spec:
        spec["label_smoothing"] = smoothing
    loss = losses.from_spec(spec)
    whole = losses.encode_targets(loss, y, outputs)
    targets = losses.BatchTargets(loss, y, outputs)
    rows = np.random.default_rng(0).permutation(40)[:13]
    out = np.empty((13,) + targets.row_shape, targets.dtype)
    targets.take(rows, out)
    assert out.dtype == whole.dtype
    np.testing.assert_array_equal(out, whole[rows])


def small_trainer(seed=0):
    cfg = resolve({"name": "t", "seed": seed,
                   "model": {"input_shape": [12], "layers": [
                       {"type": "dense", "units": 16, "activation": "relu"}, {"type": "dropout", "rate": 0.2},
                       {"type": "dense", "units": 4, "activation": "softmax"}]},
                   "loss": "categorical_crossentropy", "metrics": ["accuracy", "f1", "auc"],
                   "training": {"batch_size": 32, "processes": 1}})
    streams = random_streams(seed)
    return Trainer(build_model(cfg, streams), cfg, streams)


def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((203, 12)).astype(np.float32)
    return x, x[:, :4].argmax(axis=1)


def test_a_resume_state_written_with_the_epochs_outputs_still_resumes_to_the_same_logs():
    """Resume states written before EpochMetrics keep the done batches' outputs instead of
    sums: they are counted in when the epoch goes on."""
    x, y = data()
    whole = small_trainer().run_epoch(x, y)

    paused, outputs = small_trainer(), []
    train_step = paused.model.train_step

    def recording(*args, **kwargs):
        value, out = train_step(*args, **kwargs)
        outputs.append(np.array(out))
        return value, out
    paused.model.train_step = recording
    with pytest.raises(EpochPaused):
        paused.run_epoch(x, y, stop_requested=lambda: len(outputs) == 3)
    state, arrays = paused.get_state()
    assert not any(k.startswith(EARLIER_OUTPUTS) for k in arrays)
    old_arrays = {k: v for k, v in arrays.items() if not k.startswith("progress/metrics/")}
    old_arrays[EARLIER_OUTPUTS] = np.concatenate(outputs)

    for resumed_arrays in (arrays, old_arrays):
        resumed = small_trainer()
        resumed.model.set_weights(paused.model.get_weights())
        resumed.optimizer.set_state(paused.optimizer.get_state())
        resumed.set_state(state, resumed_arrays)
        assert resumed.run_epoch(x, y) == whole
