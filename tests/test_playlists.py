"""Tests for ctxpaper.playlists: readers and the §3.1 procedure."""

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from ctxpaper.contexts import CONTEXTS, match_contexts
from ctxpaper.playlists import (Catalogue, CatalogueError, build_dataset, normalise_ids,
                                read_deezer_json, read_mpd, read_tables)


def cat(playlists, rows):
    pl = pd.DataFrame(playlists, columns=["playlist_id", "title"])
    tr = pd.DataFrame(rows, columns=["playlist_id", "track_id", "artist_id", "album_id"])
    return Catalogue(pl, tr)


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


def test_duplicate_playlist_id_is_an_error():
    with pytest.raises(CatalogueError, match="duplicate playlist_id"):
        cat([(1, "a"), (1, "b")], [])


# --------------------------------------------------------------------- ids
def test_normalise_ids_mixed_types():
    assert normalise_ids([1, "2", 3.0], "x", False).dtype == np.int64
    s = normalise_ids([1, "spotify:track:abc"], "x", False)
    assert list(s) == ["1", "spotify:track:abc"]
    s = normalise_ids([1, None, ""], "x", True)
    assert str(s.dtype) == "Int64" and s.isna().sum() == 2
    with pytest.raises(CatalogueError, match="row 1: id is missing"):
        normalise_ids([1, None], "x", False)
    with pytest.raises(CatalogueError, match="row 0"):
        normalise_ids([2.5], "x", False)
    with pytest.raises(CatalogueError, match="row 1"):
        normalise_ids(["1", True], "x", False)


# --------------------------------------------------------------------- readers
def mpd_playlist(pid, name, tracks):
    return {"name": name, "pid": pid, "num_tracks": len(tracks), "tracks": [
        {"pos": i, "track_uri": f"spotify:track:{t}", "artist_uri": f"spotify:artist:{a}",
         "album_uri": f"spotify:album:{b}", "track_name": "x", "artist_name": "y",
         "album_name": "z", "duration_ms": 1000} for i, (t, a, b) in enumerate(tracks)]}


def test_read_mpd_and_build(tmp_path):
    tracks = [(f"t{i}", f"a{i}", f"b{i}") for i in range(4)]
    doc = {"info": {"slice": "0-2"}, "playlists": [mpd_playlist(p, "Party!", tracks) for p in range(3)]
           + [mpd_playlist(3, "rock", tracks), {"pid": 4, "tracks": []}]}
    path = tmp_path / "mpd.slice.0-4.json"
    path.write_text(json.dumps(doc))
    c = read_mpd([path])
    assert len(c.playlists) == 5 and c.playlists["title"].isna().sum() == 1
    d = build_dataset(c)
    assert sorted(d.labels.index) == [f"spotify:track:t{i}" for i in range(4)]
    assert d.labels["party"].all() and d.counts["party"].eq(3).all()
    assert d.track_info.loc["spotify:track:t0", "artist_id"] == "spotify:artist:a0"


def test_read_mpd_malformed_names_file_and_playlist(tmp_path):
    good = json.dumps(mpd_playlist(0, "a", [("t", "a", "b")]))
    path = tmp_path / "mpd.slice.bad.json"
    path.write_text('{"info": {}, "playlists": [' + good + ", " + good + ', {"pid": 2, "name": "x",, }]}')
    with pytest.raises(CatalogueError, match=r"mpd\.slice\.bad\.json.*playlist index 2"):
        read_mpd(path)
    doc = {"playlists": [mpd_playlist(0, "a", []), {"name": "no pid", "tracks": []}]}
    path.write_text(json.dumps(doc))
    with pytest.raises(CatalogueError, match="playlist index 1: no 'pid'"):
        read_mpd(path)
    doc = {"playlists": [{"pid": 0, "name": "a", "tracks": [{"artist_uri": "x"}]}]}
    path.write_text(json.dumps(doc))
    with pytest.raises(CatalogueError, match="playlist index 0.*track index 0"):
        read_mpd(path)
    path.write_text("[1, 2]")
    with pytest.raises(CatalogueError, match="not an MPD slice"):
        read_mpd(path)


