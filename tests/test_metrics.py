"""Tests for ctxpaper.metrics: against scikit-learn, hand-computed cases, bootstrap invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, hamming_loss, precision_score, recall_score, roc_auc_score

from ctxpaper.contexts import CONTEXTS
from ctxpaper.metrics import (
    MACRO,
    METRICS,
    MetricsError,
    bootstrap_ci,
    bootstrap_indices,
    format_ci,
    per_context_metrics,
    predict,
    tune_thresholds,
)

M = len(CONTEXTS)


def sklearn_table(y, s, thr):
    thr = np.broadcast_to(np.asarray(thr, float), (M,))
    rows = []
    for c in range(M):
        pred = (s[:, c] > thr[c]).astype(int)
        yc = y[:, c].astype(int)
        auc = roc_auc_score(yc, s[:, c]) if 0 < yc.sum() < len(yc) else np.nan
        rows.append([
            hamming_loss(yc, pred), auc,
            recall_score(yc, pred, zero_division=0),
            precision_score(yc, pred, zero_division=0),
            f1_score(yc, pred, zero_division=0),
            recall_score(yc, pred, pos_label=0, zero_division=0),
        ])
    return np.array(rows)


def _random(n, seed, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.random((n, M)) < rng.uniform(0.2, 0.8, M)
    s = np.clip(0.3 * y + rng.random((n, M)) * 0.8, 0, 1)
    if ties:
        s = np.round(s, 1)  # many tied scores, some exactly at 0.5
    return y, s


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 80), seed=st.integers(0, 10**6), ties=st.booleans(),
       thr=st.sampled_from([0.5, 0.3, "per-context"]))
def test_matches_sklearn(n, seed, ties, thr):
    y, s = _random(n, seed, ties)
    if thr == "per-context":
        thr = np.random.default_rng(seed).uniform(0, 1, M).round(2)
    tab = per_context_metrics(y, s, thr)
    ref = sklearn_table(y, s, thr)
    np.testing.assert_allclose(tab.iloc[:M].to_numpy(), ref, rtol=1e-12, atol=1e-12, equal_nan=True)
    # macro row: plain mean over contexts (NaN if any context has no AUC)
    np.testing.assert_allclose(tab.loc[MACRO].to_numpy(), ref.mean(axis=0), rtol=1e-12, equal_nan=True)


def test_layout():
    y, s = _random(50, 0)
    tab = per_context_metrics(y, s)
    assert list(tab.columns) == ["HL", "AUC", "Recall", "Precision", "F1", "TN rate"]
    assert list(tab.index) == [*CONTEXTS, "Macro average"]


def test_hand_computed_one_context():
    # context 0: labels 1 1 0 0, scores .9 .4 .6 .1 → pred 1 0 1 0
    y = np.zeros((4, M), int)
    s = np.full((4, M), 0.2)
    y[:, 1:] = [[1], [0], [1], [0]]  # other contexts: anything valid
    y[:, 0] = [1, 1, 0, 0]
    s[:, 0] = [0.9, 0.4, 0.6, 0.1]
    row = per_context_metrics(y, s).loc["car"]
    # TP=1 FN=1 FP=1 TN=1
    assert row["HL"] == pytest.approx(0.5)
    assert row["Recall"] == pytest.approx(0.5)
    assert row["Precision"] == pytest.approx(0.5)
    assert row["F1"] == pytest.approx(0.5)
    assert row["TN rate"] == pytest.approx(0.5)
    # pairs (pos, neg): (.9,.6) (.9,.1) (.4,.1) won, (.4,.6) lost → 3/4
    assert row["AUC"] == pytest.approx(0.75)


def test_exact_half_is_negative_like_rounding():
    y = np.zeros((2, M), int)
    y[0] = 1
    s = np.full((2, M), 0.5)
    tab = per_context_metrics(y, s)
    # np.round(0.5) == 0: nothing predicted positive
    assert (tab.loc[list(CONTEXTS), "Recall"] == 0).all()
    assert (tab.loc[list(CONTEXTS), "Precision"] == 0).all()  # zero division → 0
    assert (tab.loc[list(CONTEXTS), "AUC"] == 0.5).all()  # all tied
    assert (predict(s) == (np.round(s) == 1)).all()


def test_single_class_context_gives_nan_auc_and_macro():
    y, s = _random(30, 3)
    y[:, 4] = 1
    tab = per_context_metrics(y, s)
    assert np.isnan(tab.loc["gym", "AUC"])
    assert np.isnan(tab.loc[MACRO, "AUC"])
    assert tab.loc["gym", "TN rate"] == 0


def test_dataframe_inputs_reordered_by_name():
    y, s = _random(40, 5)
    ids = pd.Index(range(40), name="song_id")
    Y = pd.DataFrame(y, index=ids, columns=list(CONTEXTS))[list(CONTEXTS)[::-1]]
    S = pd.DataFrame(s, index=ids, columns=list(CONTEXTS))
    pd.testing.assert_frame_equal(per_context_metrics(Y, S), per_context_metrics(y, s))
    with pytest.raises(MetricsError, match="indexes"):
        per_context_metrics(Y, S.set_axis(range(1, 41)))


# --------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------

def test_bootstrap_replicates_equal_metrics_on_resampled_rows():
    y, s = _random(60, 7, ties=True)
    ci, reps = bootstrap_ci(y, s, n_boot=5, seed=11, return_replicates=True)
    idx = bootstrap_indices(60, 5, 11)
    for b in range(5):
        direct = per_context_metrics(y[idx[b]], s[idx[b]]).to_numpy()
        np.testing.assert_allclose(reps[b], direct, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_bootstrap_seeded_and_brackets_estimate():
    y, s = _random(400, 8)
    a = bootstrap_ci(y, s, n_boot=100, seed=1)
    b = bootstrap_ci(y, s, n_boot=100, seed=1)
    c = bootstrap_ci(y, s, n_boot=100, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    pd.testing.assert_frame_equal(
        a.xs("estimate", axis=1, level=1), per_context_metrics(y, s), check_names=False)
    for m in METRICS:
        assert (a[(m, "low")] <= a[(m, "high")]).all()
    # a 95% interval of 100 resamples usually holds the full-sample estimate
    inside = [(a[(m, "low")] <= a[(m, "estimate")] + 1e-12) & (a[(m, "estimate")] <= a[(m, "high")] + 1e-12)
              for m in METRICS]
    assert np.mean(np.concatenate([i.to_numpy() for i in inside])) > 0.9


def test_bootstrap_interval_shrinks_with_more_tracks():
    y, s = _random(4000, 9)
    wide = bootstrap_ci(y[:250], s[:250], n_boot=100, seed=0)
    narrow = bootstrap_ci(y, s, n_boot=100, seed=0)
    w = (wide[("F1", "high")] - wide[("F1", "low")]).loc[MACRO]
    nw = (narrow[("F1", "high")] - narrow[("F1", "low")]).loc[MACRO]
    assert nw < w


def test_format_ci():
    y, s = _random(50, 1)
    f = format_ci(bootstrap_ci(y, s, n_boot=20, seed=0))
    assert list(f.columns) == list(METRICS)
    assert f.loc["car", "HL"].count("[") == 1


# --------------------------------------------------------------------------
# threshold tuning
# --------------------------------------------------------------------------

def test_tune_thresholds_brute_force():
    y, s = _random(300, 4)
    th = tune_thresholds(y, s)
    assert list(th.index) == list(CONTEXTS)
    grid = np.arange(100) / 100
    for c in (0, 6, 14):
        f1s = [f1_score(y[:, c], s[:, c] > t, zero_division=0) for t in grid]
        assert th.iloc[c] == pytest.approx(grid[int(np.argmax(f1s))])
    # applying them: the validation F1 is at least that of 0.5
    tuned = per_context_metrics(y, s, th)
    base = per_context_metrics(y, s)
    assert (tuned.loc[list(CONTEXTS), "F1"] >= base.loc[list(CONTEXTS), "F1"] - 1e-12).all()


def test_tune_thresholds_hand_case():
    # context 0: positives score .8 .7, negatives .75 .1 → F1 is best once .1 is
    # excluded and all positives kept (t in [.10, .69]): the lowest, 0.10
    y = np.zeros((4, M), int)
    y[:, 1:] = 1
    y[:, 0] = [1, 1, 0, 0]
    s = np.full((4, M), 0.9)
    s[:, 0] = [0.8, 0.7, 0.75, 0.1]
    assert tune_thresholds(y, s)["car"] == pytest.approx(0.10)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------

def test_bad_inputs():
    y, s = _random(10, 0)
    with pytest.raises(MetricsError, match="shape"):
        per_context_metrics(y, s[:, :3])
    with pytest.raises(MetricsError, match="shape"):
        per_context_metrics(y[:5], s)
    yb = y.astype(int)
    yb[2, 3] = 2
    with pytest.raises(MetricsError, match="row 2, context 'dance'"):
        per_context_metrics(yb, s)
    sb = s.copy()
    sb[1, 0] = np.nan
    with pytest.raises(MetricsError, match="not finite"):
        per_context_metrics(y, sb)
    with pytest.raises(MetricsError, match="threshold"):
        per_context_metrics(y, s, threshold=[0.5, 0.5])
    with pytest.raises(MetricsError, match="missing"):
        per_context_metrics(pd.DataFrame(y, columns=list(CONTEXTS)).drop(columns="car"), s)
    with pytest.raises(MetricsError, match="n_boot"):
        bootstrap_ci(y, s, n_boot=0)
