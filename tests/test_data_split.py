"""Stratified train/validation split."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpcli.data import stratified_split
from mlpcli.errors import DataError


def check_partition(train_idx, val_idx, n):
    assert train_idx.dtype == np.int64 and val_idx.dtype == np.int64
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(n))


def test_class_proportions_are_kept():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train_idx, val_idx = stratified_split(y, 0.2, np.random.default_rng(0))
    check_partition(train_idx, val_idx, 100)
    assert np.bincount(y[val_idx]).tolist() == [10, 6, 4]
    assert np.bincount(y[train_idx]).tolist() == [40, 24, 16]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    fraction=st.floats(0.0, 0.5),
    seed=st.integers(0, 1000),
)
def test_each_class_within_one_sample(counts, fraction, seed):
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    if fraction and not any(round(fraction * c) for c in counts):  # no class gives one
        with pytest.raises(DataError, match="validation_split"):
            stratified_split(y, fraction, np.random.default_rng(seed))
        return
    train_idx, val_idx = stratified_split(y, fraction, np.random.default_rng(seed))
    check_partition(train_idx, val_idx, len(y))
    val_counts = np.bincount(y[val_idx], minlength=len(counts))
    assert np.all(np.abs(val_counts - fraction * np.array(counts)) <= 1)


def test_same_seed_same_split_other_seed_other_split():
    y = np.repeat([0, 1], 50)
    a = stratified_split(y, 0.3, np.random.default_rng(7))
    b = stratified_split(y, 0.3, np.random.default_rng(7))
    c = stratified_split(y, 0.3, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(np.sort(a[1]), np.sort(c[1]))


def test_validation_indices_are_shuffled_across_classes():
    y = np.repeat([0, 1], 100)
    _, val_idx = stratified_split(y, 0.5, np.random.default_rng(0))
    assert not (np.all(np.diff(y[val_idx]) >= 0))  # not all of class 0 first


def test_regression_targets_get_a_plain_split():
    y = np.linspace(0, 1, 10, dtype=np.float32)[:, None]
    train_idx, val_idx = stratified_split(y, 0.25, np.random.default_rng(0))
    check_partition(train_idx, val_idx, 10)
    assert len(val_idx) == 2  # round(2.5) == 2


def test_zero_fraction_keeps_everything_for_training():
    train_idx, val_idx = stratified_split(np.array([0, 1, 1]), 0.0, np.random.default_rng(0))
    assert len(val_idx) == 0 and sorted(train_idx.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_fraction_out_of_range(fraction):
    with pytest.raises(DataError, match=r"must be in \[0, 1\)"):
        stratified_split(np.array([0, 1]), fraction, np.random.default_rng(0))


def test_no_training_data_left():
    with pytest.raises(DataError, match="leaves no training samples out of 2"):
        stratified_split(np.array([0, 1]), 0.9, np.random.default_rng(0))
    with pytest.raises(DataError, match="no training samples"):
        stratified_split(np.zeros(0, dtype=np.int64), 0.1, np.random.default_rng(0))


def test_many_small_classes_split_in_linear_time_with_a_clear_refusal():
    # one pass per class was quadratic: ~50 s here; one sort takes about a second
    y = np.arange(300_000)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"none here: the 300000 classes have at most 1 sample"):
        stratified_split(y, 0.1, np.random.default_rng(0))
    assert time.perf_counter() - start < 15


def test_split_of_many_classes_matches_one_pass_per_class():
    y = np.random.default_rng(3).integers(0, 500, size=5000).astype(np.int32)
    rng = np.random.default_rng(11)
    train_parts, val_parts = [], []
    for cls in np.unique(y):  # the split as it was first written, pass by pass
        members = rng.permutation(np.flatnonzero(y == cls))
        n_val = int(round(0.3 * len(members)))
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    expected = rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(val_parts))
    got = stratified_split(y, 0.3, np.random.default_rng(11))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
