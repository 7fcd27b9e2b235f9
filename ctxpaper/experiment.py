"""One trained CNN per (profile, seed, loss variant): the glue of chapters 05–07.

Paper §4.1 (the baseline, Table 1) and §4.2–4.4 (the weighted losses,
Table 2), run on the simulated world where the complete labels are known:

1. the simulated tracks, their split and their log-mel features
   (:mod:`ctxpaper.simdata`: world → §3 construction → balancing → artist-disjoint
   split → ``profile.n_tracks`` tracks → synthesised previews → features);
2. the CNN trained on the centred ``profile.frames``-frame crop of each patch
   (:func:`ctxpaper.train.crop_offset`) with the loss weights of the variant,
   then its scores on the validation and test tracks saved.

Each step is cached (:mod:`ctxpaper.cache`): selection and features once per
(profile, seed), a training once per (profile, seed, variant, training seed).
A second call of :func:`train_variant` loads; it never retrains.

Loss variants (Table 2's rows):

============================  ===========================  =============================
variant                       positive weights ω (eq. 4)   negative weights ω̄ (eq. 3)
============================  ===========================  =============================
``none``                      1                            1
``neg_exact``                 1                            exact match
``neg_ignore_zeros``          1                            ignore zeros
``both_exact``                tf-idf                       exact match
``both_ignore_zeros``         tf-idf                       ignore zeros
============================  ===========================  =============================

As the authors did, the weights are fitted on every track of the (balanced)
dataset, test tracks included (``reference`` of :mod:`ctxpaper.weights`).

Beyond the paper (chapter 07), :data:`EXTRA_VARIANTS` are later losses for
multi-label learning with missing labels (:mod:`ctxpaper.mlml`), trained and
scored the same way:

============  ===============================================================
variant       loss
============  ===============================================================
``wan``       eq. 2 with ω = 1 and ω̄ = 1 / 14 on every zero (weak assume
              negative, Cole et al., 2021)
``asl``       asymmetric loss (Ridnik et al., 2021), γ- = 4, margin 0.05
``em``        entropy maximisation on the zeros (Zhou et al., 2022), α = 0.1
============  ===============================================================

The Table 2 variants' training configurations, and so their cache entries, are
unchanged by the extra variants (:meth:`ctxpaper.train.TrainConfig.as_dict`).

Notebooks: ``05_cnn_baseline``, ``06_weighted_cross_entropy``, ``07_missing_labels``.
"""

from __future__ import annotations

import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import model as _model  # sets KERAS_BACKEND before keras is imported
from . import train as _train
from .cache import artifact_dir, entry_path
from .contexts import CONTEXTS
from .fsio import atomic_path, params_key
from .profiles import Profile, validate_params
from .simdata import Selection, features_params, simulated_features, simulated_selection

__all__ = [
    "VARIANTS", "EXTRA_VARIANTS", "ALL_VARIANTS", "VARIANT_LABELS", "VARIANT_LOSS", "VariantRun",
    "loss_weights", "train_config", "run_variant", "train_variant", "run_dir",
]

VARIANTS = ("none", "neg_exact", "neg_ignore_zeros", "both_exact", "both_ignore_zeros")
#: Row names of the paper's Table 2 for each variant.
VARIANT_LABELS = {
    "none": "No Weights",
    "neg_exact": "Negative Weights (exact match)",
    "neg_ignore_zeros": "Negative Weights (ignore zeros)",
    "both_exact": "Both Weights (exact match)",
    "both_ignore_zeros": "Both Weights (ignore zeros)",
    "wan": "Weak assume negative (Cole et al., 2021)",
    "asl": "Asymmetric loss (Ridnik et al., 2021)",
    "em": "Entropy maximisation (Zhou et al., 2022)",
}
#: Chapter 07's extra rows: missing-label losses from later work (not in the paper).
EXTRA_VARIANTS = ("wan", "asl", "em")
ALL_VARIANTS = VARIANTS + EXTRA_VARIANTS
#: Training loss (:data:`ctxpaper.train.LOSSES`) of each variant.
VARIANT_LOSS = {**{v: "weighted_bce" for v in VARIANTS}, "wan": "weighted_bce", "asl": "asl", "em": "em"}
#: Bump when the training stage changes what it writes.
TRAIN_VERSION = "3"  # 3: fused ConvReLUPool blocks (same function; 2: channels-first convolutions)
#: Cache stage of the trained runs.
RUN_STAGE = "sim_train"
_COLS = list(CONTEXTS)


# ----------------------------------------------------------------------------
# weights and training
# ----------------------------------------------------------------------------

