"""Tests for ctxpaper.playlists: the §3.1 procedure."""

from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from ctxpaper.contexts import CONTEXTS, match_contexts
from ctxpaper.catalogue import Catalogue, CatalogueError
from ctxpaper.playlists import _first_of_pairs, _max_group_count, build_dataset
from test_catalogue import cat, random_catalogue


def distinct(pid, tracks, artist=None, album=None):
    """Rows of one playlist with distinct artists and albums unless given."""
    return [(pid, t, artist if artist is not None else 1000 + t,
             album if album is not None else 5000 + t) for t in tracks]


def reference(catalogue, min_playlists=3, max_tracks=100, max_share=0.25):
    """Brute-force, loop-by-loop reading of §3.1 (independent of the vectorised code)."""
    by_pl = defaultdict(dict)
    for p, t, a, b in catalogue.tracks.itertuples(index=False):
        by_pl[p].setdefault(t, (a, b))  # a repeated track counts once
    counts = defaultdict(lambda: defaultdict(int))
    for p, title in catalogue.playlists.itertuples(index=False):
        ctx = match_contexts(title)
        items = by_pl.get(p, {})
        n = len(items)
        if not ctx or n == 0 or n > max_tracks:
            continue
        dominated = False
        for k in (0, 1):
            groups = defaultdict(int)
            for i, (t, ab) in enumerate(items.items()):
                key = ab[k] if not pd.isna(ab[k]) else ("missing", t)
                groups[key] += 1
            if max(groups.values()) > max_share * n:
                dominated = True
        if dominated:
            continue
        for t in items:
            for c in ctx:
                counts[t][c] += 1
    labels = {t: {c for c, v in cs.items() if v >= min_playlists} for t, cs in counts.items()}
    return {t: s for t, s in labels.items() if s}, counts


def test_threshold_duplicates_and_counts():
    pls = [(i, "party") for i in range(1, 6)] + [(6, "chill night")]
    rows = []
    for p in range(1, 6):
        rows += distinct(p, [10 + p, 20 + p, 30 + p, 40 + p])  # fillers
    rows += [(p, 1, 901, 951) for p in (1, 2, 3)]  # track 1 in exactly 3 party playlists
    rows += [(p, 2, 902, 952) for p in (1, 2)] + [(2, 2, 902, 952)] * 3  # twice, repeats
    rows += distinct(6, [1, 50, 51, 52, 53])
    d = build_dataset(cat(pls, rows))
    assert d.labels.loc[1].to_dict() == {c: c == "party" for c in CONTEXTS}
    assert 2 not in d.labels.index  # 2 playlists (one listing it 4 times) < 3
    assert d.counts.loc[1, "party"] == 3
    assert d.counts.loc[1, "chill"] == 0 and d.raw_counts.loc[1, "chill"] == 1
    assert d.raw_counts.loc[2, "party"] == 2
    assert d.labels.dtypes.eq(bool).all()
    assert list(d.labels.columns) == list(CONTEXTS)
    assert d.labels.index.name == "track_id"
    # a stricter threshold
    d4 = build_dataset(cat(pls, rows), min_playlists=4)
    assert 1 not in d4.labels.index


