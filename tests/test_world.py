"""Tests for ctxpaper.world: the simulated world and its cached construction."""

import json

import numpy as np
import pandas as pd
import pytest

from ctxpaper.contexts import CONTEXTS
from ctxpaper.data import load_labels
from ctxpaper.playlists import build_dataset, title_masks
from ctxpaper.synth import STYLE_COLUMNS
from ctxpaper import runs
from ctxpaper.runs import Run
from ctxpaper.world import calibration, jaccard_matrix, lost_positives, make_world

SCALE = 0.004


@pytest.fixture(scope="module")
def world():
    return make_world(SCALE, 3)


@pytest.fixture(scope="module")
def built(world):
    return build_dataset(world.catalogue)


def test_same_seed_same_world_other_seed_differs(world):
    again = make_world(SCALE, 3)
    pd.testing.assert_frame_equal(world.catalogue.tracks, again.catalogue.tracks)
    pd.testing.assert_frame_equal(world.catalogue.playlists, again.catalogue.playlists)
    pd.testing.assert_frame_equal(world.latent, again.latent)
    other = make_world(SCALE, 4)
    assert not world.latent.index.equals(other.latent.index) or not world.latent.equals(other.latent)


def test_titles_name_exactly_the_intended_contexts(world):
    truth = world.playlist_truth.loc[world.catalogue.playlists["playlist_id"]]
    masks = title_masks(world.catalogue.playlists["title"])
    np.testing.assert_array_equal(masks, truth["intended"].to_numpy())
    assert (truth.loc[truth["kind"] == "non_contextual", "intended"] == 0).all()
    assert (truth.loc[truth["kind"] != "non_contextual", "intended"] > 0).all()


def test_contextual_playlists_hold_tracks_that_fit(world):
    tr = world.catalogue.tracks
    kind = world.playlist_truth["kind"].reindex(tr["playlist_id"]).to_numpy()
    want = world.playlist_truth["intended"].reindex(tr["playlist_id"]).to_numpy()
    bits = (world.latent.to_numpy().astype(np.int64) << np.arange(15)).sum(axis=1)
    have = pd.Series(bits, index=world.latent.index).reindex(tr["track_id"]).to_numpy()
    ctx = kind == "contextual"
    assert ((have[ctx] & want[ctx]) == want[ctx]).all()


def test_tables_are_consistent(world):
    t, a = world.tracks, world.artists
    assert t.index.is_unique and world.latent.index.equals(t.index)
    assert set(t["artist_id"]) <= set(a.index)
    assert a["n_tracks"].sum() == len(t)
    assert np.isclose(t["popularity"].mean(), 1.0)
    assert set(STYLE_COLUMNS) <= set(a.columns)
    assert (world.latent.sum(axis=1) > 0).all()  # every released row has a label
    tr = world.catalogue.tracks
    joined = t.loc[tr["track_id"], ["artist_id", "album_id"]].to_numpy()
    np.testing.assert_array_equal(joined, tr[["artist_id", "album_id"]].to_numpy())


def test_catalogue_exercises_every_filter(world, built):
    f = built.funnel.set_index("step")["removed"]
    for step in ("no context keyword", "more than max_tracks", "one artist > max_share",
                 "one album > max_share"):
        assert f[step] > 0, step
    assert len(built.labels) > 0


def test_latent_marginals_follow_the_release():
    w = make_world(0.02, 0)
    rel = load_labels().mean()
    lat = w.latent.mean()
    # 20k tracks, artist-clustered draws: a loose tolerance, yet far below the
    # spread between contexts (0.40 to 0.69)
    assert (lat - rel).abs().max() < 0.05


def test_lost_positives_partition(world, built):
    lp = lost_positives(world, built)
    assert (lp["tagged"] + lp["below_threshold"] + lp["never_seen"] == lp["latent"]).all()
    assert (lp["latent"] == world.latent.sum()).all()
    tagged_true = (built.labels & world.latent.reindex(built.labels.index)).sum()
    assert (lp["tagged"] == tagged_true).all()


def test_bad_parameters():
    with pytest.raises(ValueError, match="scale"):
        make_world(0, 0)
    with pytest.raises(ValueError, match="seed"):
        make_world(0.01, -1)


def test_run_world_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path))
    w1, d1 = Run.of("smoke", 1).world()
    entries = list((tmp_path / "world").iterdir())
    assert len(entries) == 1 and not list(entries[0].glob("*.pkl"))
    w2, d2 = Run.of("smoke", 1).world()
    pd.testing.assert_frame_equal(d1.labels, d2.labels)
    pd.testing.assert_frame_equal(w1.latent, w2.latent)
    fresh = build_dataset(make_world(0.004, 1).catalogue)
    pd.testing.assert_frame_equal(d1.counts, fresh.counts)
    assert list((tmp_path / "world").iterdir()) == entries
    with pytest.raises(ValueError, match="a released run has no simulated world"):
        Run.of("smoke", 1, "released").world()


