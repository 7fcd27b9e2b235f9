"""Trained models against the truth: what the missing labels do to Table 2 (beyond §4.4).

§4.4 of the paper suggests that part of the drop in precision and true-negative
rate of the weighted losses "is due to missing labels in the ground-truth
that were regarded as a false prediction". On the simulated world the
complete (latent) labels are known, so this can be measured:

* :func:`cell_recovery` — per trained run, the scores on three kinds of test
  cells: observed positives, **missing positives** (latent 1, observed 0) and
  true negatives (both 0): mean score, share predicted positive at the 0.5
  threshold, and how well the scores rank missing positives above true
  negatives (ROC-AUC);
* :func:`apparent_vs_true` — per variant, the change of a metric from the
  no-weights baseline measured against the observed labels (what the paper
  could see) and against the latent ones (what is true);
* :func:`variant_ranks` — the ranking of the variants by a metric under each.

Notebook: ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .missing import ranking_metrics

__all__ = ["GROUPS", "cell_recovery", "collect_recovery", "apparent_vs_true", "variant_ranks"]

#: Kinds of test cells, by (observed, latent) label.
GROUPS = ("observed positive", "missing positive", "true negative")


def cell_recovery(scores: np.ndarray | pd.DataFrame, observed: np.ndarray | pd.DataFrame,
                  latent: np.ndarray | pd.DataFrame, threshold: float = 0.5) -> dict[str, float]:
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
    masks = {"observed positive": obs, "missing positive": lat & ~obs, "true negative": ~lat & ~obs}
    out: dict[str, float] = {}
    for g in GROUPS:
        m = masks[g]
        out[f"{g} cells"] = int(m.sum())
        out[f"{g} mean score"] = float(s[m].mean()) if m.any() else np.nan
        out[f"{g} predicted positive"] = float((s[m] > threshold).mean()) if m.any() else np.nan
    if masks["missing positive"].any() and masks["true negative"].any():
        # Rank the observed zeros only; observed positives are left out.
        out["missing vs true negative AUC"] = ranking_metrics(s, obs, masks["missing positive"])["roc_auc"]
    else:
        out["missing vs true negative AUC"] = np.nan
    return out


def collect_recovery(profile, seed: int, variants: Iterable[str], n_seeds: int | None = None,
                     subset: str = "test", progress: bool = True) -> pd.DataFrame:
    """:func:`cell_recovery` of every (variant, training seed), trained or loaded.

    Uses the same runs as :func:`ctxpaper.results.collect` (same arguments to
    :func:`ctxpaper.experiment.train_variant`), so nothing is retrained when
    those are cached.

    Returns
    -------
    DataFrame
        One row per (variant, train_seed).
    """
    from .experiment import train_variant
    from .profiles import validate_params
    from .results import train_seeds

    P, seed = validate_params(profile, seed)
    rows = []
    for v in variants:
        for ts in train_seeds(seed, P.n_seeds if n_seeds is None else n_seeds):
            run = train_variant(P, seed, v, train_seed=ts, progress=progress)
            rows.append({"variant": v, "train_seed": ts,
                         **cell_recovery(run.scores[subset], run.labels[subset], run.latent[subset])})
    return pd.DataFrame(rows)


def apparent_vs_true(runs: pd.DataFrame, metrics: Iterable[str] = ("Precision", "TN rate", "Recall"),
                     baseline: str = "none") -> pd.DataFrame:
    """Change of each metric from the baseline variant, against observed and latent labels.

    Parameters
    ----------
    runs : DataFrame
        :func:`ctxpaper.results.collect` output (``variant``, ``train_seed``,
        ``against`` and metric columns), with both ``observed`` and ``latent``.
    metrics : iterable of str
    baseline : str
        The variant the changes are measured from (Table 2's "No Weights").

    Returns
    -------
    DataFrame
        Indexed by (metric, variant), columns: ``observed`` and ``latent``
        (the variant's mean over training seeds), ``change (observed)`` and
        ``change (latent)`` (mean over training seeds of the variant's value
        minus the baseline's with the same training seed), ``sd (observed)``
        and ``sd (latent)`` (their sample standard deviation, NaN with one
        seed), and
        ``share explained by missing labels`` = 1 − change (latent) / change
        (observed): the part of the apparent change that is an artefact of the
        missing labels (NaN when the apparent change is below 1e-9 in size).
    """
    need = {"variant", "against"}
    if not need <= set(runs.columns) or not {"observed", "latent"} <= set(runs["against"]):
        raise ValueError("runs must be results.collect output with against = observed and latent")
    if baseline not in set(runs["variant"]):
        raise ValueError(f"baseline variant {baseline!r} is not in the runs")
    out = []
    for m in metrics:
        per_seed = runs.pivot_table(index=["variant", "train_seed"], columns="against", values=m)
        base = per_seed.loc[baseline]
        for v in dict.fromkeys(runs["variant"]):
            own = per_seed.loc[v]
            # Paired by training seed (same initialisation and batch order).
            diff = (own - base.reindex(own.index)).dropna()
            obs, lat = own["observed"].mean(), own["latent"].mean()
            d_obs, d_lat = diff["observed"].mean(), diff["latent"].mean()
            share = 1.0 - d_lat / d_obs if abs(d_obs) > 1e-9 else np.nan
            sd = diff.std(ddof=1) if len(diff) > 1 else pd.Series(np.nan, index=diff.columns)
            out.append({"metric": m, "variant": v, "observed": obs, "latent": lat,
                        "change (observed)": d_obs, "sd (observed)": sd["observed"],
                        "change (latent)": d_lat, "sd (latent)": sd["latent"],
                        "share explained by missing labels": share})
    return pd.DataFrame(out).set_index(["metric", "variant"])


def variant_ranks(runs: pd.DataFrame, metric: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Rank (1 = best) of each variant's mean ``metric``, against observed and against latent labels.

    A variant whose metric is undefined in every seed (precision of a model
    that never predicts a positive, say) has no rank (``<NA>``); the others
    are ranked among themselves.
    """
    means = runs.groupby(["variant", "against"], sort=False)[metric].mean().unstack("against")
    return means.rank(ascending=not higher_is_better, method="min", na_option="keep").astype("Int64")


def difference_beyond_noise(stats: pd.DataFrame, variant: str, baseline: str = "none") -> dict:
    """Is a variant's mean different from the baseline's by more than seed noise?

    The rule chapter 07 states: the difference of the means counts as beyond
    noise when it exceeds twice the larger of the two standard deviations over
    training seeds. With a single seed (NaN standard deviations) nothing can be
    told apart from seed-to-seed variation, and ``beyond_noise`` is None.

    Parameters
    ----------
    stats : DataFrame
        Indexed by variant, with ``mean`` and ``std`` (over training seeds).

    Returns
    -------
    dict
        ``difference`` (variant − baseline), ``spread`` (the larger std, NaN
        with one seed) and ``beyond_noise`` (bool, or None with one seed).
    """
    d = float(stats.loc[variant, "mean"] - stats.loc[baseline, "mean"])
    spread = float(max(stats.loc[variant, "std"], stats.loc[baseline, "std"]))
    if np.isnan(spread):
        return {"difference": d, "spread": float("nan"), "beyond_noise": None}
    return {"difference": d, "spread": spread, "beyond_noise": abs(d) > 2 * spread}
