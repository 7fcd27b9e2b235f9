"""Missing labels on the simulated world, at the label level (beyond the paper, after §3.1 and §4.3).

The paper's §3.1 rule (a track is tagged with c when it is in at least 3
kept playlists naming c) is where the missing labels come from; §4.3's
negative weights are its proposed remedy. In the simulated world the complete
(latent) labels are known, so both can be measured directly:

* :func:`missing_summary` — how many true positives the observed labels lack;
* :func:`truth_detection` — how well a detector's scores (e.g. ``1 - w̄`` of
  eq. 3) rank the truly missing cells above the true zeros, among the zero
  cells of the observed labels (:func:`ctxpaper.missing.ranking_metrics`);
* :func:`training_weight_detection` — the same for the very negative weights
  the CNNs of chapters 06–07 are trained with (fitted on the balanced tracks);
* :func:`missingness_sweep` — both, with the construction rule's threshold
  varied (``min_playlists`` of :func:`ctxpaper.playlists.build_dataset`) on
  the same simulated catalogue;
* :func:`training_sweep` and :func:`sweep_ranks` — the loss variants of
  Table 2 retrained on the dataset each threshold builds (balanced, split,
  features, CNN: the chain of :mod:`ctxpaper.experiment`), scored against
  observed and latent labels, and their ranking per threshold.

Notebook: ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .contexts import CONTEXTS
from .missing import DETECTORS, Detector, ranking_metrics

__all__ = ["missing_summary", "truth_detection", "training_weight_detection", "missingness_sweep",
           "simulated_sweep", "training_sweep", "sweep_ranks", "ranking_agreement"]

_COLS = list(CONTEXTS)


def _aligned(observed: np.ndarray | pd.DataFrame, latent: np.ndarray | pd.DataFrame
             ) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(observed, pd.DataFrame) and isinstance(latent, pd.DataFrame):
        if not observed.index.equals(latent.index):
            raise ValueError("observed and latent labels must have the same index (same tracks, same order)")
        latent = latent[list(observed.columns)]
    obs, lat = np.asarray(observed, dtype=bool), np.asarray(latent, dtype=bool)
    if obs.shape != lat.shape or obs.ndim != 2:
        raise ValueError(f"observed and latent labels must be 2-D of one shape, got {obs.shape} and {lat.shape}")
    return obs, lat


def missing_summary(observed: np.ndarray | pd.DataFrame, latent: np.ndarray | pd.DataFrame) -> dict[str, float]:
    """How incomplete the observed labels are.

    Returns
    -------
    dict
        ``tracks``; ``observed_per_track`` and ``latent_per_track`` (mean
        number of positives); ``missing_rate`` (share of the latent positives
        that are not observed); ``missing_share_of_zeros`` (share of the
        observed zeros that are truly positive: the precision of a random
        ranking of the zeros); ``false_tags`` (observed positives that are not
        latent; the missing-label model assumes none).
    """
    obs, lat = _aligned(observed, latent)
    missing = lat & ~obs
    return {"tracks": int(len(obs)),
            "observed_per_track": float(obs.sum(axis=1).mean()),
            "latent_per_track": float(lat.sum(axis=1).mean()),
            "missing_rate": float(missing.sum() / max(lat.sum(), 1)),
            "missing_share_of_zeros": float(missing.sum() / max((~obs).sum(), 1)),
            "false_tags": int((obs & ~lat).sum())}


def truth_detection(observed: np.ndarray | pd.DataFrame, latent: np.ndarray | pd.DataFrame,
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
        truly missing cells (latent, not observed) as the positive class and the
        true zeros (neither) as the negative class.
    """
    obs, lat = _aligned(observed, latent)
    # Observed positives that are not latent (false tags) are not zero cells
    # of ``obs``; ranking_metrics ignores them.
    missing = lat & ~obs
    rows = {name: ranking_metrics(detect(obs), obs, missing)
            for name, detect in (DETECTORS if detectors is None else detectors).items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("detector")


def training_weight_detection(selection, variants: Iterable[str] = ("neg_exact", "neg_ignore_zeros"),
                              subset: str | None = None) -> pd.DataFrame:
    """The negative weights the CNNs are trained with, as detectors of the truly missing cells.

    The weights are :func:`ctxpaper.experiment.loss_weights` of each variant
    (fitted on every balanced track, as in training); the score of a zero
    cell is ``1 - w̄``.

    Parameters
    ----------
    selection : ctxpaper.simdata.Selection
    variants : iterable of str
        Loss variants whose negative weights to score.
    subset : {"train", "validation", "test"}, optional
        Only these tracks (default: every selected track).

    Returns
    -------
    DataFrame
        Indexed by variant: the :func:`ctxpaper.missing.ranking_metrics`.
    """
    from .experiment import loss_weights

    ids = selection.split.index if subset is None else pd.Index(selection.ids(subset))
    labels, counts = selection.labels.loc[ids], selection.counts.loc[ids]
    obs, lat = _aligned(labels, selection.latent.loc[ids])
    rows = {}
    for v in variants:
        w_neg = loss_weights(v, labels, counts, selection.reference_labels, selection.reference_counts)[1]
        rows[v] = ranking_metrics(1.0 - w_neg, obs, lat & ~obs)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")


def missingness_sweep(world, min_playlists: Iterable[int] = (2, 3, 4, 5),
                      detectors: dict[str, Detector] | None = None) -> pd.DataFrame:
    """The construction threshold varied on one simulated catalogue.

    For each threshold k, :func:`ctxpaper.playlists.build_dataset` tags the
    world's catalogue (other filters as in the paper), and the tagged tracks'
    observed labels are compared with their latent ones.

    Parameters
    ----------
    world : ctxpaper.world.World
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
    from .playlists import build_dataset

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


def simulated_sweep(profile, seed: int, min_playlists: Iterable[int] = (2, 3, 4, 5),
                    detectors: dict[str, Detector] | None = None) -> pd.DataFrame:
    """:func:`missingness_sweep` on the simulated world of (profile, seed)."""
    from .world import simulated_dataset

    world, _ = simulated_dataset(profile, seed)
    return missingness_sweep(world, min_playlists, detectors)


def _thresholds(thresholds: Iterable[int]) -> list[int]:
    """The sweep's thresholds, validated, with the paper's 3 added, sorted."""
    from .world import PAPER_MIN_PLAYLISTS, check_min_playlists

    return sorted({check_min_playlists(k) for k in thresholds} | {PAPER_MIN_PLAYLISTS})


def training_sweep(profile, seed: int, thresholds: Iterable[int] = (2, 5),
                   variants: Iterable[str] = ("none", "neg_exact", "neg_ignore_zeros"),
                   n_seeds: int = 1, progress: bool = False) -> pd.DataFrame:
    """Loss variants retrained with the construction threshold varied.

    For each threshold k, the simulated world of (profile, seed) is tagged
    with ``min_playlists=k``, balanced, split, subsampled to the profile's
    ``n_tracks`` and featurised, and each variant is trained on it
    (:func:`ctxpaper.results.collect`). The paper's threshold 3 is always
    included: its runs are chapters 05–06's cache entries (training seeds
    ``seed, seed + 1, …``), so they are loaded, not retrained.

    Parameters
    ----------
    profile, seed
        The simulated run (``seed`` also the first training seed).
    thresholds : iterable of int
        Construction thresholds besides 3 (each an integer >= 1).
    variants : iterable of str
        Loss variants of :mod:`ctxpaper.experiment`.
    n_seeds : int
        Training seeds per (threshold, variant).
    progress : bool
        Progress bars while building features or training.

    Returns
    -------
    DataFrame
        One row per (min_playlists, variant, train_seed, against): the
        columns of :func:`ctxpaper.results.collect`, a ``min_playlists``
        column first, and the test tracks' ``missing_rate`` (share of their
        latent positives absent from their observed labels, repeated on the
        threshold's rows).
    """
    from .results import collect, train_seeds
    from .simdata import simulated_selection

    train_seeds(seed, n_seeds)  # validates n_seeds before any work
    variants = list(variants)
    if not variants:
        raise ValueError("variants must name at least one loss variant")
    parts = []
    for k in _thresholds(thresholds):
        runs = collect(profile, seed, variants, n_seeds=n_seeds, progress=progress, min_playlists=k)
        sel = simulated_selection(profile, seed, k)
        test = sel.ids("test")
        rate = missing_summary(sel.labels.loc[test], sel.latent.loc[test])["missing_rate"]
        runs.insert(0, "min_playlists", k)
        runs["missing_rate"] = rate
        parts.append(runs)
    return pd.concat(parts, ignore_index=True)


def sweep_ranks(runs: pd.DataFrame, metrics: Iterable[str] = ("F1", "AUC"),
                higher_is_better: bool = True) -> pd.DataFrame:
    """Rank (1 = best mean over training seeds) of each variant, per threshold and truth.

    Parameters
    ----------
    runs : DataFrame
        :func:`training_sweep` output.
    metrics : iterable of str
        Metric columns to rank by.
    higher_is_better : bool

    Returns
    -------
    DataFrame
        Indexed by (metric, variant) in the runs' variant order; columns a
        MultiIndex (against, min_playlists). Ties share the best rank.
    """
    from .recovery import variant_ranks

    if "min_playlists" not in runs.columns:
        raise ValueError("runs must be training_sweep output (no min_playlists column)")
    order = list(dict.fromkeys(runs["variant"]))
    out = {}
    for m in metrics:
        per_k = {k: variant_ranks(part, m, higher_is_better)
                 for k, part in runs.groupby("min_playlists", sort=True)}
        table = pd.concat(per_k, axis=1, names=["min_playlists", "against"])
        out[m] = table.swaplevel(0, 1, axis=1).sort_index(axis=1).reindex(order)
    return pd.concat(out, names=["metric", "variant"])


def _order_text(rank: pd.Series) -> str:
    """Variants best first: ``a > b = c`` (``=`` joins tied ranks).

    Unranked variants (metric undefined, rank ``<NA>``) follow as
    ``(undefined: d, e)``.
    """
    undefined = [str(v) for v in rank.index[rank.isna()]]
    rank = rank.dropna().sort_values(kind="stable")
    parts = []
    if len(rank):
        text = str(rank.index[0])
        for prev, (v, r) in zip(rank.to_numpy(), rank.iloc[1:].items()):
            text += (" = " if r == prev else " > ") + str(v)
        parts.append(text)
    if undefined:
        parts.append(f"(undefined: {', '.join(undefined)})")
    return " ".join(parts)


def ranking_agreement(ranks: pd.DataFrame) -> pd.DataFrame:
    """Does the ranking move with the threshold, and with the truth used?

    Parameters
    ----------
    ranks : DataFrame
        :func:`sweep_ranks` output.

    Returns
    -------
    DataFrame
        Indexed by (metric, min_playlists): ``observed`` and ``latent`` (the
        variants, best first, as one string; ``=`` joins ties), ``same as at 3 (observed)`` and
        ``same as at 3 (latent)`` (the ranking equals that of the paper's
        threshold), and ``observed = latent``.
    """
    from .world import PAPER_MIN_PLAYLISTS

    rows = []
    for m in dict.fromkeys(ranks.index.get_level_values("metric")):
        r = ranks.loc[m]
        ks = sorted(set(r.columns.get_level_values("min_playlists")))
        if PAPER_MIN_PLAYLISTS not in ks:
            raise ValueError("the ranks hold no column for the paper's threshold 3")
        for k in ks:
            row = {"metric": m, "min_playlists": k}
            for a in ("observed", "latent"):
                row[a] = _order_text(r[(a, k)])
                row[f"same as at 3 ({a})"] = bool(r[(a, k)].equals(r[(a, PAPER_MIN_PLAYLISTS)]))
            row["observed = latent"] = bool(r[("observed", k)].equals(r[("latent", k)]))
            rows.append(row)
    return pd.DataFrame(rows).set_index(["metric", "min_playlists"])