def test_jaccard_and_calibration_small_case():
    cols = list(CONTEXTS)
    x = pd.DataFrame(False, index=range(4), columns=cols)
    x.loc[[0, 1], "car"] = True
    x.loc[[1, 2], "chill"] = True
    j = jaccard_matrix(x)
    assert j[0, 1] == pytest.approx(1 / 3) and j[0, 0] == 1 and j[0, 2] == 0
    assert np.isnan(j[2, 2]) and np.isnan(j[2, 3])  # club and dance both empty: 0 / 0
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(rng.random((200, 15)) < np.linspace(0.2, 0.8, 15), columns=cols)
    same = calibration(ref, ref)
    assert same["jaccard_r"] == pytest.approx(1) and same["labels_per_track_ratio"] == 1
    assert same["top_match"] and same["bottom_match"]
    # Contexts empty in one label set leave their undefined pairs out of r, not the whole r.
    sparse = ref.copy()
    sparse[["club", "dance"]] = False
    r = calibration(sparse, ref)["jaccard_r"]
    assert np.isfinite(r) and 0 < r < 1
    flipped = calibration(ref[cols[::-1]].set_axis(cols, axis=1), ref)
    assert not flipped["top_match"] and not flipped["bottom_match"]


def test_calibration_ties_at_the_cap():
    cols = list(CONTEXTS)

    def frame(counts):
        n = max(counts)
        return pd.DataFrame({c: np.arange(n) < k for c, k in zip(cols, counts)})

    ref = frame([5, 9, 5, 8, 6, 5, 6, 7, 6, 6, 5, 5, 7, 6, 5])   # six tied at the bottom
    obs = frame([4, 9, 4, 8, 6, 4, 6, 7, 4, 6, 5, 6, 7, 6, 6])   # car, club, happy, relax tied
    res = calibration(obs, ref)
    assert res["bottom_match"]          # car, club, happy are among ref's tied bottom
    assert res["top_match"]             # chill, dance, then party/summer tied in both
    obs2 = frame([9, 4, 4, 8, 6, 4, 6, 7, 6, 6, 5, 5, 7, 6, 5])  # chill now least frequent
    assert not calibration(obs2, ref)["bottom_match"]


def test_threshold_enters_the_world_key_as_the_paper_rule(monkeypatch):
    # The world key holds the whole construction, the paper's threshold by
    # default; another threshold is another entry.
    seen = []

    def capture(stage, params, build, version):
        seen.append((stage, json.dumps(params, sort_keys=True), version))
        raise LookupError

    monkeypatch.setattr(runs, "build_once", capture)
    for args in ((), (3,), (2,), (5,)):
        with pytest.raises(LookupError):
            Run.of("quick", 0, "simulated", *args).world()
    assert seen[0] == seen[1] and len(set(seen)) == 3 and {s[0] for s in seen} == {"world"}
    assert json.loads(seen[0][1])["construction"] == {"min_playlists": 3, "max_tracks": 100, "max_share": 0.25}
    assert json.loads(seen[2][1])["construction"]["min_playlists"] == 2
    for bad in (0, 2.5, True, "3"):
        with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
            Run.of("smoke", 0, "simulated", bad)


def test_lower_threshold_tags_a_superset(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path))
    w3, d3 = Run.of("smoke", 1).world()
    w2, d2 = Run.of("smoke", 1, min_playlists=2).world()
    pd.testing.assert_frame_equal(w2.latent, w3.latent)  # same world
    assert d2.params["min_playlists"] == 2 and lost_positives(w2, d2)["below_threshold"].sum() \
        < lost_positives(w3, d3)["below_threshold"].sum()
    # every (track, context) tagged at 3 is tagged at 2, and more are
    lab2 = d2.labels.reindex(d3.labels.index, fill_value=False)
    assert (lab2.to_numpy() >= d3.labels.to_numpy()).all()
    assert d2.labels.to_numpy().sum() > d3.labels.to_numpy().sum()
    # the tags follow the rule on the raw counts
    raw = d2.raw_counts.loc[d2.labels.index, d2.labels.columns]
    assert ((raw >= 2).to_numpy() == d2.labels.to_numpy()).all()
    assert len(list((tmp_path / "world").iterdir())) == 2
