"""Tests for ctxpaper.sweep: missing labels against the simulated truth, label level."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ctxpaper import simdata as SD
from ctxpaper import sweep as S
from ctxpaper.contexts import CONTEXTS

COLS = list(CONTEXTS)


def brute_auc(score, pos, neg):
    """P(score of a positive > score of a negative) + 1/2 P(tie), over all pairs."""
    sp, sn = score[pos], score[neg]
    gt = (sp[:, None] > sn[None, :]).sum()
    eq = (sp[:, None] == sn[None, :]).sum()
    return (gt + 0.5 * eq) / (len(sp) * len(sn))


def random_truth(n=60, m=15, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.random((n, m)) < 0.5
    latent[~latent.any(axis=1), 0] = True
    observed = latent & (rng.random((n, m)) < 0.6)
    observed[~observed.any(axis=1)] = latent[~observed.any(axis=1)]
    return observed, latent


def test_missing_summary_hand_computed():
    latent = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    observed = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0]], bool)  # row 2 col 0: a false tag
    s = S.missing_summary(observed, latent)
    assert s["tracks"] == 3
    assert s["observed_per_track"] == pytest.approx(5 / 3)
    assert s["latent_per_track"] == pytest.approx(6 / 3)
    assert s["missing_rate"] == pytest.approx(2 / 6)  # (0,1) and (1,2) missing of 6 latent
    assert s["missing_share_of_zeros"] == pytest.approx(2 / 4)  # zeros: (0,1) (0,2) (1,2) (2,2)
    assert s["false_tags"] == 1


def test_truth_detection_against_brute_force_auc():
    observed, latent = random_truth()
    rng = np.random.default_rng(3)
    noise = rng.random(observed.shape)
    dets = {"oracle": lambda o: latent.astype(float), "constant": lambda o: np.zeros(o.shape),
            "noise": lambda o: noise}
    got = S.truth_detection(observed, latent, dets)
    zero = ~observed
    pos, neg = (latent & zero), (~latent & zero)
    assert got.loc["oracle", "roc_auc"] == 1.0 and got.loc["oracle", "precision_at_k"] == 1.0
    assert got.loc["constant", "roc_auc"] == 0.5
    assert got.loc["noise", "roc_auc"] == pytest.approx(brute_auc(noise, pos, neg))
    # Default detectors: the released ones, all scored.
    default = S.truth_detection(observed, latent)
    assert default.index[0].startswith("1 - w̄") and default["roc_auc"].between(0, 1).all()


def test_truth_detection_refuses_misaligned_frames():
    observed, latent = random_truth(10)
    o = pd.DataFrame(observed, columns=COLS)
    l = pd.DataFrame(latent, columns=COLS, index=np.arange(1, 11))
    with pytest.raises(ValueError, match="same index"):
        S.truth_detection(o, l)
    with pytest.raises(ValueError, match="one shape"):
        S.missing_summary(observed, latent[:, :14])


def brute_exact_negative(ref, row, c):
    others = [j for j in range(15) if j != c]
    same = (ref[:, others] == row[others]).all(axis=1)
    return (same & ~ref[:, c]).sum() / same.sum()


def test_training_weight_detection_uses_the_reference_weights():
    rng = np.random.default_rng(5)
    n = 80
    idx = pd.Index(np.arange(500, 500 + n), name="track_id")
    style = rng.integers(0, 3, n)
    latent = rng.random((n, 15)) < np.where(np.arange(15)[None] % 3 == style[:, None], 0.8, 0.2)
    latent[~latent.any(axis=1), 0] = True
    observed = latent & (rng.random((n, 15)) < 0.7)
    observed[~observed.any(axis=1)] = latent[~observed.any(axis=1)]
    split = pd.DataFrame({"subset": np.where(np.arange(n) < 50, "train", "test"), "fold": 0,
                          "artist_id": np.arange(n)}, index=idx)
    L = pd.DataFrame(observed, index=idx, columns=COLS)
    counts = L.astype(int) * 3
    sel = SD.Selection(split=split, labels=L, counts=counts, latent=pd.DataFrame(latent, index=idx, columns=COLS),
                       reference_labels=L, reference_counts=counts)
    got = S.training_weight_detection(sel, ["neg_exact"], subset="test")
    # Brute force: eq. 3 exact match fitted on every track, scored on the test rows.
    t = np.arange(50, n)
    score = np.zeros((len(t), 15))
    for a, i in enumerate(t):
        for c in range(15):
            if not observed[i, c]:
                score[a, c] = 1 - brute_exact_negative(observed, observed[i], c)
    zero = ~observed[t]
    want = brute_auc(score, latent[t] & zero, ~latent[t] & zero)
    assert got.loc["neg_exact", "roc_auc"] == pytest.approx(want)


def test_missingness_sweep_on_a_small_world():
    from ctxpaper import playlists, world

    w = world.make_world(0.004, 0)
    ks = (2, 3, 4)
    out = S.missingness_sweep(w, ks, detectors={"prior": lambda o: np.broadcast_to(o.mean(0), o.shape)})
    per_k = out.set_index("min_playlists")
    assert list(per_k.index) == list(ks)
    # A higher threshold tags fewer tracks and fewer (track, context) cells.
    assert per_k["tracks"].is_monotonic_decreasing
    assert (per_k["tracks"] * per_k["observed_per_track"]).is_monotonic_decreasing
    # The k = 3 row is the dataset the paper's rule builds.
    ds = playlists.build_dataset(w.catalogue, min_playlists=3)
    want = S.missing_summary(ds.labels[COLS], w.latent.loc[ds.labels.index, COLS])
    for key, v in want.items():
        assert per_k.loc[3, key] == pytest.approx(v)
    assert (per_k["missing_rate"] > 0).all()  # the rule does lose true positives


# ---------------------------------------------------------------------------
# training sweep (train_variant monkeypatched: no training)
# ---------------------------------------------------------------------------

def _fake_selection(k: int):
    """A selection whose observed labels lose more positives as k grows."""
    observed, latent = random_truth(n=40, seed=k)
    idx = pd.Index(np.arange(40, dtype=np.int64), name="track_id")
    split = pd.DataFrame({"subset": ["train"] * 20 + ["validation"] * 5 + ["test"] * 15,
                          "fold": 0, "artist_id": 0}, index=idx)
    lab = pd.DataFrame(observed, index=idx, columns=COLS)
    return SD.Selection(split=split, labels=lab, counts=lab.astype(int),
                        latent=pd.DataFrame(latent, index=idx, columns=COLS),
                        reference_labels=lab, reference_counts=lab.astype(int))


def _fake_run(k: int, variant: str, train_seed: int):
    from types import SimpleNamespace

    rng = np.random.default_rng([k, len(variant), train_seed])
    sel = _fake_selection(k)
    test = sel.ids("test")
    scores = pd.DataFrame(rng.random((len(test), 15)), index=test, columns=COLS)
    return SimpleNamespace(labels={"test": sel.labels.loc[test]}, latent={"test": sel.latent.loc[test]},
                           scores={"test": scores}, best_epoch=1)


@pytest.fixture
def fake_training(monkeypatch):
    from ctxpaper import experiment

    calls = []

    def fake_train_variant(P, seed, variant, *, train_seed, progress, min_playlists=3):
        calls.append((min_playlists, variant, train_seed))
        return _fake_run(min_playlists, variant, train_seed)

    monkeypatch.setattr(experiment, "train_variant", fake_train_variant)
    monkeypatch.setattr(SD, "simulated_selection", lambda P, seed, k=3: _fake_selection(k))
    return calls


def test_training_sweep_adds_the_paper_threshold_and_keeps_its_seeds(fake_training):
    from ctxpaper import results
    from ctxpaper.metrics import MACRO

    runs = S.training_sweep("smoke", 4, thresholds=(5, 2, 5), variants=("none", "neg_exact"), n_seeds=2)
    # 3 is added once; its training seeds are chapter 05-06's (seed, seed + 1)
    assert fake_training == [(k, v, s) for k in (2, 3, 5) for v in ("none", "neg_exact") for s in (4, 5)]
    assert len(runs) == 3 * 2 * 2 * 2 and list(runs.columns[:2]) == ["min_playlists", "variant"]
    row = runs[(runs.min_playlists == 5) & (runs.variant == "neg_exact") & (runs.train_seed == 5)
               & (runs.against == "latent")].iloc[0]
    expected = results.run_metrics(_fake_run(5, "neg_exact", 5), "latent").loc[MACRO]
    assert row["F1"] == pytest.approx(expected["F1"]) and row["AUC"] == pytest.approx(expected["AUC"])
    sel = _fake_selection(2)
    test = sel.ids("test")
    lat, obs = sel.latent.loc[test].to_numpy(), sel.labels.loc[test].to_numpy()
    assert np.allclose(runs.loc[runs.min_playlists == 2, "missing_rate"], (lat & ~obs).sum() / lat.sum())


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_training_sweep_refuses_bad_input_before_training(fake_training, bad):
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        S.training_sweep("smoke", 0, thresholds=(2, bad))
    with pytest.raises(ValueError, match="n_seeds must be >= 1"):
        S.training_sweep("smoke", 0, n_seeds=0)
    with pytest.raises(ValueError, match="at least one"):
        S.training_sweep("smoke", 0, variants=())
    assert fake_training == []


def _hand_runs():
    # means of F1 by (k, against): variant order by hand
    f1 = {(2, "observed"): {"a": 0.3, "b": 0.2, "c": 0.1},
          (2, "latent"): {"a": 0.1, "b": 0.2, "c": 0.3},
          (3, "observed"): {"a": 0.3, "b": 0.2, "c": 0.1},
          (3, "latent"): {"a": 0.3, "b": 0.2, "c": 0.2}}
    rows = []
    for (k, against), by_v in f1.items():
        for v, m in by_v.items():
            for ts, d in ((0, -0.05), (1, 0.05)):  # two seeds around the mean
                rows.append({"min_playlists": k, "variant": v, "train_seed": ts, "against": against,
                             "F1": m + d, "AUC": 1 - m})
    return pd.DataFrame(rows)


def test_sweep_ranks_hand_case():
    ranks = S.sweep_ranks(_hand_runs(), metrics=("F1", "AUC"))
    assert list(ranks.index.get_level_values("variant")[:3]) == ["a", "b", "c"]
    f1 = ranks.loc["F1"]
    assert f1[("observed", 2)].tolist() == [1, 2, 3]
    assert f1[("latent", 2)].tolist() == [3, 2, 1]
    assert f1[("latent", 3)].tolist() == [1, 2, 2]  # tie shares the best rank
    assert ranks.loc["AUC"][("observed", 3)].tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="training_sweep output"):
        S.sweep_ranks(_hand_runs().drop(columns="min_playlists"))


def test_ranking_agreement_hand_case():
    agree = S.ranking_agreement(S.sweep_ranks(_hand_runs(), metrics=("F1",)))
    r2, r3 = agree.loc[("F1", 2)], agree.loc[("F1", 3)]
    assert r2["observed"] == "a > b > c" and r2["latent"] == "c > b > a"
    assert r3["latent"] == "a > b = c"
    assert r2["same as at 3 (observed)"] and not r2["same as at 3 (latent)"]
    assert r3["same as at 3 (observed)"] and r3["same as at 3 (latent)"]
    assert not r2["observed = latent"] and not r3["observed = latent"]
    no3 = S.sweep_ranks(_hand_runs().query("min_playlists == 2"), metrics=("F1",))
    with pytest.raises(ValueError, match="threshold 3"):
        S.ranking_agreement(no3)


def test_ranking_agreement_with_an_undefined_metric():
    runs = _hand_runs()
    runs.loc[(runs["variant"] == "b") & (runs["min_playlists"] == 2), "F1"] = np.nan
    agree = S.ranking_agreement(S.sweep_ranks(runs, metrics=("F1",)))
    r2 = agree.loc[("F1", 2)]
    assert r2["observed"] == "a > c (undefined: b)" and r2["latent"] == "c > a (undefined: b)"
    assert not r2["same as at 3 (observed)"]
    assert S._order_text(pd.Series([pd.NA, pd.NA], index=["x", "y"], dtype="Int64")) == "(undefined: x, y)"
