"""A simulated music world on which the paper's §3 procedure can run, truth kept.

Deezer's playlist catalogue is not public, so chapter 02 runs the procedure of
§3.1 (:func:`ctxpaper.playlists.build_dataset`) on a simulated catalogue whose
complete ("latent") context sets are known. One seeded generator,
:func:`make_world`, produces:

* **artists** with heavy-tailed catalogue sizes (log-normal weights), albums
  of 1–14 tracks plus a few various-artists compilations, and a per-artist *style*: six independent standard-normal
  numbers (``style_tempo``, ``style_energy``, ``style_brightness``,
  ``style_percussiveness``, ``style_mode``, ``style_density``) that the audio
  synthesiser (:mod:`ctxpaper.synth`) may add to what the contexts dictate —
  a nuisance shared by an artist's tracks and independent of its contexts;
* **tracks** with a popularity (log-normal artist factor × log-normal track
  factor, mean 1);
* **latent context sets**, fitted to the authors' released labels
  (:func:`ctxpaper.data.load_labels`): each track's set is one row of the
  released label matrix, so per-context marginals, pairwise co-occurrence and
  every higher-order pattern are those of the release in expectation. A
  track shares its artist's row with probability :data:`ARTIST_SHARE`
  (artists have a "sound"); otherwise it draws its own. Rows are independent
  of popularity: coupling popular tracks to richer rows was tried and made
  the balanced set far richer in labels than the release (~9 vs 7.21);
* a **playlist catalogue**: titles naming 1–3 contexts (weights proportional
  to the released playlist counts per context), rendered with varied case,
  accents, emoji, repeated letters, inflections and filler words; tracks drawn
  by popularity among those whose latent set contains every context of the
  title; lengths log-normal (median 30, about 7 % above 100); single-artist
  and single-album playlists with contextual titles; and playlists whose
  titles name no context, including substring traps ("carnival", "homework")
  and near misses ("summertime", "sleepy"), filled by popularity alone.

:meth:`ctxpaper.runs.Run.world` builds (or loads from the artifact cache) the
world at a profile's ``world_scale`` and the dataset constructed from it. At scale 1
the procedure keeps about 612k contextual playlists and tags about 200k tracks
(the paper's §3.2 figures); the smallest context then has about 20k tagged
tracks, the paper's balancing cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .balance import cooccurrence
from .catalogue import Catalogue
from .contexts import CONTEXTS, KEYWORD_FORMS, match_contexts
from .data import load_counts, load_labels
from .playlists import ConstructedDataset, build_dataset
# The style columns are the synthesiser's descriptors: one definition, in ctxpaper.synth.
from .synth import STYLE_COLUMNS


# Sizes at scale 1 (Deezer scale). Tuned so that build_dataset keeps ~612k
# contextual playlists and tags ~200k tracks (paper §3.2).
N_TRACKS_1 = 1_000_000
N_ARTISTS_1 = 100_000
KEPT_PLAYLISTS_1 = 612_000
#: Share of catalogue playlists whose title names no context.
NON_CONTEXTUAL_SHARE = 0.2
#: Contextual-title playlists made for one artist / one album.
SINGLE_ARTIST_SHARE = 0.04
SINGLE_ALBUM_SHARE = 0.03
#: Share of tracks that sit on a various-artists compilation album.
COMPILATION_TRACK_SHARE = 0.03
#: Probability that a track takes its artist's context set.
ARTIST_SHARE = 0.5
#: Sigma of the log of the artist and track popularity factors (heavy tails:
#: a few hits fill most playlist slots, as the released counts show).
POP_SIGMA_ARTIST, POP_SIGMA_TRACK = 2.0, 1.8
#: Below this scale the popularity used for drawing is tempered (see make_world).
SMALL_SCALE, SMALL_SCALE_EXPONENT = 0.05, 0.8
#: Log-normal playlist length: median and sigma of the log; hard maximum.
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_MAX = 30.0, 0.8, 400
#: Probabilities of 1, 2 or 3 contexts in a contextual title.
N_CONTEXTS_P = (0.8, 0.16, 0.04)

# Title material ------------------------------------------------------------
_RENDER_FORMS = {
    "car": ["cars"], "chill": ["chilling", "chillin", "chillout"], "club": ["clubbing"],
    "dance": ["dancing"], "gym": ["gym"], "happy": ["happy"], "night": ["nights"],
    "party": ["parties", "partying"], "relax": ["relaxing"], "running": ["running"],
    "sad": ["sad"], "sleep": ["sleeping"], "summer": ["summer"], "work": ["working"],
    "workout": ["workouts", "work out", "Work-Out"],
}
_PREFIX = ["my", "the", "best", "late", "sunday", "friday", "top", "new", "old school", "ma", "la"]
_SUFFIX = ["vibes", "mix", "playlist", "songs", "hits", "music", "2019", "2018", "mood", "time",
           "tunes", "jams", "only", "💃", "🔥", "🎉", "☀️", "😴", "💪", "🚗", "❤️", "♫"]
_JOIN = [" ", " & ", " / ", " + ", ", ", " and ", " - ", "|"]
_ACCENT = {"a": "á", "e": "é", "i": "í", "o": "ö", "u": "ü"}
#: Titles that name no context: ordinary titles, substring traps, near misses,
#: emoji-only and non-Latin titles (the procedure must keep none of them).
NON_CONTEXT_TITLES = (
    "rock classics", "90s hits", "Best of 2018", "indie", "rap fr", "Throwbacks", "my favs",
    "road trip", "Sunday morning", "love songs", "Top 50", "découvertes", "jazz", "Liked",
    "🔥🔥🔥", "🎶", "夜の音楽", "Музыка", "موسيقى", "k-pop", "metal", "oldies", "acoustic",
    "carnival", "Scar Tissue", "sadness", "homework", "clubhouse", "nightmare", "dancehall",
    "summertime", "sleepy", "happiness", "relaxation", "carpool", "Nightcore", "caramel",
    "Partytime", "workaholic", "gymnopédies", "carte blanche", "tonight", "midnight",
)


@dataclass
class World:
    """A simulated world (see the module docstring).

    Attributes
    ----------
    tracks : DataFrame
        Indexed by ``track_id`` (int64): ``artist_id``, ``album_id`` (int64),
        ``popularity`` (float, mean 1).
    latent : DataFrame
        bool, indexed like ``tracks``, one column per context: the complete
        truth, of which the constructed labels are an incomplete view.
    artists : DataFrame
        Indexed by ``artist_id``: ``n_tracks``, ``popularity`` (the artist
        factor of track popularity) and the six ``style_*`` columns
        (:data:`STYLE_COLUMNS`, standard normal, independent of contexts).
    catalogue : Catalogue
        The playlist catalogue (ids int32 to save memory at full scale).
    playlist_truth : DataFrame
        Indexed by ``playlist_id``: ``kind`` (``contextual``,
        ``single_artist``, ``single_album``, ``non_contextual``) and
        ``intended`` (int bit mask of the contexts the title was written for;
        bit j is ``CONTEXTS[j]``).
    scale, seed : float, int
        The parameters that made it.
    """

    tracks: pd.DataFrame
    latent: pd.DataFrame
    artists: pd.DataFrame
    catalogue: Catalogue
    playlist_truth: pd.DataFrame
    scale: float
    seed: int


def _released_rows() -> np.ndarray:
    return load_labels()[list(CONTEXTS)].to_numpy(dtype=bool)


def _unique_ids(rng: np.random.Generator, n: int, start: int) -> np.ndarray:
    """n distinct increasing ids < 2**31 with random gaps, in random order."""
    gap = max(1, min(40, (2**31 - 1 - start) // max(n, 1) - 1))
    ids = start + np.cumsum(rng.integers(1, gap + 1, size=n))
    return rng.permutation(ids).astype(np.int64)


def _lengths(rng: np.random.Generator, n: int, lo: int = 1, hi: int = LENGTH_MAX) -> np.ndarray:
    x = np.exp(np.log(LENGTH_MEDIAN) + LENGTH_SIGMA * rng.standard_normal(n))
    return np.clip(np.round(x), lo, hi).astype(np.int64)


def _context_sets(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """Bit masks of n titles' context sets: 1–3 contexts, drawn by weight, no repeats."""
    k = rng.choice(len(N_CONTEXTS_P), size=n, p=N_CONTEXTS_P) + 1
    gumbel = np.log(weights)[None, :] - np.log(-np.log(rng.random((n, len(weights)))))
    top = np.argsort(-gumbel, axis=1)[:, :3]
    bits = (1 << top).astype(np.int64)
    return bits[:, 0] + np.where(k >= 2, bits[:, 1], 0) + np.where(k >= 3, bits[:, 2], 0)


