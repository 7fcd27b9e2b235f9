"""Runs of the paper's experiment: one value, its cached chain, its grid (§3 → §4.4).

A :class:`Run` is one run of the experiment of chapters 04–07: a resolved
:class:`~ctxpaper.profiles.Profile`, a data ``seed``, a ``source`` and the
construction threshold ``min_playlists``. It knows its selection, its feature
store, its trained models and every cache key on the way:

==============  =====================================================================
stage           what it holds (``source="simulated"`` | ``source="released"``)
==============  =====================================================================
``world``       the simulated world and the §3.1 construction on its catalogue
                (:mod:`ctxpaper.world`, :func:`ctxpaper.playlists.build_dataset`) | —
``selection``   balanced (§3.2, :func:`ctxpaper.balance.balance`), split 65/10/25
                without shared artists (§4.1, :func:`ctxpaper.splits.make_split`),
                ``profile.n_tracks`` drawn within each subset | the authors' official
                split (fold 0 = test), ``profile.n_tracks`` drawn within each subset,
                stratified on the labels
``previews``    synthesised from the latent contexts (:mod:`ctxpaper.synth`) | 30 s
                Deezer previews through :mod:`ctxpaper.deezer`, resumable
``features``    646 × 96 log-mel patches in a resumable feature store
``train``       one CNN per (loss, training seed, architecture), scores on
                validation and test (:mod:`ctxpaper.train`)
==============  =====================================================================

Every stage's cache key is built in this module (``_*_key`` below) with its
version in :data:`STAGE_VERSIONS`, side by side, so one place says which edit
reuses and which invalidates a cached model. (The keys were redesigned once,
when this module replaced ``simdata``/``experiment``; entries made before are
not reused.)

The grid of a run — loss × training seed (:meth:`Run.grid`), and the
construction threshold varied (:func:`threshold_grid`) — trains or loads each
cell; analyses of its output live in :mod:`ctxpaper.truth` and
:mod:`ctxpaper.compare`.

Importing this module does not import Keras: :meth:`Run.train` does.

Notebooks: ``03_balancing_and_splitting`` (the run's split), ``04_from_ids_to_spectrograms``
to ``07_missing_labels``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import PROJECT_ROOT, audio, balance, data, deezer, device, features, losses, splits, synth
from . import world as _world
from .cache import artifact_dir, build_once, cache_root, entry_path
from .contexts import CONTEXTS
from .fsio import atomic_path, params_key, read_json
from .metrics import MACRO, per_context_metrics
from .paper import DATASET_FACTS
from .playlists import ConstructedDataset, build_dataset
from .profiles import Profile, get_profile, validate_seed
from .truth import cell_recovery, missing_summary

__all__ = ["SOURCES", "STAGE_VERSIONS", "AGAINST", "Selection", "Run", "TrainedRun", "provenance",
           "select_tracks", "threshold_grid"]

#: Where a run's tracks, labels and audio come from.
SOURCES = ("simulated", "released")
#: Truths a score can be measured against: the observed labels (all a real
#: dataset has) and the latent ones (only the simulated world knows them).
AGAINST = ("observed", "latent")
#: Bump a stage's version when its code changes what it writes; every stage
#: downstream gets a new key through the upstream key it contains.
STAGE_VERSIONS = {
    "world": "3",      # 3: track tables in track-id order
    "selection": "2",  # 2: one key for both sources (the run layer)
    "features": "2",   # 2: the previews' identity (synth version or preview sha256s) in the key
    "train": "4",      # 4: the run layer's keys; 3: fused ConvReLUPool blocks
}
#: The §3.1 construction of the paper besides its threshold (Table in ch. 02).
CONSTRUCTION = {"max_tracks": 100, "max_share": 0.25}
_COLS = list(CONTEXTS)
_SUBSETS = splits.SUBSETS
#: Preview manifests fetched in this process, by (selection key, API root, folder).
_FETCHED: dict[tuple[str, str, str], pd.DataFrame] = {}


def _upstream(stage: str, key: dict[str, Any]) -> str:
    """An upstream stage as a downstream key holds it: its cache entry's name (key and version).

    Holding the version too is what makes a bump of :data:`STAGE_VERSIONS`
    reach every stage downstream.
    """
    return params_key({"params": key, "version": STAGE_VERSIONS[stage]})


def provenance(source: str, profile: Profile | str | None = None, seed: int | None = None, *,
               train_seeds: Iterable[int] | None = None, detail: str = "") -> str:
    """Where a number comes from, in the words every chapter uses.

    >>> provenance("simulated", "quick", 0)
    'simulated run (profile quick, seed 0)'
    """
    name = profile.name if isinstance(profile, Profile) else profile
    what = {"simulated": "simulated run", "released": "released-data run",
            "paper": "the paper", "labels": "real released labels"}[source]
    parts = [f"profile {name}" if name else "", f"seed {seed}" if seed is not None else ""]
    if train_seeds is not None:
        ts = list(train_seeds)
        parts.append(f"{len(ts)} training seed{'s' if len(ts) != 1 else ''} ({', '.join(map(str, ts))})")
    parts.append(detail)
    inside = ", ".join(p for p in parts if p)
    return f"{what} ({inside})" if inside else what


@dataclass
class Selection:
    """The tracks of a run and everything known about them.

    Attributes
    ----------
    split : DataFrame
        Indexed by ``track_id`` (the selected tracks): ``subset`` (train,
        validation, test), ``fold``, ``artist_id``.
    labels, counts : DataFrame
        Observed labels (bool) and playlist counts (int) of the selected
        tracks, :data:`CONTEXTS` columns, indexed like ``split``.
    latent : DataFrame or None
        The complete (true) labels of the selected tracks; None for the
        released source, where nobody knows them.
    reference_labels, reference_counts : DataFrame
        Every balanced track: what the loss weights are fitted on (as the
        authors did, test tracks included).
    excluded : int
        Balanced tracks left out of every subset (the released tracks in no
        fold; 0 for the simulated source).
    full_split : DataFrame or None
        The split of every balanced track in a subset, before ``profile.n_tracks``
        were drawn from it (what chapter 03 shows).
    """

    split: pd.DataFrame
    labels: pd.DataFrame
    counts: pd.DataFrame
    latent: pd.DataFrame | None
    reference_labels: pd.DataFrame
    reference_counts: pd.DataFrame
    excluded: int = 0
    full_split: pd.DataFrame | None = None

    def ids(self, subset: str) -> np.ndarray:
        """Track ids of one subset, in ``split`` order."""
        if subset not in _SUBSETS:
            raise ValueError(f"unknown subset {subset!r}: choose one of {', '.join(_SUBSETS)}")
        return self.split.index[self.split["subset"] == subset].to_numpy(np.int64)

    def restrict(self, ids: np.ndarray | pd.Index) -> Selection:
        """The same selection with only the tracks in ``ids`` (those with features, say)."""
        keep = self.split.index.isin(np.asarray(ids))
        idx = self.split.index[keep]
        return dataclasses.replace(
            self, split=self.split.loc[idx], labels=self.labels.loc[idx], counts=self.counts.loc[idx],
            latent=None if self.latent is None else self.latent.loc[idx])

    def sizes(self) -> pd.Series:
        """Tracks per subset, in :data:`ctxpaper.splits.SUBSETS` order."""
        return self.split["subset"].astype(str).value_counts().reindex(list(_SUBSETS), fill_value=0)


def select_tracks(split: pd.DataFrame, n_tracks: int | None, seed: int,
                  labels: pd.DataFrame | None = None) -> pd.Index:
    """``n_tracks`` ids drawn within each subset, in proportion to its size.

    Parameters
    ----------
    split : DataFrame
        Indexed by track id, with a ``subset`` column.
    n_tracks : int or None
        How many to keep, at least 3 (None, or more than there are: all).
    seed : int
    labels : DataFrame, optional
        When given, each subset's draw is stratified on these labels
        (:func:`ctxpaper.splits.iterative_group_stratification`, one track per
        group) instead of uniform.

    Returns
    -------
    Index
        The kept ids, in ``split`` order. Each subset keeps
        ``round(n_tracks × its share)`` tracks (the rounding remainder goes to
        or comes from train), at least one if it had any.
    """
    n = len(split)
    if n_tracks is None:
        return split.index
    # Fewer than 3 would leave train empty (validation and test keep one each).
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, (int, np.integer)) or n_tracks < 3:
        raise ValueError(f"n_tracks must be an integer >= 3 or None, got {n_tracks!r}")
    if n_tracks >= n:
        return split.index
    rng = np.random.default_rng([seed, 2])
    sizes = split["subset"].astype(str).value_counts()
    want = {s: max(1, int(round(n_tracks * sizes.get(s, 0) / n))) if sizes.get(s, 0) else 0
            for s in ("validation", "test")}
    want["train"] = n_tracks - sum(want.values())
    keep = np.zeros(n, bool)
    subset = split["subset"].astype(str).to_numpy()
    for s, k in want.items():
        pos = np.flatnonzero(subset == s)
        k = min(k, len(pos))
        if labels is None or k in (0, len(pos)):
            keep[rng.choice(pos, size=k, replace=False)] = True
            continue
        y = labels.loc[split.index[pos], _COLS].to_numpy(bool)
        fold = splits.iterative_group_stratification(y, np.arange(len(pos)), (k, len(pos) - k), seed=seed)
        chosen = pos[fold == 0]
        # The stratification meets its ratios up to a few tracks: trim or top
        # up at random so that the subset has exactly k.
        if len(chosen) > k:
            chosen = rng.choice(chosen, size=k, replace=False)
        elif len(chosen) < k:
            rest = np.setdiff1d(pos, chosen)
            chosen = np.concatenate([chosen, rng.choice(rest, size=k - len(chosen), replace=False)])
        keep[chosen] = True
    return split.index[keep]


@dataclass
class TrainedRun:
    """A trained model of a run and its scores.

    Attributes
    ----------
    run : Run
        The run whose data it was trained on.
    loss : str
        One of :data:`ctxpaper.losses.ALL_LOSSES`.
    train_seed : int
    architecture : str
        :data:`ctxpaper.model.ARCHITECTURES` entry.
    model : keras.Model
        Best-epoch weights.
    history : DataFrame
        Training curves (see :class:`ctxpaper.train.TrainResult`).
    best_epoch : int
    stop_reason : str
    scores : dict of DataFrame
        ``"validation"`` and ``"test"``: sigmoid outputs, indexed by track id,
        :data:`CONTEXTS` columns.
    labels : dict of DataFrame
        Observed labels of the same tracks, aligned with ``scores``.
    latent : dict of DataFrame or None
        True labels of the same tracks (None for the released source).
    directory : pathlib.Path
        The cache entry.
    """

    run: Run
    loss: str
    train_seed: int
    architecture: str
    model: Any
    history: pd.DataFrame
    best_epoch: int
    stop_reason: str
    scores: dict[str, pd.DataFrame]
    labels: dict[str, pd.DataFrame]
    latent: dict[str, pd.DataFrame] | None
    directory: Path

    @property
    def profile(self) -> str:
        """Name of the run's profile (for provenance records)."""
        return self.run.profile.name

    @property
    def seed(self) -> int:
        """The run's data seed."""
        return self.run.seed

    def metrics(self, against: str = "observed", subset: str = "test") -> pd.DataFrame:
        """Table 1 metrics of the scores, against the observed or the latent labels."""
        if against not in AGAINST:
            raise ValueError(f"against must be one of {AGAINST}, got {against!r}")
        if against == "latent" and self.latent is None:
            raise ValueError(f"a {self.run.source} run has no latent labels to score against")
        truth = (self.labels if against == "observed" else self.latent)[subset]
        return per_context_metrics(truth, self.scores[subset])


