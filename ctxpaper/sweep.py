"""The construction threshold varied, run by run (beyond the paper, after §3.1 and §4.3–4.4).

Orchestration only: :func:`simulated_sweep` applies
:func:`ctxpaper.truth.missingness_sweep` to the simulated world of a
(profile, seed), and :func:`training_sweep` retrains the loss variants of
Table 2 on the dataset each threshold builds (balanced, split, features, CNN:
the chain of :mod:`ctxpaper.experiment`). Their outputs are analysed by
:mod:`ctxpaper.truth` and :mod:`ctxpaper.compare` (:func:`ctxpaper.compare.sweep_ranks`,
:func:`ctxpaper.compare.ranking_agreement`).

Notebook: ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .missing import Detector
from .truth import missing_share, missingness_sweep

__all__ = ["simulated_sweep", "training_sweep"]


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
        rate = missing_share(sel.labels.loc[test], sel.latent.loc[test])
        runs.insert(0, "min_playlists", k)
        runs["missing_rate"] = rate
        parts.append(runs)
    return pd.concat(parts, ignore_index=True)