def _case(rng: np.random.Generator, text: str) -> str:
    u = rng.random()
    if u < 0.4:
        return text.lower()
    if u < 0.7:
        return text.title()
    if u < 0.85:
        return text.upper()
    return "".join(w[:1].upper() + w[1:] for w in text.split())  # CamelCase


def render_title(rng: np.random.Generator, contexts: list[str]) -> str:
    """A realistic playlist title naming exactly ``contexts``.

    Varied word forms, case, accents, repeated letters, emoji and filler
    words; the result always satisfies ``match_contexts(title) ==
    set(contexts)`` (the plain form is returned if a decoration would break
    that, which the chosen material never does).
    """
    words = []
    for c in contexts:
        w = c if rng.random() < 0.75 else str(rng.choice(_RENDER_FORMS[c]))
        if rng.random() < 0.05:
            i = int(rng.integers(len(w)))
            w = w[:i] + _ACCENT.get(w[i], w[i]) + w[i + 1:]
        if rng.random() < 0.05 and w[-1].isalpha():
            w = w + w[-1] * int(rng.integers(2, 5))
        words.append(w)
    order = rng.permutation(len(words))
    join = _JOIN[int(rng.integers(len(_JOIN)))] if len(words) > 1 else " "
    core = join.join(words[i] for i in order)
    if rng.random() < 0.3:
        core = f"{_PREFIX[int(rng.integers(len(_PREFIX)))]} {core}"
    if rng.random() < 0.4:
        core = f"{core} {_SUFFIX[int(rng.integers(len(_SUFFIX)))]}"
    title = _case(rng, core)
    if rng.random() < 0.08:
        e = _SUFFIX[int(rng.integers(13, len(_SUFFIX)))]
        title = f"{e} {title} {e}"
    if match_contexts(title) != frozenset(contexts):
        return " ".join(contexts)
    return title


