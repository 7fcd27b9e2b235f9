"""Tests for ctxpaper.splits: artist-disjoint iterative stratification and make_split."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxpaper.splits import (
    compare_splits,
    fold_deviation,
    group_overlap,
    iterative_group_stratification,
    make_split,
    random_group_folds,
    split_quality,
    stratified_group_folds,
)


def synthetic(seed: int, n: int = 2000, n_labels: int = 6):
    """Labels with artist-level taste (an artist's tracks share contexts) and
    heavy-tailed artist sizes, shaped like the real data (about 4 tracks per
    artist, half of the artists with one track, the largest under 3%)."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(2.0, size=n), max(2, n // 40))
    artist = np.repeat(np.arange(n), sizes)[:n]
    n_groups = int(artist.max()) + 1
    taste = rng.random((n_groups, n_labels)) ** 2
    y = rng.random((n, n_labels)) < 0.15 + 0.7 * taste[artist]
    ids = pd.Index(rng.permutation(10 * n)[:n] + 1, name="song_id")
    labels = pd.DataFrame(y, index=ids, columns=[f"c{j}" for j in range(n_labels)])
    groups = pd.Series(rng.permutation(n_groups)[artist] * 7 + 1000, index=ids, name="artist_id")
    return labels, groups


def assert_group_disjoint(assign: pd.Series, groups: pd.Series):
    per_group = pd.DataFrame({"g": groups.reindex(assign.index), "f": assign}).groupby("g")["f"].nunique()
    assert (per_group == 1).all()


# --------------------------------------------------------------------------
# folds
# --------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["least_squares", "sechidis"]), st.integers(2, 5))
def test_folds_are_group_disjoint_and_complete(seed, criterion, k):
    labels, groups = synthetic(seed % 30, n=400)
    folds = stratified_group_folds(labels, groups, n_folds=k, seed=seed, criterion=criterion)
    assert folds.index.equals(labels.index)
    assert folds.dtype.kind == "i" and folds.between(0, k - 1).all()
    assert_group_disjoint(folds, groups)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_folds_do_not_depend_on_row_order(seed):
    labels, groups = synthetic(seed % 30, n=400)
    folds = stratified_group_folds(labels, groups, seed=seed)
    perm = np.random.default_rng(seed).permutation(len(labels))
    folds2 = stratified_group_folds(labels.iloc[perm], groups.iloc[perm[::-1]], seed=seed)
    pd.testing.assert_series_equal(folds2.loc[folds.index], folds)


def test_folds_deterministic_per_seed():
    labels, groups = synthetic(1)
    a = stratified_group_folds(labels, groups, seed=3)
    pd.testing.assert_series_equal(a, stratified_group_folds(labels, groups, seed=3))
    assert not a.equals(stratified_group_folds(labels, groups, seed=4))


def test_singletons_with_replicated_patterns_are_split_nearly_exactly():
    # 8 copies of each of 5 label patterns, each track its own artist: a
    # perfect 4-fold split exists (2 copies of each pattern per fold). The
    # greedy split gets within one track of it, for every label and fold.
    patterns = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=bool)
    y = np.repeat(patterns, 8, axis=0)
    for seed in range(10):
        f = iterative_group_stratification(y, np.arange(len(y)), [1, 1, 1, 1], seed=seed)
        assert np.ptp(np.bincount(f, minlength=4)) <= 2
        for j in range(3):
            per_fold = np.bincount(f[y[:, j]], minlength=4)
            assert np.abs(per_fold - y[:, j].sum() / 4).max() <= 1


def test_whole_group_moves_together_even_if_huge():
    # One artist holds half the tracks: it must stay whole, in one fold.
    labels, groups = synthetic(2, n=600)
    groups.iloc[:300] = -1
    folds = stratified_group_folds(labels, groups, seed=0)
    assert folds.iloc[:300].nunique() == 1
    assert_group_disjoint(folds, groups)


