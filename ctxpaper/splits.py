"""The artist-disjoint stratified split (paper §4.1).

The paper selects "65% training, 10% validation, and 25% testing" with "an
iterative sampling scheme to ensure that there is no overlap of artists ...
between the splits, while having same proportional representation of each
context tag" (Sechidis et al., 2011). The authors' released code does it in two
steps, and so does this module:

1. :func:`stratified_group_folds` — iterative stratification (Sechidis et al.,
   2011) into 4 folds where a whole group (artist) goes to one fold: take the
   context with the fewest not-yet-assigned tracks; place each unassigned
   artist with that context in a fold and put all its tracks there; update the
   per-fold, per-context needs; repeat. The authors chose the fold that most
   lacks the current context (``criterion="sechidis"``). That rule ignores
   the artist's other contexts and its size, so big artists skew the folds;
   the default here (``criterion="least_squares"``) chooses the fold that
   leaves the per-fold, per-context needs most even, visiting big artists
   first. On the released labels its largest per-fold, per-context deviation
   is over 20 times smaller than the released folds' (chapter 03).
2. :func:`make_split` — fold 0 is the test set; folds 1–3 are divided 90/10
   into train and validation. The authors drew validation *tracks* at random,
   so most validation tracks share an artist with the training set (87% on the
   official split, see :func:`group_overlap`). Here validation is by default
   drawn with the same stratified, artist-grouped procedure (ratios 0.9/0.1),
   so no artist is shared by any two subsets; ``group_validation=False`` gives
   the authors' random track-level draw.

Tracks whose group (artist) is missing cannot be placed without breaking the
artist-disjointness guarantee, and silently dropping them (as the authors'
merge did for 1,347 tracks) loses data unseen. The ``missing_group`` argument
makes the choice explicit: ``"error"`` (default) raises with the count and
example ids, ``"drop"`` leaves them out and records them (warning +
``result.attrs["missing_group"]``), ``"own"`` treats each such track as its
own artist.

The quality measures used in chapter 03 are here too: per-fold label
proportions and their deviation from the whole set (:func:`fold_deviation`,
:func:`split_quality`), artist sharing across subsets (:func:`group_overlap`),
and a random artist split as the baseline (:func:`random_group_folds`).

Notebook: 03_balancing_and_splitting (and the training chapters, which call
:func:`make_split`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from .balance import as_label_matrix, check_unique_ids

__all__ = [
    "MissingGroup",
    "align_groups",
    "iterative_group_stratification",
    "stratified_group_folds",
    "random_group_folds",
    "make_split",
    "fold_deviation",
    "split_quality",
    "group_overlap",
    "compare_splits",
    "SUBSETS",
    "TEST_FOLD",
]

MissingGroup = Literal["error", "drop", "own"]
Criterion = Literal["least_squares", "sechidis"]
# Weight of the per-fold track-count term relative to all labels together.
_TRACK_WEIGHT = 1.0
SUBSETS = ("train", "validation", "test")
TEST_FOLD = 0


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def align_groups(
    labels: pd.DataFrame,
    groups: pd.Series,
    missing_group: MissingGroup = "error",
) -> tuple[pd.DataFrame, pd.Series]:
    """Align a track → group Series to the label table and handle missing groups.

    ``groups`` is matched by index (track id); ids of ``groups`` absent from
    ``labels`` are ignored, tracks of ``labels`` absent from ``groups`` or with
    a missing value (NaN/None/NA) have a *missing group*.

    Parameters
    ----------
    labels : DataFrame
        Track × context labels, unique ids.
    groups : Series
        Group (artist) id per track id; unique index.
    missing_group : {"error", "drop", "own"}
        What to do with tracks whose group is missing: raise a ``ValueError``
        naming how many and which; drop them (a ``UserWarning`` gives the
        count); or give each its own singleton group.

    Returns
    -------
    (labels, groups)
        Labels restricted to the tracks kept, and their groups as integer
        codes (``int64``, one code per distinct group, in sorted group order).
        With ``"drop"`` the dropped ids are in ``labels.attrs["missing_group"]``.
    """
    as_label_matrix(labels)  # validates ids and values
    if not isinstance(groups, pd.Series):
        raise TypeError(f"groups must be a pandas Series indexed by track id, got {type(groups).__name__}")
    check_unique_ids(groups.index, "groups", "each track must have one group")
    if missing_group not in ("error", "drop", "own"):
        raise ValueError(f"missing_group must be 'error', 'drop' or 'own', got {missing_group!r}")
    g = groups.reindex(labels.index)
    missing = g.isna().to_numpy()
    if missing.any():
        ids = labels.index[missing]
        msg = (
            f"{len(ids)} of {len(labels)} tracks have no group (artist) "
            f"(e.g. {ids[:3].tolist()})"
        )
        if missing_group == "error":
            raise ValueError(
                msg + "; pass missing_group='drop' to leave them out (the authors' choice) "
                "or missing_group='own' to give each its own group"
            )
        if missing_group == "drop":
            warnings.warn(msg + "; they are left out of the split", UserWarning, stacklevel=3)
            labels = labels.loc[~missing].copy()
            labels.attrs["missing_group"] = list(ids)
            g = g.loc[~missing]
    codes, _ = pd.factorize(g, sort=True)  # NaN -> -1
    codes = codes.astype(np.int64)
    if missing_group == "own" and missing.any():
        lone = codes == -1
        codes[lone] = codes.max(initial=-1) + 1 + np.arange(int(lone.sum()))
    return labels, pd.Series(codes, index=labels.index, name="group")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------
# iterative stratification with groups
# --------------------------------------------------------------------------

def iterative_group_stratification(
    y: np.ndarray,
    group_codes: np.ndarray,
    ratios: Sequence[float],
    seed: int = 0,
    criterion: Criterion = "least_squares",
) -> np.ndarray:
    """Core of the split: iterative stratification where a group moves as a whole.

    Works on arrays (no pandas) so that both the fold split and the grouped
    validation draw use it.

    Parameters
    ----------
    y : ndarray of bool, shape (n, L)
        Labels.
    group_codes : ndarray of int, shape (n,)
        Non-negative group code per track.
    ratios : sequence of float
        Target fraction of tracks per fold (normalised to sum 1).
    seed : int
        Seed for random tie-breaks and visiting orders.
    criterion : {"least_squares", "sechidis"}
        How the fold of a group is chosen (see Notes).

    Returns
    -------
    ndarray of int, shape (n,)
        The fold (0 .. len(ratios)-1) of each track.

    Notes
    -----
    Both criteria share the iterative skeleton of Sechidis et al. (2011) and
    of the authors' code: repeatedly take the label with the fewest
    unassigned positives and place every unassigned group holding it.

    * ``"sechidis"`` — the authors' rule: the fold with the largest remaining
      need for the current label; ties go to the fold that most lacks tracks,
      then to a random one. Groups of a label are visited in a seeded random
      order (the authors used row order). A group's other labels and its size
      are ignored when choosing, which is what makes large artists hurt.
    * ``"least_squares"`` (default) — the fold that, once the group is placed
      there, leaves the smallest chi-square-like imbalance
      ``sum_f,l need_fl**2 / target_fl`` plus the same term for the per-fold
      track counts (weighted like all labels together). Dividing by the
      target (not its square) makes the greedy step equalise *relative*
      needs, which keeps unequal ratios such as 90/10 proportional. It looks
      at every label of the group and at its size. Groups of a label are visited largest first
      (random order among equal sizes), so small artists fill the gaps left
      by big ones. Ties go to a random fold.

    Groups whose tracks have no label are placed last, each in the fold that
    most lacks tracks.
    """
    y = np.asarray(y, dtype=bool)
    group_codes = np.asarray(group_codes, dtype=np.int64)
    if y.ndim != 2:
        raise ValueError(f"y must be 2-D (tracks x labels), got shape {y.shape}")
    n, n_labels = y.shape
    if group_codes.shape != (n,):
        raise ValueError(f"group_codes has shape {group_codes.shape}, expected ({n},)")
    if criterion not in ("least_squares", "sechidis"):
        raise ValueError(f"criterion must be 'least_squares' or 'sechidis', got {criterion!r}")
    r = np.asarray(ratios, dtype=float)
    if r.ndim != 1 or len(r) < 2 or not np.isfinite(r).all() or (r <= 0).any():
        raise ValueError(f"ratios must be at least two positive numbers, got {list(ratios)}")
    r = r / r.sum()
    rng = np.random.default_rng(_check_seed(seed))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if group_codes.min() < 0:
        raise ValueError("group_codes must be non-negative")

    # Compact the codes; per-group label counts and sizes.
    _, g = np.unique(group_codes, return_inverse=True)
    n_groups = int(g.max()) + 1
    size = np.bincount(g, minlength=n_groups).astype(float)
    glab = np.zeros((n_groups, n_labels), dtype=float)
    np.add.at(glab, g, y.astype(float))

    label_total = glab.sum(axis=0)
    target_label = r[:, None] * label_total[None, :]       # (k, L)
    target_tracks = r * n                                   # (k,)
    need_label = target_label.copy()
    need_tracks = target_tracks.copy()
    remaining = label_total.copy()                          # unassigned positives per label
    group_fold = np.full(n_groups, -1, dtype=np.int64)
    # Labels without positives weigh 0 (no target to meet).
    w_label = np.where(target_label > 0, 1.0 / np.where(target_label > 0, target_label, 1), 0.0)
    w_tracks = _TRACK_WEIGHT * n_labels / target_tracks

    def pick(best: np.ndarray) -> int:
        return int(best[0]) if len(best) == 1 else int(rng.choice(best))

    def choose(grp: int, j: int) -> int:
        if criterion == "sechidis":
            col = need_label[:, j]
            best = np.flatnonzero(col == col.max())
            if len(best) > 1:
                sub = need_tracks[best]
                best = best[sub == sub.max()]
            return pick(best)
        x, s = glab[grp], size[grp]
        # Change of sum_f,l w (need - x)^2 when the group goes to fold f (the
        # other folds' terms do not move).
        cost = (w_label * (x * x - 2.0 * need_label * x)).sum(axis=1) \
            + w_tracks * (s * s - 2.0 * need_tracks * s)
        return pick(np.flatnonzero(np.isclose(cost, cost.min(), rtol=1e-12, atol=1e-15)))

    members = [np.flatnonzero(glab[:, j] > 0) for j in range(n_labels)]
    while True:
        open_labels = np.flatnonzero(remaining > 0)
        if len(open_labels) == 0:
            break
        j = int(open_labels[np.argmin(remaining[open_labels])])
        cand = members[j][group_fold[members[j]] == -1]
        cand = cand[rng.permutation(len(cand))]
        if criterion == "least_squares":
            cand = cand[np.argsort(-size[cand], kind="stable")]
        for grp in cand:
            fold = choose(int(grp), j)
            group_fold[grp] = fold
            need_tracks[fold] -= size[grp]
            need_label[fold] -= glab[grp]
            remaining -= glab[grp]

    for grp in np.flatnonzero(group_fold == -1):  # groups without any label
        fold = pick(np.flatnonzero(need_tracks == need_tracks.max()))
        group_fold[grp] = fold
        need_tracks[fold] -= size[grp]
    return group_fold[g]


def stratified_group_folds(
    labels: pd.DataFrame,
    groups: pd.Series,
    n_folds: int = 4,
    seed: int = 0,
    missing_group: MissingGroup = "error",
    criterion: Criterion = "least_squares",
) -> pd.Series:
    """Assign each track to one of ``n_folds`` equal folds, artist-disjoint and stratified.

    Parameters
    ----------
    labels : DataFrame
        Track × context labels (bool or 0/1), unique track ids.
    groups : Series
        Artist (or any group) id per track id.
    n_folds : int
        Number of equal folds (paper: 4, fold 0 = test = 25%).
    seed : int
        Seed; same inputs and seed give the same folds.
    missing_group : {"error", "drop", "own"}
        Handling of tracks without a group, see :func:`align_groups`.
    criterion : {"least_squares", "sechidis"}
        Fold choice, see :func:`iterative_group_stratification`; "sechidis"
        is the authors' rule.

    Returns
    -------
    Series of int
        ``fold`` per track id, in the order of ``labels`` (without the dropped
        tracks when ``missing_group="drop"``; their ids are in
        ``.attrs["missing_group"]``).
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    labels, codes = align_groups(labels, groups, missing_group)
    y = as_label_matrix(labels)
    fold = iterative_group_stratification(y, codes.to_numpy(), [1.0] * n_folds, seed, criterion)
    out = pd.Series(fold, index=labels.index, name="fold")
    if "missing_group" in labels.attrs:
        out.attrs["missing_group"] = labels.attrs["missing_group"]
    return out


