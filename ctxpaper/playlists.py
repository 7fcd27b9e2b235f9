"""The paper's labelling procedure: contextual tags from playlist titles (paper §3.1).

:func:`build_dataset` applies §3.1 to a :class:`~ctxpaper.catalogue.Catalogue`
(read by :mod:`ctxpaper.catalogue` from a playlist dump, or built by the
simulated world, :mod:`ctxpaper.world`). Chapter 02
(``notebooks/02_building_the_dataset.py``) runs it and shows its funnel; the
simulated runs behind chapters 03–07 build their labels with it.

1. keep playlists whose title names at least one of the 15 contexts
   (:func:`ctxpaper.contexts.match_contexts`);
2. drop playlists with more than ``max_tracks`` (100) tracks;
3. drop playlists where one artist, or one album, makes up more than
   ``max_share`` (25 %) of the tracks;
4. tag track *i* with context *c* when it is in at least ``min_playlists`` (3)
   kept playlists whose title names *c*, and count those playlists (n_ic,
   used by eq. 4). The paper's text says "more than 3"; the released count file
   shows that 3 is enough (its smallest count behind a label is 3), so 3 with
   ">=" is the default.

Decisions the paper leaves open, taken here:

* a track listed twice in one playlist counts once, for the length, for the
  artist/album shares and for n_ic;
* a playlist's length is its number of distinct tracks;
* a track whose artist (album) id is missing counts as a distinct artist (album)
  of its own: it can never make a playlist "dominated", but it does count in
  the denominator. The 25 % rule is strict ("more than"): 1 of 4 is kept, so
  playlists of 1–3 tracks are always dropped by it;
* a missing title matches no context; a playlist with no tracks is counted in
  the funnel and dropped;
* how ids are read (integers whatever their spelling) is the catalogue
  readers' business: see :mod:`ctxpaper.catalogue`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .catalogue import Catalogue, CatalogueError
from .contexts import CONTEXTS, match_contexts


@dataclass
class ConstructedDataset:
    """Output of :func:`build_dataset`.

    Attributes
    ----------
    labels : DataFrame
        bool, indexed by ``track_id`` in ascending order, one column per
        context (``CONTEXTS`` order): the tracks tagged with at least one
        context, like :func:`ctxpaper.data.load_labels`. The four track tables
        share this order, whatever the order of the catalogue's rows.
    counts : DataFrame
        int64, same index and columns: n_ic where the track is tagged with c,
        0 elsewhere — the convention of the released count file (which holds no
        count of 1 or 2).
    raw_counts : DataFrame
        int32, indexed by ``track_id`` for every track of a kept playlist: the
        number of kept playlists naming c, before the threshold (so counts of 1
        and 2, the positives the rule drops, are visible).
    track_info : DataFrame
        ``artist_id``, ``album_id`` of each tagged track (first occurrence),
        indexed like ``labels``.
    funnel : DataFrame
        One row per step: ``step``, ``unit`` (``playlists``/``tracks``),
        ``count`` (how many remain after the step, or the size for a
        count-only step) and ``removed`` (removed by this step, 0 for
        count-only rows). Steps: ``read``, ``no context keyword``,
        ``no tracks``, ``more than max_tracks``, ``one artist > max_share``,
        ``one album > max_share``, ``kept``, then tracks ``in kept playlists``
        and ``tagged``.
    per_context : DataFrame
        Indexed by context: ``playlists`` (kept playlists whose title names
        it), ``tracks_seen`` (tracks in at least one of them),
        ``tracks_tagged`` (at least ``min_playlists``), ``positives_dropped``
        (tracks seen in 1 to ``min_playlists - 1`` of them).
    params : dict
        ``min_playlists``, ``max_tracks``, ``max_share``.
    """

    labels: pd.DataFrame
    counts: pd.DataFrame
    raw_counts: pd.DataFrame
    track_info: pd.DataFrame
    funnel: pd.DataFrame
    per_context: pd.DataFrame
    params: dict = field(default_factory=dict)


def _position_dtype(n: int) -> type:
    """int32 row positions and codes when they fit: half of intp's memory at Deezer scale."""
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _values(column: pd.Series) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """A column's values without a copy (numpy or extension array), indexable by position."""
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


def _codes(values: np.ndarray | pd.api.extensions.ExtensionArray) -> tuple[np.ndarray, pd.Index]:
    """Factorize ids: codes (-1 where missing) in the narrowest position dtype, and the uniques."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(_position_dtype(len(uniques)), copy=False), pd.Index(uniques)


def _singletons(codes: np.ndarray) -> np.ndarray:
    """Give every missing (-1) code a fresh code of its own."""
    miss = codes < 0
    if miss.any():
        start = int(codes.max(initial=-1)) + 1
        codes = codes.astype(_position_dtype(start + int(miss.sum())))
        codes[miss] = start + np.arange(int(miss.sum()))
    return codes


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Positions where a run of equal values starts in a sorted, non-empty array."""
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


