"""Tests for ctxpaper.catalogue: the Catalogue value, id reading, the JSON and table readers."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from ctxpaper.catalogue import (Catalogue, CatalogueError, _catalogue_from_columns, normalise_ids,
                                read_deezer_json, read_mpd, read_tables)
from ctxpaper.playlists import build_dataset


def cat(playlists, rows):
    pl = pd.DataFrame(playlists, columns=["playlist_id", "title"])
    tr = pd.DataFrame(rows, columns=["playlist_id", "track_id", "artist_id", "album_id"])
    return Catalogue(pl, tr)


def random_catalogue(seed, n_pl=80, n_tracks=30):
    """Playlists of 4-11 rows (repeats included); each track has its own artist and album."""
    rng = np.random.default_rng(seed)
    titles = ["party", "Chill summer", "sad 😢", "carnival", None, "WORKOUTS", "sleep", "club night"]
    pls = [(p, titles[rng.integers(len(titles))]) for p in range(n_pl)]
    rows = [(p, int(t), 1000 + int(t), 5000 + int(t))
            for p in range(n_pl) for t in rng.integers(0, n_tracks, int(rng.integers(4, 12)))]
    return cat(pls, rows)


def test_duplicate_playlist_id_is_an_error():
    with pytest.raises(CatalogueError, match="duplicate playlist_id"):
        cat([(1, "a"), (1, "b")], [])


# --------------------------------------------------------------------- ids
def test_normalise_ids_kinds_and_missing():
    assert normalise_ids([1, "2", 3.0], "x", False).dtype == np.int64
    uris = normalise_ids([" spotify:track:abc", "spotify:track:def "], "x", False)
    assert uris.tolist() == ["spotify:track:abc", "spotify:track:def"]
    s = normalise_ids([1, None, ""], "x", True)
    assert str(s.dtype) == "Int64" and s.isna().sum() == 2
    with pytest.raises(CatalogueError, match="row 1: id is missing"):
        normalise_ids([1, None], "x", False)
    with pytest.raises(CatalogueError, match="row 1"):
        normalise_ids(["1", True], "x", False)


def test_every_spelling_of_an_integer_is_that_integer():
    spellings = [10, np.int32(10), 10.0, np.float32(10), "10", " 10 ", "10.0", "10.", "+10", "0010"]
    for what in spellings:
        s = normalise_ids([what, 11], "x", False)
        assert s.dtype == np.int64 and s.tolist() == [10, 11], what
    s = normalise_ids(pd.Series([10.0, np.nan, 12.0]), "x", True)
    assert str(s.dtype) == "Int64" and s.tolist()[::2] == [10, 12]


@pytest.mark.parametrize("values, message", [
    ([1, 10.5], r"t: row 1: 10\.5 is not an integer id"),
    ([1, "10.5"], r"t: row 1: '10\.5' is not an integer id"),
    ([1, "1.23457E+11"], r"t: row 1: '1\.23457E\+11' is not an integer id"),
    ([1, float("inf")], r"t: row 1: inf is not an integer id"),
    ([1, 2, "abc"], r"t: row 2: 'abc' is text among integer ids \(row 0: 1\)"),
    (["spotify:track:a", "7"], r"t: row 1: '7' is an integer among text ids"),
    ([1, 2**63], r"t: row 1: 9223372036854775808 does not fit in int64"),
    (["1", "-99999999999999999999"], r"t: row 1: -99999999999999999999 does not fit in int64"),
    ([1, 2.0**60], r"t: row 1: .* is a floating-point id above 2\*\*53"),
    ([1, float("nan")], r"t: row 1: id is missing"),
    ([1, "  "], r"t: row 1: id is empty"),
])
def test_ids_that_are_not_integers_name_the_row(values, message):
    with pytest.raises(CatalogueError, match=message):
        normalise_ids(values, "t", False)
    series = pd.Series(values, dtype=float) if all(isinstance(v, float) for v in values[1:]) else None
    if series is not None and not np.isnan(series.iloc[-1]):  # the vectorised float path says the same
        with pytest.raises(CatalogueError, match=message):
            normalise_ids(series, "t", False)


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


def deezer_playlist(pid, title, ids):
    return {"id": pid, "title": title, "tracks": {"data": [{"id": t, "artist": {"id": 7}} for t in ids]}}


def test_json_ids_are_checked_where_they_are(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([deezer_playlist(1, "party", [10, "11", 12.0])]))
    (tmp_path / "b.json").write_text(json.dumps([deezer_playlist(2, "sad", [13]),
                                                 deezer_playlist(3, "sad", [14, 15.5])]))
    with pytest.raises(CatalogueError, match=r"b\.json: playlist index 1 \(id 3\), track index 1: "
                                             r"track 'id': 15\.5 is not an integer id"):
        read_deezer_json([tmp_path / "a.json", tmp_path / "b.json"])
    (tmp_path / "b.json").write_text(json.dumps([deezer_playlist(2, "sad", ["abc"])]))
    with pytest.raises(CatalogueError, match=r"b\.json: playlist index 0 \(id 2\), track index 0: "
                                             r"track 'id': 'abc' is text among integer ids "
                                             r"\(.*a\.json: playlist index 0 \(id 1\), track index 0: 10\)"):
        read_deezer_json([tmp_path / "a.json", tmp_path / "b.json"])
    (tmp_path / "b.json").write_text(json.dumps([deezer_playlist(2, "sad", [2**64])]))
    with pytest.raises(CatalogueError, match=r"b\.json: .*track index 0: track 'id': 18446744073709551616 "
                                             "does not fit in int64"):
        read_deezer_json([tmp_path / "a.json", tmp_path / "b.json"])
    c = read_deezer_json(tmp_path / "a.json")
    assert c.tracks["track_id"].tolist() == [10, 11, 12] and c.tracks["track_id"].dtype == np.int64


def test_hostile_json_is_refused_naming_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for reader in (read_mpd, read_deezer_json):
        with pytest.raises(CatalogueError, match=r"deep\.json: JSON nested too deeply"):
            reader(deep)
    big = tmp_path / "big.json"
    big.write_text(json.dumps([deezer_playlist(i, "party", list(range(50))) for i in range(200)]))
    assert len(read_deezer_json(big)) == 200
    with pytest.raises(CatalogueError, match=r"big\.json: larger than 10,000 bytes"):
        read_deezer_json(big, max_bytes=10_000)
    with pytest.raises(CatalogueError, match=r"big\.json: larger than 10,000 bytes"):
        read_mpd(big, max_bytes=10_000)
    # a device never ends: refused before it is read
    with pytest.raises(CatalogueError, match=r"/dev/zero: not a regular file"):
        read_deezer_json("/dev/zero", max_bytes=100)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    with pytest.raises(CatalogueError, match=r"fifo\.json: not a regular file"):
        read_mpd(fifo)
    digits = tmp_path / "digits.json"
    digits.write_text('{"id": ' + "9" * 5000 + "}")
    with pytest.raises(CatalogueError, match=r"digits\.json: unreadable JSON"):
        read_deezer_json(digits)
    with pytest.raises(CatalogueError, match=r"nothing\.json: file not found"):
        read_mpd(tmp_path / "nothing.json")


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
        f.write("playlist_id,track_id,artist_id,album_id\n1,5,7,\n2,6.0,007,8\n4, 9 ,,\n")
    c = read_tables(p, t)
    # titles are text, only the empty field is missing
    assert c.playlists["title"].tolist() == ["2020", "NA", None, "party"]
    assert c.playlists["playlist_id"].dtype == np.int64
    # "6.0" and " 9 " are integers: the column stays int64
    assert c.tracks["track_id"].dtype == np.int64 and c.tracks["track_id"].tolist() == [5, 6, 9]
    assert str(c.tracks["artist_id"].dtype) == "Int64"  # integers with a gap; "007" is 7
    assert c.tracks["artist_id"].isna().tolist() == [False, False, True]
    assert c.tracks["artist_id"].dropna().tolist() == [7, 7]
    # text among integer ids is an error naming file, column and row
    with gzip.open(t, "wt") as f:
        f.write("playlist_id,track_id,artist_id,album_id\n1,5,7,\n2,6,7,8\n4,9,,true\n")
    with pytest.raises(CatalogueError, match=r"t\.csv\.gz: album_id: row 2: 'true' is text among integer"):
        read_tables(p, t)


def _tables(tmp_path, fmt, playlists, tracks):
    """Write two DataFrames in ``fmt`` and return their paths."""
    p, t = tmp_path / f"p.{fmt}", tmp_path / f"t.{fmt}"
    getattr(playlists, f"to_{fmt}")(p, index=False)
    getattr(tracks, f"to_{fmt}")(t, index=False)
    return p, t


@pytest.mark.parametrize("fmt, spelling", [("csv", "text"), ("parquet", "text"), ("parquet", "float")])
def test_decimal_spelling_of_a_track_id_gives_the_same_labels(tmp_path, fmt, spelling):
    # A spreadsheet export writes some ids as "10.0" (text) or stores the whole
    # column as floats. The track must stay one track and keep its label.
    c = random_catalogue(7)
    want = build_dataset(c)
    counts = want.counts.max(axis=1)
    tid = int(counts.index[(counts == 3).to_numpy()][0])  # tagged by exactly 3 playlists
    tr = c.tracks.copy()
    if spelling == "float":
        tr["track_id"] = tr["track_id"].astype(float)
    else:
        tr["track_id"] = tr["track_id"].astype(str)
        tr.loc[tr.index[tr["track_id"] == str(tid)][0], "track_id"] = f"{tid}.0"
    got = build_dataset(read_tables(*_tables(tmp_path, fmt, c.playlists, tr)))
    assert tid in got.labels.index
    for f in ("labels", "counts", "raw_counts", "track_info"):
        pd.testing.assert_frame_equal(getattr(got, f), getattr(want, f))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("bad, message", [
    ("10.5", r"'10\.5' is not an integer id"),
    ("abc", r"'abc' is text among integer ids"),
    ("99999999999999999999", r"99999999999999999999 does not fit in int64"),
])
def test_bad_track_id_in_a_table_names_file_column_and_row(tmp_path, fmt, bad, message):
    pl = pd.DataFrame({"playlist_id": [1], "title": ["party"]})
    tr = pd.DataFrame({"playlist_id": [1, 1, 1], "track_id": ["5", "6", bad],
                       "artist_id": [1, 2, 3], "album_id": [3, 4, 5]})
    with pytest.raises(CatalogueError, match=rf"t\.{fmt}: track_id: row 2: {message}"):
        read_tables(*_tables(tmp_path, fmt, pl, tr))


def test_float_column_with_a_fraction_or_a_rounded_id_is_an_error(tmp_path):
    pl = pd.DataFrame({"playlist_id": [1], "title": ["party"]})
    tr = pd.DataFrame({"playlist_id": [1, 1], "track_id": [5.0, 6.5], "artist_id": [1, 2],
                       "album_id": [3.0, np.nan]})
    with pytest.raises(CatalogueError, match=r"t\.parquet: track_id: row 1: 6\.5 is not an integer id"):
        read_tables(*_tables(tmp_path, "parquet", pl, tr))
    tr["track_id"] = [5.0, 2.0**60]
    with pytest.raises(CatalogueError, match=r"t\.parquet: track_id: row 1: .*above 2\*\*53"):
        read_tables(*_tables(tmp_path, "parquet", pl, tr))


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


def _long_csv(tmp_path, last_track):
    """A tracks CSV of 150,000 integer rows (> 2 Arrow blocks), then one more row."""
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text("playlist_id,title\n1,party\n")
    n = 150_000
    body = "".join(f"1,{i},{i},{i}\n" for i in range(n))
    t.write_text("playlist_id,track_id,artist_id,album_id\n" + body + f"1,{last_track},1,\n")
    assert t.stat().st_size > 2 * 2**20
    return p, t, n


def test_read_csv_ids_after_the_first_block(tmp_path):
    # Arrow streams the file in 1 MB blocks with ids typed as int64; an id far
    # down that is spelled otherwise is still read, every row kept ...
    p, t, n = _long_csv(tmp_path, " 7.0 ")
    c = read_tables(p, t)
    assert len(c.tracks) == n + 1 and c.tracks["track_id"].dtype == np.int64
    assert c.tracks["track_id"].iloc[-1] == 7
    assert c.tracks["artist_id"].dtype == np.int64
    assert c.tracks["album_id"].isna().sum() == 1
    # ... and text there is an error naming its row.
    p, t, n = _long_csv(tmp_path, "spotify:track:x")
    with pytest.raises(CatalogueError, match=rf"t\.csv: track_id: row {n}: 'spotify:track:x' is text"):
        read_tables(p, t)


def test_read_csv_text_ids(tmp_path):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text("playlist_id,title\npl-1,party\n")
    t.write_text("playlist_id,track_id,artist_id,album_id\npl-1,spotify:track:a ,spotify:artist:b,\n")
    c = read_tables(p, t)
    assert c.tracks.iloc[0, :3].tolist() == ["pl-1", "spotify:track:a", "spotify:artist:b"]
    assert c.tracks["album_id"].isna().all()


def test_parquet_titles_stored_as_numbers_are_text(tmp_path):
    pl = pd.DataFrame({"playlist_id": [1, 2], "title": [2020, 7]})
    tr = pd.DataFrame({"playlist_id": [1], "track_id": [1], "artist_id": [1], "album_id": [1]})
    c = read_tables(*_tables(tmp_path, "parquet", pl, tr))
    assert c.playlists["title"].tolist() == ["2020", "7"]
    assert build_dataset(c).funnel.set_index("step").loc["no context keyword", "removed"] == 2
    pl["title"] = [1.5, 2.5]
    with pytest.raises(CatalogueError, match=r"p\.parquet: title: a column of double, not text"):
        read_tables(*_tables(tmp_path, "parquet", pl, tr))


def test_read_csv_header_only(tmp_path):
    p, t = tmp_path / "p.csv", tmp_path / "t.csv"
    p.write_text("playlist_id,title\n")
    t.write_text("playlist_id,track_id,artist_id,album_id\n")
    c = read_tables(p, t)
    assert len(c.playlists) == 0 and len(c.tracks) == 0
    assert build_dataset(c).funnel.set_index("step").loc["kept", "count"] == 0
