"""Tests for ctxpaper.losses: the sample weights of every loss, and the missing-label losses
against numpy references and their defining properties."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from ctxpaper import losses as L
from ctxpaper.contexts import CONTEXTS
from ctxpaper.model import pack_targets, weighted_bce


def _batch(seed, n=64):
    rng = np.random.default_rng(seed)
    y = rng.random((n, 15)) < 0.4
    p = rng.random((n, 15)).astype(np.float32)
    p[0, :3] = [0.0, 1.0, 0.03]  # clipping and the ASL margin
    return y, p


def _eval(loss, y, p, **kw):
    out = loss(torch.from_numpy(pack_targets(y)), torch.from_numpy(p), **kw)
    return out.detach().numpy().astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_match_numpy_reference(seed):
    y, p = _batch(seed)
    assert np.allclose(_eval(L.asymmetric_loss, y, p), L.numpy_reference("asl", y, p), atol=1e-5)
    assert np.allclose(_eval(L.entropy_max_loss, y, p, alpha=0.3),
                       L.numpy_reference("em", y, p, alpha=0.3), atol=1e-5)


def test_asl_without_focusing_and_margin_is_bce():
    y, p = _batch(3)
    asl = _eval(L.asymmetric_loss, y, p, gamma_neg=0.0, margin=0.0)
    bce = weighted_bce(torch.from_numpy(pack_targets(y)), torch.from_numpy(p)).numpy()
    assert np.allclose(asl, bce, atol=1e-5)


def test_asl_ignores_negatives_below_the_margin():
    y = np.zeros((1, 15), bool)
    y[0, 0] = True
    p = np.full((1, 15), 0.04, np.float32)
    p[0, 0] = 0.9
    only_positive = -np.log(0.9) / 15
    assert _eval(L.asymmetric_loss, y, p)[0] == pytest.approx(only_positive, rel=1e-5)


def test_em_pushes_zeros_towards_uncertainty_not_towards_zero():
    y = np.zeros((1, 15), bool)
    y[0, 0] = True
    for start, direction in ((0.1, +1), (0.9, -1)):
        p = torch.full((1, 15), start, requires_grad=True)
        L.entropy_max_loss(torch.from_numpy(pack_targets(y)), p).sum().backward()
        # gradient descent moves p by -grad: towards 0.5 on the zero cells
        assert np.all(np.sign(-p.grad[0, 1:].numpy()) == direction)
    p = torch.full((1, 15), 0.1, requires_grad=True)
    weighted_bce(torch.from_numpy(pack_targets(y)), p).sum().backward()
    assert np.all(-p.grad[0, 1:].numpy() < 0)  # plain BCE pushes them to 0


def test_wan_weights():
    y = np.array([[1, 0, 0], [0, 1, 1]], bool)
    w = L.wan_negative_weights(y)
    assert np.array_equal(w, [[0, 0.5, 0.5], [0.5, 0, 0]])
    assert L.wan_negative_weights(np.zeros((2, 15), bool)).max() == pytest.approx(1 / 14)
    with pytest.raises(ValueError, match="gamma must be in"):
        L.wan_negative_weights(y, gamma=0)


def test_unknown_reference():
    with pytest.raises(ValueError, match="unknown loss"):
        L.numpy_reference("focal", np.zeros((1, 15)), np.zeros((1, 15)))


# ---------------------------------------------------------------------------
# sample weights per loss (eq. 3 and eq. 4 through ctxpaper.weights)
# ---------------------------------------------------------------------------

def correlated_labels(n=300, seed=0):
    """Labels whose contexts come in groups (so co-occurrence weights are informative), and counts."""
    rng = np.random.default_rng(seed)
    idx = pd.Index(np.arange(n, dtype=np.int64), name="track_id")
    style = rng.integers(0, 3, n)
    y = rng.random((n, 15)) < np.where(np.arange(15)[None, :] % 3 == style[:, None], 0.7, 0.15)
    y[~y.any(axis=1), 0] = True
    labels = pd.DataFrame(y, index=idx, columns=list(CONTEXTS))
    counts = pd.DataFrame(np.where(y, rng.integers(3, 40, (n, 15)), 0), index=idx, columns=list(CONTEXTS))
    return labels, counts


def brute_exact_negative(ref, row, c):
    """P(y_c = 0 | the rest of the row), by counting reference rows."""
    others = [j for j in range(15) if j != c]
    same = (ref[:, others] == row[others]).all(axis=1)
    return (same & ~ref[:, c]).sum() / same.sum()


def test_loss_weights_of_table_2():
    lab, cnt = correlated_labels()
    w = {v: L.loss_weights(v, lab, cnt, lab, cnt) for v in L.TABLE2_LOSSES}
    ones = np.ones(lab.shape)
    np.testing.assert_array_equal(w["none"][0], ones)
    np.testing.assert_array_equal(w["none"][1], ones)
    for v in ("neg_exact", "neg_ignore_zeros"):
        np.testing.assert_array_equal(w[v][0], ones)
        assert (w[v][1] >= 0).all() and (w[v][1] <= 1).all()
    for mode in ("exact", "ignore_zeros"):
        np.testing.assert_array_equal(w[f"both_{mode}"][1], w[f"neg_{mode}"][1])
        assert not np.allclose(w[f"both_{mode}"][0][lab.to_numpy()], 1.0)  # tf-idf, not ones, on positives
    assert not np.allclose(w["neg_exact"][1], w["neg_ignore_zeros"][1])
    # Exact match, checked by brute force on a few negative cells.
    y = lab.to_numpy(bool)
    for i, c in itertools.islice(zip(*np.nonzero(~y)), 0, 40, 7):
        assert w["neg_exact"][1][i, c] == pytest.approx(brute_exact_negative(y, y[i], c))


def test_loss_weights_are_fitted_on_the_reference():
    lab, cnt = correlated_labels(300)
    few = lab.index[:60]
    on_all = L.loss_weights("neg_exact", lab.loc[few], cnt.loc[few], lab, cnt)[1]
    on_few = L.loss_weights("neg_exact", lab.loc[few], cnt.loc[few], lab.loc[few], cnt.loc[few])[1]
    assert on_all.shape == (60, 15) and not np.allclose(on_all, on_few)
    # The reference decides: the weights of the 60 tracks are their rows among all 300.
    np.testing.assert_allclose(on_all, L.loss_weights("neg_exact", lab, cnt, lab, cnt)[1][:60])
    y = lab.to_numpy(bool)
    i, c = next(zip(*np.nonzero(~y[:60])))
    assert on_all[i, c] == pytest.approx(brute_exact_negative(y, y[i], c))


def test_extra_loss_weights():
    lab, cnt = correlated_labels(80)
    y = lab.to_numpy(bool)
    w_pos, w_neg = L.loss_weights("wan", lab, cnt, lab, cnt)
    np.testing.assert_array_equal(w_pos, 1.0)
    np.testing.assert_allclose(w_neg[~y], 1 / 14)  # γ = 1 / (m - 1), m = 15 contexts
    np.testing.assert_array_equal(w_neg[y], 0.0)
    for v in ("asl", "em"):
        for w in L.loss_weights(v, lab, cnt, lab, cnt):
            np.testing.assert_array_equal(w, 1.0)


def test_unknown_loss_is_refused_by_name():
    lab, cnt = correlated_labels(30)
    with pytest.raises(ValueError, match="unknown loss 'neg': choose one of none, neg_exact"):
        L.loss_weights("neg", lab, cnt, lab, cnt)
    assert L.check_loss("em") == "em"
    assert set(L.LABELS) == set(L.ALL_LOSSES) == set(L.OBJECTIVE)