def _max_group_count(group: np.ndarray, key: np.ndarray, n_groups: int) -> np.ndarray:
    """For each group, the largest number of rows sharing one key value."""
    if len(group) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    n_key = int(key.max()) + 1
    combo = group.astype(np.int64) * n_key + key
    combo.sort()
    # Sorted, each group's keys form one run of runs: count each (group, key)
    # run, then take the maximum over the runs of a group.
    starts = _run_starts(combo)
    cnt = np.diff(np.r_[starts, len(combo)])
    g = combo[starts] // n_key
    del combo
    out = np.zeros(n_groups, dtype=np.int64)
    gstarts = _run_starts(g)
    out[g[gstarts]] = np.maximum.reduceat(cnt, gstarts)
    return out


def _first_of_pairs(a: np.ndarray, b: np.ndarray, n_b: int) -> np.ndarray:
    """Mask of the first occurrence (lowest position) of each (a, b) pair.

    Sort-based rather than a hash table: at Deezer scale (~25 M pairs) the
    sort's buffers are smaller than pandas' hash table and its resizes.
    """
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    key = a.astype(np.int64) * max(n_b, 1) + b
    order = np.argsort(key)  # not stable: the lowest position of each run is taken below
    starts = _run_starts(key[order])
    del key
    keep = np.zeros(len(a), dtype=bool)
    keep[np.minimum.reduceat(order, starts)] = True
    return keep


def _playlist_codes(playlists: pd.DataFrame, tracks: pd.DataFrame) -> np.ndarray:
    """Position in ``playlists`` of each track row's playlist; error on an unknown id."""
    code = pd.Index(playlists["playlist_id"]).get_indexer(tracks["playlist_id"])
    if (code < 0).any():
        i = int(np.flatnonzero(code < 0)[0])
        raise CatalogueError(
            f"Catalogue.tracks: row {i}: playlist_id {_show(tracks['playlist_id'].iloc[i])} "
            "is not in Catalogue.playlists"
        )
    return code.astype(_position_dtype(len(playlists)))


