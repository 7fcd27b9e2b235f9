"""The losses of Table 2 and of chapter 07: names, sample weights, objectives (§4.2–4.4).

The paper's five rows of Table 2 train eq. 2, the weighted cross-entropy of
:func:`ctxpaper.model.weighted_bce`, with per-cell weights from
:mod:`ctxpaper.weights`:

============================  ===========================  =============================
loss                          positive weights ω (eq. 4)   negative weights ω̄ (eq. 3)
============================  ===========================  =============================
``none``                      1                            1
``neg_exact``                 1                            exact match
``neg_ignore_zeros``          1                            ignore zeros
``both_exact``                tf-idf                       exact match
``both_ignore_zeros``         tf-idf                       ignore zeros
============================  ===========================  =============================

As the authors did, the weights are fitted on every track of the (balanced)
dataset, test tracks included (``reference`` of :mod:`ctxpaper.weights`).

Beyond the paper (chapter 07), :data:`EXTRA_LOSSES` are later losses for
multi-label learning with missing labels, on the same packed targets (the
(batch, 45) ``[labels | positive weights | negative weights]`` of
:func:`ctxpaper.model.pack_targets`; these read the labels only):

* ``wan`` — **weak assume negative** (Cole et al., 2021): every zero is a
  negative with a small constant weight γ = 1 / (m − 1). It *is* eq. 2 with
  constant weights, so it is provided as weights (:func:`wan_negative_weights`);
* ``asl`` — **asymmetric loss** (Ridnik et al., 2021): positives keep the
  cross-entropy term (γ+ = 0), negatives are focused, ``p_m^γ- · log(1 − p_m)``
  with γ- = 4, and shifted, ``p_m = max(p − m, 0)`` with m = 0.05;
* ``em`` — **entropy maximisation** (Zhou et al., 2022): on a zero the model
  is pushed towards uncertainty, maximising the binary entropy H(p) with
  weight α = 0.1, instead of towards 0.

All Keras losses return the per-sample mean over the contexts, as
``weighted_bce`` does. Keras is imported only when one is called.

Notebooks: ``06_weighted_cross_entropy``, ``07_missing_labels``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import weights
from .contexts import CONTEXTS

#: Table 2's rows, in the paper's order.
TABLE2_LOSSES = ("none", "neg_exact", "neg_ignore_zeros", "both_exact", "both_ignore_zeros")
#: Chapter 07's extra rows: missing-label losses from later work (not in the paper).
EXTRA_LOSSES = ("wan", "asl", "em")
ALL_LOSSES = TABLE2_LOSSES + EXTRA_LOSSES
#: Row names (the paper's Table 2 for its five).
LABELS = {
    "none": "No Weights",
    "neg_exact": "Negative Weights (exact match)",
    "neg_ignore_zeros": "Negative Weights (ignore zeros)",
    "both_exact": "Both Weights (exact match)",
    "both_ignore_zeros": "Both Weights (ignore zeros)",
    "wan": "Weak assume negative (Cole et al., 2021)",
    "asl": "Asymmetric loss (Ridnik et al., 2021)",
    "em": "Entropy maximisation (Zhou et al., 2022)",
}
#: The training objective (:data:`ctxpaper.train.OBJECTIVES`) each loss is trained with.
OBJECTIVE = {**{v: "weighted_bce" for v in TABLE2_LOSSES}, "wan": "weighted_bce", "asl": "asl", "em": "em"}
EPSILON = 1e-7  # as ctxpaper.model.EPSILON, kept here so that no Keras import is needed
_COLS = list(CONTEXTS)


def check_loss(loss: str) -> str:
    """``loss`` if it is one of :data:`ALL_LOSSES`, else a ValueError naming the choices."""
    if loss not in ALL_LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(ALL_LOSSES)}")
    return loss


def loss_weights(loss: str, labels: pd.DataFrame, counts: pd.DataFrame,
                 reference_labels: pd.DataFrame, reference_counts: pd.DataFrame
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weights (n, 15) of a loss.

    Parameters
    ----------
    loss : str
        One of :data:`ALL_LOSSES`. ``asl`` and ``em`` read the labels only:
        their weights are ones (packed but unused).
    labels, counts : DataFrame
        The tracks to weight.
    reference_labels, reference_counts : DataFrame
        What the co-occurrence (eq. 3) and tf-idf (eq. 4) statistics are fitted on.

    Returns
    -------
    (w_pos, w_neg) : two float arrays (n, 15)
    """
    check_loss(loss)
    ones = np.ones((len(labels), len(CONTEXTS)))
    if loss in ("none", "asl", "em"):
        return ones, ones.copy()
    if loss == "wan":
        return ones, wan_negative_weights(labels[_COLS].to_numpy(bool))
    mode = "exact" if loss.endswith("_exact") else "ignore_zeros"
    w_neg = np.asarray(weights.negative_weights(labels[_COLS], mode, reference=reference_labels[_COLS]),
                       dtype=np.float64)
    if loss.startswith("neg_"):
        return ones, w_neg
    w_pos = np.asarray(weights.positive_weights(counts[_COLS], labels[_COLS],
                                                reference=(reference_counts[_COLS], reference_labels[_COLS])),
                       dtype=np.float64)
    return w_pos, w_neg


