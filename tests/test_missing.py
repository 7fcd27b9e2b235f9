"""Label-only missing-label detection: masking, detectors, ranking metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from ctxpaper import missing
from ctxpaper.weights import negative_weights


def _random_labels(rng, n=300, m=6, p=0.4):
    y = rng.random((n, m)) < p
    y[~y.any(axis=1), 0] = True
    return y


def test_hide_positives_invariants():
    rng = np.random.default_rng(0)
    y = _random_labels(rng, 2000, 8)
    masked, hidden = missing.hide_positives(y, 0.3, seed=5)
    assert not (hidden & ~y).any()                 # only positives are hidden
    assert np.array_equal(masked, y & ~hidden)
    assert masked.any(axis=1).all()                # every row keeps a positive
    assert 0.25 < hidden.sum() / y.sum() < 0.31     # realised fraction close to asked
    again = missing.hide_positives(y, 0.3, seed=5)
    assert np.array_equal(again[1], hidden)        # seeded
    assert not np.array_equal(missing.hide_positives(y, 0.3, seed=6)[1], hidden)


def test_hide_positives_rejects_bad_input():
    y = np.eye(3, dtype=bool)
    with pytest.raises(ValueError, match="fraction must be in"):
        missing.hide_positives(y, 1.0, 0)
    with pytest.raises(ValueError, match="at least one positive per row"):
        missing.hide_positives(np.zeros((2, 3), bool), 0.5, 0)


def _knn_brute(y: np.ndarray, k: int) -> np.ndarray:
    """k nearest tracks by cosine, self excluded, ties broken by np.unique pattern order."""
    patterns, inverse = np.unique(y, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    x = y.astype(float)
    norm = np.linalg.norm(x, axis=1)
    out = np.empty_like(x)
    for i in range(len(y)):
        sims = [(x[i] @ x[j]) / (norm[i] * norm[j]) if norm[i] and norm[j] else 0.0 for j in range(len(y))]
        others = sorted((j for j in range(len(y)) if j != i),
                        key=lambda j: (0 if inverse[j] == inverse[i] else 1, -round(sims[j], 9), inverse[j]))
        out[i] = x[others[:k]].mean(axis=0)
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_knn_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    y = _random_labels(rng, n=40, m=4, p=0.5)  # few patterns: many duplicates and ties
    assert np.allclose(missing.score_knn(y, k=k, chunk=3), _knn_brute(y, k))


def test_knn_bad_k():
    with pytest.raises(ValueError, match="k must be in 1..2"):
        missing.score_knn(np.eye(3, dtype=bool), k=3)


def test_lowrank_full_rank_reconstructs_and_low_rank_smooths():
    rng = np.random.default_rng(1)
    y = _random_labels(rng, 200, 5)
    assert np.allclose(missing.score_lowrank(y, rank=5), y)
    r1 = missing.score_lowrank(y, rank=1)
    assert not np.allclose(r1, y) and r1.shape == y.shape
    with pytest.raises(ValueError, match="rank must be in"):
        missing.score_lowrank(y, rank=0)


def test_prior_and_weight_detectors():
    rng = np.random.default_rng(2)
    y = _random_labels(rng, 300, 15)  # the weights of eq. 3 are defined on the 15 contexts
    prior = missing.score_prior(y)
    assert np.allclose(prior, y.mean(axis=0)[None, :])
    for mode in ("exact", "ignore_zeros"):
        assert np.allclose(missing.score_negative_weights(y, mode), 1 - negative_weights(y, mode=mode))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_ranking_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = _random_labels(rng, 120, 5)
    masked, hidden = missing.hide_positives(y, 0.4, seed)
    scores = np.round(rng.random(y.shape), 1)  # coarse scores: many ties
    zero = ~masked
    if hidden.sum() == 0 or (zero & ~hidden).sum() == 0:
        return
    got = missing.ranking_metrics(scores, masked, hidden)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(hidden[zero], scores[zero]))
    no_ties = scores + rng.random(y.shape) * 1e-6  # AP's tie handling differs from sklearn's
    got = missing.ranking_metrics(no_ties, masked, hidden)
    assert got["average_precision"] == pytest.approx(average_precision_score(hidden[zero], no_ties[zero]))
    k = int(hidden.sum())
    top = np.argsort(-no_ties[zero])[:k]
    assert got["precision_at_k"] == pytest.approx(hidden[zero][top].mean())


def test_perfect_and_useless_detectors():
    rng = np.random.default_rng(3)
    y = _random_labels(rng, 500, 6)
    masked, hidden = missing.hide_positives(y, 0.3, 0)
    perfect = missing.ranking_metrics(hidden.astype(float), masked, hidden)
    assert perfect == {"roc_auc": 1.0, "average_precision": 1.0, "precision_at_k": 1.0}
    flat = missing.ranking_metrics(np.zeros(y.shape), masked, hidden)
    assert flat["roc_auc"] == 0.5


def test_run_detection_and_summary():
    rng = np.random.default_rng(4)
    # correlated labels: context 1 copies context 0, so a hidden 1 is recoverable from 0
    base = rng.random((400, 1)) < 0.5
    y = np.hstack([base, base, rng.random((400, 13)) < 0.3])
    y[~y.any(axis=1), 2] = True
    res = missing.run_detection(y, fractions=(0.2,), seeds=range(3))
    assert len(res) == 3 * len(missing.DETECTORS)
    summary = missing.summarise(res)
    assert summary.loc[(0.2, "context prior"), "seeds"] == 3
    assert (summary["roc_auc ±95%"] >= 0).all()
    # on correlated labels the co-occurrence detectors beat the prior
    knn = summary.loc[(0.2, "k-NN on label vectors"), "roc_auc"]
    assert knn > summary.loc[(0.2, "context prior"), "roc_auc"]