def test_read_deezer_json_mixed_ids_and_missing(tmp_path):
    def pl(pid, title, ids):
        return {"id": pid, "title": title, "tracks": {"data": [
            {"id": t, "artist": {"id": 7} if i else {}, "album": {"id": "8"}} for i, t in enumerate(ids)]}}
    (tmp_path / "a.json").write_text(json.dumps(pl(1, "chill", [10, "11", 12])))
    (tmp_path / "b.json").write_text(json.dumps([pl("2", None, [13]), pl(3, "sad", [])]))
    c = read_deezer_json([tmp_path / "a.json", tmp_path / "b.json"])
    assert c.tracks["track_id"].dtype == np.int64
    assert c.playlists["playlist_id"].tolist() == [1, 2, 3]
    assert c.tracks["artist_id"].isna().sum() == 2
    d = build_dataset(c, min_playlists=1, max_share=1.0)  # 3 tracks: any artist is > 25 %
    assert sorted(d.labels.index) == [10, 11, 12]
    (tmp_path / "e.json").write_text(json.dumps({"error": {"type": "DataException"}}))
    with pytest.raises(CatalogueError, match="e.json: playlist index 0: the API returned an error"):
        read_deezer_json(tmp_path / "e.json")
    (tmp_path / "m.json").write_text("[" + json.dumps(pl(1, "a", [1])) + ", {\"id\": 2, title}]")
    with pytest.raises(CatalogueError, match="m.json: malformed JSON at playlist index 1"):
        read_deezer_json(tmp_path / "m.json")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_read_tables_roundtrip(tmp_path, fmt):
    pl = pd.DataFrame({"playlist_id": [1, 2], "title": ["party", None]})
    tr = pd.DataFrame({"playlist_id": [1, 1, 2], "track_id": [5, 6, 5],
                       "artist_id": pd.array([1, None, 2], dtype="Int64"),
                       "album_id": pd.array([3, 4, None], dtype="Int64")})
    p, t = tmp_path / f"p.{fmt}", tmp_path / f"t.{fmt}"
    getattr(pl, f"to_{fmt}")(p, index=False)
    getattr(tr, f"to_{fmt}")(t, index=False)
    c = read_tables(p, t)
    assert c.playlists["title"].isna().tolist() == [False, True]
    assert c.tracks["track_id"].tolist() == [5, 6, 5]
    assert c.tracks["artist_id"].isna().tolist() == [False, True, False]


def test_read_tables_errors(tmp_path):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text("playlist_id,title\n1,party\n")
    t.write_text("playlist_id,track_id,artist_id\n1,2,3\n")
    with pytest.raises(CatalogueError, match=r"t\.csv: missing columns \['album_id'\]"):
        read_tables(p, t)
    t.write_text("playlist_id,track_id,artist_id,album_id\n1,2,3,4\n1,,3,4\n")
    with pytest.raises(CatalogueError, match=r"t\.csv: track_id: row 1: id is missing"):
        read_tables(p, t)
    with pytest.raises(CatalogueError, match="unknown table format"):
        read_tables(tmp_path / "p.txt", t)


def random_catalogue(seed, n_pl=80, n_tracks=30):
    """Playlists of 4-11 rows (repeats included); each track has its own artist and album."""
    rng = np.random.default_rng(seed)
    titles = ["party", "Chill summer", "sad 😢", "carnival", None, "WORKOUTS", "sleep", "club night"]
    pls = [(p, titles[rng.integers(len(titles))]) for p in range(n_pl)]
    rows = [(p, int(t), 1000 + int(t), 5000 + int(t))
            for p in range(n_pl) for t in rng.integers(0, n_tracks, int(rng.integers(4, 12)))]
    return cat(pls, rows)


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
    from ctxpaper.playlists import _first_of_pairs
    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, 5000).astype(np.int32)
    b = rng.integers(0, 40, 5000).astype(np.int32)
    want = ~pd.DataFrame({"a": a, "b": b}).duplicated().to_numpy()
    assert np.array_equal(_first_of_pairs(a, b, 40), want)
    assert _first_of_pairs(a[:0], b[:0], 40).shape == (0,)


def test_max_group_count_matches_loops():
    from ctxpaper.playlists import _max_group_count
    rng = np.random.default_rng(1)
    g = rng.integers(0, 50, 3000)
    k = rng.integers(0, 9, 3000)
    want = np.zeros(60, dtype=np.int64)
    for gi in range(60):
        if (g == gi).any():
            want[gi] = np.bincount(k[g == gi]).max()
    assert np.array_equal(_max_group_count(g, k, 60), want)


def test_read_parquet_keeps_integer_widths_and_exact_large_ids(tmp_path):
    c = random_catalogue(4)
    big = 2**53 + 1  # float64 would round this to 2**53
    narrow = c.tracks.astype(np.int32)
    wide = c.tracks.astype(np.int64) + big
    wide["artist_id"] = wide["artist_id"].astype("Int64").mask(wide.index % 5 == 0)
    c.playlists.to_parquet(tmp_path / "p.parquet")
    narrow.to_parquet(tmp_path / "t32.parquet")
    wide.to_parquet(tmp_path / "t64.parquet")
    pl64 = c.playlists.assign(playlist_id=c.playlists["playlist_id"] + big)
    pl64.to_parquet(tmp_path / "p64.parquet")

    c32 = read_tables(tmp_path / "p.parquet", tmp_path / "t32.parquet")
    assert (c32.tracks.dtypes == np.int32).all()  # kept as stored: no widening copy
    c64 = read_tables(tmp_path / "p64.parquet", tmp_path / "t64.parquet")
    assert str(c64.tracks["artist_id"].dtype) == "Int64"
    assert c64.tracks["artist_id"].isna().sum() == (wide.index % 5 == 0).sum()
    assert c64.tracks["track_id"].min() == big + c.tracks["track_id"].min()
    d32 = build_dataset(c32, min_playlists=2)
    assert d32.labels.index.dtype == np.int64 and len(d32.labels) > 0
    pd.testing.assert_frame_equal(d32.raw_counts, build_dataset(c, min_playlists=2).raw_counts)
    d64 = build_dataset(c64, min_playlists=2)
    pd.testing.assert_frame_equal(d64.raw_counts,
                                  build_dataset(Catalogue(pl64, wide), min_playlists=2).raw_counts)
    assert d64.labels.index.min() >= big


