"""Sample-level loss weights of the weighted cross-entropy (paper §4.2–4.3, eqs. 3–4).

Two families of weights enter the loss of eq. 2:

* **negative weights** :math:`\\bar\\omega_{i,c} = P(y_{i,c} = 0 \\mid \\mathbf y_i)` (eq. 3),
  estimated from label co-occurrences in a reference label matrix, in the two
  variants of the paper: *exact match* (condition on the whole label vector,
  zeros included) and *ignore zeros* (condition only on the positive labels);
* **positive weights** :math:`\\omega_{i,c}` (eq. 4), a tf-idf of the playlist
  counts, standardised per context as the authors' released code does.

Both follow the authors' released code (``utilities.py`` of
``KarimMibrahim/context_classification_cnn`` at the commit the data is pinned
to): no smoothing, weight 0 on the cells where it is not used. The authors
fitted the statistics on all 49,929 released tracks, test tracks included; the
``reference`` arguments let the same weights be fitted on any other set (e.g.
the training tracks only).

Everything is vectorised: each label row is encoded as a 15-bit integer, the
reference rows are counted per pattern with ``np.bincount`` and, for *ignore
zeros*, a superset-sum transform over the 2**15 patterns gives, for every
pattern, how many reference rows contain it.

Notebook: ``06_weighted_cross_entropy``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from .contexts import CONTEXTS

M = len(CONTEXTS)
_BITS = (1 << np.arange(M)).astype(np.int64)
NegativeMode = Literal["exact", "ignore_zeros"]
Idf = Literal["released", "corrected"]

__all__ = [
    "negative_weights",
    "positive_weights",
    "label_codes",
    "superset_counts",
    "WeightError",
    "conditioning_support",
    "negative_summary",
    "lowest_negative_cells",
    "positive_zero_causes",
    "fit_comparison",
]


class WeightError(ValueError):
    """Labels or counts that the weights cannot be computed from."""


# --------------------------------------------------------------------------
# input checking
# --------------------------------------------------------------------------

def _scalar(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def _describe_row(index: pd.Index | None, r: int) -> str:
    if index is None:
        return f"row {r}"
    return f"row {r} ({index.name or 'id'} {_scalar(index[r])!r})"


def _as_matrix(x: np.ndarray | pd.DataFrame, what: str) -> tuple[np.ndarray, pd.Index | None]:
    """Return ``x`` as an (n, 15) array in CONTEXTS order, plus its row index if any."""
    if isinstance(x, pd.DataFrame):
        df = x
        if "song_id" in df.columns:  # the authors' layout: song_id as a column
            df = df.set_index("song_id")
        missing = [c for c in CONTEXTS if c not in df.columns]
        if missing:
            raise WeightError(f"{what}: context column(s) missing: {missing}")
        extra = [c for c in df.columns if c not in CONTEXTS]
        if extra:
            raise WeightError(f"{what}: unexpected column(s) {extra}; expected the 15 contexts")
        return df[list(CONTEXTS)].to_numpy(), df.index
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != M:
        raise WeightError(f"{what}: expected shape (n, {M}), got {arr.shape}")
    return arr, None


def _check_labels(x: np.ndarray | pd.DataFrame, what: str = "labels") -> tuple[np.ndarray, pd.Index | None]:
    arr, index = _as_matrix(x, what)
    if arr.shape[0] == 0:
        raise WeightError(f"{what}: no rows")
    if arr.dtype == bool:
        lab = arr
    else:
        try:
            num = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise WeightError(f"{what}: labels must be 0/1 numbers, got dtype {arr.dtype}") from None
        bad = ~((num == 0) | (num == 1))  # NaN is bad too
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise WeightError(
                f"{what}: {_describe_row(index, int(r))}, context {CONTEXTS[c]!r}: "
                f"label {_scalar(arr[r, c])!r} is not 0 or 1"
            )
        lab = num == 1
    empty = ~lab.any(axis=1)
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise WeightError(
            f"{what}: {_describe_row(index, r)} has no positive label "
            f"({int(empty.sum())} such rows); eq. 3 conditions on at least one positive"
        )
    return lab, index


def _check_counts(
    x: np.ndarray | pd.DataFrame,
    lab_index: pd.Index | None,
    n: int,
    what: str = "counts",
) -> np.ndarray:
    if isinstance(x, pd.DataFrame) and lab_index is not None:
        arr, index = _as_matrix(x, what)
        if not index.equals(lab_index):
            only_c = index.difference(lab_index)
            only_l = lab_index.difference(index)
            if len(only_c) or len(only_l) or index.has_duplicates:
                raise WeightError(
                    f"{what}: song ids are not those of the labels: {len(only_c)} only in the "
                    f"counts (e.g. {list(only_c[:3])}), {len(only_l)} only in the labels "
                    f"(e.g. {list(only_l[:3])})"
                )
            # Same ids in another order: align by song id, as the released files need.
            pos = index.get_indexer(lab_index)
            arr = arr[pos]
    else:
        arr, index = _as_matrix(x, what)
        if arr.shape[0] != n:
            raise WeightError(f"{what}: {arr.shape[0]} rows but the labels have {n}")
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise WeightError(f"{what}: counts must be numbers, got dtype {arr.dtype}") from None
    bad = ~np.isfinite(num) | (num < 0) | (num != np.round(num))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise WeightError(
            f"{what}: {_describe_row(lab_index, int(r))}, context {CONTEXTS[c]!r}: "
            f"count {_scalar(arr[r, c])!r} is not a non-negative integer"
        )
    return num


# --------------------------------------------------------------------------
# pattern statistics
# --------------------------------------------------------------------------

def label_codes(labels: np.ndarray) -> np.ndarray:
    """Encode each bool label row as an int in 0 … 2**15 − 1 (bit c = context c)."""
    return np.asarray(labels, dtype=np.int64) @ _BITS


def superset_counts(pattern_counts: np.ndarray) -> np.ndarray:
    """For every pattern S, the number of rows whose label set contains S.

    ``pattern_counts[T]`` is the number of rows with exactly the label set T;
    the result is :math:`f(S) = \\sum_{T \\supseteq S} \\mathrm{count}(T)`, computed
    with one cumulative sum per bit (the superset "zeta" transform).
    """
    f = np.asarray(pattern_counts, dtype=np.int64).copy()
    # With C-order reshape, axis k of the (2,)*M cube is bit M-1-k of the code.
    cube = f.reshape((2,) * M)
    for axis in range(M):
        lo = [slice(None)] * M
        hi = [slice(None)] * M
        lo[axis], hi[axis] = 0, 1
        cube[tuple(lo)] += cube[tuple(hi)]
    return cube.reshape(-1)


# --------------------------------------------------------------------------
# eq. 3: negative weights
# --------------------------------------------------------------------------

def _negative_counts(
    labels: np.ndarray | pd.DataFrame,
    mode: NegativeMode,
    reference: np.ndarray | pd.DataFrame | None,
) -> tuple[np.ndarray, pd.Index | None, np.ndarray, np.ndarray]:
    """Checked labels, their index, and eq. 3's numerator and denominator per cell."""
    if mode not in ("exact", "ignore_zeros"):
        raise WeightError(f"mode must be 'exact' or 'ignore_zeros', got {mode!r}")
    lab, index = _check_labels(labels, "labels")
    ref = lab if reference is None else _check_labels(reference, "reference")[0]

    codes = label_codes(lab)
    table = np.bincount(label_codes(ref), minlength=1 << M)
    if mode == "ignore_zeros":
        table = superset_counts(table)
    with_c = codes[:, None] | _BITS[None, :]  # pattern with context c switched on
    n_with = table[with_c]
    if mode == "exact":
        n_without = np.broadcast_to(table[codes][:, None], with_c.shape)
        denom = n_without + n_with
    else:
        denom = np.broadcast_to(table[codes][:, None], with_c.shape)
        n_without = denom - n_with
    return lab, index, n_without, denom


