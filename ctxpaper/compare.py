"""Comparisons across trained runs: Table 2 over training seeds, against observed and latent labels.

Paper §4.4 (Table 2: five losses compared by their macro metrics) and beyond
it. The paper reports one number per loss; here each loss is trained with
several seeds and scored against the observed labels (what the paper could
see) and, on the simulated world, the latent ones (the truth), so a
comparison needs a spread and a rule. Pure functions of run tables (one row
per run, as :meth:`ctxpaper.runs.Run.grid` makes them: the compared column
:data:`LOSS`, ``train_seed``, ``against`` and metric columns); nothing
here trains or loads a run.

* :func:`mean_sd`, :func:`format_mean_sd`, :func:`seed_stats` — mean and
  sample standard deviation over training seeds;
* :func:`apparent_vs_true`, :func:`truth_gap` — changes from No Weights, and
  differences between the two label sets;
* :func:`difference_beyond_noise` — the chapter's rule for "different":
  more than twice the larger standard deviation over seeds;
* :func:`loss_ranks`, :func:`sweep_ranks`, :func:`ranking_agreement`,
  :func:`order_text` — rankings, per construction threshold, and whether
  they agree;
* Markdown formatters for chapter 07's sentences (``*_text`` and
  ``*_markdown``): each states numbers computed by the functions above,
  with their source.

Notebooks: ``06_weighted_cross_entropy``, ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .truth import AGAINST
from .world import PAPER_MIN_PLAYLISTS

__all__ = ["LOSS", "BASELINE", "mean_sd", "format_mean_sd", "seed_stats", "apparent_vs_true",
           "truth_gap", "difference_beyond_noise", "loss_ranks", "sweep_ranks", "order_text",
           "ranking_agreement", "missing_by_threshold", "change_text", "changes_markdown",
           "recovery_markdown", "separation_text", "moves_text", "ordering_markdown",
           "seed_spread_text", "threshold_missing_markdown", "interval_text", "intervals_markdown",
           "numbered", "precision_point", "recovery_point", "detector_point", "thresholds_point"]

#: The column naming what the runs compare (a loss, in chapters 06–07).
LOSS = "loss"
#: The run every change is measured from (Table 2's "No Weights").
BASELINE = "none"
#: Columns of a run table that are not metrics.
_KEYS = (LOSS, "train_seed", "against", "best_epoch")


def _name(names: Mapping[str, str] | None, v: str) -> str:
    return str(v) if names is None else names.get(v, str(v))


# --------------------------------------------------------------------------
# over training seeds
# --------------------------------------------------------------------------

def mean_sd(runs: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Mean and sample standard deviation over training seeds.

    Parameters
    ----------
    runs : DataFrame
        One row per (loss, train_seed, against).
    metrics : iterable of str, optional
        Metric columns (default: every column but the keys).

    Returns
    -------
    DataFrame
        Indexed by (against, loss) in order of appearance, two column
        levels: metric × {"mean", "sd"} (sd is NaN with a single seed).
    """
    metrics = list(metrics) if metrics is not None else [c for c in runs.columns if c not in _KEYS]
    g = runs.groupby(["against", LOSS], sort=False)[metrics]
    out = pd.concat({"mean": g.mean(), "sd": g.std(ddof=1)}, axis=1)
    out.columns = out.columns.swaplevel(0, 1)
    return out[[(m, s) for m in metrics for s in ("mean", "sd")]]


