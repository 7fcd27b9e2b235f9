"""Per-context evaluation of Tables 1 and 2 (paper §4.1, §4.4), with bootstrap intervals.

The paper reports, per context and as a macro average, the Hamming loss, ROC
AUC, recall, precision, F1 and true-negative rate. This module computes them as
the authors' released evaluation code does:

* a prediction is positive when the score is above the threshold (the authors
  rounded the sigmoid output, ``np.round(score)``, which is ``score > 0.5`` —
  an exact 0.5 rounds to 0);
* the per-context Hamming loss is the fraction of wrong decisions for that
  context;
* the macro row is the plain mean over the 15 contexts;
* precision, recall, F1 and TN rate are 0 when their denominator is empty
  (scikit-learn's default); AUC is NaN for a context whose test labels are all
  equal.

On top of the paper: percentile bootstrap intervals over test tracks
(:func:`bootstrap_ci`), and the authors' per-context thresholds tuned for F1 on
the validation set over 0.00, 0.01, …, 0.99 (:func:`tune_thresholds`).

The bootstrap never copies the data: a resample is a vector of multiplicities
of the test tracks, so every count is one matrix product, and AUC is computed
from per-context tie groups of the scores sorted once.

Notebooks: ``05_cnn_baseline``, ``06_weighted_cross_entropy``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .contexts import CONTEXTS

METRICS: tuple[str, ...] = ("HL", "AUC", "Recall", "Precision", "F1", "TN rate")
MACRO = "Macro average"
ROWS: tuple[str, ...] = (*CONTEXTS, MACRO)
THRESHOLD_GRID = np.round(np.arange(100) * 0.01, 2)

__all__ = [
    "METRICS", "MACRO", "ROWS", "THRESHOLD_GRID",
    "per_context_metrics", "bootstrap_ci", "bootstrap_indices", "format_ci",
    "predict", "tune_thresholds", "MetricsError",
]


class MetricsError(ValueError):
    """Labels, scores or thresholds that cannot be evaluated."""


# --------------------------------------------------------------------------
# input checking
# --------------------------------------------------------------------------

def _matrix(x: np.ndarray | pd.DataFrame, what: str) -> np.ndarray:
    if isinstance(x, pd.DataFrame):
        missing = [c for c in CONTEXTS if c not in x.columns]
        if missing:
            raise MetricsError(f"{what}: context column(s) missing: {missing}")
        x = x[list(CONTEXTS)]
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != len(CONTEXTS):
        raise MetricsError(f"{what}: expected shape (n, {len(CONTEXTS)}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise MetricsError(f"{what}: no rows")
    return arr


def _check(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = _matrix(y_true, "y_true")
    s = _matrix(y_score, "y_score")
    if isinstance(y_true, pd.DataFrame) and isinstance(y_score, pd.DataFrame):
        if not y_true.index.equals(y_score.index):
            raise MetricsError("y_true and y_score: the row indexes (track ids) differ")
    if y.shape != s.shape:
        raise MetricsError(f"y_true has shape {y.shape} but y_score has {s.shape}")
    if y.dtype != bool:
        try:
            yf = y.astype(np.float64)
        except (TypeError, ValueError):
            raise MetricsError(f"y_true: labels must be 0/1, got dtype {y.dtype}") from None
        bad = ~((yf == 0) | (yf == 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise MetricsError(f"y_true: row {r}, context {CONTEXTS[c]!r}: {y[r, c]!r} is not 0 or 1")
        y = yf == 1
    try:
        s = s.astype(np.float64)
    except (TypeError, ValueError):
        raise MetricsError(f"y_score: scores must be numbers, got dtype {s.dtype}") from None
    if not np.isfinite(s).all():
        r, c = np.argwhere(~np.isfinite(s))[0]
        raise MetricsError(f"y_score: row {r}, context {CONTEXTS[c]!r}: score {s[r, c]} is not finite")
    return y, s


def _thresholds(threshold: float | np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(threshold, pd.Series):
        missing = [c for c in CONTEXTS if c not in threshold.index]
        if missing:
            raise MetricsError(f"threshold: context(s) missing: {missing}")
        threshold = threshold[list(CONTEXTS)].to_numpy()
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(len(CONTEXTS), float(t))
    if t.shape != (len(CONTEXTS),):
        raise MetricsError(f"threshold: expected a number or {len(CONTEXTS)} values, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise MetricsError(f"threshold: not finite: {t}")
    return t


def predict(y_score: np.ndarray, threshold: float | np.ndarray | pd.Series = 0.5) -> np.ndarray:
    """Binary decisions: ``score > threshold`` per context (the authors' rounding)."""
    s = np.asarray(y_score, dtype=np.float64)
    return s > _thresholds(threshold)[None, :]


# --------------------------------------------------------------------------
# the metrics, for a batch of track multiplicities
# --------------------------------------------------------------------------

def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


class _Evaluator:
    """Metrics for many weightings of the same tracks (weights = multiplicities)."""

    def __init__(self, y: np.ndarray, s: np.ndarray, thr: np.ndarray):
        self.n = y.shape[0]
        pred = s > thr[None, :]
        yf = y.astype(np.float64)
        pf = pred.astype(np.float64)
        self.tp_m = yf * pf
        self.fp_m = (1 - yf) * pf
        self.pos_m = yf
        # per context: indicator of score tie groups (ascending), split by label
        self.groups = []
        for c in range(y.shape[1]):
            uniq, inv = np.unique(s[:, c], return_inverse=True)
            g = len(uniq)
            rows = np.arange(self.n)
            pos = sp.csr_matrix((yf[:, c], (rows, inv)), shape=(self.n, g))
            neg = sp.csr_matrix((1 - yf[:, c], (rows, inv)), shape=(self.n, g))
            self.groups.append((pos, neg))

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """``w``: (B, n) multiplicities → (B, 15, 6) metrics in METRICS order."""
        w = np.asarray(w, dtype=np.float64)
        total = w.sum(axis=1, keepdims=True)
        tp = w @ self.tp_m
        fp = w @ self.fp_m
        p = w @ self.pos_m
        neg = total - p
        fn = p - tp
        tn = neg - fp
        hl = _safe_div(fp + fn, np.broadcast_to(total, tp.shape))
        recall = _safe_div(tp, p)
        precision = _safe_div(tp, tp + fp)
        f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
        tnr = _safe_div(tn, neg)
        auc = np.empty_like(tp)
        for c, (gpos, gneg) in enumerate(self.groups):
            # weight of positives / negatives in each tie group of scores: (B, groups)
            wp = np.asarray(gpos.T @ w.T).T
            wn = np.asarray(gneg.T @ w.T).T
            below = np.cumsum(wn, axis=1) - wn  # negative weight strictly below each group
            num = (wp * (below + 0.5 * wn)).sum(axis=1)
            den = p[:, c] * neg[:, c]
            with np.errstate(invalid="ignore", divide="ignore"):
                auc[:, c] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        return np.stack([hl, auc, recall, precision, f1, tnr], axis=-1)


def _table(values: np.ndarray) -> pd.DataFrame:
    """(15, 6) per-context values → DataFrame with the macro row (plain mean)."""
    full = np.vstack([values, values.mean(axis=0, keepdims=True)])
    return pd.DataFrame(full, index=pd.Index(ROWS, name="context"), columns=list(METRICS))


def per_context_metrics(
    y_true: np.ndarray | pd.DataFrame,
    y_score: np.ndarray | pd.DataFrame,
    threshold: float | np.ndarray | pd.Series = 0.5,
) -> pd.DataFrame:
    """Table 1's metrics per context and their macro average.

    Parameters
    ----------
    y_true : (n, 15) 0/1 array or DataFrame
        Ground-truth labels of the test tracks.
    y_score : (n, 15) array or DataFrame
        Model scores (sigmoid outputs).
    threshold : float or 15 values
        A prediction is positive when ``score > threshold`` (0.5: the
        authors' rounding); per-context values e.g. from :func:`tune_thresholds`.

    Returns
    -------
    DataFrame
        Rows ``CONTEXTS + ("Macro average",)``, columns
        ``["HL", "AUC", "Recall", "Precision", "F1", "TN rate"]``.

    Raises
    ------
    MetricsError
        Shapes differ, labels not 0/1, scores not finite, a bad threshold.
    """
    y, s = _check(y_true, y_score)
    ev = _Evaluator(y, s, _thresholds(threshold))
    return _table(ev(np.ones((1, y.shape[0])))[0])


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The (n_boot, n) track indices of the bootstrap resamples (with replacement)."""
    if n_boot < 1:
        raise MetricsError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_ci(
    y_true: np.ndarray | pd.DataFrame,
    y_score: np.ndarray | pd.DataFrame,
    threshold: float | np.ndarray | pd.Series = 0.5,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Percentile bootstrap intervals over test tracks for every cell of the table.

    Tracks are resampled with replacement (``n_boot`` times, from
    ``np.random.default_rng(seed)``); each resample's table is computed exactly
    as :func:`per_context_metrics` would on the resampled rows, including the
    macro row (so its interval is that of the macro average).

    Returns
    -------
    DataFrame
        Same rows as :func:`per_context_metrics`; columns a MultiIndex
        (metric, ``estimate`` | ``low`` | ``high``): the estimate on the full
        test set and the ``level`` percentile interval of the resamples.
    ndarray, optional
        With ``return_replicates``: the (n_boot, 16, 6) resample tables.
    """
    if not 0 < level < 1:
        raise MetricsError(f"level must be in (0, 1), got {level}")
    y, s = _check(y_true, y_score)
    ev = _Evaluator(y, s, _thresholds(threshold))
    n = y.shape[0]
    idx = bootstrap_indices(n, n_boot, seed)
    reps = np.empty((n_boot, len(ROWS), len(METRICS)))
    chunk = max(1, int(4e6 // max(n, 1)))  # bound memory of the (B, n) weight block
    for a in range(0, n_boot, chunk):
        b = min(n_boot, a + chunk)
        w = np.zeros((b - a, n))
        np.add.at(w, (np.repeat(np.arange(b - a), n), idx[a:b].ravel()), 1.0)
        vals = ev(w)
        reps[a:b, :-1] = vals
        reps[a:b, -1] = vals.mean(axis=1)
    est = _table(ev(np.ones((1, n)))[0])
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN AUC cells stay NaN
        low = np.nanquantile(reps, alpha, axis=0)
        high = np.nanquantile(reps, 1 - alpha, axis=0)
    cols = pd.MultiIndex.from_product([list(METRICS), ["estimate", "low", "high"]])
    data = np.stack([est.to_numpy(), low, high], axis=-1).reshape(len(ROWS), -1)
    out = pd.DataFrame(data, index=est.index, columns=cols)
    return (out, reps) if return_replicates else out


def format_ci(ci: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``estimate [low, high]`` strings, one column per metric (for display)."""
    out = {}
    for m in ci.columns.get_level_values(0).unique():
        e, lo, hi = (ci[(m, k)] for k in ("estimate", "low", "high"))
        out[m] = [f"{a:.{digits}f} [{b:.{digits}f}, {c:.{digits}f}]" for a, b, c in zip(e, lo, hi)]
    return pd.DataFrame(out, index=ci.index)


# --------------------------------------------------------------------------
# per-context thresholds (the authors' validation tuning)
# --------------------------------------------------------------------------

def tune_thresholds(
    y_true_val: np.ndarray | pd.DataFrame,
    y_score_val: np.ndarray | pd.DataFrame,
    grid: np.ndarray = THRESHOLD_GRID,
) -> pd.Series:
    """Per-context threshold maximising F1 on the validation set.

    As the authors did: thresholds 0.00, 0.01, …, 0.99; a prediction is
    positive when ``score > threshold``; on ties the lowest threshold wins
    (``np.argmax``).

    Returns
    -------
    Series
        One threshold per context, indexed by ``CONTEXTS``; pass it as
        ``threshold`` to :func:`per_context_metrics`.
    """
    y, s = _check(y_true_val, y_score_val)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise MetricsError("grid: expected a non-empty 1-D array of finite thresholds")
    p = y.sum(axis=0).astype(np.float64)
    f1 = np.empty((grid.size, y.shape[1]))
    for k, t in enumerate(grid):
        pred = s > t
        tp = (pred & y).sum(axis=0)
        npred = pred.sum(axis=0)
        f1[k] = _safe_div(2.0 * tp, npred + p)
    best = np.argmax(f1, axis=0)
    return pd.Series(grid[best], index=pd.Index(CONTEXTS, name="context"), name="threshold")