def test_least_squares_beats_sechidis_and_random_on_artist_data():
    labels, groups = synthetic(5)
    q = {
        name: split_quality(labels, f, groups)
        for name, f in {
            "ls": stratified_group_folds(labels, groups, seed=0),
            "sechidis": stratified_group_folds(labels, groups, seed=0, criterion="sechidis"),
            "random": random_group_folds(groups, seed=0),
        }.items()
    }
    assert q["ls"]["max_dev"] < q["sechidis"]["max_dev"]
    assert q["ls"]["max_dev"] < q["random"]["max_dev"]
    assert q["ls"]["mean_dev"] < q["random"]["mean_dev"]
    for v in q.values():
        assert v["shared_groups"] == 0


def test_unequal_ratios_stay_proportional():
    labels, groups = synthetic(6, n=3000)
    y = labels.to_numpy()
    f = iterative_group_stratification(y, groups.to_numpy(), [0.9, 0.1], seed=0)
    share = (f == 1).mean()
    assert 0.08 < share < 0.12
    dev = np.abs(y[f == 1].mean(axis=0) - y.mean(axis=0))
    assert dev.max() < 0.03


def test_tracks_without_labels_are_still_placed():
    labels, groups = synthetic(7, n=300)
    labels.iloc[:40] = False
    folds = stratified_group_folds(labels, groups, seed=0)
    assert folds.index.equals(labels.index) and folds.between(0, 3).all()
    assert_group_disjoint(folds, groups)


def test_random_group_folds_are_even_and_disjoint():
    _, groups = synthetic(8)
    f = random_group_folds(groups, n_folds=4, seed=1)
    assert_group_disjoint(f, groups)
    sizes = f.value_counts()
    assert sizes.max() - sizes.min() <= groups.value_counts().max()


# --------------------------------------------------------------------------
# missing groups and bad input
# --------------------------------------------------------------------------

def test_missing_group_default_is_a_clear_error():
    labels, groups = synthetic(9, n=300)
    groups = groups.drop(labels.index[:3])
    groups.iloc[10] = np.nan
    with pytest.raises(ValueError, match=r"4 of 300 tracks have no group"):
        stratified_group_folds(labels, groups)


def test_missing_group_drop_reports_and_leaves_out():
    labels, groups = synthetic(9, n=300)
    missing = list(labels.index[:5])
    groups = groups.drop(missing)
    with pytest.warns(UserWarning, match="5 of 300 tracks have no group"):
        split = make_split(labels, groups, seed=0, missing_group="drop")
    assert split.attrs["missing_group"] == missing
    assert split.index.equals(labels.index.drop(missing))
    assert split["fold"].notna().all()


def test_missing_group_own_keeps_every_track():
    labels, groups = synthetic(9, n=300)
    groups = groups.astype("float").copy()
    groups.iloc[:20] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = make_split(labels, groups, seed=0, missing_group="own")
    assert split.index.equals(labels.index)
    assert split["fold"].between(0, 3).all()


def test_bad_inputs():
    labels, groups = synthetic(10, n=200)
    with pytest.raises(ValueError, match="duplicate track ids"):
        stratified_group_folds(labels, pd.concat([groups, groups.iloc[:2]]))
    with pytest.raises(ValueError, match="not a boolean"):
        stratified_group_folds(labels.astype(int) + 1, groups)
    with pytest.raises(ValueError, match="duplicate track ids"):
        stratified_group_folds(pd.concat([labels, labels.iloc[:1]]), groups)
    with pytest.raises(ValueError, match="n_folds"):
        stratified_group_folds(labels, groups, n_folds=1)
    with pytest.raises(ValueError, match="missing_group"):
        stratified_group_folds(labels, groups, missing_group="skip")
    with pytest.raises(ValueError, match="criterion"):
        stratified_group_folds(labels, groups, criterion="best")
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(labels, groups, seed=0, val_fraction=1.0)
    with pytest.raises(ValueError, match="seed"):
        make_split(labels, groups, seed=-1)
    with pytest.raises(TypeError):
        stratified_group_folds(labels, groups.to_numpy())


