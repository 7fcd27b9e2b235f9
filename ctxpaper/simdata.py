"""The simulated dataset the training chapters use (paper §3 → §4.1, simulated).

One cached chain, shared by chapters 04–07 so that features are extracted
once:

1. the simulated world and the dataset the paper's procedure builds from it
   (:func:`ctxpaper.world.simulated_dataset`);
2. balanced as in §3.2 (:func:`ctxpaper.balance.balance`) with the cap scaled
   to the world, ``round(20000 × world_scale)`` (as chapters 02–03 do), and
   split 65/10/25 without shared artists (:func:`ctxpaper.splits.make_split`);
3. ``profile.n_tracks`` of the balanced tracks kept, drawn at random within
   each subset in proportion to its size (so the split's proportions and its
   artist-disjointness survive): :func:`simulated_selection`;
4. their previews synthesised from the latent contexts
   (:class:`ctxpaper.synth.SimulatedPreviews`) and turned into 646 × 96
   log-mel patches in a resumable feature store
   (:func:`ctxpaper.features.build_feature_store`): :func:`simulated_features`.

Importing this module does not import Keras.

Notebooks: ``04_from_ids_to_spectrograms`` to ``07_missing_labels``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cache import artifact_dir, build_once
from .contexts import CONTEXTS
from .fsio import atomic_path, params_key
from .profiles import Profile, validate_params

__all__ = ["Selection", "select_tracks", "simulated_selection", "simulated_features",
           "features_params"]

#: Bump when the selection stage changes what it writes.
SELECTION_VERSION = "1"
_COLS = list(CONTEXTS)


@dataclass
class Selection:
    """The tracks of a simulated run and everything known about them.

    Attributes
    ----------
    split : DataFrame
        Indexed by ``track_id`` (the selected tracks): ``subset`` (train,
        validation, test), ``fold``, ``artist_id``.
    labels, counts : DataFrame
        Observed (constructed) labels (bool) and playlist counts (int) of the
        selected tracks, :data:`CONTEXTS` columns, indexed like ``split``.
    latent : DataFrame
        The complete (true) labels of the selected tracks.
    reference_labels, reference_counts : DataFrame
        Every balanced track: what the loss weights are fitted on.
    """

    split: pd.DataFrame
    labels: pd.DataFrame
    counts: pd.DataFrame
    latent: pd.DataFrame
    reference_labels: pd.DataFrame
    reference_counts: pd.DataFrame

    def ids(self, subset: str) -> np.ndarray:
        """Track ids of one subset, in ``split`` order."""
        if subset not in ("train", "validation", "test"):
            raise ValueError(f"unknown subset {subset!r}")
        return self.split.index[self.split["subset"] == subset].to_numpy(np.int64)


def select_tracks(split: pd.DataFrame, n_tracks: int | None, seed: int) -> pd.Index:
    """``n_tracks`` ids drawn at random within each subset, proportionally.

    Parameters
    ----------
    split : DataFrame
        Indexed by track id, with a ``subset`` column.
    n_tracks : int or None
        How many to keep (None, or more than there are: all).
    seed : int

    Returns
    -------
    Index
        The kept ids, in ``split`` order. Each subset keeps
        ``round(n_tracks × its share)`` tracks (the rounding remainder goes to
        or comes from train), at least one if it had any.
    """
    n = len(split)
    if n_tracks is None or n_tracks >= n:
        return split.index
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, (int, np.integer)) or n_tracks < 3:
        raise ValueError(f"n_tracks must be an integer >= 3 or None, got {n_tracks!r}")
    rng = np.random.default_rng([seed, 2])
    sizes = split["subset"].value_counts()
    want = {s: max(1, int(round(n_tracks * sizes.get(s, 0) / n))) if sizes.get(s, 0) else 0
            for s in ("validation", "test")}
    want["train"] = n_tracks - sum(want.values())
    keep = np.zeros(n, bool)
    subset = split["subset"].to_numpy()
    for s, k in want.items():
        pos = np.flatnonzero(subset == s)
        keep[rng.choice(pos, size=min(k, len(pos)), replace=False)] = True
    return split.index[keep]


def _selection_params(P: Profile, seed: int, min_playlists: int = 3) -> dict[str, Any]:
    from .world import PAPER_MIN_PLAYLISTS, WORLD_VERSION, check_min_playlists

    params = {"world_scale": P.world_scale, "world_version": WORLD_VERSION, "seed": seed,
              "n_tracks": P.n_tracks, "cap": max(1, round(20000 * P.world_scale))}
    # Only a non-paper threshold enters the key: the paper's keeps the
    # entries (and the trained models downstream) made before it could vary.
    if check_min_playlists(min_playlists) != PAPER_MIN_PLAYLISTS:
        params["min_playlists"] = int(min_playlists)
    return params


def simulated_selection(profile: str | Profile, seed: int = 0, min_playlists: int = 3) -> Selection:
    """The balanced, split and subsampled simulated tracks of (profile, seed); cached.

    ``min_playlists`` is the construction threshold of
    :func:`ctxpaper.world.simulated_dataset` (paper: 3).
    """
    from . import balance, splits, world

    P, seed = validate_params(profile, seed)
    params = _selection_params(P, seed, min_playlists)

    def build(tmp: Path) -> None:
        w, ds = world.simulated_dataset(P, seed, min_playlists)
        kept = balance.balance(ds.labels, cap=params["cap"], seed=seed)
        labels = ds.labels.loc[kept, _COLS]
        artist = w.tracks["artist_id"].reindex(labels.index)
        sp = splits.make_split(labels, artist, seed)
        sp["artist_id"] = artist.to_numpy()
        chosen = select_tracks(sp, P.n_tracks, seed)
        table = pd.concat(
            {"split": sp[["subset", "fold", "artist_id"]].astype({"subset": str}),
             "labels": labels, "counts": ds.counts.loc[kept, _COLS],
             "latent": w.latent.loc[kept, _COLS]}, axis=1)
        table[("selected", "")] = table.index.isin(chosen)
        table.columns = ["/".join(c).rstrip("/") for c in table.columns]
        with atomic_path(tmp / "balanced.parquet") as t:
            table.to_parquet(t)

    d = build_once("sim_selection", params, build, version=SELECTION_VERSION)
    return _read_selection(d / "balanced.parquet")


def _read_selection(path: Path) -> Selection:
    table = pd.read_parquet(path)

    def part(prefix: str) -> pd.DataFrame:
        cols = [f"{prefix}/{c}" for c in CONTEXTS]
        out = table[cols]
        out.columns = _COLS
        return out

    sel = table["selected"].to_numpy(bool)
    split = table.loc[sel, ["split/subset", "split/fold", "split/artist_id"]]
    split.columns = ["subset", "fold", "artist_id"]
    labels, counts, latent = part("labels"), part("counts"), part("latent")
    return Selection(split=split, labels=labels[sel], counts=counts[sel], latent=latent[sel],
                     reference_labels=labels, reference_counts=counts)


def features_params(P: Profile, seed: int, min_playlists: int = 3) -> dict[str, Any]:
    """What the simulated features depend on (their cache key).

    The threshold ``min_playlists`` enters through the selection's key (and
    only when it is not the paper's 3).
    """
    from . import audio, synth

    return {"selection": params_key(_selection_params(P, seed, min_playlists)),
            "feature_params": audio.FEATURE_PARAMS,
            "synth_version": synth.SYNTH_VERSION}


def simulated_features(profile: str | Profile, seed: int = 0, workers: int = 2,
                       progress: bool = True, min_playlists: int = 3):
    """The feature store of the selected simulated tracks (built once, resumable).

    ``min_playlists``: the construction threshold (see :func:`simulated_selection`).

    Returns
    -------
    ctxpaper.features.FeatureStore
        Rows in sorted track-id order, each the full 646 × 96 patch.
    """
    from . import features, synth, world

    P, seed = validate_params(profile, seed)
    sel = simulated_selection(P, seed, min_playlists)
    d = artifact_dir("sim_features", features_params(P, seed, min_playlists))
    store_dir = d / "store"
    if (store_dir / "meta.json").exists():
        with contextlib.suppress(features.StoreError):  # another version or damaged: rebuilt below
            store = features.FeatureStore(store_dir)
            if store.complete:
                return store
    w, _ = world.simulated_dataset(P, seed, min_playlists)
    source = synth.SimulatedPreviews.from_world(w, seed)
    ids = np.sort(sel.split.index.to_numpy(np.int64))
    return features.build_feature_store(ids, source, store_dir, workers=workers, progress=progress)