def test_length_and_share_rules_and_funnel():
    pls = [(1, "gym"), (2, "gym"), (3, "gym"), (4, "gym"), (5, "gym"), (6, "gym"),
           (7, "no keyword"), (8, None), (9, "gym")]
    rows = (distinct(1, range(100))                       # 100 tracks: kept
            + distinct(2, range(101))                     # 101: too long
            + distinct(3, [1, 2, 3]) + [(3, 4, 1999, 7)]  # 4 tracks, 1 per artist: 25% exactly, kept
            + distinct(4, [1, 2, 3]) + [(4, 4, 1001, 5004), (4, 5, 1001, 5005)]  # artist 2/5 > 25%
            + distinct(5, [1, 2, 3, 4]) + [(5, 6, 77, 5001)]  # album 5001 twice: 2/5 > 25%
            + [(6, t, None, None) for t in range(1, 5)]   # missing artist/album: singletons, kept
            + distinct(7, [1, 2, 3, 4]) + distinct(8, [1, 2, 3, 4]))
    d = build_dataset(cat(pls, rows), min_playlists=1)
    f = d.funnel.set_index("step")
    assert f.loc["read", "count"] == 9
    assert f.loc["no context keyword", "removed"] == 2
    assert f.loc["no tracks", "removed"] == 1  # playlist 9
    assert f.loc["more than max_tracks", "removed"] == 1
    assert f.loc["one artist > max_share", "removed"] == 1
    assert f.loc["one album > max_share", "removed"] == 1
    assert f.loc["kept", "count"] == 3
    assert d.per_context.loc["gym", "playlists"] == 3
    assert d.raw_counts.loc[1, "gym"] == 3  # playlists 1, 3, 6
    assert d.raw_counts.loc[99, "gym"] == 1
    assert 100 not in d.raw_counts.index  # only in the 101-track playlist


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    titles = ["party", "Chill summer", "sad 😢", "carnival", None, "WORKOUTS", "sleep", "club night"]
    n_pl = 40
    pls = [(p, titles[rng.integers(len(titles))]) for p in range(n_pl)]
    rows = []
    for p in range(n_pl):
        for _ in range(int(rng.integers(0, 9))):
            t = int(rng.integers(0, 25))
            a = None if rng.random() < 0.1 else int(t % 7)
            b = None if rng.random() < 0.1 else int(t % 11)
            rows.append((p, t, a, b))
    c = cat(pls, rows)
    c.tracks["artist_id"] = c.tracks["artist_id"].astype("Int64")
    c.tracks["album_id"] = c.tracks["album_id"].astype("Int64")
    for k, mt, ms in [(1, 100, 0.25), (2, 6, 0.5), (3, 100, 1.0)]:
        d = build_dataset(c, min_playlists=k, max_tracks=mt, max_share=ms)
        ref, ref_counts = reference(c, k, mt, ms)
        got = {t: {cc for cc in CONTEXTS if row[cc]} for t, row in d.labels.iterrows()}
        assert got == ref
        for t, row in d.raw_counts.iterrows():
            assert {cc: v for cc, v in row.items() if v} == dict(ref_counts[t])


def test_unknown_playlist_in_tracks_is_an_error():
    with pytest.raises(CatalogueError, match="row 1: playlist_id 9"):
        build_dataset(cat([(1, "party")], [(1, 1, 1, 1), (9, 2, 2, 2)]))


@pytest.mark.parametrize("kw,val", [("min_playlists", 0), ("max_tracks", 1.5), ("max_share", 0),
                                    ("max_share", 1.5)])
def test_bad_parameters(kw, val):
    with pytest.raises(ValueError, match=kw):
        build_dataset(cat([(1, "party")], [(1, 1, 1, 1)]), **{kw: val})


@pytest.mark.parametrize("seed", range(3))
def test_output_does_not_depend_on_row_order(seed):
    c = random_catalogue(seed)
    d = build_dataset(c, min_playlists=2)
    shuffled = Catalogue(c.playlists.sample(frac=1, random_state=seed).reset_index(drop=True),
                         c.tracks.sample(frac=1, random_state=seed).reset_index(drop=True))
    e = build_dataset(shuffled, min_playlists=2)
    assert d.labels.index.is_monotonic_increasing and len(d.labels) > 0
    for f in ("labels", "counts", "raw_counts", "track_info", "per_context", "funnel"):
        pd.testing.assert_frame_equal(getattr(d, f), getattr(e, f))


def test_first_of_pairs_is_pandas_first_occurrence():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, 5000).astype(np.int32)
    b = rng.integers(0, 40, 5000).astype(np.int32)
    want = ~pd.DataFrame({"a": a, "b": b}).duplicated().to_numpy()
    assert np.array_equal(_first_of_pairs(a, b, 40), want)
    assert _first_of_pairs(a[:0], b[:0], 40).shape == (0,)


def test_max_group_count_matches_loops():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 50, 3000)
    k = rng.integers(0, 9, 3000)
    want = np.zeros(60, dtype=np.int64)
    for gi in range(60):
        if (g == gi).any():
            want[gi] = np.bincount(k[g == gi]).max()
    assert np.array_equal(_max_group_count(g, k, 60), want)