def random_group_folds(
    groups: pd.Series,
    n_folds: int = 4,
    seed: int = 0,
) -> pd.Series:
    """A random artist-disjoint split, ignoring labels: the baseline for chapter 03.

    Groups are visited in a random order and each goes to the fold with the
    fewest tracks so far, so fold sizes are as even as the group sizes allow
    and only the stratification differs from :func:`stratified_group_folds`.

    Parameters
    ----------
    groups : Series
        Group id per track id; no missing values.

    Returns
    -------
    Series of int
        ``fold`` per track, indexed like ``groups``.
    """
    if groups.isna().any():
        raise ValueError(f"groups has {int(groups.isna().sum())} missing values")
    codes, _ = pd.factorize(groups, sort=True)
    rng = np.random.default_rng(_check_seed(seed))
    size = np.bincount(codes)
    fill = np.zeros(n_folds)
    fold_of = np.empty(len(size), dtype=np.int64)
    for grp in rng.permutation(len(size)):
        f = int(np.argmin(fill))
        fold_of[grp] = f
        fill[f] += size[grp]
    return pd.Series(fold_of[codes], index=groups.index, name="fold")


# --------------------------------------------------------------------------
# the train / validation / test split
# --------------------------------------------------------------------------

def make_split(
    labels: pd.DataFrame,
    groups: pd.Series,
    seed: int,
    val_fraction: float = 0.1,
    group_validation: bool = True,
    missing_group: MissingGroup = "error",
    criterion: Criterion = "least_squares",
) -> pd.DataFrame:
    """The paper's 65/10/25 split: 4 stratified artist-disjoint folds, then validation.

    Fold 0 is the test set (25%). Folds 1–3 (75%) are divided into train and
    validation with ``val_fraction`` of their tracks in validation (paper:
    0.1, giving 67.5/7.5/25 of all tracks, which the paper rounds to
    65/10/25; the released split has 32,771/3,642/12,169).

    Parameters
    ----------
    labels : DataFrame
        Track × context labels (bool or 0/1), unique track ids.
    groups : Series
        Artist id per track id.
    seed : int
        Seed of both steps.
    val_fraction : float
        Share of the non-test tracks that go to validation, in (0, 1).
    group_validation : bool
        True (default): validation is drawn by the same stratified procedure
        with whole artists, so train, validation and test share no artist.
        False: the authors' way, ``val_fraction`` of the non-test *tracks* at
        random; validation then shares artists with train.
    missing_group : {"error", "drop", "own"}
        Tracks without an artist: raise (default), leave out (reported by a
        warning and ``result.attrs["missing_group"]``), or one group each.
    criterion : {"least_squares", "sechidis"}
        Fold choice of both steps, see :func:`iterative_group_stratification`.

    Returns
    -------
    DataFrame
        Indexed like ``labels`` (minus dropped tracks), columns ``fold``
        (int 0–3, never missing) and ``subset`` (categorical: train,
        validation, test).
    """
    if not (isinstance(val_fraction, (float, int)) and 0 < val_fraction < 1):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    seed = _check_seed(seed)
    labels, codes = align_groups(labels, groups, missing_group)
    y = as_label_matrix(labels)
    c = codes.to_numpy()
    fold = iterative_group_stratification(y, c, [1.0] * 4, seed, criterion)

    subset = np.where(fold == TEST_FOLD, "test", "train").astype(object)
    rest = np.flatnonzero(fold != TEST_FOLD)
    # A seed for the validation draw derived from, but distinct from, the fold seed.
    sub_seed = int(np.random.default_rng([seed, 1]).integers(2**31))
    if group_validation:
        part = iterative_group_stratification(
            y[rest], c[rest], [1.0 - val_fraction, val_fraction], sub_seed, criterion
        )
        subset[rest[part == 1]] = "validation"
    else:
        rng = np.random.default_rng(sub_seed)
        n_val = int(round(val_fraction * len(rest)))
        subset[rng.choice(rest, size=n_val, replace=False)] = "validation"

    out = pd.DataFrame(
        {"fold": fold.astype(np.int64),
         "subset": pd.Categorical(subset, categories=list(SUBSETS))},
        index=labels.index,
    )
    if "missing_group" in labels.attrs:
        out.attrs["missing_group"] = labels.attrs["missing_group"]
    return out