def negative_weights(
    labels: np.ndarray | pd.DataFrame,
    mode: NegativeMode = "exact",
    *,
    reference: np.ndarray | pd.DataFrame | None = None,
    unseen: Literal["error"] | float = "error",
) -> np.ndarray:
    """Confidence in each negative label, eq. 3, as the authors' code computes it.

    For a cell with :math:`y_{i,c} = 0`:

    * ``mode="exact"``: among the reference rows equal to :math:`\\mathbf y_i`
      except possibly at c, the fraction with c = 0, i.e.
      ``#(rows == y_i) / (#(rows == y_i) + #(rows == y_i with c set to 1))``;
    * ``mode="ignore_zeros"``: among the reference rows holding all positive
      labels of :math:`\\mathbf y_i` (anything elsewhere), the fraction without c.

    Cells with :math:`y_{i,c} = 1` get 0 (they are not used by the loss). No
    smoothing.

    Parameters
    ----------
    labels : (n, 15) bool/0-1 array or DataFrame
        Rows to weight. A DataFrame needs the 15 context columns (any order;
        a ``song_id`` column is taken as the index).
    mode : {"exact", "ignore_zeros"}
        Conditioning of eq. 3 (paper §4.3).
    reference : array or DataFrame, optional
        Label matrix whose co-occurrences estimate the probabilities; default
        ``labels`` itself (the authors: all released tracks).
    unseen : "error" or float
        What to do with a cell whose conditioning pattern never occurs in the
        reference (only possible when a row of ``labels`` is not in
        ``reference``): raise (default) or use this value.

    Returns
    -------
    ndarray, float64, shape (n, 15)

    Raises
    ------
    WeightError
        Labels not 0/1, a row with no positive label, a missing context column,
        an unknown mode, or an unseen pattern with ``unseen="error"``.
    """
    lab, index, n_without, denom = _negative_counts(labels, mode, reference)
    neg = ~lab
    zero_support = neg & (denom == 0)
    out = np.zeros(lab.shape, dtype=np.float64)
    ok = neg & ~zero_support
    out[ok] = n_without[ok] / denom[ok]
    if zero_support.any():
        if unseen == "error":
            r = int(np.argwhere(zero_support)[0][0])
            raise WeightError(
                f"labels: {_describe_row(index, r)} has a label pattern that never occurs in "
                f"the reference ({int(zero_support.any(axis=1).sum())} such rows); pass "
                "unseen=<value> to fill these cells"
            )
        out[zero_support] = float(unseen)
    return out