def loss_weights(variant: str, labels: pd.DataFrame, counts: pd.DataFrame,
                 reference_labels: pd.DataFrame, reference_counts: pd.DataFrame
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weights (n, 15) of a loss variant.

    Parameters
    ----------
    variant : str
        One of :data:`ALL_VARIANTS`. ``asl`` and ``em`` read the labels only:
        their weights are ones (packed but unused).
    labels, counts : DataFrame
        The tracks to weight.
    reference_labels, reference_counts : DataFrame
        What the co-occurrence (eq. 3) and tf-idf (eq. 4) statistics are fitted on.

    Returns
    -------
    (w_pos, w_neg) : two float arrays (n, 15)
    """
    from . import weights

    _check_variant(variant)
    n = len(labels)
    ones = np.ones((n, len(CONTEXTS)))
    if variant in ("none", "asl", "em"):
        return ones, ones.copy()
    if variant == "wan":
        from .mlml import wan_negative_weights

        return ones, wan_negative_weights(labels[_COLS].to_numpy(bool))
    mode = "exact" if variant.endswith("_exact") else "ignore_zeros"
    w_neg = np.asarray(weights.negative_weights(labels[_COLS], mode, reference=reference_labels[_COLS]),
                       dtype=np.float64)
    if variant.startswith("neg_"):
        return ones, w_neg
    w_pos = np.asarray(weights.positive_weights(counts[_COLS], labels[_COLS],
                                                reference=(reference_counts[_COLS], reference_labels[_COLS])),
                       dtype=np.float64)
    return w_pos, w_neg


def _check_variant(variant: str) -> None:
    if variant not in ALL_VARIANTS:
        raise ValueError(f"unknown loss variant {variant!r}: choose one of {', '.join(ALL_VARIANTS)}")


def train_config(profile: str | Profile, train_seed: int, model_variant: str = "paper",
                 loss: str = _train.DEFAULT_LOSS) -> _train.TrainConfig:
    """The :class:`ctxpaper.train.TrainConfig` of a profile (paper's optimiser settings).

    ``loss`` is the variant's :data:`VARIANT_LOSS` (eq. 2 for Table 2's rows).
    """
    P = validate_params(profile, 0)[0]
    return _train.TrainConfig(frames=P.frames, max_epochs=P.max_epochs, patience=P.patience,
                              batch_size=P.batch_size, variant=model_variant, seed=int(train_seed),
                              loss=loss)


@dataclass
class VariantRun:
    """A trained model and its scores.

    Attributes
    ----------
    variant : str
    model : keras.Model
        Best-epoch weights.
    history : DataFrame
        Training curves (see :class:`ctxpaper.train.TrainResult`).
    best_epoch : int
    stop_reason : str
    scores : dict of DataFrame
        ``"validation"`` and ``"test"``: sigmoid outputs, indexed by track id,
        :data:`CONTEXTS` columns.
    labels, latent : dict of DataFrame
        Observed and true labels of the same tracks, aligned with ``scores``.
    directory : pathlib.Path
        The cache entry.
    profile, seed : str, int or None
        The data's profile and seed when the run came from :func:`train_variant`.
    """

    variant: str
    model: Any
    history: pd.DataFrame
    best_epoch: int
    stop_reason: str
    scores: dict[str, pd.DataFrame]
    labels: dict[str, pd.DataFrame]
    latent: dict[str, pd.DataFrame]
    directory: Path
    profile: str | None = None
    seed: int | None = None


def _rows_of(store: Any, ids: np.ndarray, subset: str) -> np.ndarray:
    try:
        return store.index_of(ids)
    except KeyError as e:
        raise ValueError(f"{subset} tracks without features in the feature store: {e}") from None


def run_variant(store: Any, selection: Selection, variant: str, config: _train.TrainConfig,
                directory: str | os.PathLike[str], progress: bool = True) -> VariantRun:
    """Train one variant on a feature store (or load it) and score validation and test.

    Parameters
    ----------
    store : FeatureStore-like
        ``.features`` (n, frames, 96) array and ``.index_of(ids)``.
    selection : Selection
    variant : str
        One of :data:`ALL_VARIANTS`.
    config : TrainConfig
        Its ``loss`` must be the variant's (:data:`VARIANT_LOSS`).
    directory : path
        Persistent directory of this run (training state in ``run/``, scores
        in ``scores.parquet``). A finished run is loaded, never retrained.
    """
    directory = Path(directory)
    _check_variant(variant)
    if config.loss != VARIANT_LOSS[variant]:
        raise ValueError(f"variant {variant!r} trains with loss {VARIANT_LOSS[variant]!r}, "
                         f"the config has {config.loss!r}")
    ids = {s: selection.ids(s) for s in ("train", "validation", "test")}
    for s, v in ids.items():
        if len(v) == 0:
            raise ValueError(f"the selection has no {s} tracks")
    rows = {s: _rows_of(store, v, s) for s, v in ids.items()}
    feats = store.features
    scores_path = directory / "scores.parquet"

    if scores_path.exists():
        result = _train.load_trained(directory / "run", config)
        table = pd.read_parquet(scores_path)
    else:
        for s in rows:
            _train.check_features(feats, rows[s], config.frames, ids=ids[s])
        w_pos, w_neg = loss_weights(variant, selection.labels, selection.counts,
                                    selection.reference_labels, selection.reference_counts)
        pos = {s: selection.labels.index.get_indexer(ids[s]) for s in ids}
        y = selection.labels.to_numpy(bool)

        def batches(s: str, shuffle: int | None) -> _train.FeatureBatches:
            p = pos[s]
            return _train.FeatureBatches(feats, rows[s], _model.pack_targets(y[p], w_pos[p], w_neg[p]),
                                         config.batch_size, config.frames, shuffle_seed=shuffle,
                                         ids=ids[s])

        result = _train.train(batches("train", config.seed), batches("validation", None),
                              directory / "run", config, progress=progress)
        parts = []
        for s in ("validation", "test"):
            p = _train.predict(result.model, _train.FeatureBatches(feats, rows[s], None, config.batch_size,
                                                                    config.frames, ids=ids[s]))
            parts.append(pd.DataFrame(p, index=pd.Index(ids[s], name="track_id"), columns=_COLS)
                         .assign(subset=s))
        table = pd.concat(parts)
        with atomic_path(scores_path) as t:
            table.to_parquet(t)

    scores, labels, latent = {}, {}, {}
    for s in ("validation", "test"):
        part = table[table["subset"] == s][_COLS]
        scores[s] = part
        labels[s] = selection.labels.loc[part.index]
        latent[s] = selection.latent.loc[part.index]
    return VariantRun(variant=variant, model=result.model, history=result.history,
                      best_epoch=result.best_epoch, stop_reason=result.stop_reason, scores=scores,
                      labels=labels, latent=latent, directory=directory)


def train_variant(profile: str | Profile, seed: int, variant: str, *, train_seed: int | None = None,
                  model_variant: str = "paper", progress: bool = True,
                  min_playlists: int = 3) -> VariantRun:
    """The CNN of one loss variant trained on the simulated run of (profile, seed).

    Parameters
    ----------
    profile : str or Profile
        Sizes: ``n_tracks``, ``frames``, ``max_epochs``, ``patience``, ``batch_size``.
    seed : int
        Seed of the data: world, balancing, split, selection, previews.
    variant : str
        Loss variant, one of :data:`ALL_VARIANTS` (Table 2's rows and chapter
        07's extra losses).
    train_seed : int, optional
        Seed of the training (initial weights, dropout, shuffling); defaults to
        ``seed``. Chapters 06–07 vary it to repeat a row over ``n_seeds``.
    model_variant : {"paper", "released_code"}
        See :data:`ctxpaper.model.VARIANT_DIFFERENCES`.
    progress : bool
        Progress bars for feature extraction and training.
    min_playlists : int
        Construction threshold of the simulated dataset (paper: 3; chapter
        07 varies it). The default's cache entries are those of chapters 05–06.

    Returns
    -------
    VariantRun
        Cached: the first call builds the features (once per profile and
        seed) and trains; later calls load.
    """
    P, seed = validate_params(profile, seed)
    config, params = _run_key(P, seed, variant, train_seed, model_variant, min_playlists)
    store = simulated_features(P, seed, progress=progress, min_playlists=min_playlists)
    selection = simulated_selection(P, seed, min_playlists)
    directory = artifact_dir(RUN_STAGE, params, version=TRAIN_VERSION)
    run = run_variant(store, selection, variant, config, directory, progress=progress)
    return dataclasses.replace(run, profile=P.name, seed=seed)


def _run_key(P: Profile, seed: int, variant: str, train_seed: int | None,
             model_variant: str, min_playlists: int = 3) -> tuple[_train.TrainConfig, dict[str, Any]]:
    _check_variant(variant)
    tseed = seed if train_seed is None else int(train_seed)
    config = train_config(P, tseed, model_variant, loss=VARIANT_LOSS[variant])
    # The threshold reaches this key through the features' key only.
    params = {"features": params_key(features_params(P, seed, min_playlists)), "variant": variant,
              "train": config.as_dict()}
    return config, params


def run_dir(profile: str | Profile, seed: int, variant: str, *, train_seed: int | None = None,
            model_variant: str = "paper", min_playlists: int = 3) -> Path:
    """The cache folder of :func:`train_variant`'s run, computed without training.

    The folder exists only once that run has been started (e.g. by chapter 05).
    """
    P, seed = validate_params(profile, seed)
    return entry_path(RUN_STAGE, _run_key(P, seed, variant, train_seed, model_variant, min_playlists)[1],
                      TRAIN_VERSION)