def _check_params(min_playlists: int, max_tracks: int, max_share: float) -> None:
    for name, v in (("min_playlists", min_playlists), ("max_tracks", max_tracks)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(max_share, bool) or not isinstance(max_share, (int, float)) or not 0 < max_share <= 1:
        raise ValueError(f"max_share must be a number in (0, 1], got {max_share!r}")


def title_masks(titles: pd.Series) -> np.ndarray:
    """Context bit mask (bit j = ``CONTEXTS[j]``) of each title; titles matched once each."""
    codes, uniques = pd.factorize(titles.astype(object), use_na_sentinel=True)
    bits = {c: 1 << j for j, c in enumerate(CONTEXTS)}
    umask = np.fromiter((sum(bits[c] for c in match_contexts(t)) for t in uniques),
                        dtype=np.int64, count=len(uniques))
    return np.where(codes >= 0, umask[np.maximum(codes, 0)] if len(umask) else 0, 0).astype(np.int64)


def build_dataset(
    catalogue: Catalogue,
    min_playlists: int = 3,
    max_tracks: int = 100,
    max_share: float = 0.25,
) -> ConstructedDataset:
    """Apply the paper's §3.1 filtering and tagging to a catalogue.

    Parameters
    ----------
    catalogue : Catalogue
        Playlists and their tracks.
    min_playlists : int
        A track is tagged with c when it is in at least this many kept
        playlists naming c (3: the released rule).
    max_tracks : int
        Playlists with more distinct tracks than this are dropped (100).
    max_share : float
        Playlists where one artist or one album makes up more than this share
        of the distinct tracks are dropped (0.25).

    Returns
    -------
    ConstructedDataset
        Labels, counts, the funnel and per-context numbers (see the class).

    Raises
    ------
    CatalogueError
        A track row names a playlist that is not in ``catalogue.playlists``.
    ValueError
        A parameter out of range.
    """
    _check_params(min_playlists, max_tracks, max_share)
    pl, tr = catalogue.playlists, catalogue.tracks
    n_pl = len(pl)
    masks = title_masks(pl["title"])
    contextual = masks != 0
    # Memory matters at Deezer scale (~36 M rows): row positions and codes are
    # int32 where they fit, each step keeps only the rows still in play, and
    # the catalogue's columns are read in place, never copied whole.
    pl_code = _playlist_codes(pl, tr)
    # Only rows of playlists that name a context matter from here on.
    rows = np.flatnonzero(contextual[pl_code]).astype(_position_dtype(len(tr)))
    p = pl_code[rows]
    del pl_code
    t, t_uniques = _codes(_values(tr["track_id"])[rows])
    n_t = len(t_uniques)
    # Repeats of a track inside a playlist count once.
    first = _first_of_pairs(p, t, n_t)
    rows, p, t = rows[first], p[first], t[first]
    del first

    length = np.bincount(p, minlength=n_pl)
    alive = contextual.copy()
    funnel = [("read", "playlists", n_pl, 0)]
    removed = int((~contextual).sum())
    funnel.append(("no context keyword", "playlists", int(alive.sum()), removed))

    def apply(step: str, drop: np.ndarray) -> None:
        d = alive & drop
        alive[d] = False
        funnel.append((step, "playlists", int(alive.sum()), int(d.sum())))

    apply("no tracks", length == 0)
    apply("more than max_tracks", length > max_tracks)
    for col, step in (("artist_id", "one artist > max_share"), ("album_id", "one album > max_share")):
        sel = np.flatnonzero(alive[p])
        codes = _singletons(_codes(_values(tr[col])[rows[sel]])[0])
        top = _max_group_count(p[sel], codes, n_pl)
        del sel, codes
        apply(step, top > max_share * length)
    funnel.append(("kept", "playlists", int(alive.sum()), 0))

    sel = alive[p]
    kp, kt, kept_rows = p[sel], t[sel], rows[sel]
    del p, t, rows, sel
    seen = np.bincount(kt, minlength=n_t) > 0
    n_seen = int(seen.sum())
    remap = (np.cumsum(seen) - 1).astype(_position_dtype(n_seen))
    kt_local = remap[kt]
    del remap
    raw = np.zeros((n_seen, len(CONTEXTS)), dtype=np.int32)
    pl_per_ctx = np.zeros(len(CONTEXTS), dtype=np.int64)
    for j in range(len(CONTEXTS)):
        names_c = (masks & (1 << j)) != 0  # per playlist: small
        raw[:, j] = np.bincount(kt_local[names_c[kp]], minlength=n_seen)
        pl_per_ctx[j] = int((alive & names_c).sum())
    del kt_local
    seen_ids = _id_index(t_uniques[np.flatnonzero(seen)])
    raw_counts = pd.DataFrame(raw, index=seen_ids, columns=list(CONTEXTS))
    lab = raw >= min_playlists
    tagged = lab.any(axis=1)
    labels = pd.DataFrame(lab[tagged], index=seen_ids[tagged], columns=list(CONTEXTS))
    counts = pd.DataFrame(np.where(lab, raw, 0)[tagged].astype(np.int64),
                          index=seen_ids[tagged], columns=list(CONTEXTS))
    funnel.append(("in kept playlists", "tracks", n_seen, 0))
    funnel.append(("tagged", "tracks", int(tagged.sum()), 0))

    # artist/album of each tagged track: its first row in a kept playlist
    # (kept rows are in catalogue order, and np.unique returns first indices).
    is_tagged = np.zeros(n_t, dtype=bool)
    is_tagged[np.flatnonzero(seen)[tagged]] = True
    rows_t = np.flatnonzero(is_tagged[kt])
    _, first = np.unique(kt[rows_t], return_index=True)  # sorted codes = label order
    fr = kept_rows[rows_t[first]]
    track_info = pd.DataFrame({
        "artist_id": tr["artist_id"].iloc[fr].to_numpy(),
        "album_id": tr["album_id"].iloc[fr].to_numpy(),
    }, index=labels.index)

    per_context = pd.DataFrame({
        "playlists": pl_per_ctx,
        "tracks_seen": (raw > 0).sum(axis=0),
        "tracks_tagged": lab.sum(axis=0),
        "positives_dropped": ((raw > 0) & (raw < min_playlists)).sum(axis=0),
    }, index=pd.Index(list(CONTEXTS), name="context"))
    # Track-id order: the output does not depend on the catalogue's row order.
    return ConstructedDataset(
        labels=labels.sort_index(),
        counts=counts.sort_index(),
        raw_counts=raw_counts.sort_index(),
        track_info=track_info.sort_index(),
        funnel=pd.DataFrame(funnel, columns=["step", "unit", "count", "removed"]),
        per_context=per_context,
        params={"min_playlists": int(min_playlists), "max_tracks": int(max_tracks),
                "max_share": float(max_share)},
    )


def _show(v: object) -> str:
    return repr(v.item() if isinstance(v, np.generic) else v)


def _id_index(values: pd.Index) -> pd.Index:
    idx = pd.Index(values, name="track_id")
    if pd.api.types.is_integer_dtype(idx.dtype):
        idx = idx.astype(np.int64)
    return idx