# --------------------------------------------------------------------------
# quality measures
# --------------------------------------------------------------------------

def fold_deviation(labels: pd.DataFrame, folds: pd.Series) -> pd.DataFrame:
    """Per-fold, per-context |p_fc − p_c|: how far each fold's label share drifts.

    ``p_fc`` is the fraction of fold f's tracks labelled c; ``p_c`` the
    fraction over all tracks in ``folds``.

    Parameters
    ----------
    labels : DataFrame
        Labels; must contain every track of ``folds``.
    folds : Series
        Fold (or subset name) per track id.

    Returns
    -------
    DataFrame
        Rows: folds (sorted); columns: contexts.
    """
    missing = folds.index.difference(labels.index)
    if len(missing):
        raise ValueError(f"{len(missing)} tracks of folds are not in labels (e.g. {missing[:3].tolist()})")
    lab = labels.loc[folds.index]
    y = as_label_matrix(lab)
    overall = y.mean(axis=0)
    per_fold = pd.DataFrame(y, index=lab.index, columns=lab.columns).groupby(
        folds.to_numpy(), sort=True, observed=True).mean()
    return (per_fold - overall).abs()


def split_quality(
    labels: pd.DataFrame,
    folds: pd.Series,
    groups: pd.Series,
) -> dict[str, float]:
    """One-line summary of a split for the comparison table of chapter 03.

    Returns
    -------
    dict
        ``tracks``; ``smallest_fold`` and ``largest_fold`` (tracks);
        ``max_dev`` and ``mean_dev`` (max and mean over folds × contexts of
        |p_fc − p_c|, in proportion points); ``shared_groups`` (groups present
        in more than one fold: 0 for an artist-disjoint split).
    """
    dev = fold_deviation(labels, folds).to_numpy()
    sizes = folds.value_counts()
    g = groups.reindex(folds.index)
    shared = int((pd.DataFrame({"g": g.to_numpy(), "f": folds.to_numpy()})
                  .dropna().groupby("g")["f"].nunique() > 1).sum())
    return {
        "tracks": int(len(folds)),
        "smallest_fold": int(sizes.min()),
        "largest_fold": int(sizes.max()),
        "max_dev": float(dev.max()),
        "mean_dev": float(dev.mean()),
        "shared_groups": shared,
    }