def test_integer_playlist_ids_of_different_widths_join():
    c = random_catalogue(5)
    tr = c.tracks.astype(np.int64)
    pl = c.playlists.assign(playlist_id=c.playlists["playlist_id"].astype(np.int32))
    from ctxpaper.playlists import _catalogue_from_columns
    joined = _catalogue_from_columns(pl["playlist_id"], pl["title"], tr, "p", "t")
    assert joined.playlists["playlist_id"].dtype == np.int32  # not turned into strings
    pd.testing.assert_frame_equal(build_dataset(joined).labels, build_dataset(c).labels)


def test_unsigned_ids_beyond_int64_are_an_error():
    s = pd.Series(np.array([1, 2**63 + 5], dtype=np.uint64))
    with pytest.raises(CatalogueError, match=r"t: row 1: .* does not fit in int64"):
        normalise_ids(s, "t", False)
    assert normalise_ids(pd.Series(np.array([1, 2], dtype=np.uint8)), "t", False).dtype == np.int64


def test_read_csv_types_follow_the_file(tmp_path):
    import gzip
    p, t = tmp_path / "p.csv", tmp_path / "t.csv.gz"
    p.write_text('playlist_id,title\n1,2020\n2,NA\n3,""\n4,party\n')
    with gzip.open(t, "wt") as f:
        f.write("playlist_id,track_id,artist_id,album_id\n1,5,7,\n2,6.0,007,8\n4,9,,true\n")
    c = read_tables(p, t)
    # titles are text, only the empty field is missing
    assert c.playlists["title"].tolist() == ["2020", "NA", None, "party"]
    assert c.playlists["playlist_id"].dtype == np.int64
    # "6.0" is not an integer id: the column is read again as text, so ids stay as written
    assert c.tracks["track_id"].tolist() == ["5", "6.0", "9"]
    assert str(c.tracks["artist_id"].dtype) == "Int64"  # integers with a gap; "007" is 7
    assert c.tracks["artist_id"].isna().tolist() == [False, False, True]
    assert c.tracks["artist_id"].dropna().tolist() == [7, 7]
    assert c.tracks["album_id"].tolist() == [None, "8", "true"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_missing_track_id_is_an_error_in_either_format(tmp_path, fmt):
    pl = pd.DataFrame({"playlist_id": [1], "title": ["party"]})
    tr = pd.DataFrame({"playlist_id": [1, 1], "track_id": pd.array([5, None], dtype="Int64"),
                       "artist_id": [1, 2], "album_id": [3, 4]})
    p, t = tmp_path / f"p.{fmt}", tmp_path / f"t.{fmt}"
    getattr(pl, f"to_{fmt}")(p, index=False)
    getattr(tr, f"to_{fmt}")(t, index=False)
    with pytest.raises(CatalogueError, match=rf"t\.{fmt}: track_id: row 1: id is missing"):
        read_tables(p, t)


def test_read_csv_text_id_after_the_first_block(tmp_path):
    # Arrow streams the file in 1 MB blocks with ids typed as int64; a text id
    # far down must still be read, as text, with every row kept.
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text("playlist_id,title\n1,party\n")
    n = 150_000
    body = "".join(f"1,{i},{i},{i}\n" for i in range(n))
    t.write_text("playlist_id,track_id,artist_id,album_id\n" + body + "1,spotify:track:x,1,\n")
    assert t.stat().st_size > 2 * 2**20
    c = read_tables(p, t)
    assert len(c.tracks) == n + 1
    assert c.tracks["track_id"].iloc[[0, -1]].tolist() == ["0", "spotify:track:x"]
    assert c.tracks["artist_id"].dtype == np.int64
    assert c.tracks["album_id"].isna().sum() == 1


def test_read_csv_header_only(tmp_path):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text("playlist_id,title\n")
    t.write_text("playlist_id,track_id,artist_id,album_id\n")
    c = read_tables(p, t)
    assert len(c.playlists) == 0 and len(c.tracks) == 0
    assert build_dataset(c).funnel.set_index("step").loc["kept", "count"] == 0
