"""Tests for ctxpaper.truth: observed against latent labels, where the truth is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ctxpaper import truth as T
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


# --------------------------------------------------------------------------
# the missing positives
# --------------------------------------------------------------------------

LATENT = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
OBSERVED = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0]], bool)  # row 2 col 0: a false tag


def test_missing_mask_and_share_hand_computed():
    mask = T.missing_mask(OBSERVED, LATENT)
    np.testing.assert_array_equal(mask, [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert T.missing_share(OBSERVED, LATENT) == pytest.approx(2 / 6)
    # zeros: (0,1) (0,2) (1,2) (2,2), of which (0,1) and (1,2) are missing positives
    assert T.missing_share(OBSERVED, LATENT, among="zeros") == pytest.approx(2 / 4)
    # per context: latent positives 2, 3, 1; missing 0, 1, 1
    np.testing.assert_allclose(T.missing_share(OBSERVED, LATENT, axis=0), [0, 1 / 3, 1])


def test_missing_share_per_context_of_frames_and_empty_denominators():
    cols = ["a", "b", "c"]
    obs = pd.DataFrame(OBSERVED, columns=cols)
    lat = pd.DataFrame(LATENT, columns=cols).assign(c=False)  # no latent positive of c
    share = T.missing_share(obs, lat[["c", "b", "a"]], axis=0)  # columns follow the observed order
    assert list(share.index) == cols
    assert share["a"] == 0 and share["b"] == pytest.approx(1 / 3) and np.isnan(share["c"])
    nothing = np.zeros((2, 3), bool)
    assert np.isnan(T.missing_share(nothing, nothing))
    everything = np.ones((2, 3), bool)
    assert np.isnan(T.missing_share(everything, everything, among="zeros"))


def test_missing_share_refuses_bad_parameters():
    with pytest.raises(ValueError, match="axis must be None or 0"):
        T.missing_share(OBSERVED, LATENT, axis=1)
    with pytest.raises(ValueError, match="among must be"):
        T.missing_share(OBSERVED, LATENT, among="observed")
    with pytest.raises(ValueError, match="one shape"):
        T.missing_mask(OBSERVED, LATENT[:, :2])


def test_missing_summary_hand_computed():
    s = T.missing_summary(OBSERVED, LATENT)
    assert s["tracks"] == 3
    assert s["observed_per_track"] == pytest.approx(5 / 3)
    assert s["latent_per_track"] == pytest.approx(6 / 3)
    assert s["missing_rate"] == pytest.approx(2 / 6)  # (0,1) and (1,2) missing of 6 latent
    assert s["missing_share_of_zeros"] == pytest.approx(2 / 4)
    assert s["false_tags"] == 1


def test_missing_text_states_the_summary():
    s = T.missing_summary(OBSERVED, LATENT)
    text = T.missing_text(s, "simulated run, profile smoke, seed 0")
    assert text.startswith("On the test tracks, **33.3% of the true (track, context) positives are missing**")
    assert "50.0% of the observed zeros are in truth positive (simulated run, profile smoke, seed 0)" in text


# --------------------------------------------------------------------------
# detectors against the truth
# --------------------------------------------------------------------------

def test_truth_detection_against_brute_force_auc():
    observed, latent = random_truth()
    rng = np.random.default_rng(3)
    noise = rng.random(observed.shape)
    dets = {"oracle": lambda o: latent.astype(float), "constant": lambda o: np.zeros(o.shape),
            "noise": lambda o: noise}
    got = T.truth_detection(observed, latent, dets)
    zero = ~observed
    pos, neg = (latent & zero), (~latent & zero)
    assert got.loc["oracle", "roc_auc"] == 1.0 and got.loc["oracle", "precision_at_k"] == 1.0
    assert got.loc["constant", "roc_auc"] == 0.5
    assert got.loc["noise", "roc_auc"] == pytest.approx(brute_auc(noise, pos, neg))
    # Default detectors: the released ones, all scored.
    default = T.truth_detection(observed, latent)
    assert default.index[0].startswith("1 - w̄") and default["roc_auc"].between(0, 1).all()


def test_truth_detection_refuses_misaligned_frames():
    observed, latent = random_truth(10)
    o = pd.DataFrame(observed, columns=COLS)
    lat = pd.DataFrame(latent, columns=COLS, index=np.arange(1, 11))
    with pytest.raises(ValueError, match="same index"):
        T.truth_detection(o, lat)
    with pytest.raises(ValueError, match="one shape"):
        T.missing_summary(observed, latent[:, :14])


def test_detection_text_names_the_weights_and_the_best_detector():
    weights = pd.DataFrame({"roc_auc": [0.61, 0.58]},
                           index=["Negative Weights (exact match)", "Negative Weights (ignore zeros)"])
    detectors = pd.DataFrame({"roc_auc": [0.55, 0.72, 0.5]}, index=["prior", "k-NN", "constant"])
    text = T.detection_text({"missing_share_of_zeros": 0.25}, weights, detectors, "SRC")
    assert "25.0% are truly positive" in text
    assert "ROC-AUC 0.610 (exact match) and 0.580 (ignore zeros);" in text
    assert "the best label-only detector here is *k-NN* (0.720) — SRC." in text


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
    split = pd.DataFrame({"subset": np.where(np.arange(n) < 50, "train", "test")}, index=idx)
    L = pd.DataFrame(observed, index=idx, columns=COLS)
    counts = L.astype(int) * 3
    # Duck-typed: the attributes training_weight_detection reads, as a run's selection has them.
    sel = SimpleNamespace(split=split, labels=L, counts=counts, latent=pd.DataFrame(latent, index=idx, columns=COLS),
                          reference_labels=L, reference_counts=counts,
                          ids=lambda s: split.index[split["subset"] == s].to_numpy(np.int64))
    got = T.training_weight_detection(sel, ["neg_exact"], subset="test")
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
    # No weights: every zero scores 0, no better than chance.
    assert T.training_weight_detection(sel, ["none"]).loc["none", "roc_auc"] == 0.5


def test_missingness_sweep_on_a_small_world():
    from ctxpaper import playlists, world

    w = world.make_world(0.004, 0)
    ks = (2, 3, 4)
    out = T.missingness_sweep(w, ks, detectors={"prior": lambda o: np.broadcast_to(o.mean(0), o.shape)})
    per_k = out.set_index("min_playlists")
    assert list(per_k.index) == list(ks)
    # A higher threshold tags fewer tracks and fewer (track, context) cells.
    assert per_k["tracks"].is_monotonic_decreasing
    assert (per_k["tracks"] * per_k["observed_per_track"]).is_monotonic_decreasing
    # The k = 3 row is the dataset the paper's rule builds.
    ds = playlists.build_dataset(w.catalogue, min_playlists=3)
    want = T.missing_summary(ds.labels[COLS], w.latent.loc[ds.labels.index, COLS])
    for key, v in want.items():
        assert per_k.loc[3, key] == pytest.approx(v)
    assert (per_k["missing_rate"] > 0).all()  # the rule does lose true positives


# --------------------------------------------------------------------------
# a trained model's scores by the cells' true status
# --------------------------------------------------------------------------

def test_cell_recovery_hand_computed():
    observed = np.array([[1, 0, 0], [0, 1, 0]], bool)
    latent = np.array([[1, 1, 0], [1, 1, 0]], bool)
    scores = np.array([[0.9, 0.6, 0.2], [0.4, 0.7, 0.55]])
    r = T.cell_recovery(scores, observed, latent)
    assert r["observed positive cells"] == 2 and r["observed positive mean score"] == pytest.approx(0.8)
    assert r["observed positive predicted positive"] == 1.0
    # Missing positives: (0,1) = 0.6 and (1,0) = 0.4.
    assert r["missing positive cells"] == 2 and r["missing positive mean score"] == pytest.approx(0.5)
    assert r["missing positive predicted positive"] == 0.5
    # True negatives: (0,2) = 0.2 and (1,2) = 0.55.
    assert r["true negative mean score"] == pytest.approx(0.375)
    assert r["true negative predicted positive"] == 0.5
    # Pairs (missing, negative): 0.6>0.2, 0.6>0.55, 0.4>0.2, 0.4<0.55 -> 3/4.
    assert r["missing vs true negative AUC"] == pytest.approx(0.75)


def test_cell_recovery_without_missing_cells_and_bad_shapes():
    y = np.eye(3, dtype=bool)
    r = T.cell_recovery(np.full((3, 3), 0.3), y, y)
    assert r["missing positive cells"] == 0 and np.isnan(r["missing positive mean score"])
    assert np.isnan(r["missing vs true negative AUC"])
    with pytest.raises(ValueError, match="one shape"):
        T.cell_recovery(np.zeros((3, 2)), y, y)
