"""One trained CNN per (profile, seed, loss): the paper's experiment as one call (§4.1–4.4).

:func:`train_variant` is the public front of :class:`ctxpaper.runs.Run` kept
for readers' own code: ``train_variant(profile, seed, variant)`` is
``Run.of(profile, seed, data_source).train(variant)``. The chain behind it
(world or released files → balancing → split → selection → previews →
features → training) and its cache keys live in :mod:`ctxpaper.runs`; the
losses (Table 2's five rows and chapter 07's extra ones) in
:mod:`ctxpaper.losses`.

Notebooks: ``05_cnn_baseline`` to ``07_missing_labels`` (through :mod:`ctxpaper.runs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .losses import ALL_LOSSES, EXTRA_LOSSES, LABELS, TABLE2_LOSSES
from .profiles import Profile
from .runs import Run, TrainedRun

__all__ = ["VARIANTS", "EXTRA_VARIANTS", "ALL_VARIANTS", "VARIANT_LABELS", "train_variant", "run_dir",
           "train_config"]

#: Table 2's rows (:data:`ctxpaper.losses.TABLE2_LOSSES`).
VARIANTS = TABLE2_LOSSES
#: Chapter 07's extra losses (:data:`ctxpaper.losses.EXTRA_LOSSES`).
EXTRA_VARIANTS = EXTRA_LOSSES
ALL_VARIANTS = ALL_LOSSES
#: Row names of Table 2 (:data:`ctxpaper.losses.LABELS`).
VARIANT_LABELS = LABELS


def train_variant(profile: str | Profile, seed: int, variant: str, *, train_seed: int | None = None,
                  model_variant: str = "paper", progress: bool = True, min_playlists: int = 3,
                  data_source: str = "simulated") -> TrainedRun:
    """The CNN of one loss trained on the run of (profile, seed, data_source).

    Parameters
    ----------
    profile : str or Profile
        Sizes: ``n_tracks``, ``frames``, ``max_epochs``, ``patience``, ``batch_size``.
    seed : int
        Seed of the data: world, balancing, split, selection, previews.
    variant : str
        The loss, one of :data:`ALL_VARIANTS` (Table 2's rows and chapter 07's
        extra losses).
    train_seed : int, optional
        Seed of the training (initial weights, dropout, shuffling); default ``seed``.
    model_variant : {"paper", "released_code"}
        The architecture (:data:`ctxpaper.model.ARCHITECTURE_DIFFERENCES`).
    progress : bool
        Progress bars for fetching, feature extraction and training.
    min_playlists : int
        Construction threshold of the simulated dataset (paper: 3).
    data_source : {"simulated", "released"}
        The simulated world, or the authors' released tracks with their
        Deezer previews (``$CTXPAPER_DEEZER_URL`` for a local rehearsal server).

    Returns
    -------
    ctxpaper.runs.TrainedRun
        Cached: the first call builds what is missing and trains; later calls load.
    """
    run = Run.of(profile, seed, data_source, min_playlists)
    return run.train(variant, train_seed=train_seed, architecture=model_variant, progress=progress)


def run_dir(profile: str | Profile, seed: int, variant: str, *, train_seed: int | None = None,
            model_variant: str = "paper", min_playlists: int = 3) -> Path:
    """The cache folder of :func:`train_variant`'s simulated run, computed without training."""
    return Run.of(profile, seed, "simulated", min_playlists).run_dir(
        variant, train_seed=train_seed, architecture=model_variant)


def train_config(profile: str | Profile, train_seed: int, model_variant: str = "paper",
                 variant: str = "none") -> Any:
    """The :class:`ctxpaper.train.TrainConfig` :func:`train_variant` trains (and loads) with.

    Parameters
    ----------
    profile : str or Profile
    train_seed : int
    model_variant : {"paper", "released_code"}
    variant : str
        The loss (:data:`ALL_VARIANTS`); it chooses the training objective.
    """
    return Run.of(profile).train_config(variant, train_seed, model_variant)