def _ops():
    # Deferred: Keras (its backend is set by ctxpaper.model) only when a loss is computed.
    from .model import keras

    return keras.ops


def wan_negative_weights(labels: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """Weak-assume-negative weights: γ on every zero cell, 0 on the positives.

    Parameters
    ----------
    labels : (n, m) array of 0/1
    gamma : float, optional
        Weight of a zero; default 1 / (m − 1) (Cole et al., 2021).
    """
    y = np.asarray(labels).astype(bool)
    g = 1.0 / (y.shape[1] - 1) if gamma is None else float(gamma)
    if not 0.0 < g <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    return np.where(y, 0.0, g)


def asymmetric_loss(y_true, y_pred, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
                    margin: float = 0.05):
    """Asymmetric loss (Ridnik et al., 2021) per sample, on packed targets."""
    ops = _ops()
    y = ops.cast(y_true[:, :len(CONTEXTS)], y_pred.dtype)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    p_m = ops.maximum(p - margin, 0.0)
    pos = ops.power(1.0 - p, gamma_pos) * ops.log(p)
    neg = ops.power(p_m, gamma_neg) * ops.log(ops.clip(1.0 - p_m, EPSILON, 1.0))
    return -ops.mean(y * pos + (1.0 - y) * neg, axis=-1)


def entropy_max_loss(y_true, y_pred, alpha: float = 0.1):
    """Entropy-maximisation loss (Zhou et al., 2022) per sample, on packed targets."""
    ops = _ops()
    y = ops.cast(y_true[:, :len(CONTEXTS)], y_pred.dtype)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    entropy = -(p * ops.log(p) + (1.0 - p) * ops.log(1.0 - p))
    return ops.mean(-y * ops.log(p) - alpha * (1.0 - y) * entropy, axis=-1)


def numpy_reference(name: str, y: np.ndarray, p: np.ndarray, **kw) -> np.ndarray:
    """Plain-numpy versions of the losses above (for tests and for the chapter's figure)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    y = np.asarray(y, dtype=np.float64)
    if name == "asl":
        m, gn, gp = kw.get("margin", 0.05), kw.get("gamma_neg", 4.0), kw.get("gamma_pos", 0.0)
        pm = np.maximum(p - m, 0.0)
        return -(y * (1 - p) ** gp * np.log(p)
                 + (1 - y) * pm ** gn * np.log(np.clip(1 - pm, EPSILON, 1))).mean(axis=-1)
    if name == "em":
        a = kw.get("alpha", 0.1)
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        return (-y * np.log(p) - a * (1 - y) * h).mean(axis=-1)
    raise ValueError(f"unknown loss {name!r}; known: asl, em")
