"""Missing-label detection from labels alone (beyond the paper, after §4.3–4.4).

The negative weight of eq. 3 is a claim: :math:`1 - \\bar\\omega_{i,c}` is the
probability that the zero at (i, c) is a missing positive. The paper could not
test the claim, since it does not know which zeros are missing. Here it is
tested on the real released labels by a controlled experiment:

1. hide a random fraction of the known positives (they become zeros whose
   truth we know);
2. score every zero cell with a detector computed on the masked matrix only;
3. measure how well the scores rank the hidden positives above the original
   zeros (ROC-AUC, average precision, precision at k with k = number hidden).

Detectors: the two negative-weight modes of eq. 3 (``1 - w̄``), and three
baselines — the context prior, k-nearest neighbours on label vectors, and a
low-rank reconstruction of the label matrix.

Caveat, stated in the chapter: the original zeros of the released matrix are
themselves partly missing positives, so they are an imperfect "negative"
class; the numbers compare detectors, they do not certify absolute accuracy.

Notebook: ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from scipy import stats as sps

from .weights import negative_weights

Detector = Callable[[np.ndarray], np.ndarray]


def hide_positives(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hide a random ``fraction`` of the positive cells of a label matrix.

    Every row keeps at least one positive (the weights of eq. 3 need one, and
    the released set has no empty rows): where sampling would empty a row, one
    of its positives, chosen at random, stays visible. The realised hidden
    fraction is therefore slightly below ``fraction``; it is returned implicitly
    as ``hidden.sum() / labels.sum()``.

    Parameters
    ----------
    labels : (n, m) bool array
    fraction : float in (0, 1)
    seed : int

    Returns
    -------
    masked : (n, m) bool array
        ``labels`` with the hidden positives set to False.
    hidden : (n, m) bool array
        True at the hidden cells.
    """
    labels = np.asarray(labels, dtype=bool)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if labels.ndim != 2 or not labels.any(axis=1).all():
        raise ValueError("labels must be a 2-D boolean matrix with at least one positive per row")
    rng = np.random.default_rng(seed)
    hidden = labels & (rng.random(labels.shape) < fraction)
    emptied = np.flatnonzero(~(labels & ~hidden).any(axis=1))
    if len(emptied):
        # keep one random positive visible in each row that lost them all
        noise = rng.random((len(emptied), labels.shape[1]))
        keep = np.argmax(np.where(labels[emptied], noise, -1.0), axis=1)
        hidden[emptied, keep] = False
    return labels & ~hidden, hidden


# --------------------------------------------------------------------------
# detectors: higher score = more likely a missing positive
# --------------------------------------------------------------------------

def score_negative_weights(masked: np.ndarray, mode: str) -> np.ndarray:
    """``1 - w̄`` with the weights of eq. 3 estimated on the masked matrix itself."""
    return 1.0 - negative_weights(masked, mode=mode)


def score_prior(masked: np.ndarray) -> np.ndarray:
    """Each context's positive rate: the same score for every track."""
    masked = np.asarray(masked, dtype=bool)
    return np.broadcast_to(masked.mean(axis=0), masked.shape).astype(np.float64)


def score_knn(masked: np.ndarray, k: int = 25, chunk: int = 1024) -> np.ndarray:
    """Share of a track's k most similar tracks (cosine on label vectors) with the context.

    The track itself is excluded. Tracks with the same label vector have the
    same neighbours, so the search runs over the distinct label patterns
    (about 6–13k on the released set instead of 50k tracks), each weighted by
    how many tracks carry it. Ties at the k-th neighbour are broken by pattern
    order (``np.unique``'s), so the result is deterministic.
    """
    x = np.asarray(masked, dtype=bool)
    n = len(x)
    if not 0 < k < n:
        raise ValueError(f"k must be in 1..{n - 1}, got {k}")
    patterns, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    p = patterns.astype(np.float32)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    pn = p / np.where(norm > 0, norm, 1.0)
    u = len(p)
    # A tiny rank-by-index term makes ties between patterns resolve by pattern
    # order, identically in argpartition and argsort (distinct cosines of
    # 15-bit vectors differ by far more than u * 1e-12).
    tie = np.arange(u) * 1e-12
    m = min(k + 1, u)  # every pattern holds >= 1 track: k + 1 patterns hold the k neighbours
    per_pattern = np.empty((u, x.shape[1]), dtype=np.float64)
    for start in range(0, u, chunk):
        rows = np.arange(start, min(start + chunk, u))
        key = -(pn[rows] @ pn.T).astype(np.float64) + tie
        key[np.arange(len(rows)), rows] = -np.inf  # the pattern itself first: its other copies
        cand = np.argpartition(key, m - 1, axis=1)[:, :m]
        order = np.take_along_axis(cand, np.argsort(np.take_along_axis(key, cand, 1), axis=1), 1)
        avail = counts[order].astype(np.int64)
        avail[:, 0] -= 1  # a track is not its own neighbour
        before = np.cumsum(avail, axis=1) - avail
        take = np.clip(k - before, 0, avail)
        per_pattern[rows] = np.einsum("bj,bjc->bc", take, p[order]) / k
    return per_pattern[inverse.ravel()]


