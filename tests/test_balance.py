"""Tests for ctxpaper.balance: co-occurrence and the authors' balancing procedure."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctxpaper.stats import label_summary
from ctxpaper.balance import (
    as_label_matrix,
    balance,
    balance_invariants,
    balance_order,
    cooccurrence,
    eligible_contexts,
)


def frame(y, ids=None, cols=None) -> pd.DataFrame:
    y = np.asarray(y, dtype=bool)
    ids = np.arange(100, 100 + len(y)) if ids is None else ids
    cols = [f"c{j}" for j in range(y.shape[1])] if cols is None else cols
    return pd.DataFrame(y, index=pd.Index(ids, name="song_id"), columns=cols)


bool_matrices = arrays(
    bool, st.tuples(st.integers(1, 40), st.integers(1, 6)), elements=st.booleans()
)


# --------------------------------------------------------------------------
# co-occurrence
# --------------------------------------------------------------------------

def test_cooccurrence_hand_computed():
    # tracks: {a,b}, {a}, {b,c}, {a,b,c}
    lab = frame([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]], cols=["a", "b", "c"])
    raw = cooccurrence(lab)
    assert raw.loc["a", "a"] == 3 and raw.loc["b", "b"] == 3 and raw.loc["c", "c"] == 2
    assert raw.loc["a", "b"] == 2 and raw.loc["a", "c"] == 1 and raw.loc["b", "c"] == 2
    jac = cooccurrence(lab, "jaccard")
    assert jac.loc["a", "b"] == pytest.approx(2 / 4)   # both: 2, either: 4
    assert jac.loc["b", "c"] == pytest.approx(2 / 3)
    cond = cooccurrence(lab, "conditional")
    assert cond.loc["c", "b"] == pytest.approx(1.0)    # every c track is also b
    assert cond.loc["b", "c"] == pytest.approx(2 / 3)
    assert cond.loc["a", "c"] == pytest.approx(1 / 3)


@settings(max_examples=60, deadline=None)
@given(bool_matrices)
def test_cooccurrence_matches_brute_force(y):
    lab = frame(y)
    raw, jac, cond = (cooccurrence(lab, n) for n in (None, "jaccard", "conditional"))
    cols = lab.columns
    for a, b in itertools.product(cols, cols):
        both = int((lab[a] & lab[b]).sum())
        either = int((lab[a] | lab[b]).sum())
        n_a = int(lab[a].sum())
        assert raw.loc[a, b] == both
        if either:
            assert jac.loc[a, b] == pytest.approx(both / either)
        else:
            assert np.isnan(jac.loc[a, b])
        if n_a:
            assert cond.loc[a, b] == pytest.approx(both / n_a)
        else:
            assert np.isnan(cond.loc[a, b])
    assert list(raw.index) == list(cols) and list(raw.columns) == list(cols)


def test_cooccurrence_accepts_01_integers_like_bools():
    y = np.array([[1, 0], [1, 1], [0, 1]])
    as_int = pd.DataFrame(y, columns=["x", "y"])
    as_bool = pd.DataFrame(y.astype(bool), columns=["x", "y"])
    pd.testing.assert_frame_equal(cooccurrence(as_int), cooccurrence(as_bool))


def test_cooccurrence_bad_normalise():
    with pytest.raises(ValueError, match="normalise"):
        cooccurrence(frame([[1, 0]]), "cosine")


def test_label_checks_name_the_problem():
    bad = pd.DataFrame({"a": [0, 2, 1]}, index=[1, 2, 3])
    with pytest.raises(ValueError, match=r"column 'a', track 2"):
        as_label_matrix(bad)
    with pytest.raises(ValueError, match="dtype"):
        as_label_matrix(pd.DataFrame({"a": ["yes", "no"]}))
    with pytest.raises(ValueError, match="not a boolean"):
        as_label_matrix(pd.DataFrame({"a": [1.0, np.nan]}))
    with pytest.raises(ValueError, match="duplicate track ids"):
        as_label_matrix(frame([[1], [0]], ids=[7, 7]))
    with pytest.raises(TypeError):
        as_label_matrix(np.zeros((2, 2), dtype=bool))


# --------------------------------------------------------------------------
# balancing
# --------------------------------------------------------------------------

def test_balance_hand_computed():
    # a: t1 t2 (2), b: t1 t3 t4 (3), c: t4 (1). cap=2 drops c; order a, b.
    # a draws both its tracks; the pool loses a's tracks; b has 1 (t1) and
    # draws exactly one of t3, t4.
    lab = frame([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 1]], ids=[1, 2, 3, 4],
                cols=["a", "b", "c"])
    assert eligible_contexts(lab, 2) == ["a", "b"]
    assert balance_order(lab, 2) == ["a", "b"]
    seen = set()
    for seed in range(20):
        kept = set(balance(lab, cap=2, seed=seed))
        assert {1, 2} <= kept and len(kept) == 3
        seen |= kept - {1, 2}
    assert seen == {3, 4}  # the draw is random across seeds


def random_labels(seed: int, n: int = 3000, p=(0.05, 0.1, 0.2, 0.3, 0.5)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random((n, len(p))) < np.asarray(p)
    return frame(y, ids=rng.permutation(10 * n)[:n])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(20, 200))
def test_balance_properties(seed, cap):
    lab = random_labels(seed % 50, n=800)
    try:
        order = balance_order(lab, cap)
    except ValueError:
        return  # cap above every context: covered by its own test
    kept = balance(lab, cap=cap, seed=seed)
    assert kept.is_unique and kept.isin(lab.index).all()
    sub = lab.loc[kept, order]
    counts = sub.sum(axis=0)
    # A track is drawn only for its first context in visiting order, when that
    # context still lacked tracks: so that context never exceeds the cap.
    first = sub.to_numpy().argmax(axis=1)
    assert sub.to_numpy().any(axis=1).all()  # no kept track without an eligible context
    for j in np.unique(first):
        assert counts.iloc[j] <= cap
    # The first visited context is drawn alone: exactly min(cap, its size).
    assert counts.iloc[0] == min(cap, int(lab[order[0]].sum()))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_balance_ignores_row_order_and_is_deterministic(seed):
    lab = random_labels(seed % 7, n=500)
    kept = balance(lab, cap=40, seed=seed)
    shuffled = lab.sample(frac=1.0, random_state=seed % 1000)
    assert set(balance(shuffled, cap=40, seed=seed)) == set(kept)
    assert list(balance(lab, cap=40, seed=seed)) == list(kept)
    # Output keeps the input's row order.
    assert list(kept) == [i for i in lab.index if i in set(kept)]


def test_balance_seed_changes_the_draw():
    lab = random_labels(1)
    assert set(balance(lab, 100, seed=0)) != set(balance(lab, 100, seed=1))


def test_balance_with_large_pools_meets_the_invariants_and_is_a_fixed_point():
    lab = random_labels(3, n=4000)
    cap = 150
    kept = balance(lab, cap=cap, seed=5)
    out = lab.loc[kept, eligible_contexts(lab, cap)]
    inv = balance_invariants(out, cap)
    assert inv["holds"].all(), inv
    counts = out.sum(axis=0)
    assert (counts >= cap).all() and counts.min() == cap
    # Balancing a balanced set again keeps every track.
    assert set(balance(out, cap=cap, seed=11)) == set(kept)


def test_balance_reduces_imbalance_and_raises_labels_per_track():
    lab = random_labels(4, n=4000)
    kept = balance(lab, cap=200, seed=0)
    before, after = label_summary(lab), label_summary(lab.loc[kept])
    assert after["tracks"] < before["tracks"]
    assert after["labels per track (mean)"] > before["labels per track (mean)"]
    ratio = lambda s: s["positives per context (max)"] / s["positives per context (min)"]  # noqa: E731
    assert ratio(after) < ratio(before)


def test_balance_drops_context_without_positives():
    lab = random_labels(2, n=1000)
    lab["empty"] = False
    assert "empty" not in eligible_contexts(lab, 30)
    kept = balance(lab, cap=30, seed=0)
    assert len(kept) > 0


def test_balance_bad_input():
    lab = random_labels(0, n=200)
    with pytest.raises(ValueError, match="above the positive count of every context"):
        balance(lab, cap=10_000)
    for cap in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="cap"):
            balance(lab, cap=cap)
    with pytest.raises(ValueError, match="duplicate track ids"):
        balance(pd.concat([lab, lab.iloc[:1]]), cap=5)
    with pytest.raises(ValueError, match="not a boolean"):
        balance(lab.astype(int) * 2, cap=5)


def test_balance_invariants_detect_a_violation():
    # a: 3 tracks (the cap), b: 4. The two tracks carrying only 'b' cannot come
    # from the procedure: b was never short of tracks, so nothing was drawn for it.
    lab = frame([[1, 1], [1, 0], [1, 1], [0, 1], [0, 1]], cols=["a", "b"])
    inv = balance_invariants(lab, 3).set_index("check")
    assert inv.loc["contexts at exactly the cap", "holds"]
    assert not inv.loc["tracks with no exactly-cap context", "holds"]
    assert inv.loc["tracks with no exactly-cap context", "value"] == 2


def test_released_set_satisfies_the_invariants():
    from ctxpaper.data import load_labels

    lab = load_labels()
    inv = balance_invariants(lab, 20000).set_index("check")
    assert inv["holds"].all()
    assert inv.loc["contexts at exactly the cap", "value"] == "club, happy, sad, sleep, workout"
    s = label_summary(lab)
    assert s["tracks"] == 49929 and round(s["labels per track (mean)"], 2) == 7.21
