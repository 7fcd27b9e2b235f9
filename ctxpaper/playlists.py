"""Playlist catalogues and the paper's labelling procedure (paper §3.1).

A :class:`Catalogue` is two tables: playlists (``playlist_id``, ``title``) and
playlist tracks (``playlist_id``, ``track_id``, ``artist_id``, ``album_id``).
Readers build one from the Spotify Million Playlist Dataset slices
(:func:`read_mpd`), from Deezer API playlist objects (:func:`read_deezer_json`)
or from a plain CSV/Parquet pair (:func:`read_tables`). :func:`build_dataset`
then applies §3.1:

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
* track ids that are all integers, or strings of digits, become ``int64``; any
  other mix (Spotify URIs next to numbers) becomes strings, numbers written in
  decimal.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .contexts import CONTEXTS, match_contexts

PLAYLIST_COLUMNS = ["playlist_id", "title"]
TRACK_COLUMNS = ["playlist_id", "track_id", "artist_id", "album_id"]


class CatalogueError(ValueError):
    """A playlist dump or table is malformed; the message names file and item."""


# --------------------------------------------------------------------------
# ids of mixed types
# --------------------------------------------------------------------------

_DIGITS = re.compile(r"-?\d+")


def normalise_ids(values: Iterable[object] | pd.Series, what: str, allow_missing: bool) -> pd.Series:
    """Return ids as ``int64`` (nullable ``Int64`` with gaps) or as strings.

    Parameters
    ----------
    values : iterable or Series
        Raw ids: ints, integral floats, strings, ``None``/NaN.
    what : str
        Name used in error messages (e.g. ``"tracks.csv: track_id"``).
    allow_missing : bool
        Whether missing ids are allowed (artist/album) or an error (track ids).

    Returns
    -------
    Series
        ``int64`` when every present id is an integer or a string of digits
        (``Int64`` when some are missing); otherwise ``object`` strings, with
        integers written in decimal and missing ids as ``None``. A column
        that is already ``int32`` or ``int64`` is returned as it is, without
        a copy: at Deezer scale each id column holds ~36 M rows.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if not isinstance(s.index, pd.RangeIndex) or s.index.start != 0 or s.index.step != 1:
        s = s.reset_index(drop=True)
    if pd.api.types.is_bool_dtype(s.dtype):
        raise CatalogueError(f"{what}: ids must be integers or strings, got booleans")
    if pd.api.types.is_integer_dtype(s.dtype) and isinstance(s.dtype, np.dtype):
        return _integer_ids(s, what)  # nothing can be missing: skip the scan
    missing = s.isna().to_numpy().copy()
    if missing.any() and not allow_missing:
        i = int(np.flatnonzero(missing)[0])
        raise CatalogueError(f"{what}: row {i}: id is missing")
    if pd.api.types.is_integer_dtype(s.dtype):
        return _integer_ids(s, what)
    if pd.api.types.is_float_dtype(s.dtype):
        present = s[~missing]
        if (present == np.floor(present)).all():
            out = s.astype("Int64")
            return out if missing.any() else out.astype(np.int64)
        bad = int(np.flatnonzero((~missing) & (s != np.floor(s)).to_numpy())[0])
        raise CatalogueError(f"{what}: row {bad}: {s.iloc[bad]!r} is not an integer id")
    objs = s.to_numpy(dtype=object)
    all_int = True
    for i, v in enumerate(objs):
        if missing[i]:
            continue
        if isinstance(v, (bool, np.bool_)):
            raise CatalogueError(f"{what}: row {i}: {v!r} is not an id")
        if isinstance(v, (int, np.integer)):
            continue
        if isinstance(v, (float, np.floating)):
            if float(v).is_integer():
                continue
            raise CatalogueError(f"{what}: row {i}: {v!r} is not an integer id")
        if isinstance(v, str):
            if not v.strip():
                if allow_missing:
                    missing[i] = True
                    continue
                raise CatalogueError(f"{what}: row {i}: id is empty")
            if _DIGITS.fullmatch(v.strip()):
                continue
            all_int = False
            continue
        raise CatalogueError(f"{what}: row {i}: {v!r} ({type(v).__name__}) is not an id")
    if all_int:
        ints = [None if missing[i] else int(str(v).strip()) if isinstance(v, str) else int(v)
                for i, v in enumerate(objs)]
        out = pd.Series(ints, dtype="Int64")
        return out if missing.any() else out.astype(np.int64)

    def as_str(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return str(int(v))
        return str(v).strip() if isinstance(v, str) else str(v)

    return pd.Series([None if missing[i] else as_str(v) for i, v in enumerate(objs)], dtype=object)


def _integer_ids(s: pd.Series, what: str) -> pd.Series:
    """Integer ids: int32/int64 as they are; other widths as int64; gaps as ``Int64``."""
    if s.dtype in (np.dtype(np.int32), np.dtype(np.int64)):
        return s
    if s.isna().any():
        return s.astype("Int64")
    if s.dtype.kind == "u" and len(s) and int(s.max()) > np.iinfo(np.int64).max:
        bad = int(np.flatnonzero(s.to_numpy() > np.iinfo(np.int64).max)[0])
        raise CatalogueError(f"{what}: row {bad}: {s.iloc[bad]!r} does not fit in int64")
    return s.astype(np.int64)


# --------------------------------------------------------------------------
# the catalogue
# --------------------------------------------------------------------------

@dataclass
class Catalogue:
    """A playlist catalogue: titles and track lists.

    Attributes
    ----------
    playlists : DataFrame
        ``playlist_id`` (unique), ``title`` (str, or None when missing).
    tracks : DataFrame
        One row per (playlist, position): ``playlist_id``, ``track_id``,
        ``artist_id``, ``album_id``. Artist and album ids may be missing;
        track ids may not. Every ``playlist_id`` must be in ``playlists``
        (checked by :func:`build_dataset`).
    """

    playlists: pd.DataFrame
    tracks: pd.DataFrame

    def __post_init__(self) -> None:
        for name, df, cols in (("playlists", self.playlists, PLAYLIST_COLUMNS),
                               ("tracks", self.tracks, TRACK_COLUMNS)):
            if not isinstance(df, pd.DataFrame):
                raise CatalogueError(f"Catalogue.{name} must be a DataFrame, got {type(df).__name__}")
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise CatalogueError(f"Catalogue.{name}: missing columns {missing}; expected {cols}")
        dup = self.playlists["playlist_id"].duplicated()
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise CatalogueError(
                f"Catalogue.playlists: row {i}: duplicate playlist_id "
                f"{self.playlists['playlist_id'].iloc[i]!r}"
            )

    def __len__(self) -> int:
        return len(self.playlists)


def _catalogue_from_columns(playlist_ids: Sequence[object], titles: Sequence[object],
                            tracks: Mapping[str, Sequence[object]], pl_source: str,
                            tr_source: str) -> Catalogue:
    """Normalise the ids of parsed playlists and tracks into a :class:`Catalogue`.

    ``pl_source``/``tr_source`` name where the values came from, for errors.
    """
    # copy=False: the id columns are large and already fresh; no second copy.
    pl = pd.DataFrame({
        "playlist_id": normalise_ids(playlist_ids, f"{pl_source}: playlist_id", False),
        "title": pd.Series(list(titles), dtype=object),
    }, copy=False)
    tr = pd.DataFrame({
        col: normalise_ids(tracks[col], f"{tr_source}: {col}", col in ("artist_id", "album_id"))
        for col in TRACK_COLUMNS
    }, copy=False)
    kinds = {pd.api.types.is_integer_dtype(pl["playlist_id"].dtype),
             pd.api.types.is_integer_dtype(tr["playlist_id"].dtype)}
    if len(pl) and len(tr) and kinds != {True}:
        # Integer ids of any width join; integers against strings do not:
        # fall back to strings on both sides.
        pl["playlist_id"] = pl["playlist_id"].astype(str)
        tr["playlist_id"] = tr["playlist_id"].astype(str)
    return Catalogue(pl, tr)


def _catalogue_from_records(playlists: list[tuple[object, object]],
                            rows: dict[str, list[object]], source: str) -> Catalogue:
    return _catalogue_from_columns([p for p, _ in playlists], [t for _, t in playlists], rows,
                                   source, source)


def _as_paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _bad_array_item(text: str, start: int) -> int | None:
    """Index of the first element of the JSON array at ``start`` that fails to parse."""
    dec = json.JSONDecoder()
    pos, idx = start, 0
    ws = re.compile(r"\s*")
    while True:
        pos = ws.match(text, pos).end()
        if pos >= len(text) or text[pos] == "]":
            return None
        try:
            _, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return idx
        pos = ws.match(text, pos).end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
            idx += 1
        elif pos < len(text) and text[pos] == "]":
            return None
        else:
            return idx


def _load_json(path: Path, array_key: str | None) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{path}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        if array_key is None:
            m = re.match(r"\s*\[", text)
        else:
            m = re.search(r'"%s"\s*:\s*\[' % re.escape(array_key), text)
        idx = _bad_array_item(text, m.end()) if m else None
        item = f"playlist index {idx}, " if idx is not None else ""
        raise CatalogueError(f"{path}: malformed JSON at {item}{where}: {exc.msg}") from None


def read_mpd(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Catalogue:
    """Read Spotify Million Playlist Dataset slices (``mpd.slice.*.json``).

    Each file is ``{"info": ..., "playlists": [...]}``; a playlist has ``pid``,
    ``name`` and ``tracks`` with ``track_uri``, ``artist_uri``, ``album_uri``.
    Ids are kept as the URIs (strings).

    Parameters
    ----------
    paths : path or iterable of paths
        Slice files, read in the given order.

    Raises
    ------
    CatalogueError
        Unreadable or malformed JSON, a playlist without ``pid`` or with
        ``tracks`` that is not a list, a track without ``track_uri``; the
        message names the file, the playlist index and the track index.
    """
    playlists: list[tuple[object, object]] = []
    rows: dict[str, list[object]] = {k: [] for k in TRACK_COLUMNS}
    for path in _as_paths(paths):
        doc = _load_json(path, "playlists")
        if not isinstance(doc, dict) or not isinstance(doc.get("playlists"), list):
            raise CatalogueError(f"{path}: not an MPD slice (no 'playlists' list at the top level)")
        for i, p in enumerate(doc["playlists"]):
            where = f"{path}: playlist index {i}"
            if not isinstance(p, dict):
                raise CatalogueError(f"{where}: not a JSON object")
            if p.get("pid") is None:
                raise CatalogueError(f"{where}: no 'pid'")
            pid = p["pid"]
            name = p.get("name")
            tracks = p.get("tracks", [])
            if tracks is None:
                tracks = []
            if not isinstance(tracks, list):
                raise CatalogueError(f"{where} (pid {pid}): 'tracks' is not a list")
            playlists.append((pid, name if isinstance(name, str) else None))
            for j, t in enumerate(tracks):
                if not isinstance(t, dict) or not t.get("track_uri"):
                    raise CatalogueError(f"{where} (pid {pid}), track index {j}: no 'track_uri'")
                rows["playlist_id"].append(pid)
                rows["track_id"].append(t["track_uri"])
                rows["artist_id"].append(t.get("artist_uri") or None)
                rows["album_id"].append(t.get("album_uri") or None)
    return _catalogue_from_records(playlists, rows, "MPD")


def read_deezer_json(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Catalogue:
    """Read Deezer API playlist objects (``GET /playlist/{id}`` responses).

    A file holds one playlist object or a JSON list of them. A playlist has
    ``id``, ``title`` and ``tracks.data[]`` with ``id``, ``artist.id`` and
    ``album.id``.

    Raises
    ------
    CatalogueError
        Malformed JSON or an API error object; the message names the file,
        the playlist index (within the file) and the track index.
    """
    playlists: list[tuple[object, object]] = []
    rows: dict[str, list[object]] = {k: [] for k in TRACK_COLUMNS}
    for path in _as_paths(paths):
        doc = _load_json(path, None)
        items = doc if isinstance(doc, list) else [doc]
        for i, p in enumerate(items):
            where = f"{path}: playlist index {i}"
            if not isinstance(p, dict):
                raise CatalogueError(f"{where}: not a JSON object")
            if "error" in p:
                raise CatalogueError(f"{where}: the API returned an error: {p['error']!r}")
            if p.get("id") is None:
                raise CatalogueError(f"{where}: no 'id'")
            pid = p["id"]
            title = p.get("title")
            tracks = p.get("tracks") or {}
            data = tracks.get("data", []) if isinstance(tracks, dict) else tracks
            if data is None:
                data = []
            if not isinstance(data, list):
                raise CatalogueError(f"{where} (id {pid}): 'tracks.data' is not a list")
            playlists.append((pid, title if isinstance(title, str) else None))
            for j, t in enumerate(data):
                if not isinstance(t, dict) or t.get("id") is None:
                    raise CatalogueError(f"{where} (id {pid}), track index {j}: no track 'id'")
                artist = t.get("artist") if isinstance(t.get("artist"), dict) else {}
                album = t.get("album") if isinstance(t.get("album"), dict) else {}
                rows["playlist_id"].append(pid)
                rows["track_id"].append(t["id"])
                rows["artist_id"].append(artist.get("id"))
                rows["album_id"].append(album.get("id"))
    return _catalogue_from_records(playlists, rows, "Deezer JSON")


def _series(col: "pa.ChunkedArray") -> pd.Series:  # noqa: F821 (pyarrow is imported lazily)
    """An Arrow column as a Series; integers with nulls as ``Int64``, not float64 (which rounds above 2**53)."""
    import pyarrow as pa

    mapper = {col.type: pd.Int64Dtype()}.get if col.null_count and pa.types.is_integer(col.type) else None
    return col.to_pandas(types_mapper=mapper)


def _check_columns(path: Path, names: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise CatalogueError(f"{path}: missing columns {missing}; expected {columns}")


def _read_parquet_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read the named columns of a Parquet file one at a time.

    ``pd.read_parquet`` holds the whole Arrow table and its pandas copy at
    once, then stacks same-typed columns into one block: three copies of a
    Deezer-scale track table. Column by column, the peak is the result plus
    one Arrow column.
    """
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    _check_columns(path, pf.schema_arrow.names, columns)
    return pd.DataFrame({c: _series(pf.read(columns=[c]).column(0)) for c in columns}, copy=False)


def _csv_options(columns: list[str], types: dict) -> "pacsv.ConvertOptions":  # noqa: F821 (lazy import)
    import pyarrow.csv as pacsv

    # Only the empty field is missing ("NA" is a title, and an id as text).
    return pacsv.ConvertOptions(include_columns=columns, column_types=types, null_values=[""],
                                strings_can_be_null=True, quoted_strings_can_be_null=True)


def _read_csv_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read the named columns of a CSV (or .csv.gz) file with Arrow's parser.

    Integer ids arrive as int64 (8 bytes a row, where pandas'
    ``dtype=object`` costs ~60): at Deezer scale that decides whether the
    table fits in memory. The file is streamed block by block with the ids
    typed as int64, so the peak is the columns plus one of them being joined.
    If some id is not an integer, the file is read again with Arrow's type
    inference, and an id column inferred as anything but integers or text
    (floats, dates, "true") is read as text, so :func:`normalise_ids` sees
    exactly what the file says.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with pacsv.open_csv(path) as header:  # reads the first block only
        _check_columns(path, header.schema.names, columns)
    ids = [c for c in columns if c != "title"]
    text = {"title": pa.string()} if "title" in columns else {}
    types = {**text, **{c: pa.int64() for c in ids}}
    chunks: dict[str, list] = {c: [] for c in columns}
    try:
        with pacsv.open_csv(path, convert_options=_csv_options(columns, types)) as reader:
            for batch in reader:
                for c in columns:
                    chunks[c].append(batch.column(c))
    except pa.ArrowInvalid:
        table = pacsv.read_csv(path, convert_options=_csv_options(columns, text))
        for c in columns:
            col = table.column(c)
            if c in ids and not (pa.types.is_integer(col.type) or pa.types.is_string(col.type)
                                 or pa.types.is_null(col.type)):
                col = pacsv.read_csv(path, convert_options=_csv_options([c], {c: pa.string()})).column(0)
            chunks[c], types[c] = col.chunks, col.type
        del table, col
    out = {c: _series(pa.chunked_array(chunks.pop(c), type=types[c])) for c in columns}
    pa.default_memory_pool().release_unused()  # hand the parse buffers back to the OS
    return pd.DataFrame(out, copy=False)


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = _read_parquet_columns(path, columns)
        elif suffix in (".csv", ".gz") or path.name.lower().endswith(".csv.gz"):
            df = _read_csv_columns(path, columns)
        else:
            raise CatalogueError(f"{path}: unknown table format (use .csv, .csv.gz or .parquet)")
    except CatalogueError:
        raise
    except FileNotFoundError:
        raise CatalogueError(f"{path}: file not found") from None
    except Exception as exc:  # parser errors of either format
        raise CatalogueError(f"{path}: cannot parse ({exc})") from None
    return df


def read_tables(playlists_path: str | os.PathLike[str], tracks_path: str | os.PathLike[str]) -> Catalogue:
    """Read a catalogue from a playlists table and a playlist-tracks table.

    Parameters
    ----------
    playlists_path : path
        CSV or Parquet with columns ``playlist_id``, ``title``.
    tracks_path : path
        CSV or Parquet with ``playlist_id``, ``track_id``, ``artist_id``,
        ``album_id`` (artist/album may be empty).

    Raises
    ------
    CatalogueError
        Missing columns, missing or non-id values; the message names the file
        and the (0-based data) row.
    """
    p_path, t_path = Path(playlists_path), Path(tracks_path)
    pl = _read_table(p_path, PLAYLIST_COLUMNS)
    tr = _read_table(t_path, TRACK_COLUMNS)
    title = pl["title"].astype(object).where(pl["title"].notna(), None)
    return _catalogue_from_columns(pl["playlist_id"], title.reset_index(drop=True), tr,
                                   str(p_path), str(t_path))


# --------------------------------------------------------------------------
# the procedure
# --------------------------------------------------------------------------

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