def score_lowrank(masked: np.ndarray, rank: int = 5) -> np.ndarray:
    """Rank-``rank`` reconstruction of the centred label matrix (truncated SVD)."""
    x = np.asarray(masked, dtype=np.float64)
    if not 0 < rank <= min(x.shape):
        raise ValueError(f"rank must be in 1..{min(x.shape)}, got {rank}")
    mean = x.mean(axis=0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank] + mean


DETECTORS: dict[str, Detector] = {
    "1 - w̄ (exact match)": lambda m: score_negative_weights(m, "exact"),
    "1 - w̄ (ignore zeros)": lambda m: score_negative_weights(m, "ignore_zeros"),
    "context prior": score_prior,
    "k-NN on label vectors": score_knn,
    "low-rank (SVD, rank 5)": score_lowrank,
}


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------

def ranking_metrics(scores: np.ndarray, masked: np.ndarray, hidden: np.ndarray) -> dict[str, float]:
    """How well ``scores`` rank hidden positives above original zeros.

    Only the zero cells of ``masked`` are ranked: hidden positives are the
    positive class, cells that were already zero the negative class.

    Returns
    -------
    dict
        ``roc_auc`` (ties count one half), ``average_precision``, and
        ``precision_at_k`` with k the number of hidden cells.
    """
    zero = ~np.asarray(masked, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)[zero]
    y = np.asarray(hidden, dtype=bool)[zero]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("need both hidden positives and original zeros to rank")
    ranks = sps.rankdata(s)  # average ranks: ties count one half
    auc = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    order = np.argsort(-s, kind="stable")
    hits = np.cumsum(y[order])
    precision = hits / np.arange(1, len(y) + 1)
    ap = float(precision[y[order]].mean())
    return {"roc_auc": float(auc), "average_precision": ap,
            "precision_at_k": float(hits[n_pos - 1] / n_pos)}


def run_detection(
    labels: np.ndarray | pd.DataFrame,
    fractions: Iterable[float] = (0.1, 0.3),
    seeds: Iterable[int] = range(5),
    detectors: dict[str, Detector] | None = None,
) -> pd.DataFrame:
    """The whole experiment: every fraction × seed × detector.

    Returns
    -------
    DataFrame
        One row per (fraction, seed, detector) with ``hidden_fraction`` (the
        realised share of positives hidden) and the :func:`ranking_metrics`.
    """
    y = np.asarray(labels, dtype=bool)
    detectors = DETECTORS if detectors is None else detectors
    rows = []
    for fraction in fractions:
        for seed in seeds:
            masked, hidden = hide_positives(y, fraction, seed)
            for name, detect in detectors.items():
                rows.append({"fraction": fraction, "seed": seed, "detector": name,
                             "hidden_fraction": hidden.sum() / y.sum(),
                             **ranking_metrics(detect(masked), masked, hidden)})
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame, metrics: Iterable[str] = ("roc_auc", "average_precision",
                                                             "precision_at_k")) -> pd.DataFrame:
    """Mean and 95 % t-interval half-width over seeds, per fraction and detector."""
    out = []
    for (fraction, name), g in results.groupby(["fraction", "detector"], sort=False):
        row = {"fraction": fraction, "detector": name, "seeds": len(g)}
        for m in metrics:
            v = g[m].to_numpy()
            half = (sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
                    if len(v) > 1 else np.nan)
            row[m] = v.mean()
            row[f"{m} ±95%"] = half
        out.append(row)
    return pd.DataFrame(out).set_index(["fraction", "detector"])