def format_mean_sd(summary: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``mean ± sd`` strings of a :func:`mean_sd` table (just the mean when there is one seed)."""
    metrics = list(dict.fromkeys(summary.columns.get_level_values(0)))
    out = pd.DataFrame(index=summary.index, columns=metrics, dtype=object)
    for m in metrics:
        mean, sd = summary[(m, "mean")], summary[(m, "sd")]
        out[m] = [f"{a:.{digits}f}" if np.isnan(b) else f"{a:.{digits}f} ± {b:.{digits}f}"
                  for a, b in zip(mean, sd)]
    return out


def seed_stats(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """Mean and sample sd over training seeds of one column, per loss.

    Parameters
    ----------
    runs : DataFrame
        One row per (loss, train_seed), e.g. :meth:`ctxpaper.runs.Run.cell_grid`
        output, or one label set of a run table.
    column : str

    Returns
    -------
    DataFrame
        Indexed by loss (order of appearance): ``mean``, ``sd`` (NaN with
        one seed) and ``seeds``.
    """
    if "against" in runs.columns and runs["against"].nunique() > 1:
        raise ValueError("runs hold several label sets (against); select one before seed_stats")
    g = runs.groupby(LOSS, sort=False)[column]
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "seeds": g.count()})


def difference_beyond_noise(stats: pd.DataFrame, loss: str, baseline: str = BASELINE) -> dict:
    """Is a loss's mean different from the baseline's by more than seed noise?

    The rule chapter 07 states: the difference of the means counts as beyond
    noise when it exceeds twice the larger of the two standard deviations over
    training seeds. With a single seed (NaN standard deviations) nothing can be
    told apart from seed-to-seed variation, and ``beyond_noise`` is None.

    Parameters
    ----------
    stats : DataFrame
        Indexed by loss, with ``mean`` and ``sd`` over training seeds
        (:func:`seed_stats`).
    loss, baseline : str

    Returns
    -------
    dict
        ``difference`` (loss − baseline), ``spread`` (the larger sd, NaN
        with one seed) and ``beyond_noise`` (bool, or None with one seed or an
        undefined mean).
    """
    for v in (loss, baseline):
        if v not in stats.index:
            raise ValueError(f"{v!r} is not among the compared runs ({', '.join(map(str, stats.index))})")
    d = float(stats.loc[loss, "mean"] - stats.loc[baseline, "mean"])
    spread = float(max(stats.loc[loss, "sd"], stats.loc[baseline, "sd"]))
    if np.isnan(spread) or np.isnan(d):
        return {"difference": d, "spread": float("nan"), "beyond_noise": None}
    return {"difference": d, "spread": spread, "beyond_noise": bool(abs(d) > 2 * spread)}


# --------------------------------------------------------------------------
# observed against latent labels
# --------------------------------------------------------------------------

def _check_both(runs: pd.DataFrame) -> None:
    if not {LOSS, "against"} <= set(runs.columns) or not set(AGAINST) <= set(runs["against"]):
        raise ValueError("runs must be Run.grid output with against = observed and latent")


def apparent_vs_true(runs: pd.DataFrame, metrics: Iterable[str] = ("Precision", "TN rate", "Recall"),
                     baseline: str = BASELINE) -> pd.DataFrame:
    """Change of each metric from the baseline loss, against observed and latent labels.

    Parameters
    ----------
    runs : DataFrame
        Run table (:data:`LOSS`, ``train_seed``, ``against`` and metric
        columns), with both ``observed`` and ``latent``.
    metrics : iterable of str
    baseline : str
        The loss the changes are measured from (Table 2's "No Weights").

    Returns
    -------
    DataFrame
        Indexed by (metric, loss), columns: ``observed`` and ``latent``
        (the loss's mean over training seeds), ``change (observed)`` and
        ``change (latent)`` (mean over training seeds of the loss's value
        minus the baseline's with the same training seed), ``sd (observed)``
        and ``sd (latent)`` (their sample standard deviation, NaN with one
        seed), and
        ``share explained by missing labels`` = 1 − change (latent) / change
        (observed): the part of the apparent change that is an artefact of the
        missing labels (NaN when the apparent change is below 1e-9 in size).
    """
    _check_both(runs)
    if baseline not in set(runs[LOSS]):
        raise ValueError(f"baseline loss {baseline!r} is not in the runs")
    out = []
    for m in metrics:
        per_seed = runs.pivot_table(index=[LOSS, "train_seed"], columns="against", values=m)
        base = per_seed.loc[baseline]
        for v in dict.fromkeys(runs[LOSS]):
            own = per_seed.loc[v]
            # Paired by training seed (same initialisation and batch order).
            diff = (own - base.reindex(own.index)).dropna()
            obs, lat = own["observed"].mean(), own["latent"].mean()
            d_obs, d_lat = diff["observed"].mean(), diff["latent"].mean()
            share = 1.0 - d_lat / d_obs if abs(d_obs) > 1e-9 else np.nan
            sd = diff.std(ddof=1) if len(diff) > 1 else pd.Series(np.nan, index=diff.columns)
            out.append({"metric": m, LOSS: v, "observed": obs, "latent": lat,
                        "change (observed)": d_obs, "sd (observed)": sd["observed"],
                        "change (latent)": d_lat, "sd (latent)": sd["latent"],
                        "share explained by missing labels": share})
    return pd.DataFrame(out).set_index(["metric", LOSS])


def truth_gap(runs: pd.DataFrame, metric: str) -> pd.Series:
    """Per loss, mean ``metric`` against the latent labels minus against the observed ones.

    Means over training seeds, in the runs' loss order.
    """
    _check_both(runs)
    means = runs.groupby([LOSS, "against"], sort=False)[metric].mean().unstack("against")
    return (means["latent"] - means["observed"]).rename(f"{metric}: latent − observed")


# --------------------------------------------------------------------------
# rankings
# --------------------------------------------------------------------------

def loss_ranks(runs: pd.DataFrame, metric: str, higher_is_better: bool = True) -> pd.DataFrame:
    """Rank (1 = best) of each loss's mean ``metric``, against observed and against latent labels.

    A loss whose metric is undefined in every seed (precision of a model
    that never predicts a positive, say) has no rank (``<NA>``); the others
    are ranked among themselves. Ties share the best rank.
    """
    means = runs.groupby([LOSS, "against"], sort=False)[metric].mean().unstack("against")
    return means.rank(ascending=not higher_is_better, method="min", na_option="keep").astype("Int64")


def sweep_ranks(runs: pd.DataFrame, metrics: Iterable[str] = ("F1", "AUC"),
                higher_is_better: bool = True) -> pd.DataFrame:
    """Rank (1 = best mean over training seeds) of each loss, per threshold and truth.

    Parameters
    ----------
    runs : DataFrame
        A run table with a ``min_playlists`` column (the construction
        threshold each run's data was built with; :func:`ctxpaper.runs.threshold_grid`).
    metrics : iterable of str
        Metric columns to rank by.
    higher_is_better : bool

    Returns
    -------
    DataFrame
        Indexed by (metric, loss) in the runs' loss order; columns a
        MultiIndex (against, min_playlists). Ties share the best rank.
    """
    if "min_playlists" not in runs.columns:
        raise ValueError("runs must be threshold_grid output (no min_playlists column)")
    order = list(dict.fromkeys(runs[LOSS]))
    out = {}
    for m in metrics:
        per_k = {k: loss_ranks(part, m, higher_is_better)
                 for k, part in runs.groupby("min_playlists", sort=True)}
        table = pd.concat(per_k, axis=1, names=["min_playlists", "against"])
        out[m] = table.swaplevel(0, 1, axis=1).sort_index(axis=1).reindex(order)
    return pd.concat(out, names=["metric", LOSS])


def order_text(rank: pd.Series) -> str:
    """Losses best first: ``a > b = c`` (``=`` joins tied ranks).

    Unranked losses (metric undefined, rank ``<NA>``) follow as
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
        losses, best first, as one string, :func:`order_text`),
        ``same as at 3 (observed)`` and ``same as at 3 (latent)`` (the ranking
        equals that of the paper's threshold), and ``observed = latent``.
    """
    rows = []
    for m in dict.fromkeys(ranks.index.get_level_values("metric")):
        r = ranks.loc[m]
        ks = sorted(set(r.columns.get_level_values("min_playlists")))
        if PAPER_MIN_PLAYLISTS not in ks:
            raise ValueError("the ranks hold no column for the paper's threshold 3")
        for k in ks:
            row = {"metric": m, "min_playlists": k}
            for a in AGAINST:
                row[a] = order_text(r[(a, k)])
                row[f"same as at 3 ({a})"] = bool(r[(a, k)].equals(r[(a, PAPER_MIN_PLAYLISTS)]))
            row["observed = latent"] = bool(r[("observed", k)].equals(r[("latent", k)]))
            rows.append(row)
    return pd.DataFrame(rows).set_index(["metric", "min_playlists"])


def missing_by_threshold(sweep_runs: pd.DataFrame) -> pd.Series:
    """The test tracks' missing share per construction threshold, from a training sweep's rows."""
    if not {"min_playlists", "missing_rate"} <= set(sweep_runs.columns):
        raise ValueError("sweep_runs must be threshold_grid output (min_playlists and missing_rate columns)")
    return sweep_runs.drop_duplicates("min_playlists").set_index("min_playlists")["missing_rate"].sort_index()


# --------------------------------------------------------------------------
# Markdown formatters (chapter 07's sentences)
# --------------------------------------------------------------------------

def change_text(changes: pd.DataFrame, metric: str, loss: str) -> str:
    """One metric's change from the baseline, observed and true, with the sd over seeds when known.

    Parameters
    ----------
    changes : DataFrame
        :func:`apparent_vs_true` output.
    """
    r = changes.loc[(metric, loss)]
    sd = "" if np.isnan(r["sd (observed)"]) else f" (sd {r['sd (observed)']:.3f} / {r['sd (latent)']:.3f})"
    return (f"{metric} {r['change (observed)']:+.3f} against the observed labels, "
            f"{r['change (latent)']:+.3f} against the truth{sd}")


def changes_markdown(changes: pd.DataFrame, losses: Sequence[str], source: str,
                     metrics: Sequence[str] = ("Precision", "TN rate"),
                     names: Mapping[str, str] | None = None) -> str:
    """A bullet per loss: :func:`change_text` of each metric.

    Parameters
    ----------
    changes : DataFrame
        :func:`apparent_vs_true` output.
    losses : sequence of str
        The losses to list, in order (usually all but the baseline).
    source : str
        Where the runs come from, and how many seeds (put in brackets).
    metrics : sequence of str
    names : mapping, optional
        Display name of each loss (e.g. ``experiment.VARIANT_LABELS``).
    """
    lines = [f"* **{_name(names, v)}**: " + "; ".join(change_text(changes, m, v) for m in metrics) + "."
             for v in losses]
    return f"Changes from No Weights, mean over training seeds ({source}):\n\n" + "\n".join(lines)


def recovery_markdown(means: pd.DataFrame, losses: Sequence[str], source: str,
                      baseline: str = BASELINE, names: Mapping[str, str] | None = None) -> str:
    """A bullet per loss: recall of missing positives, false alarms and AUC, beside the baseline's.

    Parameters
    ----------
    means : DataFrame
        Indexed by loss: the mean over training seeds of the
        :func:`ctxpaper.truth.cell_recovery` columns.
    losses : sequence of str
    source : str
        Where the runs come from, and how many seeds.
    baseline : str
    names : mapping, optional
        Display name of each loss.
    """
    base = means.loc[baseline]
    lines = []
    for v in losses:
        r = means.loc[v]
        lines.append(
            f"* **{_name(names, v)}**: recall of missing positives {r['missing positive predicted positive']:.1%} "
            f"({_name(names, baseline)}: {base['missing positive predicted positive']:.1%}), true negatives "
            f"predicted positive {r['true negative predicted positive']:.1%} "
            f"({base['true negative predicted positive']:.1%}); missing-vs-true-negative AUC "
            f"{r['missing vs true negative AUC']:.3f} ({base['missing vs true negative AUC']:.3f}).")
    return f"Means over {source}:\n\n" + "\n".join(lines)


def separation_text(stats: pd.DataFrame, loss: str, baseline: str = BASELINE,
                    what: str = "AUC") -> str:
    """The difference of a loss from the baseline, judged by :func:`difference_beyond_noise`.

    Parameters
    ----------
    stats : DataFrame
        :func:`seed_stats` of the compared column.
    loss, baseline : str
    what : str
        The compared quantity, as named in the sentence.
    """
    r = difference_beyond_noise(stats, loss, baseline)
    if r["beyond_noise"] is None:
        return (f"a difference of {r['difference']:+.3f} in {what} from a single training seed, which "
                "cannot be told apart from seed-to-seed variation")
    verdict = "larger than" if r["beyond_noise"] else "within"
    return (f"a difference of {r['difference']:+.3f} in {what}, {verdict} twice the larger standard "
            f"deviation over seeds ({r['spread']:.3f})")


def moves_text(agreement: pd.DataFrame, metric: str, against: str) -> str:
    """Whether the order of the losses by ``metric`` is the paper's threshold's at every threshold.

    Parameters
    ----------
    agreement : DataFrame
        :func:`ranking_agreement` output.
    """
    same = agreement.loc[metric, f"same as at 3 ({against})"]
    changed = [k for k, ok in same.items() if not ok]
    if not changed:
        return "the same at every threshold"
    return (f"different from threshold 3's at threshold{'s' if len(changed) > 1 else ''} "
            + " and ".join(map(str, changed)))


def ordering_markdown(agreement: pd.DataFrame, source: str, n_seeds: int,
                      metrics: Sequence[str] = ("F1", "AUC")) -> str:
    """The threshold sweep's orders in words, with the caveat its seeds allow.

    Parameters
    ----------
    agreement : DataFrame
        :func:`ranking_agreement` of one training seed per (threshold, loss).
    source : str
        Where the sweep's runs come from.
    n_seeds : int
        Training seeds of the main runs (the rank table at threshold 3); with
        fewer than 2, no seed-to-seed spread is known.
    metrics : sequence of str
    """
    n_k = len(set(agreement.index.get_level_values("min_playlists")))
    lines = [f"* **{m}**: the order is {moves_text(agreement, m, 'observed')} against the observed labels "
             f"and {moves_text(agreement, m, 'latent')} against the truth; the observed and latent orders "
             f"agree at {int(agreement.loc[m, 'observed = latent'].sum())} of {n_k} thresholds."
             for m in metrics]
    caveat = ("With one training seed per cell these are single draws: an order that changes between "
              "thresholds, or between the two label sets, through differences smaller than the "
              "seed-to-seed spread above is as consistent with noise as with an effect of the missingness. "
              f"At threshold 3 the order can also differ from the rank table further up, which averages "
              f"{n_seeds} training seeds." if n_seeds > 1 else
              "With one training seed per cell and no seed-to-seed spread measured on this profile, none "
              "of these orders can be told apart from training noise.")
    return f"Measured ({source}):\n\n" + "\n".join(lines) + "\n\n" + caveat


def seed_spread_text(runs: pd.DataFrame, losses: Sequence[str], source: str,
                     metrics: Sequence[str] = ("F1", "AUC")) -> str:
    """The range of the sd over training seeds of the given losses' metrics ("" with one seed).

    Parameters
    ----------
    runs : DataFrame
        The run table at the paper's threshold, both label sets.
    losses : sequence of str
        The losses the range is taken over.
    source : str
    metrics : sequence of str
        The first two are named in the sentence.
    """
    n = runs["train_seed"].nunique()
    if n < 2:
        return ""
    sd = runs[runs[LOSS].isin(losses)].groupby(["against", LOSS])[list(metrics)].std(ddof=1)
    m1, m2 = metrics[0], metrics[1]
    return (f"For scale: at threshold 3, the standard deviation of a loss's macro {m1} over chapter 06's "
            f"{n} training seeds is {sd[m1].min():.3f} to {sd[m1].max():.3f}, of "
            f"its {m2} {sd[m2].min():.3f} to {sd[m2].max():.3f} ({source}, both label sets).")


def threshold_missing_markdown(missing: pd.Series, source: str, spread: str = "") -> str:
    """The missing share at each construction threshold, then the seed spread for scale.

    Parameters
    ----------
    missing : Series
        :func:`missing_by_threshold` output.
    source : str
    spread : str
        :func:`seed_spread_text` (may be empty).
    """
    return ("Share of the test tracks' true positives missing from their observed labels: "
            + ", ".join(f"{missing[k]:.1%} at threshold {k}" for k in missing.index)
            + f" ({source}; each threshold has its own selection of tracks). " + spread)


def interval_text(summary: pd.DataFrame, fraction: float, detector: str, metric: str = "roc_auc") -> str:
    """``mean ± half-width`` of a detector's metric in a :func:`ctxpaper.missing.summarise` table."""
    r = summary.loc[(fraction, detector)]
    return f"{r[metric]:.3f} ± {r[f'{metric} ±95%']:.3f}"


def intervals_markdown(summary: pd.DataFrame, fraction: float, detectors: Sequence[str], source: str,
                       n_repeats: int) -> str:
    """Every detector's ROC-AUC at one hidden fraction, and the highest.

    Parameters
    ----------
    summary : DataFrame
        :func:`ctxpaper.missing.summarise` output.
    fraction : float
        The share of positives hidden.
    detectors : sequence of str
        Their order in the sentence.
    source : str
    n_repeats : int
        Random maskings per fraction.
    """
    top = summary.loc[fraction]["roc_auc"].idxmax()
    return (f"With {fraction:.0%} of the positives hidden ({source}, {n_repeats} maskings), ROC-AUC is "
            + ", ".join(f"{interval_text(summary, fraction, n)} for *{n}*" for n in detectors)
            + f". The highest is *{top}*.")


def numbered(points: Sequence[str]) -> str:
    """A Markdown numbered list, one paragraph per point."""
    return "\n\n".join(f"{i}. {t}" for i, t in enumerate(points, 1))


# --------------------------------------------------------------------------
# chapter 07's conclusions, one point each
# --------------------------------------------------------------------------

def precision_point(runs: pd.DataFrame, changes: pd.DataFrame, loss: str, source: str,
                    names: Mapping[str, str] | None = None, baseline: str = BASELINE) -> str:
    """Conclusion: missing labels lower the measured precision, and by how much for ``loss``.

    Parameters
    ----------
    runs : DataFrame
        Run table with both label sets.
    changes : DataFrame
        :func:`apparent_vs_true` of ``runs`` with Precision and TN rate.
    loss : str
        The weighted loss whose changes are quoted.
    source : str
    names : mapping, optional
        Display name of each loss.
    baseline : str
    """
    gap = truth_gap(runs, "Precision")
    p, tn = changes.loc[("Precision", loss)], changes.loc[("TN rate", loss)]
    sd = ("" if np.isnan(p["sd (observed)"]) else
          f" (sd over seeds of the precision change: {p['sd (observed)']:.3f} observed, "
          f"{p['sd (latent)']:.3f} latent)")
    return (f"**Missing labels lower the measured precision.** Against the truth, precision is higher than "
            f"against the observed labels for {int((gap > 0).sum())} of the {len(gap)} losses "
            f"(by {gap.min():+.3f} to {gap.max():+.3f}; {source}). This is expected by construction: a "
            "prediction on a missing positive is counted false against the observed labels and true against "
            "the truth. What the paper could not know is the size of the effect on its comparison: the "
            f"precision change of {_name(names, loss)} from {_name(names, baseline)} is "
            f"{p['change (observed)']:+.3f} against the observed labels and {p['change (latent)']:+.3f} "
            f"against the truth; its TN-rate change is {tn['change (observed)']:+.3f} and "
            f"{tn['change (latent)']:+.3f}{sd}. The table of changes gives every loss and metric.")


def recovery_point(means: pd.DataFrame, auc: pd.DataFrame, loss: str, source: str,
                   names: Mapping[str, str] | None = None, baseline: str = BASELINE) -> str:
    """Conclusion: does ``loss`` find the missing positives or predict more positives everywhere?

    Parameters
    ----------
    means : DataFrame
        As in :func:`recovery_markdown`.
    auc : DataFrame
        :func:`seed_stats` of ``"missing vs true negative AUC"``.
    loss, source, names, baseline
        As in :func:`precision_point`.
    """
    r, b = means.loc[loss], means.loc[baseline]
    base = _name(names, baseline)
    return (f"**Recovering missing positives.** {_name(names, loss)} predicts *positive* for "
            f"{r['missing positive predicted positive']:.1%} of the missing positives "
            f"({base}: {b['missing positive predicted positive']:.1%}), but also for "
            f"{r['true negative predicted positive']:.1%} of the true negatives "
            f"({base}: {b['true negative predicted positive']:.1%}). Whether it *finds* the "
            f"missing positives, rather than predicting more positives everywhere, is the AUC between the two "
            f"(missing positives vs true negatives), compared with {base}: "
            f"{separation_text(auc, loss, baseline)} ({source}).")


def detector_point(weights: pd.DataFrame, detection: pd.DataFrame, detectors: Sequence[str],
                   sim_source: str, real_source: str, n_repeats: int, fraction: float = 0.1) -> str:
    """Conclusion: eq. 3's ``1 - w̄`` as a detector, on the simulated truth and on hidden real positives.

    Parameters
    ----------
    weights : DataFrame
        :func:`ctxpaper.truth.training_weight_detection` of the exact-match
        and ignore-zeros losses, in that order.
    detection : DataFrame
        :func:`ctxpaper.missing.summarise` on the real labels.
    detectors : sequence of two str
        The names, in ``detection``, of the exact-match and ignore-zeros detectors.
    sim_source, real_source : str
    n_repeats : int
        Random maskings per fraction.
    fraction : float
        The hidden fraction quoted.
    """
    exact, iz = detectors
    return (f"**Eq. 3 as a detector.** On the simulated labels, where the truth is known, 1 − w̄ ranks the truly "
            f"missing zeros with ROC-AUC {weights['roc_auc'].iloc[0]:.3f} (exact match) and "
            f"{weights['roc_auc'].iloc[1]:.3f} (ignore zeros) ({sim_source}); on the real labels with "
            f"{fraction:.0%} of the positives hidden at random, {interval_text(detection, fraction, exact)} and "
            f"{interval_text(detection, fraction, iz)} (95% intervals over {n_repeats} maskings, {real_source}). "
            "Labels missing *at random* and labels lost by the construction rule are different problems: "
            "a detector that does well on the first need not on the second.")


def thresholds_point(agreement: pd.DataFrame, source: str, compared: str = "the losses") -> str:
    """Conclusion: the F1 and AUC orders under the other construction thresholds (one seed each).

    Parameters
    ----------
    agreement : DataFrame
        :func:`ranking_agreement` with F1 and AUC.
    source : str
    compared : str
        What the order is of (e.g. "No Weights and the two negative weightings").
    """
    others = [str(k) for k in sorted(set(agreement.index.get_level_values("min_playlists")))
              if k != PAPER_MIN_PLAYLISTS]
    if not others:
        raise ValueError("the agreement holds no threshold besides the paper's 3")
    ks = others[0] if len(others) == 1 else ", ".join(others[:-1]) + " and " + others[-1]
    return (f"**Other thresholds.** Retrained at threshold{'s' if len(others) > 1 else ''} {ks} "
            f"(one training seed each), the F1 order of {compared} is {moves_text(agreement, 'F1', 'latent')} "
            f"against the truth and {moves_text(agreement, 'F1', 'observed')} against the observed labels; "
            f"the AUC order is {moves_text(agreement, 'AUC', 'latent')} against the truth and "
            f"{moves_text(agreement, 'AUC', 'observed')} against the observed labels ({source}). With a single "
            "seed per threshold each order is a single draw, not an estimate with an uncertainty.")
