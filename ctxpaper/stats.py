"""Descriptive statistics of a label matrix and of a split (paper §3.2, §4.1).

Used by chapter 01 on the released files and by later chapters on simulated
ones: positives per context, labels per track, per-subset sizes and context
proportions, and the artist overlap between subsets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .splits import SUBSETS, group_overlap


def _as_bool_frame(labels: pd.DataFrame) -> pd.DataFrame:
    if not all(dt == bool for dt in labels.dtypes):
        raise TypeError("labels must be a DataFrame of bool columns (see ctxpaper.data.load_labels)")
    return labels


def label_summary(labels: pd.DataFrame) -> pd.Series:
    """Tracks, contexts, positives per context (mean/min/max), labels per track, density."""
    labels = _as_bool_frame(labels)
    per_context = labels.sum(axis=0)
    per_track = labels.sum(axis=1)
    return pd.Series({
        "tracks": len(labels),
        "contexts": labels.shape[1],
        "positives per context (mean)": float(per_context.mean()),
        "positives per context (min)": int(per_context.min()),
        "positives per context (max)": int(per_context.max()),
        "labels per track (mean)": float(per_track.mean()),
        "tracks with all labels": int((per_track == labels.shape[1]).sum()),
        "tracks with no label": int((per_track == 0).sum()),
        "label density": float(per_track.mean() / labels.shape[1]),
    })


def labels_per_track(labels: pd.DataFrame) -> pd.Series:
    """Number of tracks with k labels, for k = 0 … number of contexts."""
    labels = _as_bool_frame(labels)
    k = labels.sum(axis=1).to_numpy()
    counts = np.bincount(k, minlength=labels.shape[1] + 1)
    return pd.Series(counts, index=pd.RangeIndex(len(counts), name="labels per track"), name="tracks")


def subset_sizes(split: pd.DataFrame) -> pd.DataFrame:
    """Tracks and artists per subset, and each subset's share of the split."""
    g = split.groupby("subset", observed=True)
    out = pd.DataFrame({
        "tracks": g.size(),
        "artists": g["artist_id"].nunique(),
    }).reindex(list(SUBSETS))
    out["share of tracks"] = out["tracks"] / out["tracks"].sum()
    return out


def subset_proportions(labels: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """Per-context positive rate in each subset and over the whole split.

    Returns a (contexts × [all, train, validation, test]) frame of proportions.
    """
    labels = _as_bool_frame(labels).loc[split.index]
    out = {"all": labels.mean(axis=0)}
    for s in SUBSETS:
        out[s] = labels[(split["subset"] == s).to_numpy()].mean(axis=0)
    return pd.DataFrame(out)


def artist_overlap(split: pd.DataFrame) -> pd.DataFrame:
    """How much each subset shares artists with each other subset.

    Cell (A, B) is the fraction of A's tracks whose artist also has a track in
    B (diagonal: 1). An artist-disjoint pair gives 0 both ways.
    """
    present = set(split["subset"])
    out = pd.DataFrame(index=list(SUBSETS), columns=list(SUBSETS), dtype=float)
    for a in SUBSETS:
        for b in SUBSETS:
            if a in present:
                out.loc[a, b] = group_overlap(split["artist_id"], split["subset"], a, b)
    out.index.name = "tracks of"
    out.columns.name = "share an artist with"
    return out
