"""Table 2 on the simulated world: loss variants × training seeds (paper §4.4).

Trains (or loads from the cache) each loss variant with several training
seeds on the same simulated data and scores the test tracks with the metrics
of Table 1; :mod:`ctxpaper.compare` aggregates them over seeds. The scores
can be measured against the **observed** labels (what the paper's procedure
produced, as the paper had) or against the **latent** labels (the complete
truth that only the simulation knows).

Notebooks: ``06_weighted_cross_entropy``, ``07_missing_labels``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .metrics import MACRO, per_context_metrics
from .profiles import Profile, validate_params
from .truth import AGAINST


def train_seeds(seed: int, n_seeds: int) -> list[int]:
    """Training seeds of a run: ``seed, seed + 1, …``; the first is chapter 05's."""
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    return [seed + k for k in range(n_seeds)]


def run_metrics(run, against: str = "observed", subset: str = "test") -> pd.DataFrame:
    """Table 1 metrics of one trained run, against observed or latent labels."""
    if against not in AGAINST:
        raise ValueError(f"against must be one of {AGAINST}, got {against!r}")
    truth = run.labels[subset] if against == "observed" else run.latent[subset]
    return per_context_metrics(truth, run.scores[subset])


def collect(
    profile: str | Profile,
    seed: int,
    variants: Iterable[str],
    n_seeds: int | None = None,
    against: Iterable[str] = AGAINST,
    progress: bool = True,
    min_playlists: int = 3,
) -> pd.DataFrame:
    """Macro metrics of every (variant, training seed), trained or loaded.

    Parameters
    ----------
    profile, seed
        The simulated data (world, split, features) and the first training seed.
    variants : iterable of str
        Loss variants of :mod:`ctxpaper.experiment`.
    n_seeds : int, optional
        Training seeds per variant; default the profile's ``n_seeds``.
    against : iterable of {"observed", "latent"}
    min_playlists : int
        Construction threshold of the simulated dataset (paper: 3, the runs
        of chapters 05–06).

    Returns
    -------
    DataFrame
        One row per (variant, train_seed, against): the macro-average
        metrics (columns of :func:`ctxpaper.metrics.per_context_metrics`) and
        ``best_epoch``.
    """
    from .experiment import train_variant

    P, seed = validate_params(profile, seed)
    rows = []
    for variant in variants:
        for ts in train_seeds(seed, P.n_seeds if n_seeds is None else n_seeds):
            run = train_variant(P, seed, variant, train_seed=ts, progress=progress,
                                min_playlists=min_playlists)
            for a in against:
                macro = run_metrics(run, a).loc[MACRO]
                rows.append({"variant": variant, "train_seed": ts, "against": a,
                             "best_epoch": run.best_epoch, **macro.to_dict()})
    return pd.DataFrame(rows)
