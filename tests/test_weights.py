"""Tests for ctxpaper.weights: brute-force definitions, real released labels, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxpaper.contexts import CONTEXTS
from ctxpaper.weights import (
    WeightError,
    label_codes,
    negative_weights,
    positive_weights,
    superset_counts,
)

M = len(CONTEXTS)


# --------------------------------------------------------------------------
# brute-force references: the definitions of the issue, one cell at a time
# --------------------------------------------------------------------------

def brute_negative(labels: np.ndarray, reference: np.ndarray, mode: str) -> np.ndarray:
    labels = labels.astype(bool)
    reference = reference.astype(bool)
    out = np.zeros(labels.shape)
    for i, y in enumerate(labels):
        for c in range(M):
            if y[c]:
                continue
            y1 = y.copy()
            y1[c] = True
            if mode == "exact":
                neg = sum(np.array_equal(r, y) for r in reference)
                pos = sum(np.array_equal(r, y1) for r in reference)
                out[i, c] = neg / (neg + pos)
            else:
                has_all = [r for r in reference if all(r[k] for k in range(M) if y[k])]
                without_c = [r for r in has_all if not r[c]]
                out[i, c] = len(without_c) / len(has_all)
    return out


def brute_positive(counts, labels, ref_counts, ref_labels, idf="released"):
    """Eq. 4 as written in the issue, with pandas statistics (sample std)."""
    def tfidf(cnt, lab, totals):
        t = np.zeros(cnt.shape)
        for i in range(cnt.shape[0]):
            inverse = np.log(M / lab[i].sum())
            if idf == "corrected":
                inverse += 1
            for c in range(M):
                t[i, c] = cnt[i, c] / totals[c] * inverse
        return t

    totals = [sum(ref_counts[i, c] for i in range(ref_counts.shape[0])) for c in range(M)]
    ref_t = tfidf(ref_counts, ref_labels, totals)
    t = tfidf(counts, labels, totals)
    out = np.zeros(t.shape)
    for c in range(M):
        vals = pd.Series([v for v in ref_t[:, c] if v > 0], dtype=float)
        mean, std = vals.mean(), vals.std()  # pandas: ddof=1
        for i in range(t.shape[0]):
            if t[i, c] > 0:
                with np.errstate(invalid="ignore", divide="ignore"):
                    z = (t[i, c] - mean) / std + 1
                out[i, c] = 0.0 if np.isnan(z) else min(max(z, 0.0), 2.0)
    return out


# --------------------------------------------------------------------------
# strategies: small label matrices with many near-duplicate rows, so that the
# co-occurrence counts are not all 0 or 1
# --------------------------------------------------------------------------

@st.composite
def label_matrices(draw, min_rows=1, max_rows=25):
    base = draw(st.lists(st.integers(1, 2**M - 1), min_size=1, max_size=5))
    rows = draw(st.lists(
        st.tuples(st.integers(0, len(base) - 1), st.one_of(st.none(), st.integers(0, M - 1))),
        min_size=min_rows, max_size=max_rows,
    ))
    codes = []
    for b, flip in rows:
        code = base[b] if flip is None else base[b] ^ (1 << flip)
        codes.append(code or 1)  # keep at least one positive label
    codes = np.array(codes, dtype=np.int64)
    return ((codes[:, None] >> np.arange(M)) & 1).astype(bool)


# --------------------------------------------------------------------------
# hand-computed case
# --------------------------------------------------------------------------

def _row(*positives):
    r = np.zeros(M, dtype=bool)
    r[list(positives)] = True
    return r


def test_hand_computed_small_case():
    # rows: A = {0}, A, B = {0, 1}, C = {1}
    lab = np.array([_row(0), _row(0), _row(0, 1), _row(1)])
    ex = negative_weights(lab, "exact")
    iz = negative_weights(lab, "ignore_zeros")
    # A, c=1: exact #A / (#A + #B) = 2/3; ignore zeros: rows ⊇ {0} = 3, of which 1 has c=1
    assert ex[0, 1] == pytest.approx(2 / 3)
    assert iz[0, 1] == pytest.approx(2 / 3)
    # A, c=2: no row {0, 2}: exact 1; ignore zeros: no row ⊇ {0} has 2: 1
    assert ex[0, 2] == 1.0 and iz[0, 2] == 1.0
    # C, c=0: exact #C / (#C + #B) = 1/2; ignore zeros: rows ⊇ {1} = {B, C}, 1 has 0
    assert ex[3, 0] == pytest.approx(0.5)
    assert iz[3, 0] == pytest.approx(0.5)
    # positives weigh 0
    assert ex[0, 0] == 0 and ex[2, 1] == 0 and iz[2, 0] == 0


def test_superset_counts_small():
    table = np.zeros(1 << M, dtype=np.int64)
    table[0b011] = 2
    table[0b001] = 1
    table[0b110] = 5
    f = superset_counts(table)
    assert f[0] == 8
    assert f[0b001] == 3
    assert f[0b010] == 7
    assert f[0b011] == 2
    assert f[0b100] == 5
    assert f[0b111] == 0


def test_label_codes_bit_order():
    lab = np.array([_row(0), _row(14), _row(0, 2)])
    assert label_codes(lab).tolist() == [1, 1 << 14, 5]


# --------------------------------------------------------------------------
# property tests against the brute force
# --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lab=label_matrices(), mode=st.sampled_from(["exact", "ignore_zeros"]))
def test_negative_matches_brute_force(lab, mode):
    w = negative_weights(lab, mode)
    np.testing.assert_allclose(w, brute_negative(lab, lab, mode), rtol=0, atol=1e-12)
    assert ((w >= 0) & (w <= 1)).all()
    assert (w[lab] == 0).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=label_matrices(min_rows=2), data=st.data(), mode=st.sampled_from(["exact", "ignore_zeros"]))
def test_negative_with_reference_matches_brute_force(ref, data, mode):
    # rows to weight: a subset of the reference (e.g. train tracks, fitted on all)
    idx = data.draw(st.lists(st.integers(0, len(ref) - 1), min_size=1, max_size=len(ref)))
    lab = ref[idx]
    w = negative_weights(lab, mode, reference=ref)
    np.testing.assert_allclose(w, brute_negative(lab, ref, mode), rtol=0, atol=1e-12)


def test_ignore_zeros_counts_supersets_hand_case():
    # Ignore zeros also counts the rows that hold more labels than y_i: on a
    # dense matrix that lowers the weight, exact match does not see them.
    lab = np.array([_row(0)] * 3 + [_row(0, 1, 2)] * 7)
    ex = negative_weights(lab, "exact")
    iz = negative_weights(lab, "ignore_zeros")
    assert ex[0, 1] == 1.0  # no row is exactly {0, 1}
    assert iz[0, 1] == pytest.approx(3 / 10)


def test_unseen_pattern_error_and_fill():
    ref = np.array([_row(0), _row(0, 1)])
    lab = np.array([_row(3)])
    with pytest.raises(WeightError, match="never occurs in the reference"):
        negative_weights(lab, "exact", reference=ref)
    w = negative_weights(lab, "exact", reference=ref, unseen=1.0)
    assert (w[0, ~lab[0]] == 1.0).all() and w[0, 3] == 0
    # ignore zeros: {3} has no superset in ref either
    w = negative_weights(lab, "ignore_zeros", reference=ref, unseen=np.nan)
    assert np.isnan(w[0, 0]) and w[0, 3] == 0


@st.composite
def counts_and_labels(draw):
    lab = draw(label_matrices(min_rows=3, max_rows=20))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    cnt = lab * rng.integers(3, 60, size=lab.shape)
    # a few counts without a label, as in the released files
    stray = rng.random(lab.shape) < 0.05
    cnt = cnt + (~lab & stray) * rng.integers(1, 3, size=lab.shape)
    # every context needs some playlist count for tf (else a clear error, tested below)
    for c in np.flatnonzero(cnt.sum(0) == 0):
        cnt[rng.integers(len(cnt)), c] = 1
    return cnt.astype(np.int64), lab


def _well_defined(cnt, lab, variant):
    """Columns whose standardisation is numerically stable (std clearly > 0)."""
    idf = np.log(M / lab.sum(1)) + (1 if variant == "corrected" else 0)
    t = cnt / cnt.sum(0).clip(min=1) * idf[:, None]
    ok = []
    for c in range(M):
        v = t[t[:, c] > 0, c]
        ok.append(len(v) >= 2 and v.std() > 1e-9 * max(v.mean(), 1e-300))
    return np.array(ok)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cl=counts_and_labels(), variant=st.sampled_from(["released", "corrected"]))
def test_positive_matches_brute_force(cl, variant):
    cnt, lab = cl
    w = positive_weights(cnt, lab, variant)
    ref = brute_positive(cnt, lab, cnt, lab, variant)
    ok = _well_defined(cnt, lab, variant)
    np.testing.assert_allclose(w[:, ok], ref[:, ok], rtol=1e-9, atol=1e-12)
    assert ((w >= 0) & (w <= 2)).all()
    assert (w[cnt == 0] == 0).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cl=counts_and_labels(), data=st.data())
def test_positive_with_reference_matches_brute_force(cl, data):
    cnt, lab = cl
    idx = data.draw(st.lists(st.integers(0, len(lab) - 1), min_size=1, max_size=len(lab)))
    w = positive_weights(cnt[idx], lab[idx], reference=(cnt, lab))
    ref = brute_positive(cnt[idx], lab[idx], cnt, lab)
    ok = _well_defined(cnt, lab, "released")
    np.testing.assert_allclose(w[:, ok], ref[:, ok], rtol=1e-9, atol=1e-12)


def test_positive_all_labels_quirk_small():
    # A track with all 15 labels has idf 0: released weight 0, corrected > 0.
    lab = np.array([np.ones(M, bool), _row(*range(7)), _row(*range(7, 15)), _row(0, 8)])
    rng = np.random.default_rng(0)
    cnt = lab * rng.integers(3, 40, size=lab.shape)
    rel = positive_weights(cnt, lab, "released")
    cor = positive_weights(cnt, lab, "corrected")
    assert (rel[0] == 0).all()
    assert (cor[0] > 0).any()


def test_dataframe_and_array_inputs_agree_and_are_aligned_by_id():
    rng = np.random.default_rng(1)
    lab = rng.random((30, M)) < 0.5
    lab[:, 0] = True
    cnt = lab * rng.integers(3, 30, size=lab.shape)
    ids = pd.Index(rng.permutation(10_000)[:30], name="song_id")
    L = pd.DataFrame(lab, index=ids, columns=list(CONTEXTS))
    C = pd.DataFrame(cnt, index=ids, columns=list(CONTEXTS))
    perm = rng.permutation(30)
    shuffled_cols = list(CONTEXTS)[::-1]
    w_arr = positive_weights(cnt, lab)
    w_df = positive_weights(C.iloc[perm][shuffled_cols], L)
    np.testing.assert_array_equal(w_arr, w_df)
    np.testing.assert_array_equal(negative_weights(lab), negative_weights(L[shuffled_cols]))
    # the authors' layout: song_id as a column, ints
    np.testing.assert_array_equal(negative_weights(lab), negative_weights(L.astype(int).reset_index()))


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------

def _good():
    lab = np.zeros((4, M), dtype=np.int64)
    lab[:, 0] = 1
    lab[1, 3] = 1
    return lab, lab * 5


@pytest.mark.parametrize("bad, match", [(2, r"label 2(\.0)? is not 0 or 1"), (np.nan, "is not 0 or 1"),
                                        (-1, "is not 0 or 1")])
def test_labels_not_binary(bad, match):
    lab, _ = _good()
    lab = lab.astype(float)
    lab[2, 5] = bad
    with pytest.raises(WeightError, match=match) as e:
        negative_weights(lab)
    assert "row 2" in str(e.value) and "'happy'" in str(e.value)


def test_row_without_positive_names_song_id():
    lab, cnt = _good()
    L = pd.DataFrame(lab, columns=list(CONTEXTS), index=pd.Index([11, 22, 33, 44], name="song_id"))
    L.iloc[2] = 0
    with pytest.raises(WeightError, match="song_id 33.*no positive label"):
        negative_weights(L)
    with pytest.raises(WeightError, match="no positive label"):
        positive_weights(cnt, L)


def test_missing_context_column():
    lab, _ = _good()
    L = pd.DataFrame(lab, columns=list(CONTEXTS)).drop(columns="sleep")
    with pytest.raises(WeightError, match=r"missing: \['sleep'\]"):
        negative_weights(L)


def test_wrong_shape_and_unknown_mode():
    lab, cnt = _good()
    with pytest.raises(WeightError, match="shape"):
        negative_weights(lab[:, :14])
    with pytest.raises(WeightError, match="mode"):
        negative_weights(lab, "ignore_ones")
    with pytest.raises(WeightError, match="idf"):
        positive_weights(cnt, lab, "fixed")


def test_negative_counts():
    lab, cnt = _good()
    cnt[1, 3] = -2
    with pytest.raises(WeightError, match="row 1.*'dance'.*not a non-negative integer"):
        positive_weights(cnt, lab)


def test_counts_misaligned():
    lab, cnt = _good()
    L = pd.DataFrame(lab, columns=list(CONTEXTS), index=pd.Index([1, 2, 3, 4], name="song_id"))
    C = pd.DataFrame(cnt, columns=list(CONTEXTS), index=pd.Index([1, 2, 3, 5], name="song_id"))
    with pytest.raises(WeightError, match="1 only in the counts"):
        positive_weights(C, L)
    with pytest.raises(WeightError, match="3 rows but the labels have 4"):
        positive_weights(cnt[:3], lab)


def test_context_without_any_count():
    lab, cnt = _good()
    cnt[:, 0] = 0
    with pytest.raises(WeightError, match="'car' has no playlist count"):
        positive_weights(cnt, lab)


# --------------------------------------------------------------------------
# the real released labels
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def released():
    from ctxpaper.data import load_counts, load_labels
    return load_labels(), load_counts()


def test_real_negative_weights_against_direct_counting(released):
    L, _ = released
    lab = L.to_numpy()
    ex = negative_weights(L, "exact")
    iz = negative_weights(L, "ignore_zeros")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(lab), size=40, replace=False):
        y = lab[i]
        diff = lab != y
        n_diff = diff.sum(1)
        same = int((n_diff == 0).sum())
        pos = y.copy()
        contains = lab[:, pos].all(1)
        for c in np.flatnonzero(~y):
            only_c = int(((n_diff == 1) & diff[:, c]).sum())
            assert ex[i, c] == pytest.approx(same / (same + only_c))
            assert iz[i, c] == pytest.approx(1 - (contains & lab[:, c]).sum() / contains.sum())


def test_real_positive_quirk(released):
    L, C = released
    lab = L.to_numpy()
    cnt = C.to_numpy()
    all15 = lab.all(1)
    assert all15.sum() > 0
    rel = positive_weights(C, L, "released")
    cor = positive_weights(C, L, "corrected")
    # Released: every positive of an all-15 track weighs 0.
    assert (rel[all15] == 0).all()
    # Corrected: those cells with a playlist count get a weight again.
    lost = all15[:, None] & lab & (cnt > 0)
    assert (cor[lost] > 0).all()
    # Outside the all-15 tracks, the positive cells zeroed by each variant are few
    # (clipping or a label without count): the quirk is what zeroes the rest.
    others = ~all15[:, None] & lab
    assert ((rel == 0) & others).sum() < 0.001 * others.sum()


def test_real_ignore_zeros_is_lower_on_average(released):
    L, _ = released
    lab = L.to_numpy()
    ex = negative_weights(L, "exact")[~lab]
    iz = negative_weights(L, "ignore_zeros")[~lab]
    assert iz.mean() < ex.mean()


def test_real_train_only_fit(released):
    from ctxpaper.data import load_split
    L, C = released
    split = load_split()
    train = L.loc[split.index[split["subset"] == "train"]]
    fit_all = negative_weights(train, "exact", reference=L)
    fit_train = negative_weights(train, "exact", reference=train)
    # direct counting for a few train rows against the train matrix only
    tl = train.to_numpy()
    for i in (0, 100, 5000):
        y = tl[i]
        diff = tl != y
        same = int((diff.sum(1) == 0).sum())
        for c in np.flatnonzero(~y)[:3]:
            only_c = int(((diff.sum(1) == 1) & diff[:, c]).sum())
            assert fit_train[i, c] == pytest.approx(same / (same + only_c))
    assert not np.allclose(fit_all, fit_train)
    pw = positive_weights(C.loc[train.index], train, reference=(C.loc[train.index], train))
    assert pw.shape == train.shape


# --------------------------------------------------------------------------
# chapter-06 analysis helpers
# --------------------------------------------------------------------------

from ctxpaper.weights import (  # noqa: E402
    conditioning_support,
    fit_comparison,
    lowest_negative_cells,
    negative_summary,
    positive_zero_causes,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lab=label_matrices(), mode=st.sampled_from(["exact", "ignore_zeros"]))
def test_conditioning_support_brute_force(lab, mode):
    sup = conditioning_support(lab, mode)
    for i, y in enumerate(lab):
        for c in np.flatnonzero(~y):
            y1 = y.copy()
            y1[c] = True
            if mode == "exact":
                want = sum(np.array_equal(r, y) or np.array_equal(r, y1) for r in lab)
            else:
                want = sum(bool(r[y].all()) for r in lab)
            assert sup[i, c] == want
    assert (sup[lab] == 0).all()


def test_lowest_negative_cells_and_summary():
    lab = np.array([_row(0)] * 3 + [_row(0, 1, 2)] * 7 + [_row(5)])
    L = pd.DataFrame(lab, columns=list(CONTEXTS), index=pd.Index(range(100, 111), name="song_id"))
    w = negative_weights(L, "ignore_zeros")
    low = lowest_negative_cells(L, w, k=3, support=conditioning_support(L, "ignore_zeros"))
    # rows {0}: weight of context 1 (and 2) is 3/10 — the lowest
    assert low["weight"].tolist() == pytest.approx([0.3, 0.3, 0.3])
    assert low["song_id"].tolist() == [100, 100, 101]
    assert low["context (zero)"].tolist() == ["chill", "club", "chill"]
    assert low["positive contexts of the track"].iloc[0] == "car"
    assert (low["from rows"] == 10).all()
    s = negative_summary(L, {"iz": w})
    assert s.loc[("iz", "car"), "negatives"] == 1
    assert s.loc[("iz", "all contexts"), "negatives"] == (~lab).sum()
    assert s.loc[("iz", "all contexts"), "mean"] == pytest.approx(w[~lab].mean())


def test_positive_zero_causes_small():
    lab = np.array([np.ones(M, bool), _row(0, 1), _row(0, 2), _row(1, 2), _row(0, 1, 2)])
    rng = np.random.default_rng(0)
    cnt = lab * rng.integers(3, 30, size=lab.shape)
    cnt[1, 1] = 0  # a label without count
    w = positive_weights(cnt, lab)
    causes = positive_zero_causes(cnt, lab, w)
    assert causes["tracks with all 15 labels (idf = 0)"] == 15
    assert causes["label without playlist count (tf = 0)"] == 1
    assert causes["positive cells"] == lab.sum()
    assert causes.iloc[:3].sum() == causes["positive cells with weight 0"] == ((w == 0) & lab).sum()


def test_fit_comparison():
    a = np.zeros((3, M))
    b = a.copy()
    b[0, 2] = 0.5
    cells = np.ones((3, M), bool)
    t = fit_comparison(a, b, cells, ("all", "train"))
    assert t.loc["club", "max |diff|"] == 0.5
    assert t.loc["club", "share changed"] == pytest.approx(1 / 3)
    assert t.loc["car", "share changed"] == 0
    assert t.loc["all contexts", "cells"] == 3 * M
    with pytest.raises(WeightError, match="shapes differ"):
        fit_comparison(a, b[:2], cells)


def test_real_quirk_causes(released):
    L, C = released
    lab = L.to_numpy()
    causes = positive_zero_causes(C, L, positive_weights(C, L))
    # independent count: positive cells of the all-15 tracks
    assert causes["tracks with all 15 labels (idf = 0)"] == int(lab[lab.all(1)].sum())
    causes_c = positive_zero_causes(C, L, positive_weights(C, L, "corrected"))
    assert causes_c["tracks with all 15 labels (idf = 0)"] <= int(((C.to_numpy() == 0) & lab)[lab.all(1)].sum())