def _mask_contexts(mask: int) -> list[str]:
    return [c for j, c in enumerate(CONTEXTS) if mask >> j & 1]


def _draw_weighted(rng: np.random.Generator, cand: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(w[cand])
    return cand[np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cand) - 1)]


def make_world(scale: float, seed: int) -> World:
    """Generate a simulated world (see the module docstring).

    Parameters
    ----------
    scale : float
        Fraction of Deezer scale, in (0, 2]: 1.0 gives ~1M tracks, ~1M
        playlists of which ~612k survive the paper's filters; 0.004 (smoke)
        a few thousand tracks.
    seed : int
        Seed of the single ``numpy.random.Generator`` used throughout.

    Returns
    -------
    World
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 2:
        raise ValueError(f"scale must be a number in (0, 2], got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    released = _released_rows()

    # --- artists, albums, tracks ------------------------------------------
    n_tracks = max(int(round(N_TRACKS_1 * scale)), 400)
    n_art = max(int(round(N_ARTISTS_1 * scale)), 40)
    art_w = np.exp(1.3 * rng.standard_normal(n_art))
    track_art = np.sort(rng.choice(n_art, size=n_tracks, p=art_w / art_w.sum()))
    used, track_art = np.unique(track_art, return_inverse=True)  # drop artists with no track
    n_art = len(used)
    art_size = np.bincount(track_art, minlength=n_art)
    art_start = np.r_[0, np.cumsum(art_size)[:-1]]
    pos = np.arange(n_tracks) - art_start[track_art]
    album_len = rng.choice([1, 4, 10, 14], size=n_art, p=[0.2, 0.2, 0.4, 0.2])
    album_local = pos // album_len[track_art]
    album_key = track_art.astype(np.int64) * (n_tracks + 1) + album_local
    album_start_flag = np.r_[True, album_key[1:] != album_key[:-1]]
    track_album = np.cumsum(album_start_flag) - 1  # contiguous within artist
    n_alb = int(track_album[-1]) + 1
    # Compilations: a few albums gather tracks of many artists, so that the
    # album rule has playlists to remove that the artist rule would keep.
    n_comp = max(1, n_alb // 50)
    moved = rng.random(n_tracks) < COMPILATION_TRACK_SHARE
    track_album[moved] = n_alb + rng.integers(0, n_comp, int(moved.sum()))
    n_alb += n_comp
    alb_size = np.bincount(track_album, minlength=n_alb)
    alb_order = np.argsort(track_album, kind="stable")
    alb_start = np.r_[0, np.cumsum(alb_size)[:-1]]

    art_pop = np.exp(POP_SIGMA_ARTIST * rng.standard_normal(n_art))
    pop = art_pop[track_art] * np.exp(POP_SIGMA_TRACK * rng.standard_normal(n_tracks))
    pop = pop / pop.mean()
    # Small worlds have few artists, each a large share of the popularity
    # mass, so nearly every playlist would break the 25 % artist rule. Below
    # SMALL_SCALE the draw weights are tempered (pop ** gamma) so that
    # playlists stay as artist-diverse as at Deezer scale; `popularity` keeps
    # the untempered value.
    gamma = min(1.0, (scale / SMALL_SCALE) ** SMALL_SCALE_EXPONENT)
    draw_w = pop ** gamma

    # --- latent contexts ----------------------------------------------------
    art_rows = rng.integers(0, len(released), size=n_art)
    own_rows = rng.integers(0, len(released), size=n_tracks)
    rows = np.where(rng.random(n_tracks) < ARTIST_SHARE, art_rows[track_art], own_rows)
    latent = released[rows]
    latent_bits = (latent.astype(np.int64) << np.arange(len(CONTEXTS))).sum(axis=1)

    # --- playlists ------------------------------------------------------------
    ctx_w = load_counts()[list(CONTEXTS)].to_numpy().sum(axis=0).astype(float)
    ctx_w /= ctx_w.sum()
    # About 7 % of lengths exceed 100; the single-artist/album ones are removed.
    p_long = float(np.mean(_lengths(np.random.default_rng(0), 200_000) > 100))
    n_normal = int(round(KEPT_PLAYLISTS_1 * scale / (1 - p_long)))
    n_sart = int(round(n_normal * SINGLE_ARTIST_SHARE))
    n_salb = int(round(n_normal * SINGLE_ALBUM_SHARE))
    n_ctx = n_normal + n_sart + n_salb
    n_non = int(round(n_ctx * NON_CONTEXTUAL_SHARE / (1 - NON_CONTEXTUAL_SHARE)))
    n_pl = n_ctx + n_non
    kind = np.repeat(np.arange(4, dtype=np.int8), [n_normal, n_sart, n_salb, n_non])
    intended = np.zeros(n_pl, dtype=np.int64)
    intended[:n_ctx] = _context_sets(rng, n_ctx, ctx_w)
    length = _lengths(rng, n_pl)
    dom = (kind == 1) | (kind == 2)
    length[dom] = np.clip(length[dom], 5, 80)
    # the part of a single-artist/album playlist taken from that artist/album
    dom_n = np.where(dom, np.ceil(rng.uniform(0.5, 1.0, n_pl) * length), 0).astype(np.int64)
    offsets = np.r_[0, np.cumsum(length)]
    n_rows = int(offsets[-1])
    row_pl = np.repeat(np.arange(n_pl), length)
    row_pos = np.arange(n_rows) - offsets[row_pl]
    row_track = np.empty(n_rows, dtype=np.int64)

    # rows filled from one artist / album
    from_dom = row_pos < dom_n[row_pl]
    big_art = np.flatnonzero(art_size >= 4)
    big_alb = np.flatnonzero(alb_size >= 4)
    owner = np.full(n_pl, -1, dtype=np.int64)
    sa = np.flatnonzero(kind == 1)
    owner[sa] = big_art[_draw_weighted(rng, np.arange(len(big_art)), art_pop[big_art] ** gamma, len(sa))]
    sb = np.flatnonzero(kind == 2)
    alb_pop = np.bincount(track_album, weights=pop, minlength=n_alb)
    owner[sb] = big_alb[_draw_weighted(rng, np.arange(len(big_alb)), alb_pop[big_alb], len(sb))]
    r = np.flatnonzero(from_dom)
    o = owner[row_pl[r]]
    is_art = kind[row_pl[r]] == 1
    start = np.where(is_art, art_start[np.where(is_art, o, 0)], alb_start[np.where(is_art, 0, o)])
    size = np.where(is_art, art_size[np.where(is_art, o, 0)], alb_size[np.where(is_art, 0, o)])
    pick = start + (rng.random(len(r)) * size).astype(np.int64)
    row_track[r] = np.where(is_art, pick, alb_order[np.where(is_art, 0, pick)])

    # the other rows: popularity among tracks that fit the title
    rest = np.flatnonzero(~from_dom)
    rest_mask = intended[row_pl[rest]]
    masks, inv = np.unique(rest_mask, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(inv, minlength=len(masks)))]
    all_tracks = np.arange(n_tracks)
    for g, m in enumerate(masks):
        idx = rest[order[bounds[g]:bounds[g + 1]]]
        if m == 0:
            cand = all_tracks
        else:
            cand = np.flatnonzero((latent_bits & m) == m)
            if len(cand) == 0:  # no track has all of them (tiny worlds): any of them
                cand = np.flatnonzero(latent_bits & m)
        row_track[idx] = _draw_weighted(rng, cand, draw_w, len(idx))

    # --- titles ---------------------------------------------------------------
    titles = np.empty(n_pl, dtype=object)
    umasks, uinv = np.unique(intended, return_inverse=True)
    for g, m in enumerate(umasks):
        members = np.flatnonzero(uinv == g)
        if m == 0:
            pool = list(NON_CONTEXT_TITLES)
        else:
            ctx = _mask_contexts(int(m))
            pool = [render_title(rng, ctx) for _ in range(min(len(members), 300))]
        titles[members] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), len(members))]

    # --- ids and tables -------------------------------------------------------
    track_ids = _unique_ids(rng, n_tracks, 3_000_000)
    art_ids = _unique_ids(rng, n_art, 10_000)
    alb_ids = _unique_ids(rng, n_alb, 100_000)
    pl_ids = _unique_ids(rng, n_pl, 1_000_000)
    perm = rng.permutation(n_pl)  # catalogue order says nothing about kind
    rank = np.empty(n_pl, dtype=np.int64)
    rank[perm] = np.arange(n_pl)
    row_order = np.argsort(rank[row_pl], kind="stable")
    rp = row_pl[row_order]
    rt = row_track[row_order]
    playlists = pd.DataFrame({
        "playlist_id": pl_ids[perm].astype(np.int32),
        "title": pd.Series(titles[perm], dtype=object),
    })
    tracks_rows = pd.DataFrame({
        "playlist_id": pl_ids[rp].astype(np.int32),
        "track_id": track_ids[rt].astype(np.int32),
        "artist_id": art_ids[track_art[rt]].astype(np.int32),
        "album_id": alb_ids[track_album[rt]].astype(np.int32),
    })
    tidx = pd.Index(track_ids, name="track_id")
    tracks = pd.DataFrame({
        "artist_id": art_ids[track_art],
        "album_id": alb_ids[track_album],
        "popularity": pop,
    }, index=tidx)
    style = rng.standard_normal((n_art, len(STYLE_COLUMNS)))
    artists = pd.DataFrame(style, columns=list(STYLE_COLUMNS), index=pd.Index(art_ids, name="artist_id"))
    artists.insert(0, "popularity", art_pop)
    artists.insert(0, "n_tracks", art_size.astype(np.int64))
    kinds = np.array(["contextual", "single_artist", "single_album", "non_contextual"])
    truth = pd.DataFrame({"kind": pd.Categorical(kinds[kind[perm]], categories=list(kinds)),
                          "intended": intended[perm]},
                         index=pd.Index(pl_ids[perm], name="playlist_id"))
    return World(
        tracks=tracks,
        latent=pd.DataFrame(latent, index=tidx.copy(), columns=list(CONTEXTS)),
        artists=artists,
        catalogue=Catalogue(playlists, tracks_rows),
        playlist_truth=truth,
        scale=float(scale),
        seed=int(seed),
    )


# --------------------------------------------------------------------------
# a world + its construction on disk (cached by ctxpaper.runs)
# --------------------------------------------------------------------------

_FILES = ("tracks", "latent", "artists", "playlists", "playlist_tracks", "playlist_truth",
          "labels", "counts", "raw_counts", "track_info", "funnel", "per_context")


def save_world(world: World, ds: ConstructedDataset, out: Path) -> None:
    """Write a world and its construction as Parquet files into ``out`` (see :func:`load_world`)."""
    frames = {
        "tracks": world.tracks, "latent": world.latent, "artists": world.artists,
        "playlists": world.catalogue.playlists, "playlist_tracks": world.catalogue.tracks,
        "playlist_truth": world.playlist_truth, "labels": ds.labels, "counts": ds.counts,
        "raw_counts": ds.raw_counts, "track_info": ds.track_info, "funnel": ds.funnel,
        "per_context": ds.per_context,
    }
    for name in _FILES:
        frames[name].to_parquet(out / f"{name}.parquet")


def load_world(d: Path, scale: float, seed: int, params: dict) -> tuple[World, ConstructedDataset]:
    """Read back what :func:`save_world` wrote (``params``: the construction's)."""
    f = {name: pd.read_parquet(d / f"{name}.parquet") for name in _FILES}
    world = World(tracks=f["tracks"], latent=f["latent"], artists=f["artists"],
                  catalogue=Catalogue(f["playlists"], f["playlist_tracks"]),
                  playlist_truth=f["playlist_truth"], scale=scale, seed=seed)
    ds = ConstructedDataset(labels=f["labels"], counts=f["counts"], raw_counts=f["raw_counts"],
                            track_info=f["track_info"], funnel=f["funnel"],
                            per_context=f["per_context"], params=params)
    return world, ds


#: The paper's construction threshold (§3.1).
PAPER_MIN_PLAYLISTS = 3


def check_min_playlists(min_playlists: int) -> int:
    """``min_playlists`` as a plain int, or a ValueError naming the parameter.

    Parameters
    ----------
    min_playlists : int
        The construction threshold; an integer >= 1 (bools refused).
    """
    if isinstance(min_playlists, bool) or not isinstance(min_playlists, (int, np.integer)) \
            or min_playlists < 1:
        raise ValueError(f"min_playlists must be an integer >= 1, got {min_playlists!r}")
    return int(min_playlists)


def lost_positives(world: World, ds: ConstructedDataset) -> pd.DataFrame:
    """Per context, what happened to the latent positives (the §4.2 missing labels).

    Returns
    -------
    DataFrame
        Indexed by context: ``latent`` (tracks whose true set holds c),
        ``tagged`` (of those, tagged with c), ``below_threshold`` (in 1 to
        ``min_playlists - 1`` kept playlists naming c), ``never_seen`` (in
        none), ``false_tags`` (tagged with c although c is not latent: zero
        here, since tracks are only drawn into fitting playlists, except for
        single-artist/album ones which are filtered) and ``recall`` =
        tagged / latent.
    """
    k = ds.params.get("min_playlists", 3)
    raw = ds.raw_counts.reindex(world.latent.index, fill_value=0).to_numpy()
    lat = world.latent.to_numpy()
    tagged = raw >= k
    out = pd.DataFrame({
        "latent": lat.sum(axis=0),
        "tagged": (lat & tagged).sum(axis=0),
        "below_threshold": (lat & (raw > 0) & ~tagged).sum(axis=0),
        "never_seen": (lat & (raw == 0)).sum(axis=0),
        "false_tags": (~lat & tagged).sum(axis=0),
    }, index=pd.Index(list(CONTEXTS), name="context"))
    out["recall"] = out["tagged"] / out["latent"].clip(lower=1)
    return out


def jaccard_matrix(labels: pd.DataFrame) -> np.ndarray:
    """15×15 Jaccard co-occurrence of the :data:`CONTEXTS` columns, as an array.

    :func:`ctxpaper.balance.cooccurrence` with ``normalise="jaccard"`` (the
    one Jaccard of the project): |c ∧ d| / |c ∨ d|, 1 on the diagonal of a
    context with positives, NaN where both contexts are empty (0 / 0).
    """
    return cooccurrence(labels[list(CONTEXTS)], "jaccard").to_numpy()


def calibration(observed: pd.DataFrame, reference: pd.DataFrame, k: int = 3) -> dict[str, object]:
    """Compare simulated labels with the released ones (issue criteria).

    Parameters
    ----------
    observed, reference : DataFrame
        bool track × context labels (columns ``CONTEXTS``).
    k : int
        How many most / least frequent contexts to compare.

    Returns
    -------
    dict
        ``jaccard_r``: Pearson r between the off-diagonal entries of the two
        Jaccard matrices (over the pairs defined in both: a pair of contexts
        empty in either label set has no Jaccard index); ``labels_per_track`` (observed), ``reference_labels_per_track``
        and ``labels_per_track_ratio``; ``top`` / ``bottom``: the k most / least
        frequent contexts of each (ties broken by column order), and
        ``top_match`` / ``bottom_match``: whether an ordering consistent with
        both count vectors gives the same k most (least) frequent contexts,
        i.e. the two tie-widened groups of k extremes share at least k
        contexts. Ties matter: balancing leaves several contexts at exactly
        the cap (five in the release), whose order is arbitrary.
    """
    iu = np.triu_indices(len(CONTEXTS), 1)
    j_obs, j_ref = jaccard_matrix(observed)[iu], jaccard_matrix(reference)[iu]
    both = np.isfinite(j_obs) & np.isfinite(j_ref)
    r = float(np.corrcoef(j_obs[both], j_ref[both])[0, 1])
    lpt = float(observed[list(CONTEXTS)].to_numpy().sum(axis=1).mean())
    ref_lpt = float(reference[list(CONTEXTS)].to_numpy().sum(axis=1).mean())
    obs_n = observed[list(CONTEXTS)].sum(axis=0)
    ref_n = reference[list(CONTEXTS)].sum(axis=0)
    obs_sorted = obs_n.sort_values(kind="stable")
    ref_sorted = ref_n.sort_values(kind="stable")
    top_obs, bot_obs = list(obs_sorted.index[::-1][:k]), list(obs_sorted.index[:k])

    def group(n: pd.Series, srt: pd.Series, top: bool) -> set:
        # the k extremes, widened to every context tied with the k-th
        return set(n.index[n >= srt.iloc[-k]]) if top else set(n.index[n <= srt.iloc[k - 1]])

    top_match = len(group(obs_n, obs_sorted, True) & group(ref_n, ref_sorted, True)) >= k
    bottom_match = len(group(obs_n, obs_sorted, False) & group(ref_n, ref_sorted, False)) >= k
    return {
        "jaccard_r": r,
        "labels_per_track": lpt,
        "reference_labels_per_track": ref_lpt,
        "labels_per_track_ratio": lpt / ref_lpt,
        "top": top_obs, "reference_top": list(ref_sorted.index[::-1][:k]),
        "bottom": bot_obs, "reference_bottom": list(ref_sorted.index[:k]),
        "top_match": top_match,
        "bottom_match": bottom_match,
    }
