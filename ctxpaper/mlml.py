"""Losses for multi-label learning with missing labels, beyond the paper (chapter 07).

The paper's answer to missing negatives is a per-cell weight (eq. 2–3). Later
work proposed losses that need no label statistics. Three are implemented
here, on the same packed targets as :func:`ctxpaper.model.weighted_bce` (the
(batch, 45) ``[labels | positive weights | negative weights]`` of
:func:`ctxpaper.model.pack_targets`; these losses read the labels only):

* **weak assume negative** (WAN; Cole et al., 2021): every zero is a negative,
  with a small constant weight γ = 1 / (m − 1). It *is* eq. 2 with constant
  weights, so it is provided as weights (:func:`wan_negative_weights`) for the
  paper's loss;
* **asymmetric loss** (ASL; Ridnik et al., 2021): positives keep the
  cross-entropy term (γ+ = 0), negatives are focused, ``p_m^γ- · log(1 − p_m)``
  with γ- = 4, and shifted, ``p_m = max(p − m, 0)`` with m = 0.05, which
  discards easy negatives and, for very confident "negatives", the mislabelled
  positives among them;
* **entropy maximisation** (EM; Zhou et al., 2022): positives keep the
  cross-entropy term; on a zero the model is pushed towards *uncertainty*,
  maximising the binary entropy H(p) with weight α, instead of towards 0.

All return the per-sample mean over the contexts, as ``weighted_bce`` does, so
Keras' batch mean gives the mean over batch × 15.
"""

from __future__ import annotations

import numpy as np

from .model import EPSILON, N_CONTEXTS, keras  # noqa: F401  (keras: backend set by model)

ops = keras.ops


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
    y = ops.cast(y_true[:, :N_CONTEXTS], y_pred.dtype)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    p_m = ops.maximum(p - margin, 0.0)
    pos = ops.power(1.0 - p, gamma_pos) * ops.log(p)
    neg = ops.power(p_m, gamma_neg) * ops.log(ops.clip(1.0 - p_m, EPSILON, 1.0))
    return -ops.mean(y * pos + (1.0 - y) * neg, axis=-1)


def entropy_max_loss(y_true, y_pred, alpha: float = 0.1):
    """Entropy-maximisation loss (Zhou et al., 2022) per sample, on packed targets."""
    y = ops.cast(y_true[:, :N_CONTEXTS], y_pred.dtype)
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