def group_overlap(groups: pd.Series, subset: pd.Series, of: str, with_: str) -> float:
    """Fraction of the tracks of subset ``of`` whose group also has tracks in ``with_``.

    E.g. ``group_overlap(artist, split.subset, "validation", "train")`` is the
    share of validation tracks whose artist also appears in train (0.87 on the
    official split).
    """
    g = groups.reindex(subset.index)
    a = g[(subset == of).to_numpy()]
    if len(a) == 0:
        raise ValueError(f"subset {of!r} has no tracks")
    b = set(g[(subset == with_).to_numpy()].dropna())
    return float(a.isin(b).mean())


def compare_splits(
    labels: pd.DataFrame,
    groups: pd.Series,
    seeds: Sequence[int],
    reference: pd.Series | None = None,
    reference_name: str = "released folds",
) -> pd.DataFrame:
    """Quality of the 4-fold splits of chapter 03, side by side, over seeds.

    Runs :func:`stratified_group_folds` with both criteria and
    :func:`random_group_folds`, each for every seed, and measures each with
    :func:`split_quality`; ``reference`` (e.g. the released folds) is measured
    once.

    Parameters
    ----------
    labels : DataFrame
        Labels of the tracks to split.
    groups : Series
        Artist id per track; must cover every track (no missing values).
    seeds : sequence of int
        Seeds to run each method with.
    reference : Series, optional
        An existing fold assignment to measure alongside.

    Returns
    -------
    DataFrame
        One row per (method, seed): ``method``, ``seed`` (-1 for the
        reference) and the :func:`split_quality` columns.
    """
    rows = []
    if reference is not None:
        rows.append({"method": reference_name, "seed": -1,
                     **split_quality(labels, reference, groups)})
    methods = {
        "ours (least squares)": lambda s: stratified_group_folds(labels, groups, seed=s),
        "ours (authors' rule)": lambda s: stratified_group_folds(
            labels, groups, seed=s, criterion="sechidis"),
        "random artist split": lambda s: random_group_folds(groups.reindex(labels.index), seed=s),
    }
    for name, run in methods.items():
        for s in seeds:
            rows.append({"method": name, "seed": int(s), **split_quality(labels, run(s), groups)})
    return pd.DataFrame(rows)
