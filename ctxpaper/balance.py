"""Dataset balancing (paper §3.2) and label co-occurrence (paper §3.3, Fig. 1).

The authors' playlist filter tagged 198,402 tracks with 3.77 contexts each on
average, far from balanced: a few contexts (chill, party, dance) are much more
common than others. They balanced the set with an iterative procedure capped at
20,000 tracks per context (the size of the least represented of the contexts
they kept) and obtained 49,929 tracks with 7.21 contexts each.

:func:`balance` implements that procedure as the issue and the authors' release
describe it:

1. drop the contexts with fewer than ``cap`` positives (the authors dropped
   *train*, *morning* and *shower* this way);
2. visit the remaining contexts by ascending positive count;
3. for each context, draw at random from the *pool* as many of its tracks as
   the balanced set still lacks to reach ``cap`` (none when it already has
   ``cap``), add them to the balanced set, and remove from the pool every
   track that has this context, drawn or not.

Because a track drawn for a rare context carries its other contexts along, the
common contexts end above the cap: balancing multi-label data cannot make every
count equal, and it reshapes the co-occurrence structure (hence
:func:`cooccurrence`, which chapter 01 uses for Fig. 1 and chapter 03 for the
before/after comparison). :func:`balance_invariants` checks a balanced set
against what the procedure guarantees.

Notebook: 03_balancing_and_splitting (and 01_released_dataset for
:func:`cooccurrence`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "as_label_matrix",
    "cooccurrence",
    "eligible_contexts",
    "balance",
    "balance_order",
    "balance_invariants",
]

Normalise = Literal["jaccard", "conditional"] | None


# --------------------------------------------------------------------------
# input checks shared with ctxpaper.splits
# --------------------------------------------------------------------------

def check_unique_ids(index: pd.Index, name: str, rule: str) -> None:
    """Raise a ValueError naming ``name`` when ``index`` repeats a track id."""
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()
        raise ValueError(f"{name} has {len(dup)} duplicate track ids (e.g. {dup[:3].tolist()}); {rule}")


def as_label_matrix(labels: pd.DataFrame, name: str = "labels") -> np.ndarray:
    """Validate a track × context label table and return it as a bool array.

    Accepted: a DataFrame with a unique index (track ids), at least one column,
    and columns that are boolean, or integer/float holding only 0 and 1 (the
    released CSVs store 0/1). Anything else raises a ``ValueError`` naming the
    offending column and row.

    Parameters
    ----------
    labels : DataFrame
        One row per track, one column per context.
    name : str
        How to call the table in error messages.

    Returns
    -------
    ndarray of bool, shape (n_tracks, n_contexts)
    """
    if not isinstance(labels, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(labels).__name__}")
    if labels.shape[1] == 0:
        raise ValueError(f"{name} has no context columns")
    if labels.columns.has_duplicates:
        dup = labels.columns[labels.columns.duplicated()].unique().tolist()
        raise ValueError(f"{name} has duplicate context columns: {dup}")
    check_unique_ids(labels.index, name, "each track must appear once")
    if labels.index.hasnans:
        raise ValueError(f"{name} has a missing (NaN) track id in its index")
    out = np.empty(labels.shape, dtype=bool)
    for j, col in enumerate(labels.columns):
        s = labels[col]
        if pd.api.types.is_bool_dtype(s.dtype) and not s.isna().any():
            out[:, j] = s.to_numpy(dtype=bool)
            continue
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            raise ValueError(
                f"{name}: column {col!r} has dtype {s.dtype}, expected boolean (or 0/1 numbers)"
            )
        values = s.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}: column {col!r}, track {labels.index[i]}: value {s.iloc[i]} "
                "is not a boolean label (expected True/False or 0/1)"
            )
        out[:, j] = values == 1.0
    return out


# --------------------------------------------------------------------------
# co-occurrence
# --------------------------------------------------------------------------

def cooccurrence(labels: pd.DataFrame, normalise: Normalise = None) -> pd.DataFrame:
    """Context co-occurrence matrix (paper Fig. 1), raw or normalised.

    Parameters
    ----------
    labels : DataFrame
        Track × context labels (bool, or 0/1), unique track ids.
    normalise : {None, "jaccard", "conditional"}
        * ``None`` — counts: entry (a, b) is the number of tracks labelled with
          both a and b; the diagonal holds each context's positive count. This
          is the paper's Fig. 1.
        * ``"jaccard"`` — |a ∩ b| / |a ∪ b|, symmetric, diagonal 1. The
          project's one Jaccard (:func:`ctxpaper.world.jaccard_matrix` calls it).
        * ``"conditional"`` — P(b | a): entry (a, b) is the fraction of the
          tracks labelled a that are also labelled b (rows sum to the mean
          number of labels of the row context's tracks), diagonal 1. Not
          symmetric: read it along rows.

        A context with no positive track gives NaN where the ratio is 0/0
        (its row for ``"conditional"``, its pairs with other empty contexts
        for ``"jaccard"``).

    Returns
    -------
    DataFrame
        Square, indexed and columned by the label columns in their order; int
        counts for ``None``, float otherwise.
    """
    y = as_label_matrix(labels).astype(np.float64)
    # BLAS float product (exact for counts below 2**53), much faster than int.
    counts = np.rint(y.T @ y).astype(np.int64)
    cols = labels.columns
    if normalise is None:
        return pd.DataFrame(counts, index=cols, columns=cols)
    diag = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if normalise == "jaccard":
            union = diag[:, None] + diag[None, :] - counts
            out = np.where(union > 0, counts / np.where(union > 0, union, 1), np.nan)
        elif normalise == "conditional":
            out = np.where(diag[:, None] > 0, counts / np.where(diag > 0, diag, 1)[:, None], np.nan)
        else:
            raise ValueError(
                f"normalise must be None, 'jaccard' or 'conditional', got {normalise!r}"
            )
    return pd.DataFrame(out, index=cols, columns=cols)


# --------------------------------------------------------------------------
# balancing
# --------------------------------------------------------------------------

def _check_cap(cap: int) -> int:
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1:
        raise ValueError(f"cap must be a positive integer, got {cap!r}")
    return int(cap)


def eligible_contexts(labels: pd.DataFrame, cap: int = 20000) -> list:
    """Contexts the procedure keeps: those with at least ``cap`` positives.

    Raises
    ------
    ValueError
        When no context reaches ``cap`` (nothing could be balanced), naming the
        largest count so that a sensible cap can be chosen.
    """
    cap = _check_cap(cap)
    y = as_label_matrix(labels)
    counts = y.sum(axis=0)
    keep = [c for c, n in zip(labels.columns, counts) if n >= cap]
    if not keep:
        top = int(np.argmax(counts))
        raise ValueError(
            f"cap={cap} is above the positive count of every context (largest: "
            f"{labels.columns[top]!r} with {int(counts[top])}); lower the cap"
        )
    return keep


def balance_order(labels: pd.DataFrame, cap: int = 20000) -> list:
    """The order in which :func:`balance` visits the eligible contexts.

    Ascending positive count; ties keep the column order (a stable sort), so
    the order is deterministic.
    """
    keep = eligible_contexts(labels, cap)
    counts = labels[keep].sum(axis=0).to_numpy()
    return [keep[i] for i in np.argsort(counts, kind="stable")]


def balance(labels: pd.DataFrame, cap: int = 20000, seed: int = 0) -> pd.Index:
    """Select a balanced subset of tracks with the authors' iterative procedure.

    See the module docstring for the three steps. Contexts with fewer than
    ``cap`` positives (including contexts with no positive at all) are dropped
    from the procedure: their tracks enter the balanced set only if drawn for
    another context. The caller keeps the eligible columns with
    :func:`eligible_contexts`.

    Parameters
    ----------
    labels : DataFrame
        Track × context labels (bool or 0/1), unique track ids.
    cap : int
        Target number of tracks per context (paper: 20,000, the size of the
        smallest kept context). Contexts visited while the balanced set holds
        fewer than ``cap`` of their tracks end with exactly ``cap`` if their
        pool is large enough, else with all their pool (never more).
    seed : int
        Seed of ``np.random.default_rng``. The draw is made in sorted track-id
        order, so the result depends on the labels and the seed, not on the
        row order of ``labels``.

    Returns
    -------
    Index
        The kept track ids, in the row order of ``labels``.

    Raises
    ------
    ValueError
        Bad labels (not boolean, duplicate ids), a non-positive cap, or a cap
        above every context's count.
    """
    cap = _check_cap(cap)
    y = as_label_matrix(labels)
    order = balance_order(labels, cap)
    col_pos = {c: j for j, c in enumerate(labels.columns)}

    # Work in sorted-id order so that the rng draws do not depend on row order.
    try:
        perm = np.argsort(labels.index.to_numpy(), kind="stable")
    except TypeError:  # ids of mixed, unorderable types: fall back to their string form
        perm = np.argsort(labels.index.astype(str).to_numpy(), kind="stable")
    ys = y[perm]

    rng = np.random.default_rng(seed)
    pool = np.ones(len(ys), dtype=bool)
    kept = np.zeros(len(ys), dtype=bool)
    for ctx in order:
        col = ys[:, col_pos[ctx]]
        have = int(np.count_nonzero(kept & col))
        need = max(cap - have, 0)
        if need:
            candidates = np.flatnonzero(pool & col)
            take = min(need, len(candidates))
            kept[rng.choice(candidates, size=take, replace=False)] = True
        # Every track with this context leaves the pool, drawn or not: later
        # contexts must not add tracks that would push this one above cap.
        pool &= ~col
    keep_rows = np.sort(perm[kept])
    return labels.index[keep_rows]


def balance_invariants(labels: pd.DataFrame, cap: int = 20000) -> pd.DataFrame:
    """Check a balanced label set against what :func:`balance` guarantees.

    Whatever the unbalanced input, the output of the procedure satisfies (when
    each visited context's pool was large enough, as on the authors' data):

    * every kept context has at least ``cap`` positives;
    * some contexts have exactly ``cap`` (those that were drawn from; at least
      the rarest one);
    * every track has at least one exactly-``cap`` context, because a track
      only enters the set when drawn for a context that still lacked tracks,
      and that context's count is final once visited (later draws come from a
      pool without its tracks).

    Parameters
    ----------
    labels : DataFrame
        A balanced set, e.g. the released 49,929 tracks.
    cap : int
        The cap to check against.

    Returns
    -------
    DataFrame
        One row per check: ``check``, ``value``, ``holds`` (bool).
    """
    cap = _check_cap(cap)
    y = as_label_matrix(labels)
    counts = y.sum(axis=0)
    at_cap = counts == cap
    covered = y[:, at_cap].any(axis=1) if at_cap.any() else np.zeros(len(y), dtype=bool)
    rows = [
        ("smallest context count", int(counts.min()), bool(counts.min() >= cap)),
        ("contexts at exactly the cap",
         ", ".join(str(c) for c, a in zip(labels.columns, at_cap) if a) or "none",
         bool(at_cap.any())),
        ("tracks with no exactly-cap context", int((~covered).sum()), bool(covered.all())),
    ]
    return pd.DataFrame(rows, columns=["check", "value", "holds"])
