"""Observed against latent labels: the missing positives, where the truth is known.

Beyond the paper, after §3.1 (the construction rule the missing labels come
from), §4.2–4.3 (the negative weights of eq. 3, the paper's remedy) and §4.4
(its guess that part of the weighted losses' drop in precision and TN rate
"is due to missing labels in the ground-truth"). In the simulated world a
track's complete (*latent*) contexts are known beside the *observed* labels
the §3.1 rule produced, so the missing labels can be counted and every claim
about them measured. Pure functions of labels and scores; nothing here trains
or loads a run.

* :func:`missing_mask` and :func:`missing_share` — the missing positives
  (latent 1, observed 0) and their share, the one definition every chapter
  uses;
* :func:`missing_summary` — how incomplete the observed labels are;
* :func:`truth_detection` — how well a detector's scores (e.g. ``1 - w̄`` of
  eq. 3) rank the truly missing cells above the true zeros
  (:func:`ctxpaper.missing.ranking_metrics`);
* :func:`training_weight_detection` — the same for the negative weights the
  CNNs are trained with (fitted on every balanced track);
* :func:`missingness_sweep` — both, with the construction threshold
  (``min_playlists`` of :func:`ctxpaper.playlists.build_dataset`) varied on
  one simulated catalogue;
* :func:`cell_recovery` — a trained model's scores on the observed
  positives, missing positives and true negatives (:data:`GROUPS`);
* :func:`missing_text` and :func:`detection_text` — the chapter's sentences
  on those results, as Markdown.

Notebooks: ``02_building_the_dataset`` (missing share per context),
``05_cnn_baseline`` (missing share of the test tracks), ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .contexts import CONTEXTS
from .losses import loss_weights
from .missing import DETECTORS, Detector, ranking_metrics
from .playlists import build_dataset

__all__ = ["AGAINST", "GROUPS", "missing_mask", "missing_share", "missing_summary", "truth_detection",
           "training_weight_detection", "missingness_sweep", "cell_recovery", "missing_text",
           "detection_text"]

#: The two label sets a simulated run is scored against: what the paper's
#: procedure produced (``observed``) and the complete truth (``latent``).
AGAINST = ("observed", "latent")

#: Kinds of cells, by (observed, latent) label.
GROUPS = ("observed positive", "missing positive", "true negative")

_COLS = list(CONTEXTS)

LabelMatrix = np.ndarray | pd.DataFrame


def _aligned(observed: LabelMatrix, latent: LabelMatrix) -> tuple[np.ndarray, np.ndarray]:
    """Both label sets as bool arrays of one shape; frames must share their index."""
    if isinstance(observed, pd.DataFrame) and isinstance(latent, pd.DataFrame):
        if not observed.index.equals(latent.index):
            raise ValueError("observed and latent labels must have the same index (same tracks, same order)")
        latent = latent[list(observed.columns)]
    obs, lat = np.asarray(observed, dtype=bool), np.asarray(latent, dtype=bool)
    if obs.shape != lat.shape or obs.ndim != 2:
        raise ValueError(f"observed and latent labels must be 2-D of one shape, got {obs.shape} and {lat.shape}")
    return obs, lat


def missing_mask(observed: LabelMatrix, latent: LabelMatrix) -> np.ndarray:
    """The missing positives: cells positive in the latent labels and zero in the observed ones.

    Parameters
    ----------
    observed, latent : (n, m) bool array or DataFrame
        The same tracks and contexts; two frames must have the same index
        (the latent columns are taken in the observed order).

    Returns
    -------
    (n, m) bool array
    """
    obs, lat = _aligned(observed, latent)
    return lat & ~obs


def missing_share(observed: LabelMatrix, latent: LabelMatrix, axis: int | None = None,
                  among: str = "latent") -> float | np.ndarray | pd.Series:
    """Share of cells that are missing positives.

    Parameters
    ----------
    observed, latent : (n, m) bool array or DataFrame
        As in :func:`missing_mask`.
    axis : {None, 0}
        None: one share over every cell; 0: one share per context (a Series
        indexed by the observed columns when ``observed`` is a DataFrame).
    among : {"latent", "zeros"}
        The denominator. ``"latent"``: the latent positives (the share of the
        true positives the observed labels lack, "missing rate");
        ``"zeros"``: the observed zeros (the share of them that are truly
        positive, which is also the precision of a random ranking of the zeros).

    Returns
    -------
    float, array or Series
        NaN where the denominator is empty (no latent positive, or no zero).
    """
    if axis not in (None, 0):
        raise ValueError(f"axis must be None or 0, got {axis!r}")
    if among not in ("latent", "zeros"):
        raise ValueError(f"among must be 'latent' or 'zeros', got {among!r}")
    obs, lat = _aligned(observed, latent)
    missing = lat & ~obs
    base = lat if among == "latent" else ~obs
    num, den = missing.sum(axis=axis), base.sum(axis=axis)
    share = np.divide(num, den, out=np.full(np.shape(num), np.nan), where=den > 0)
    if axis is None:
        return float(share)
    if isinstance(observed, pd.DataFrame):
        return pd.Series(share, index=observed.columns, name="share missing")
    return share


def missing_summary(observed: LabelMatrix, latent: LabelMatrix) -> dict[str, float]:
    """How incomplete the observed labels are.

    Returns
    -------
    dict
        ``tracks``; ``observed_per_track`` and ``latent_per_track`` (mean
        number of positives); ``missing_rate`` (:func:`missing_share` among
        the latent positives); ``missing_share_of_zeros`` (among the observed
        zeros); ``false_tags`` (observed positives that are not latent; the
        missing-label model assumes none).
    """
    obs, lat = _aligned(observed, latent)
    return {"tracks": int(len(obs)),
            "observed_per_track": float(obs.sum(axis=1).mean()),
            "latent_per_track": float(lat.sum(axis=1).mean()),
            "missing_rate": missing_share(obs, lat),
            "missing_share_of_zeros": missing_share(obs, lat, among="zeros"),
            "false_tags": int((obs & ~lat).sum())}


def truth_detection(observed: LabelMatrix, latent: LabelMatrix,
                    detectors: dict[str, Detector] | None = None) -> pd.DataFrame:
    """Each detector, computed on the observed labels, scored against the truth.

    Parameters
    ----------
    observed, latent : (n, m) bool
    detectors : dict, optional
        Name → function of the observed matrix returning (n, m) scores
        (default :data:`ctxpaper.missing.DETECTORS`).

    Returns
    -------
    DataFrame
        Indexed by detector: :func:`ctxpaper.missing.ranking_metrics` with the
        missing positives as the positive class and the true zeros (neither)
        as the negative class.
    """
    obs, lat = _aligned(observed, latent)
    # False tags (observed, not latent) are not zero cells of obs: ranking_metrics ignores them.
    missing = lat & ~obs
    rows = {name: ranking_metrics(detect(obs), obs, missing)
            for name, detect in (DETECTORS if detectors is None else detectors).items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("detector")


def training_weight_detection(selection, losses: Iterable[str] = ("neg_exact", "neg_ignore_zeros"),
                              subset: str | None = None) -> pd.DataFrame:
    """The negative weights the CNNs are trained with, as detectors of the missing positives.

    The weights are :func:`ctxpaper.losses.loss_weights` of each loss
    (fitted on every balanced track, as in training); the score of a zero
    cell is ``1 - w̄``.

    Parameters
    ----------
    selection : selection-like
        Anything with ``split`` (indexed by track id), ``labels``, ``counts``,
        ``latent`` (indexed by track id), ``reference_labels``,
        ``reference_counts`` (what the weights are fitted on) and
        ``ids(subset)`` — a run's selection of tracks.
    losses : iterable of str
        Loss losses whose negative weights to score.
    subset : {"train", "validation", "test"}, optional
        Only these tracks (default: every selected track).

    Returns
    -------
    DataFrame
        Indexed by loss: the :func:`ctxpaper.missing.ranking_metrics`.
    """
    ids = selection.split.index if subset is None else pd.Index(selection.ids(subset))
    labels, counts = selection.labels.loc[ids], selection.counts.loc[ids]
    obs, lat = _aligned(labels, selection.latent.loc[ids])
    rows = {}
    for v in losses:
        w_neg = loss_weights(v, labels, counts, selection.reference_labels, selection.reference_counts)[1]
        rows[v] = ranking_metrics(1.0 - w_neg, obs, lat & ~obs)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("loss")


def missingness_sweep(world, min_playlists: Iterable[int] = (2, 3, 4, 5),
                      detectors: dict[str, Detector] | None = None) -> pd.DataFrame:
    """The construction threshold varied on one simulated catalogue.

    For each threshold k, :func:`ctxpaper.playlists.build_dataset` tags the
    world's catalogue (other filters as in the paper), and the tagged tracks'
    observed labels are compared with their latent ones.

    Parameters
    ----------
    world : world-like
        Anything with ``catalogue`` (a :class:`ctxpaper.playlists.Catalogue`)
        and ``latent`` (bool, indexed by track id, :data:`CONTEXTS` columns),
        e.g. a :class:`ctxpaper.world.World`.
    min_playlists : iterable of int
        Thresholds (paper: 3).
    detectors : dict, optional
        As in :func:`truth_detection`.

    Returns
    -------
    DataFrame
        One row per (min_playlists, detector): the :func:`missing_summary` of
        that threshold's dataset (repeated on each of its rows) and the
        detector's :func:`ctxpaper.missing.ranking_metrics`.
    """
    out = []
    for k in min_playlists:
        ds = build_dataset(world.catalogue, min_playlists=int(k))
        observed = ds.labels[_COLS]
        latent = world.latent.reindex(observed.index)
        if latent.isna().any().any():
            raise ValueError(f"min_playlists={k}: tagged tracks missing from the world's latent labels")
        latent = latent.astype(bool)
        summary = missing_summary(observed, latent)
        det = truth_detection(observed, latent, detectors)
        for name, row in det.iterrows():
            out.append({"min_playlists": int(k), "detector": name, **summary, **row.to_dict()})
    return pd.DataFrame(out)


def cell_recovery(scores: LabelMatrix, observed: LabelMatrix, latent: LabelMatrix,
                  threshold: float = 0.5) -> dict[str, float]:
    """How a model scores the observed positives, missing positives and true negatives.

    Parameters
    ----------
    scores : (n, m) float
        Sigmoid outputs.
    observed, latent : (n, m) bool
        Observed and complete labels of the same cells.
    threshold : float
        A cell is predicted positive when its score is above it (Table 1's rule).

    Returns
    -------
    dict
        For each group g of :data:`GROUPS`: ``"<g> cells"`` (how many),
        ``"<g> mean score"`` and ``"<g> predicted positive"`` (share above the
        threshold; for missing positives it is the recall of the labels the
        training never saw). ``"missing vs true negative AUC"``: ROC-AUC of the
        scores, missing positives against true negatives (NaN if either is empty).
    """
    s = np.asarray(scores, dtype=np.float64)
    obs, lat = np.asarray(observed, dtype=bool), np.asarray(latent, dtype=bool)
    if not (s.shape == obs.shape == lat.shape) or s.ndim != 2:
        raise ValueError(f"scores, observed and latent must be 2-D of one shape, got "
                         f"{s.shape}, {obs.shape}, {lat.shape}")
    missing = missing_mask(obs, lat)
    masks = {"observed positive": obs, "missing positive": missing, "true negative": ~lat & ~obs}
    out: dict[str, float] = {}
    for g in GROUPS:
        m = masks[g]
        out[f"{g} cells"] = int(m.sum())
        out[f"{g} mean score"] = float(s[m].mean()) if m.any() else np.nan
        out[f"{g} predicted positive"] = float((s[m] > threshold).mean()) if m.any() else np.nan
    if missing.any() and masks["true negative"].any():
        # Rank the observed zeros only; observed positives are left out.
        out["missing vs true negative AUC"] = ranking_metrics(s, obs, missing)["roc_auc"]
    else:
        out["missing vs true negative AUC"] = np.nan
    return out


def missing_text(summary: dict | pd.Series, source: str, tracks: str = "the test tracks") -> str:
    """One Markdown sentence on a :func:`missing_summary`: what share is missing, and what it costs.

    Parameters
    ----------
    summary : dict or Series
        :func:`missing_summary` output.
    source : str
        Where the numbers come from (e.g. "simulated run, profile quick, seed 0").
    tracks : str
        Which tracks the summary is of.
    """
    return (f"On {tracks}, **{summary['missing_rate']:.1%} of the true (track, context) positives are "
            f"missing** from the observed labels, and {summary['missing_share_of_zeros']:.1%} of the observed "
            f"zeros are in truth positive ({source}). Every one of those zeros counts as a false positive when "
            "a model predicts it, and as a missed true negative in the TN rate.")


def detection_text(summary: dict | pd.Series, weights: pd.DataFrame, detectors: pd.DataFrame,
                   source: str) -> str:
    """Markdown: the training weights and the best label-only detector against the share of missing zeros.

    Parameters
    ----------
    summary : dict or Series
        :func:`missing_summary` of the tracks scored.
    weights : DataFrame
        :func:`training_weight_detection` output, indexed by the weights'
        names with a ``roc_auc`` column; every row is reported, in order.
    detectors : DataFrame
        :func:`truth_detection` output; the one with the highest ROC-AUC is named.
    source : str
        Where the numbers come from.
    """
    best = detectors["roc_auc"].idxmax()
    ws = [f"{r:.3f} ({_weight_name(str(name))})" for name, r in weights["roc_auc"].items()]
    listed = ws[0] if len(ws) == 1 else ", ".join(ws[:-1]) + " and " + ws[-1]
    return (f"Among the observed zeros of the trained tracks, {summary['missing_share_of_zeros']:.1%} are "
            f"truly positive (the precision of a random ranking). The training weights reach ROC-AUC "
            f"{listed}; the best label-only detector here is *{best}* "
            f"({detectors.loc[best, 'roc_auc']:.3f}) — {source}. "
            "An AUC of 0.5 means the scores carry no information about which zeros are missing.")


def _weight_name(name: str) -> str:
    """The eq. 3 mode a weight's name refers to ("exact match", "ignore zeros"), else the name."""
    low = name.lower()
    if "exact" in low:
        return "exact match"
    if "ignore" in low:
        return "ignore zeros"
    return name