@dataclass(frozen=True)
class Run:
    """One run of the experiment: what its data is, resolved once.

    Build it with :meth:`Run.of` from notebook or command-line parameters;
    the library takes it as it is.

    Attributes
    ----------
    profile : Profile
        Sizes (tracks, frames, epochs, seeds).
    seed : int
        Seed of the data: world, balancing, split, selection, previews. The
        training seeds of the grid are ``seed, seed + 1, …``.
    source : {"simulated", "released"}
    min_playlists : int
        The §3.1 construction threshold (paper: 3); only the simulated
        source can vary it (the released labels were built with 3).
    deezer_url : str
        API root the released source fetches previews from (default
        ``$CTXPAPER_DEEZER_URL``, else the public API); not part of any cache
        key: the previews' checksums are.
    """

    profile: Profile
    seed: int
    source: str = "simulated"
    min_playlists: int = _world.PAPER_MIN_PLAYLISTS
    deezer_url: str = dataclasses.field(default_factory=lambda: deezer.default_base_url(), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.profile, Profile):
            raise TypeError(f"Run.profile must be a Profile (use Run.of for a name), got {self.profile!r}")
        if self.source not in SOURCES:
            raise ValueError(f"unknown data source {self.source!r}: choose one of {', '.join(SOURCES)}")
        if self.source == "released" and self.min_playlists != _world.PAPER_MIN_PLAYLISTS:
            raise ValueError("the released labels were built with min_playlists=3; only the simulated "
                             "source can vary the threshold")

    @classmethod
    def of(cls, profile: str | Profile, seed: int = 0, source: str = "simulated",
           min_playlists: int = _world.PAPER_MIN_PLAYLISTS) -> Run:
        """A run from parameters as a reader types them; every one validated here.

        Raises
        ------
        ValueError
            Naming the parameter: an unknown profile or source, a negative
            seed, a threshold below 1.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown data_source {source!r}: choose one of {', '.join(SOURCES)}")
        return cls(get_profile(profile), validate_seed(seed), source,
                   _world.check_min_playlists(min_playlists))

    def with_threshold(self, min_playlists: int) -> Run:
        """The same run with another construction threshold (chapter 07's sweep)."""
        return dataclasses.replace(self, min_playlists=_world.check_min_playlists(min_playlists))

    @property
    def has_truth(self) -> bool:
        """Whether the latent labels are known (the simulated source only)."""
        return self.source == "simulated"

    @property
    def against(self) -> tuple[str, ...]:
        """The truths this run's scores can be measured against."""
        return AGAINST if self.has_truth else ("observed",)

    @property
    def rehearsal(self) -> bool:
        """A released run whose previews come from somewhere other than the public API."""
        return self.source == "released" and self.deezer_url.rstrip("/") != deezer.DEFAULT_BASE_URL

    def provenance(self, train_seeds: Iterable[int] | None = None) -> str:
        """One phrase: source, profile, seed (and training seeds)."""
        detail = ""
        if self.min_playlists != _world.PAPER_MIN_PLAYLISTS:
            detail = f"min_playlists {self.min_playlists}"
        if self.rehearsal:
            detail = f"rehearsal previews from {self.deezer_url}"
        return provenance(self.source, self.profile, self.seed, train_seeds=train_seeds, detail=detail)

    def train_seeds(self, n_seeds: int | None = None) -> list[int]:
        """Training seeds of the grid: ``seed, seed + 1, …`` (the first is chapter 05's)."""
        n = self.profile.n_seeds if n_seeds is None else n_seeds
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
        return [self.seed + k for k in range(int(n))]

    # ------------------------------------------------------------------
    # cache keys, side by side
    # ------------------------------------------------------------------

    def _world_key(self) -> dict[str, Any]:
        return {"world_scale": float(self.profile.world_scale), "seed": self.seed,
                "construction": {"min_playlists": self.min_playlists, **CONSTRUCTION}}

    def _selection_key(self) -> dict[str, Any]:
        if self.source == "simulated":
            upstream = {"world": _upstream("world", self._world_key()), "cap": self.profile.balance_cap}
        else:
            upstream = {"released": data.data_hashes()["sha256"].to_dict()}
        return {"source": self.source, **upstream, "seed": self.seed, "n_tracks": self.profile.n_tracks}

    def _features_key(self, previews: dict[str, Any]) -> dict[str, Any]:
        return {"selection": _upstream("selection", self._selection_key()), "previews": previews,
                "feature_params": audio.FEATURE_PARAMS}

    def _simulated_previews(self) -> dict[str, Any]:
        return {"synth_version": synth.SYNTH_VERSION}

    def _train_key(self, features_key: dict[str, Any], loss: str, config: Any) -> dict[str, Any]:
        return {"features": _upstream("features", features_key), "loss": loss, "train": config.as_dict()}

    # ------------------------------------------------------------------
    # the chain
    # ------------------------------------------------------------------

    def world(self) -> tuple[_world.World, ConstructedDataset]:
        """The simulated world and the §3.1 construction on its catalogue; cached.

        Raises
        ------
        ValueError
            For a released run (it has no world).
        """
        if self.source != "simulated":
            raise ValueError("a released run has no simulated world")
        key = self._world_key()
        scale, construct = key["world_scale"], key["construction"]

        def build(tmp: Path) -> None:
            w = _world.make_world(scale, self.seed)
            _world.save_world(w, build_dataset(w.catalogue, **construct), tmp)

        d = build_once("world", key, build, version=STAGE_VERSIONS["world"])
        return _world.load_world(d, scale, self.seed, construct)

    def balanced(self) -> pd.Index:
        """The simulated tracks kept by the §3.2 balancing (cap: ``profile.balance_cap``)."""
        _, ds = self.world()
        return balance.balance(ds.labels, cap=self.profile.balance_cap, seed=self.seed)

    def selection(self) -> Selection:
        """The run's split, labels and reference labels; cached (see the module docstring)."""
        build = self._build_simulated_selection if self.source == "simulated" \
            else self._build_released_selection
        d = build_once("selection", self._selection_key(), build, version=STAGE_VERSIONS["selection"])
        return _read_selection(d / "selection.parquet")

    def _build_simulated_selection(self, tmp: Path) -> None:
        w, ds = self.world()
        kept = self.balanced()
        labels = ds.labels.loc[kept, _COLS]
        artist = w.tracks["artist_id"].reindex(labels.index)
        sp = splits.make_split(labels, artist, self.seed)
        sp["artist_id"] = artist.to_numpy()
        chosen = select_tracks(sp, self.profile.n_tracks, self.seed)
        _write_selection(tmp, sp, labels, ds.counts.loc[kept, _COLS], w.latent.loc[kept, _COLS], chosen)

    def _build_released_selection(self, tmp: Path) -> None:
        labels, counts, sp = data.load_labels(), data.load_counts(), data.load_split()
        sp = sp.astype({"subset": str})
        # The official split holds 48,582 of the 49,929 balanced tracks; the
        # rest (no artist id, no fold) stay only in the weights' reference.
        chosen = select_tracks(sp, self.profile.n_tracks, self.seed, labels=labels.loc[sp.index])
        _write_selection(tmp, sp, labels[_COLS], counts[_COLS], None, chosen)

    def previews_dir(self) -> Path:
        """Where the released source keeps its MP3s (:func:`ctxpaper.deezer.default_previews_dir`)."""
        return deezer.default_previews_dir()

    def fetch_previews(self, workers: int = deezer.DEFAULT_WORKERS, progress: bool = True) -> pd.DataFrame:
        """Fetch the selected tracks' previews (released source); resumable.

        Within one process the previews of a run are fetched and checked
        (sha256 against the manifest) once; later calls reuse that result, so
        training five losses does not hash every preview five times. A new
        process retries the ids that ended ``error``.

        Returns
        -------
        DataFrame
            One row per selected track: ``id``, ``status`` (``ok``,
            ``no_data``, ``no_preview``, ``error``), ``sha256`` …, and its ``subset``.
        """
        if self.source != "released":
            raise ValueError("only a released run fetches previews")
        where = (params_key(self._selection_key()), self.deezer_url, str(self.previews_dir()))
        if where in _FETCHED:
            return _FETCHED[where].copy()
        extracted = self._extracted_record()
        if extracted is not None:
            # The MP3s were deleted once their features were stored
            # (features(delete_previews=True)): the fetch is over.
            _FETCHED[where] = extracted
            return extracted.copy()
        sel = self.selection()
        ids = np.sort(sel.split.index.to_numpy(np.int64))
        client = deezer.DeezerClient(self.deezer_url)
        manifest = deezer.fetch_previews(ids, self.previews_dir(), client=client, workers=workers,
                                         progress=progress)
        manifest = manifest.set_index("id").reindex(ids)
        manifest["status"] = manifest["status"].fillna("error")
        manifest["subset"] = sel.split["subset"].reindex(ids).to_numpy()
        _FETCHED[where] = manifest = manifest.rename_axis("id").reset_index()
        return manifest.copy()

    def features(self, workers: int = 2, progress: bool = True,
                 fetch_workers: int = deezer.DEFAULT_WORKERS, delete_previews: bool = False):
        """The feature store of the selected tracks (built once, resumable).

        For the released source the previews are fetched first; tracks whose
        preview ended ``no_data``, ``no_preview`` or ``error`` are left out
        (see :meth:`preview_counts`). ``workers``: extraction processes;
        ``fetch_workers``: the Deezer client's threads. ``delete_previews``
        (released source): delete each MP3 once its features are stored and
        checksummed (30 s previews are ~0.48 MB each, ~24 GB for all tracks);
        the run then records its fetch as done, so nothing is fetched again.

        Returns
        -------
        ctxpaper.features.FeatureStore
            Rows in sorted track-id order, each the full 646 × 96 patch and
            how many of its frames hold audio.
        """
        if self.source == "simulated":
            ids = np.sort(self.selection().split.index.to_numpy(np.int64))
            key = self._features_key(self._simulated_previews())

            def source() -> Any:
                return synth.SimulatedPreviews.from_world(self.world()[0], self.seed)
        else:
            manifest = self.fetch_previews(workers=fetch_workers, progress=progress)
            ok = manifest[manifest["status"] == "ok"].sort_values("id")
            ids = ok["id"].to_numpy(np.int64)
            key = self._features_key({"deezer_previews": params_key(
                {"sha256": dict(zip(map(str, ids), ok["sha256"]))})})

            def source() -> Any:
                return features.PreviewFiles(self.previews_dir())
        store_dir = artifact_dir("features", key, STAGE_VERSIONS["features"]) / "store"
        deleting = delete_previews and self.source == "released"
        if (store_dir / "meta.json").exists() and not deleting:
            # A finished store is opened, not re-verified here: its rows are
            # checked against their checksums when training reads them. An
            # old-format or damaged store is rebuilt by build_feature_store.
            with contextlib.suppress(features.StoreError):
                store = features.FeatureStore(store_dir)
                if store.complete:
                    return store
        store = features.build_feature_store(ids, source(), store_dir, workers=workers, progress=progress,
                                             delete_sources=deleting)
        if deleting:
            self._record_extracted(manifest)
        return store

    def _extracted_path(self) -> Path:
        """Where a released run records a fetch whose MP3s were deleted after extraction."""
        where = params_key({"selection": self._selection_key(), "previews": str(self.previews_dir())})
        return cache_root() / "extracted" / f"{where}.parquet"

    def _record_extracted(self, manifest: pd.DataFrame) -> None:
        path = self._extracted_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            manifest.to_parquet(tmp)

    def _extracted_record(self) -> pd.DataFrame | None:
        path = self._extracted_path()
        return pd.read_parquet(path) if path.exists() else None

    def preview_counts(self, workers: int = deezer.DEFAULT_WORKERS, progress: bool = True) -> pd.DataFrame:
        """Selected tracks per subset and final preview status, beside the split's sizes (released source).

        Fetches what is missing first (:meth:`fetch_previews`). Rows: the
        subsets; columns: the four statuses (only ``ok`` tracks are trained
        and scored), the official split's sizes (the released files) and the
        paper's (§4.1: 65/10/25 of 49,929 tracks).
        """
        manifest = self.fetch_previews(workers=workers, progress=progress)
        table = pd.crosstab(manifest["subset"], manifest["status"]).reindex(
            index=list(_SUBSETS), columns=list(deezer.STATUSES), fill_value=0)
        table["official split (released files)"] = data.load_split()["subset"].value_counts()
        table["paper §4.1 (65/10/25 of 49,929)"] = [round(DATASET_FACTS["n_tracks"].value * share)
                                                   for share in DATASET_FACTS["split"].value]
        return table.rename_axis(index="subset", columns=None)

    def results_dir(self) -> Path:
        """Where this run's results tables are written as CSV (:meth:`export_table`)."""
        return cache_root() / "results" / f"{self.source}-{self.profile.name}-seed{self.seed}"

    def export_table(self, table: pd.DataFrame, name: str, header: dict[str, Any] | None = None) -> Path:
        """Write a results table as CSV with a provenance header; atomically.

        The header (``# key: value`` lines, read back with
        ``pd.read_csv(path, comment="#")``) names the source, profile, seed,
        the project's git commit, the training device, the time, and any
        ``header`` entries.

        Returns
        -------
        pathlib.Path
            ``results_dir() / f"{name}.csv"``.
        """
        if not name.replace("_", "").isalnum():
            raise ValueError(f"table name must be letters, digits and underscores, got {name!r}")
        header = {"source": self.source, "profile": self.profile.name, "seed": self.seed,
                  "provenance": self.provenance(), "commit": git_commit(), "device": device.describe(),
                  **({"previews_from": self.deezer_url} if self.source == "released" else {}),
                  "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(header or {})}
        dest = self.results_dir() / f"{name}.csv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.writelines(f"# {k}: {v}\n" for k, v in header.items())
                table.to_csv(fh, float_format="%.4f")
        return dest

    # ------------------------------------------------------------------
    # training and the grid
    # ------------------------------------------------------------------

    def train_config(self, loss: str, train_seed: int, architecture: str = "paper"):
        """The :class:`ctxpaper.train.TrainConfig` of this run (the paper's optimiser settings)."""
        from . import train as _train  # deferred: imports Keras

        P = self.profile
        return _train.TrainConfig(frames=P.frames, max_epochs=P.max_epochs, patience=P.patience,
                                  batch_size=P.batch_size, architecture=architecture, seed=int(train_seed),
                                  loss=losses.OBJECTIVE[losses.check_loss(loss)])

    def _train_key_of(self, loss: str, train_seed: int | None, architecture: str,
                      store_key: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        losses.check_loss(loss)
        ts = self.seed if train_seed is None else validate_seed(train_seed)
        config = self.train_config(loss, ts, architecture)
        if store_key is None:
            if self.source != "simulated":
                raise ValueError("the cache folder of a released run is known once its previews are fetched")
            store_key = self._features_key(self._simulated_previews())
        return config, self._train_key(store_key, loss, config)

    def run_dir(self, loss: str, *, train_seed: int | None = None, architecture: str = "paper") -> Path:
        """The cache folder of :meth:`train`'s model, computed without training (simulated source)."""
        return entry_path("train", self._train_key_of(loss, train_seed, architecture)[1],
                          STAGE_VERSIONS["train"])

    def train(self, loss: str, *, train_seed: int | None = None, architecture: str = "paper",
              progress: bool = True, workers: int = 2) -> TrainedRun:
        """The CNN trained with one loss on this run's data (cached: trains once, then loads).

        Parameters
        ----------
        loss : str
            One of :data:`ctxpaper.losses.ALL_LOSSES` (Table 2's rows and
            chapter 07's extra losses).
        train_seed : int, optional
            Initial weights, dropout and shuffling; default the run's seed.
        architecture : {"paper", "released_code"}
            See :data:`ctxpaper.model.ARCHITECTURE_DIFFERENCES`.
        progress : bool
            Progress bars for feature extraction and training.
        workers : int
            Processes for feature extraction.
        """
        # The loss, training seed and architecture are refused before any stage is built.
        self._train_key_of(loss, train_seed, architecture, store_key={})
        store = self.features(workers=workers, progress=progress)
        sel = self.selection().restrict(store.ids)
        key = store_key_of(store)
        config, params = self._train_key_of(loss, train_seed, architecture, key)
        directory = artifact_dir("train", params, version=STAGE_VERSIONS["train"])
        result, scores = _fit_and_score(store, sel, loss, config, directory, progress=progress)
        labels = {s: sel.labels.loc[scores[s].index] for s in scores}
        latent = None if sel.latent is None else {s: sel.latent.loc[scores[s].index] for s in scores}
        return TrainedRun(run=self, loss=loss, train_seed=config.seed, architecture=architecture,
                          model=result.model, history=result.history, best_epoch=result.best_epoch,
                          stop_reason=result.stop_reason, scores=scores, labels=labels, latent=latent,
                          directory=directory)

    def grid(self, losses_: Iterable[str], n_seeds: int | None = None, against: Iterable[str] | None = None,
             progress: bool = True) -> pd.DataFrame:
        """Macro metrics of every (loss, training seed), trained or loaded.

        Returns
        -------
        DataFrame
            One row per (loss, train_seed, against): the macro averages of
            :func:`ctxpaper.metrics.per_context_metrics` and ``best_epoch``.
            ``against`` defaults to :attr:`against` (observed and latent for
            a simulated run, observed only for a released one).
        """
        against = self.against if against is None else tuple(against)
        for a in against:  # before any training
            if a not in self.against:
                raise ValueError(f"a {self.source} run is scored against {' or '.join(self.against)}, "
                                 f"not {a!r}")
        rows = []
        for loss in _checked_losses(losses_):
            for ts in self.train_seeds(n_seeds):
                t = self.train(loss, train_seed=ts, progress=progress)
                for a in against:
                    rows.append({"loss": loss, "train_seed": ts, "against": a, "best_epoch": t.best_epoch,
                                 **t.metrics(a).loc[MACRO].to_dict()})
        return pd.DataFrame(rows)

    def cell_grid(self, losses_: Iterable[str], n_seeds: int | None = None, subset: str = "test",
                  progress: bool = True) -> pd.DataFrame:
        """:func:`ctxpaper.truth.cell_recovery` of every (loss, training seed) of :meth:`grid`."""
        if not self.has_truth:
            raise ValueError(f"a {self.source} run has no latent labels: cell recovery needs the truth")
        if subset not in ("validation", "test"):
            raise ValueError(f"subset must be 'validation' or 'test' (the scored ones), got {subset!r}")
        rows = []
        for loss in _checked_losses(losses_):
            for ts in self.train_seeds(n_seeds):
                t = self.train(loss, train_seed=ts, progress=progress)
                rows.append({"loss": loss, "train_seed": ts,
                             **cell_recovery(t.scores[subset], t.labels[subset], t.latent[subset])})
        return pd.DataFrame(rows)


def _fit_and_score(store: Any, sel: Selection, loss: str, config: Any, directory: Path,
                   progress: bool = True) -> tuple[Any, dict[str, pd.DataFrame]]:
    """Train one loss on a store (or load the finished model) and score validation and test.

    Tracks whose crop cannot be used (no audio, silence, a damaged row:
    :func:`ctxpaper.train.crop_problems`) are left out of every subset.
    """
    from . import model as _model  # deferred: imports Keras
    from . import train as _train

    scores_path = directory / "scores.parquet"
    if scores_path.exists():
        # A finished run: its scores name the tracks it used; no store row is read.
        result = _train.load_trained(directory / "run", config)
        table = pd.read_parquet(scores_path)
    else:
        ids = {s: sel.ids(s) for s in _SUBSETS}
        rows = {s: store.index_of(v) for s, v in ids.items()}
        for s in _SUBSETS:
            usable = _train.crop_problems(store, rows[s], config.frames) == ""
            ids[s], rows[s] = ids[s][usable], rows[s][usable]
            if len(ids[s]) == 0:
                raise ValueError(f"the run has no usable {s} tracks (features in {store.path})")
        w_pos, w_neg = losses.loss_weights(loss, sel.labels, sel.counts, sel.reference_labels,
                                           sel.reference_counts)
        pos = {s: sel.labels.index.get_indexer(ids[s]) for s in ids}
        y = sel.labels.to_numpy(bool)

        def batches(s: str, shuffle: int | None, targets: bool = True) -> Any:
            p = pos[s]
            packed = _model.pack_targets(y[p], w_pos[p], w_neg[p]) if targets else None
            return _train.FeatureBatches(store, rows[s], packed, config.batch_size, config.frames,
                                         shuffle_seed=shuffle, ids=ids[s])

        result = _train.train(batches("train", config.seed), batches("validation", None),
                              directory / "run", config, progress=progress)
        parts = [pd.DataFrame(_train.predict(result.model, batches(s, None, targets=False)),
                              index=pd.Index(ids[s], name="track_id"), columns=_COLS).assign(subset=s)
                 for s in ("validation", "test")]
        table = pd.concat(parts)
        with atomic_path(scores_path) as t:
            table.to_parquet(t)
    scores = {s: table[table["subset"] == s][_COLS] for s in ("validation", "test")}
    return result, scores


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The checkout's commit (``+dirty`` when it has changes), or ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def store_key_of(store: Any) -> dict[str, Any]:
    """The features key a store was built under (from its cache entry's ``params.json``)."""
    params = read_json(Path(store.path).parent / "params.json", "cache entry parameters")
    return params["params"]


def _checked_losses(names: Iterable[str]) -> list[str]:
    names = list(names)
    if not names:
        raise ValueError("name at least one loss")
    for n in names:
        losses.check_loss(n)
    return names


def threshold_grid(run: Run, thresholds: Iterable[int] = (2, 5),
                   losses_: Iterable[str] = ("none", "neg_exact", "neg_ignore_zeros"),
                   n_seeds: int = 1, progress: bool = False) -> pd.DataFrame:
    """Losses retrained with the construction threshold varied (chapter 07).

    For each threshold k the simulated world is tagged with
    ``min_playlists=k``, balanced, split, subsampled and featurised, and each
    loss is trained on it (:meth:`Run.grid`). The paper's threshold 3 is
    always included: its models are chapters 05–06's, loaded, not retrained.

    Returns
    -------
    DataFrame
        :meth:`Run.grid`'s columns, a ``min_playlists`` column first, and the
        test tracks' ``missing_rate`` (share of their latent positives absent
        from their observed labels).
    """
    if not run.has_truth:
        raise ValueError("the threshold sweep needs the simulated source")
    ks = sorted({_world.check_min_playlists(k) for k in thresholds} | {_world.PAPER_MIN_PLAYLISTS})
    run.train_seeds(n_seeds)  # validates n_seeds before any work
    names = _checked_losses(losses_)
    parts = []
    for k in ks:
        rk = run.with_threshold(k)
        out = rk.grid(names, n_seeds=n_seeds, progress=progress)
        sel = rk.selection()
        test = sel.ids("test")
        out.insert(0, "min_playlists", k)
        out["missing_rate"] = missing_summary(sel.labels.loc[test], sel.latent.loc[test])["missing_rate"]
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _write_selection(tmp: Path, sp: pd.DataFrame, labels: pd.DataFrame, counts: pd.DataFrame,
                     latent: pd.DataFrame | None, chosen: pd.Index) -> None:
    """One Parquet table: the reference tracks, the selected ones flagged."""
    idx = labels.index
    parts = {"split": sp[["subset", "fold", "artist_id"]].astype({"subset": str}).reindex(idx),
             "labels": labels, "counts": counts.reindex(idx)}
    if latent is not None:
        parts["latent"] = latent
    table = pd.concat(parts, axis=1)
    table[("selected", "")] = idx.isin(chosen)
    table[("in_split", "")] = idx.isin(sp.index)
    table.columns = ["/".join(c).rstrip("/") for c in table.columns]
    with atomic_path(tmp / "selection.parquet") as t:
        table.to_parquet(t)


def _read_selection(path: Path) -> Selection:
    table = pd.read_parquet(path)

    def part(prefix: str) -> pd.DataFrame | None:
        cols = [f"{prefix}/{c}" for c in CONTEXTS]
        if cols[0] not in table.columns:
            return None
        out = table[cols]
        out.columns = _COLS
        return out

    sel = table["selected"].to_numpy(bool)
    in_split = table["in_split"].to_numpy(bool)
    full = table.loc[in_split, ["split/subset", "split/fold", "split/artist_id"]]
    full.columns = ["subset", "fold", "artist_id"]
    full = full.astype({"fold": "int64", "artist_id": "int64"})
    split = full.loc[table.index[sel]]
    labels, counts, latent = part("labels"), part("counts"), part("latent")
    return Selection(split=split, labels=labels[sel], counts=counts[sel],
                     latent=None if latent is None else latent[sel],
                     reference_labels=labels, reference_counts=counts,
                     excluded=int((~in_split).sum()), full_split=full)