# --------------------------------------------------------------------------
# eq. 4: positive weights
# --------------------------------------------------------------------------

def _tfidf(cnt: np.ndarray, lab: np.ndarray, totals: np.ndarray, idf: str) -> np.ndarray:
    inverse = np.log(M / lab.sum(axis=1))
    if idf == "corrected":
        # A track with all 15 labels has ln(15/15) = 0 and would lose every
        # positive weight; the usual "+1" idf keeps the tf ranking instead.
        inverse = inverse + 1.0
    return (cnt / totals[None, :]) * inverse[:, None]


def positive_weights(
    counts: np.ndarray | pd.DataFrame,
    labels: np.ndarray | pd.DataFrame,
    idf: Idf = "released",
    *,
    reference: tuple[np.ndarray | pd.DataFrame, np.ndarray | pd.DataFrame] | None = None,
) -> np.ndarray:
    """Confidence in each positive label, eq. 4, as the authors' code computes it.

    ``tf_ic = n_ic / Σ_i n_ic`` (per context), ``idf_i = ln(15 / |y_i|)``,
    ``tfidf = tf · idf``; per context the entries that are > 0 are standardised
    (their mean and sample standard deviation), shifted by +1 and clipped to
    [0, 2]; every other entry is 0.

    The released idf gives weight 0 to every positive of a track with all
    15 labels (its idf is ln 1 = 0). ``idf="corrected"`` uses
    ``idf_i = ln(15 / |y_i|) + 1`` (the "+1" idf of common tf-idf
    implementations), so no track loses its positives; nothing else changes.
    Where a context's standardisation is undefined (fewer than two entries > 0,
    or all equal), the released code produces NaN, replaced by 0; so does this.

    Parameters
    ----------
    counts : (n, 15) array or DataFrame
        Playlist counts n_ic. As DataFrames, counts and labels are aligned by
        song id; the id sets must be equal.
    labels : (n, 15) bool/0-1 array or DataFrame
        The tracks' labels (for |y_i|).
    idf : {"released", "corrected"}
    reference : (counts, labels), optional
        Tracks whose statistics (Σ_i n_ic, mean and std of the tf-idf entries)
        are used; default the rows being weighted (the authors: all tracks).

    Returns
    -------
    ndarray, float64, shape (n, 15)

    Raises
    ------
    WeightError
        Labels not 0/1, rows without a positive label, counts negative,
        non-integer or misaligned, a missing context column, a context with no
        playlist count at all in the reference.
    """
    if idf not in ("released", "corrected"):
        raise WeightError(f"idf must be 'released' or 'corrected', got {idf!r}")
    lab, index = _check_labels(labels, "labels")
    cnt = _check_counts(counts, index, lab.shape[0], "counts")
    if reference is None:
        ref_cnt, ref_lab = cnt, lab
    else:
        ref_lab, ref_index = _check_labels(reference[1], "reference labels")
        ref_cnt = _check_counts(reference[0], ref_index, ref_lab.shape[0], "reference counts")

    totals = ref_cnt.sum(axis=0)
    if (totals == 0).any():
        c = int(np.flatnonzero(totals == 0)[0])
        raise WeightError(f"reference counts: context {CONTEXTS[c]!r} has no playlist count at all")

    ref_t = _tfidf(ref_cnt, ref_lab, totals, idf)
    mask = ref_t > 0
    k = mask.sum(axis=0)
    s1 = np.where(mask, ref_t, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / k
        dev = np.where(mask, ref_t - mean[None, :], 0.0)
        std = np.sqrt((dev**2).sum(axis=0) / (k - 1))

        t = ref_t if reference is None else _tfidf(cnt, lab, totals, idf)
        keep = t > 0
        z = (t - mean[None, :]) / std[None, :] + 1.0
    out = np.where(keep, np.clip(z, 0.0, 2.0), 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


# --------------------------------------------------------------------------
# analyses shown in chapter 06
# --------------------------------------------------------------------------

def conditioning_support(
    labels: np.ndarray | pd.DataFrame,
    mode: NegativeMode = "exact",
    *,
    reference: np.ndarray | pd.DataFrame | None = None,
) -> np.ndarray:
    """How many reference rows each negative weight is estimated from (its denominator).

    ``exact``: rows equal to y_i or to y_i with c set; ``ignore_zeros``: rows
    holding all positives of y_i. 0 on the positive cells.
    """
    lab, _, _, denom = _negative_counts(labels, mode, reference)
    return np.where(lab, 0, denom).astype(np.int64)


def negative_summary(labels: pd.DataFrame, weights: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-context statistics of negative weights over the negative cells.

    Parameters
    ----------
    labels : DataFrame
        The weighted rows (bool, CONTEXTS columns).
    weights : dict
        Name (e.g. the mode) → (n, 15) weights for those rows.

    Returns
    -------
    DataFrame
        Index (weights name, context + ``"all contexts"``); columns
        ``negatives``, ``mean``, ``median``, ``share = 1`` and ``share < 0.5``.
    """
    lab, _ = _check_labels(labels, "labels")
    neg = ~lab
    rows = []
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float64)
        if w.shape != lab.shape:
            raise WeightError(f"weights {name!r}: shape {w.shape}, labels {lab.shape}")
        for c, ctx in enumerate((*CONTEXTS, "all contexts")):
            v = w[neg[:, c], c] if c < M else w[neg]
            rows.append({"weights": name, "context": ctx, "negatives": v.size,
                         "mean": v.mean(), "median": np.median(v),
                         "share = 1": (v == 1).mean(), "share < 0.5": (v < 0.5).mean()})
    return pd.DataFrame(rows).set_index(["weights", "context"])


def lowest_negative_cells(
    labels: pd.DataFrame,
    weights: np.ndarray,
    k: int = 10,
    support: np.ndarray | None = None,
) -> pd.DataFrame:
    """The k zero cells with the lowest negative weight, with the track behind each.

    Ties are broken by song order (stable sort). Returns song id, context,
    weight, the track's positive contexts and their number, and, when given,
    the number of reference rows the weight comes from.
    """
    lab, index = _check_labels(labels, "labels")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != lab.shape:
        raise WeightError(f"weights: shape {w.shape}, labels {lab.shape}")
    cand = np.where(~lab, w, np.inf).ravel()
    order = np.argsort(cand, kind="stable")[:k]
    order = order[np.isfinite(cand[order])]
    r, c = np.divmod(order, M)
    names = np.asarray(CONTEXTS)
    out = pd.DataFrame({
        "song_id": index[r] if index is not None else r,
        "context (zero)": names[c],
        "weight": w[r, c],
        "positive contexts of the track": [", ".join(names[lab[i]]) for i in r],
        "labels": lab[r].sum(axis=1),
    })
    if support is not None:
        out["from rows"] = np.asarray(support)[r, c]
    return out


def positive_zero_causes(counts: pd.DataFrame | np.ndarray, labels: pd.DataFrame | np.ndarray,
                         weights: np.ndarray) -> pd.Series:
    """Why positive cells got weight 0: all 15 labels (idf 0), no playlist count, clipped.

    Every positive cell with weight 0 is counted once, under the first cause
    that applies in that order.
    """
    lab, index = _check_labels(labels, "labels")
    cnt = _check_counts(counts, index, lab.shape[0], "counts")
    w = np.asarray(weights, dtype=np.float64)
    zero = lab & (w == 0)
    all15 = np.broadcast_to(lab.all(axis=1)[:, None], lab.shape)
    no_count = cnt == 0
    a = zero & all15
    b = zero & ~all15 & no_count
    c = zero & ~all15 & ~no_count
    return pd.Series({
        "tracks with all 15 labels (idf = 0)": int(a.sum()),
        "label without playlist count (tf = 0)": int(b.sum()),
        "clipped at 0 (tf-idf ≤ mean − 1 sd)": int(c.sum()),
        "positive cells with weight 0": int(zero.sum()),
        "positive cells": int(lab.sum()),
    }, name="cells")


def fit_comparison(w_a: np.ndarray, w_b: np.ndarray, cells: np.ndarray,
                   names: tuple[str, str] = ("a", "b")) -> pd.DataFrame:
    """Per-context comparison of two fits of the same weights on the selected cells.

    Returns mean of each, mean and max absolute difference and the share of
    cells whose weight changes by more than 1e-12, per context and overall.
    """
    w_a = np.asarray(w_a, dtype=np.float64)
    w_b = np.asarray(w_b, dtype=np.float64)
    cells = np.asarray(cells, dtype=bool)
    if not (w_a.shape == w_b.shape == cells.shape):
        raise WeightError(f"shapes differ: {w_a.shape}, {w_b.shape}, {cells.shape}")
    rows = []
    for c, ctx in enumerate((*CONTEXTS, "all contexts")):
        sel = cells[:, c] if c < M else cells
        a = w_a[:, c][sel] if c < M else w_a[sel]
        b = w_b[:, c][sel] if c < M else w_b[sel]
        d = np.abs(a - b)
        rows.append({"context": ctx, "cells": a.size, f"mean ({names[0]})": a.mean(),
                     f"mean ({names[1]})": b.mean(), "mean |diff|": d.mean(),
                     "max |diff|": d.max(initial=0.0), "share changed": (d > 1e-12).mean()})
    return pd.DataFrame(rows).set_index("context")
