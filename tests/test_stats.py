"""Descriptive statistics on small hand-made label matrices and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxpaper import stats

COLS = ["a", "b", "c"]


@pytest.fixture()
def labels():
    m = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 1], [0, 1, 0]], dtype=bool)
    return pd.DataFrame(m, index=pd.Index([10, 11, 12, 13, 14, 15], name="song_id"), columns=COLS)


@pytest.fixture()
def split():
    return pd.DataFrame({
        "artist_id": [1, 1, 2, 3, 3, 4],
        "subset": ["train", "validation", "train", "test", "test", "train"],
    }, index=pd.Index([10, 11, 12, 13, 14, 15], name="song_id"))


def test_label_summary_and_labels_per_track(labels):
    s = stats.label_summary(labels)
    assert s["tracks"] == 6 and s["positives per context (max)"] == 4
    assert s["labels per track (mean)"] == pytest.approx(10 / 6)
    assert s["tracks with all labels"] == 1 and s["tracks with no label"] == 0
    assert stats.labels_per_track(labels).tolist() == [0, 3, 2, 1]


def test_labels_must_be_bool(labels):
    with pytest.raises(TypeError, match="bool columns"):
        stats.label_summary(labels.astype(int))


def test_subset_sizes_and_proportions(labels, split):
    sizes = stats.subset_sizes(split)
    assert sizes.loc["train", "tracks"] == 3 and sizes.loc["test", "artists"] == 1
    assert sizes["share of tracks"].sum() == pytest.approx(1.0)
    props = stats.subset_proportions(labels, split)
    assert props.loc["c", "test"] == 1.0 and props.loc["a", "train"] == pytest.approx(2 / 3)
    assert props.loc["b", "all"] == pytest.approx(3 / 6)


def test_artist_overlap(split):
    ov = stats.artist_overlap(split)
    assert ov.loc["validation", "train"] == 1.0  # artist 1 is in train too
    assert ov.loc["train", "validation"] == pytest.approx(1 / 3)
    assert ov.loc["test", "train"] == 0.0 and ov.loc["train", "test"] == 0.0
    assert (np.diag(ov.to_numpy()) == 1).all()
