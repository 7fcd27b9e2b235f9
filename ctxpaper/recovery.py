"""Trained models against the truth, run by run (beyond §4.4).

:func:`collect_recovery` trains or loads every (variant, training seed) run
and applies :func:`ctxpaper.truth.cell_recovery` to its test scores. The
pure analysis lives in :mod:`ctxpaper.truth` (observed vs latent labels) and
:mod:`ctxpaper.compare` (comparisons across runs).

Notebook: ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .truth import cell_recovery

__all__ = ["collect_recovery"]


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