# --------------------------------------------------------------------------
# make_split
# --------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_make_split_structure(seed, group_validation):
    labels, groups = synthetic(seed % 20, n=600)
    split = make_split(labels, groups, seed=seed, group_validation=group_validation)
    assert split.index.equals(labels.index)
    assert list(split.columns) == ["fold", "subset"]
    assert list(split["subset"].cat.categories) == ["train", "validation", "test"]
    assert split["fold"].between(0, 3).all() and split["subset"].notna().all()
    assert ((split["fold"] == 0) == (split["subset"] == "test")).all()
    assert_group_disjoint(split["fold"], groups)
    rest = split[split["fold"] != 0]
    if group_validation:
        assert_group_disjoint(split["subset"].astype(str), groups)
    else:
        assert (rest["subset"] == "validation").sum() == round(0.1 * len(rest))


def test_make_split_grouped_validation_shares_no_artist_random_does():
    labels, groups = synthetic(11, n=3000)
    grouped = make_split(labels, groups, seed=0)
    random_val = make_split(labels, groups, seed=0, group_validation=False)
    assert group_overlap(groups, grouped["subset"], "validation", "train") == 0.0
    assert group_overlap(groups, random_val["subset"], "validation", "train") > 0.5
    val_share = (grouped["subset"] == "validation").sum() / (grouped["fold"] != 0).sum()
    assert 0.08 < val_share < 0.12


def test_make_split_is_deterministic():
    labels, groups = synthetic(12, n=800)
    pd.testing.assert_frame_equal(make_split(labels, groups, 4), make_split(labels, groups, 4))


# --------------------------------------------------------------------------
# quality measures
# --------------------------------------------------------------------------

def test_fold_deviation_and_overlap_hand_computed():
    labels = pd.DataFrame({"a": [1, 1, 0, 0], "b": [1, 0, 1, 0]}, index=[1, 2, 3, 4]).astype(bool)
    folds = pd.Series([0, 0, 1, 1], index=[1, 2, 3, 4])
    dev = fold_deviation(labels, folds)
    # a: 1.0 in fold 0, 0.0 in fold 1, 0.5 overall; b: 0.5 everywhere
    assert dev.loc[0, "a"] == 0.5 and dev.loc[1, "a"] == 0.5
    assert dev.loc[0, "b"] == 0.0 and dev.loc[1, "b"] == 0.0
    groups = pd.Series(["x", "y", "x", "z"], index=[1, 2, 3, 4])
    subset = pd.Series(["train", "train", "validation", "validation"], index=[1, 2, 3, 4])
    assert group_overlap(groups, subset, "validation", "train") == 0.5
    q = split_quality(labels, folds, groups)
    assert q["shared_groups"] == 1 and q["max_dev"] == 0.5 and q["mean_dev"] == 0.25


def test_released_data_split_is_at_least_as_stratified_as_the_official_one():
    from ctxpaper.data import load_labels, load_split

    official = load_split()
    labels = load_labels().loc[official.index]
    artist = official["artist_id"]
    ours = make_split(labels, artist, seed=0)
    assert_group_disjoint(ours["subset"].astype(str), artist)
    q_ours = split_quality(labels, ours["fold"], artist)
    q_official = split_quality(labels, official["fold"], artist)
    assert q_official["shared_groups"] == 0
    assert q_ours["max_dev"] <= q_official["max_dev"]
    assert q_ours["mean_dev"] <= q_official["mean_dev"]
    # The official validation set was drawn by track: most share an artist with train.
    assert group_overlap(artist, official["subset"], "validation", "train") == pytest.approx(0.8726, abs=1e-4)


def test_compare_splits_rows_and_reference():
    labels, groups = synthetic(13, n=500)
    ref = stratified_group_folds(labels, groups, seed=9)
    table = compare_splits(labels, groups, seeds=[0, 1], reference=ref)
    assert len(table) == 1 + 3 * 2
    assert table.iloc[0]["method"] == "released folds" and table.iloc[0]["seed"] == -1
    assert (table["shared_groups"] == 0).all()
    assert (table["tracks"] == len(labels)).all()
    # The reference row measures exactly the split it was given.
    assert table.iloc[0]["max_dev"] == split_quality(labels, ref, groups)["max_dev"]
