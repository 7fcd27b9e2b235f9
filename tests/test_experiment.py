"""Tests for ctxpaper.experiment: selection, loss weights per variant, cached runs.

The unit tests use tiny synthetic stand-ins (a 16-frame in-memory "feature
store", random labels); one test runs the real chain (world, balance, split,
synthesis, features, training) on the smoke profile in a temporary cache.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ctxpaper import experiment as E
from ctxpaper import simdata as SD
from ctxpaper import train as T
from ctxpaper.contexts import CONTEXTS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
COLS = list(CONTEXTS)


def synthetic_split(n=200, seed=0):
    rng = np.random.default_rng(seed)
    subset = rng.choice(["train", "validation", "test"], size=n, p=[0.65, 0.1, 0.25])
    return pd.DataFrame({"subset": subset, "fold": 0, "artist_id": rng.integers(0, 50, n)},
                        index=pd.Index(np.arange(1000, 1000 + n, dtype=np.int64), name="track_id"))


def synthetic_labels(index, seed=0):
    rng = np.random.default_rng(seed)
    n = len(index)
    # Correlated contexts: a few "styles" switch groups of contexts on.
    style = rng.integers(0, 3, n)
    p = np.where(np.arange(15)[None, :] % 3 == style[:, None], 0.7, 0.15)
    y = rng.random((n, 15)) < p
    y[~y.any(axis=1), 0] = True
    labels = pd.DataFrame(y, index=index, columns=COLS)
    counts = pd.DataFrame(np.where(y, rng.integers(3, 40, (n, 15)), 0), index=index, columns=COLS)
    return labels, counts


def synthetic_selection(n=120, seed=0):
    split = synthetic_split(n, seed)
    labels, counts = synthetic_labels(split.index, seed)
    latent = labels | (np.random.default_rng(seed + 1).random(labels.shape) < 0.1)
    return SD.Selection(split=split, labels=labels, counts=counts, latent=latent,
                       reference_labels=labels, reference_counts=counts)


class TinyStore:
    """Stand-in for ctxpaper.audio.FeatureStore: in memory, 20 frames."""

    def __init__(self, ids, seed=0, missing=()):
        self.ids_ = np.asarray(ids, np.int64)
        self.features = np.random.default_rng(seed).normal(size=(len(ids), 20, 96)).astype(np.float32)
        self.missing = set(missing)

    def index_of(self, ids):
        pos = pd.Index(self.ids_).get_indexer(np.asarray(ids))
        bad = [i for i, p in zip(ids, pos) if p < 0 or i in self.missing]
        if bad:
            raise KeyError(f"{len(bad)} id(s) have no features, e.g. {bad[:5]}")
        return pos


def tiny_config(seed=0):
    return T.TrainConfig(frames=16, max_epochs=1, patience=1, batch_size=16, seed=seed)


# ---------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_tracks", [3, 17, 60, 199])
def test_select_tracks_keeps_subset_proportions(n_tracks):
    split = synthetic_split()
    kept = SD.select_tracks(split, n_tracks, seed=1)
    assert len(kept) == n_tracks and kept.is_unique and kept.isin(split.index).all()
    got = split.loc[kept, "subset"].value_counts()
    share = split["subset"].value_counts() / len(split)
    for s in ("validation", "test"):
        assert abs(got.get(s, 0) - n_tracks * share[s]) <= 1
        assert got.get(s, 0) >= 1
    # Kept in split order.
    assert list(kept) == [i for i in split.index if i in set(kept)]


def test_select_tracks_is_seeded_and_all_when_large():
    split = synthetic_split()
    a, b, c = (SD.select_tracks(split, 50, s) for s in (1, 1, 2))
    assert a.equals(b) and not a.equals(c)
    assert SD.select_tracks(split, None, 0).equals(split.index)
    assert SD.select_tracks(split, 10**6, 0).equals(split.index)
    with pytest.raises(ValueError, match="n_tracks"):
        SD.select_tracks(split, 2, 0)


# ---------------------------------------------------------------------------
# loss weights per variant
# ---------------------------------------------------------------------------

def brute_exact_negative(ref, row, c):
    """P(y_c = 0 | the rest of the row), by counting reference rows."""
    others = [j for j in range(15) if j != c]
    same = (ref[:, others] == row[others]).all(axis=1)
    return (same & ~ref[:, c]).sum() / same.sum()


def test_loss_weights_per_variant():
    sel = synthetic_selection(300)
    L, C = sel.labels, sel.counts
    w = {v: E.loss_weights(v, L, C, L, C) for v in E.VARIANTS}
    ones = np.ones(L.shape)
    np.testing.assert_array_equal(w["none"][0], ones)
    np.testing.assert_array_equal(w["none"][1], ones)
    for v in ("neg_exact", "neg_ignore_zeros"):
        np.testing.assert_array_equal(w[v][0], ones)
        assert (w[v][1] >= 0).all() and (w[v][1] <= 1).all()
    for mode in ("exact", "ignore_zeros"):
        np.testing.assert_array_equal(w[f"both_{mode}"][1], w[f"neg_{mode}"][1])
        wp = w[f"both_{mode}"][0]
        assert not np.allclose(wp[L.to_numpy()], 1.0)  # tf-idf, not ones, on positives
    assert not np.allclose(w["neg_exact"][1], w["neg_ignore_zeros"][1])
    # Exact match, checked by brute force on a few negative cells.
    y = L.to_numpy(bool)
    for i, c in itertools.islice(zip(*np.nonzero(~y)), 0, 40, 7):
        assert w["neg_exact"][1][i, c] == pytest.approx(brute_exact_negative(y, y[i], c))


def test_variant_labels_are_table_2_rows():
    from ctxpaper import paper

    assert tuple(E.VARIANT_LABELS[v] for v in E.VARIANTS) == paper.TABLE2_ROWS


def test_unknown_variant_is_refused():
    sel = synthetic_selection(30)
    with pytest.raises(ValueError, match="unknown loss variant 'neg'"):
        E.loss_weights("neg", sel.labels, sel.counts, sel.labels, sel.counts)


# ---------------------------------------------------------------------------
# run_variant on stand-ins
# ---------------------------------------------------------------------------

def test_run_variant_trains_once_then_loads(tmp_path, monkeypatch):
    sel = synthetic_selection(120)
    store = TinyStore(sel.split.index[::-1])  # store order differs from selection order
    run = E.run_variant(store, sel, "neg_ignore_zeros", tiny_config(), tmp_path, progress=False)
    test_ids = sel.ids("test")
    assert list(run.scores["test"].index) == list(test_ids)
    assert list(run.scores["test"].columns) == COLS
    assert ((run.scores["test"] > 0) & (run.scores["test"] < 1)).all().all()
    assert run.labels["test"].equals(sel.labels.loc[test_ids])
    assert run.latent["validation"].index.equals(run.scores["validation"].index)
    assert len(run.history) == 1 and run.best_epoch == 1

    def no_training(*a, **k):
        raise AssertionError("a cached run was retrained")

    monkeypatch.setattr(T, "train", no_training)
    again = E.run_variant(store, sel, "neg_ignore_zeros", tiny_config(), tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.scores["test"], run.scores["test"])
    # The loaded model is the trained one: it reproduces the saved scores.
    x = T.FeatureBatches(store.features, store.index_of(test_ids), None, 16, 16)
    np.testing.assert_allclose(T.predict(again.model, x), run.scores["test"].to_numpy(), rtol=1e-5, atol=1e-6)


def test_weighted_validation_loss_differs_from_plain(tmp_path):
    sel = synthetic_selection(120)
    store = TinyStore(sel.split.index)
    plain = E.run_variant(store, sel, "none", tiny_config(), tmp_path / "a", progress=False)
    weighted = E.run_variant(store, sel, "neg_exact", tiny_config(), tmp_path / "b", progress=False)
    # Negative weights are <= 1, so the weighted validation loss is lower.
    assert weighted.history["val_loss"].iloc[0] < plain.history["val_loss"].iloc[0]


def test_missing_features_are_named_before_training(tmp_path):
    sel = synthetic_selection(60)
    missing = sel.ids("validation")[:1]
    store = TinyStore(sel.split.index, missing=missing)
    with pytest.raises(ValueError, match="validation tracks without features"):
        E.run_variant(store, sel, "none", tiny_config(), tmp_path, progress=False)
    assert not (tmp_path / "run").exists()


def test_nan_features_are_named_before_training(tmp_path):
    sel = synthetic_selection(60)
    store = TinyStore(sel.split.index)
    bad = sel.ids("test")[0]
    store.features[store.index_of([bad])[0], 10, 5] = np.nan
    with pytest.raises(ValueError, match=f"track {bad}"):
        E.run_variant(store, sel, "none", tiny_config(), tmp_path, progress=False)


# ---------------------------------------------------------------------------
# the real chain, smoke profile
# ---------------------------------------------------------------------------

def test_train_variant_smoke_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path))
    run = E.train_variant("smoke", 0, "both_exact", progress=False)
    sel = SD.simulated_selection("smoke", 0)
    assert len(sel.split) == 96
    assert set(run.scores["test"].index) == set(sel.ids("test"))
    # Train, validation and test share no artist.
    a = sel.split.groupby("subset")["artist_id"].apply(set)
    assert not (a["train"] & a["test"]) and not (a["train"] & a["validation"])
    # Latent labels contain the observed ones (labels are only ever missing).
    assert (sel.latent.to_numpy() >= sel.labels.to_numpy()).all()

    monkeypatch.setattr(T, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = E.train_variant("smoke", 0, "both_exact", progress=False)
    pd.testing.assert_frame_equal(again.scores["test"], run.scores["test"])
    with pytest.raises(ValueError, match="unknown loss variant"):
        E.train_variant("smoke", 0, "both")


# ---------------------------------------------------------------------------
# chapter 07's extra loss variants
# ---------------------------------------------------------------------------

def test_extra_variants_are_separate_from_table_2():
    assert E.VARIANTS == ("none", "neg_exact", "neg_ignore_zeros", "both_exact", "both_ignore_zeros")
    assert set(E.EXTRA_VARIANTS) >= {"wan", "asl", "em"} and not set(E.EXTRA_VARIANTS) & set(E.VARIANTS)
    assert set(E.VARIANT_LABELS) == set(E.ALL_VARIANTS) == set(E.VARIANT_LOSS)
    assert all(E.VARIANT_LOSS[v] == T.DEFAULT_LOSS for v in E.VARIANTS)
    assert set(E.VARIANT_LOSS.values()) <= set(T.LOSSES)


def test_table_2_configs_are_unchanged_by_the_loss_field():
    # Cache keys of chapters 05-06's runs hold this dict: it must not gain a key.
    for v in E.VARIANTS:
        d = E.train_config("smoke", 4, loss=E.VARIANT_LOSS[v]).as_dict()
        assert "loss" not in d and d == E.train_config("smoke", 4).as_dict()
    assert E.train_config("smoke", 4, loss=E.VARIANT_LOSS["em"]).as_dict()["loss"] == "em"


def test_extra_loss_weights():
    sel = synthetic_selection(80)
    L, C = sel.labels, sel.counts
    y = L.to_numpy(bool)
    w_pos, w_neg = E.loss_weights("wan", L, C, L, C)
    np.testing.assert_array_equal(w_pos, 1.0)
    np.testing.assert_allclose(w_neg[~y], 1 / 14)  # γ = 1 / (m - 1), m = 15 contexts
    np.testing.assert_array_equal(w_neg[y], 0.0)
    for v in ("asl", "em"):
        for w in E.loss_weights(v, L, C, L, C):
            np.testing.assert_array_equal(w, 1.0)


def test_extra_variant_trains_with_its_own_loss(tmp_path):
    from ctxpaper import mlml

    sel = synthetic_selection(120)
    store = TinyStore(sel.split.index)
    cfg = T.TrainConfig(frames=16, max_epochs=1, patience=1, batch_size=16, seed=0, loss="asl")
    run = E.run_variant(store, sel, "asl", cfg, tmp_path / "asl", progress=False)
    # The validation loss logged is the asymmetric loss of the saved validation scores.
    y_val = run.labels["validation"].to_numpy(bool)
    expected = mlml.numpy_reference("asl", y_val, run.scores["validation"].to_numpy()).mean()
    assert run.history["val_loss"].iloc[0] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # WAN is eq. 2 with constant negative weights: its validation loss is the
    # plain positive term plus 1/14 of the negative term.
    wan = E.run_variant(store, sel, "wan", tiny_config(), tmp_path / "wan", progress=False)
    p = np.clip(wan.scores["validation"].to_numpy().astype(np.float64), 1e-7, 1 - 1e-7)
    yv = wan.labels["validation"].to_numpy(bool)
    ref = -(yv * np.log(p) + (~yv) * np.log(1 - p) / 14).mean()
    assert wan.history["val_loss"].iloc[0] == pytest.approx(ref, rel=1e-4)
    with pytest.raises(ValueError, match="trains with loss 'asl'"):
        E.run_variant(store, sel, "asl", tiny_config(), tmp_path / "x", progress=False)


# ---------------------------------------------------------------------------
# the construction threshold (chapter 07's training sweep)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_paper_threshold_keeps_every_cache_key(profile):
    # Trained models are cached under keys made before min_playlists existed:
    # the paper's 3 must give exactly the keys of a call without it.
    P = SD.validate_params(profile, 0)[0]
    for seed in (0, 3):
        default = SD._selection_params(P, seed)
        assert "min_playlists" not in default
        assert SD._selection_params(P, seed, 3) == default
        assert SD.features_params(P, seed, 3) == SD.features_params(P, seed)
        other = SD._selection_params(P, seed, 2)
        assert {k: v for k, v in other.items() if k != "min_playlists"} == default
        assert SD.features_params(P, seed, 2) != SD.features_params(P, seed)
        for v in ("none", "neg_ignore_zeros", "em"):
            base = E.run_dir(P, seed, v, train_seed=seed + 1)
            assert E.run_dir(P, seed, v, train_seed=seed + 1, min_playlists=3) == base
            dirs = {E.run_dir(P, seed, v, train_seed=seed + 1, min_playlists=k) for k in (1, 2, 5)}
            assert len(dirs) == 3 and base not in dirs
            # only the features' key changes with the threshold
            c3, k3 = E._run_key(P, seed, v, seed + 1, "paper")
            c2, k2 = E._run_key(P, seed, v, seed + 1, "paper", 2)
            assert c2 == c3 and {**k2, "features": k3["features"]} == k3


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "3", None])
def test_bad_threshold_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        E.run_dir("smoke", 0, "none", min_playlists=bad)
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        SD.simulated_selection("smoke", 0, bad)
