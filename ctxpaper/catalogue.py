"""Playlist catalogues and their readers: the input of the paper's §3.1.

A :class:`Catalogue` is two tables: playlists (``playlist_id``, ``title``) and
playlist tracks (``playlist_id``, ``track_id``, ``artist_id``, ``album_id``).
Readers build one from the Spotify Million Playlist Dataset slices
(:func:`read_mpd`), from Deezer API playlist objects (:func:`read_deezer_json`)
or from a plain CSV/Parquet pair (:func:`read_tables`);
:func:`ctxpaper.playlists.build_dataset` then applies §3.1 to it. Chapter 02
(``notebooks/02_building_the_dataset.py``) reads an MPD slice with it; the
simulated world (:mod:`ctxpaper.world`) builds its catalogue as this value.

Ids, whatever the reader (:func:`normalise_ids`):

* an id is an integer whatever its spelling: ``10``, ``10.0``, ``"10"``,
  ``" 10 "``, ``"+10"`` and ``"10.00"`` are all the integer 10, so a
  spreadsheet export that writes some ids as decimals never splits one track
  into two. Integer ids become ``int64`` (``Int64`` when artist/album ids have
  gaps); a column already stored as ``int32``/``int64`` is kept without a copy;
* a column whose ids are all text that is not a number (Spotify URIs) is
  kept as text;
* anything else is an error naming the file, column and 0-based data row:
  a number that is not an integer (``10.5``), text among integers (``"abc"``
  in a column of numbers, or the reverse), a missing track or playlist id, an
  integer beyond int64, and a floating-point id above 2**53 (it may already
  have been rounded).

Hostile files are refused before they cost memory: a JSON file larger than
``max_bytes`` (default :data:`MAX_JSON_BYTES`), nested more deeply than
Python's parser can follow, or that is not a regular file, is an error naming
the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PLAYLIST_COLUMNS = ["playlist_id", "title"]
TRACK_COLUMNS = ["playlist_id", "track_id", "artist_id", "album_id"]

#: Largest playlist JSON file read (bytes). An MPD slice of 1,000 playlists is
#: ~33 MB, and its parsed objects take about ten times that in memory.
MAX_JSON_BYTES = 256 * 2**20

_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
#: Above this a float64 cannot hold every integer: the id may have been rounded.
_EXACT_FLOAT = 2**53


class CatalogueError(ValueError):
    """A playlist dump or table is malformed; the message names file and item."""


# --------------------------------------------------------------------------
# ids
# --------------------------------------------------------------------------

# An integer, possibly written as a decimal with zero fraction ("10.0").
_INT_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?", re.ASCII)
# Any other number ("10.5", "1e3", "1.23457E+11"): not an id, and not text either.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|infinity|nan)",
                          re.IGNORECASE | re.ASCII)


def _float_id(v: float, where: str) -> int:
    """The integer a float id stands for; error when it is not one, exactly."""
    if not np.isfinite(v) or not float(v).is_integer():
        raise CatalogueError(f"{where}: {v!r} is not an integer id")
    if abs(v) > _EXACT_FLOAT:
        raise CatalogueError(
            f"{where}: {v!r} is a floating-point id above 2**53, which may have been "
            "rounded; store ids as integers or text"
        )
    return int(v)


def _checked_int(v: int, where: str) -> int:
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise CatalogueError(f"{where}: {v} does not fit in int64")
    return v


def _id_value(v: object, where: str) -> int | str:
    """One present id: its integer value, or its text when it is not a number.

    ``where`` starts the error message (file, column or item, row).
    """
    if isinstance(v, (bool, np.bool_)):
        raise CatalogueError(f"{where}: {v!r} is not an id")
    if isinstance(v, (int, np.integer)):
        return _checked_int(int(v), where)
    if isinstance(v, (float, np.floating)):
        return _float_id(float(v), where)
    if isinstance(v, str):
        text = v.strip()
        if _INT_TEXT.fullmatch(text):
            return _checked_int(int(text.split(".")[0]), where)
        if _NUMBER_TEXT.fullmatch(text):
            raise CatalogueError(f"{where}: {v!r} is not an integer id")
        return text
    raise CatalogueError(f"{where}: {v!r} ({type(v).__name__}) is not an id")


def _mixed(where: str, v: object, first_where: str, first: object) -> CatalogueError:
    """The error for a column that mixes integer and text ids."""
    kind = "text among integer ids" if isinstance(first, int) else "an integer among text ids"
    return CatalogueError(f"{where}: {v!r} is {kind} ({first_where}: {first!r}); "
                          "a column's ids must be all integers or all text")


class _JsonIds:
    """One id column of a JSON dump, checked id by id as it is parsed.

    A JSON reader knows where each id is (file, playlist index, track index);
    checking here lets the error say so, where a check of the finished column
    could only name a row of all the files together.
    """

    def __init__(self, name: str, allow_missing: bool) -> None:
        self.name, self.allow_missing = name, allow_missing
        self.values: list[int | str | None] = []
        self.first: tuple[str, int | str] | None = None  # where, value of the first id

    def add(self, v: object, where: str) -> None:
        if v is None or (isinstance(v, str) and not v.strip()):
            if not self.allow_missing:
                raise CatalogueError(f"{where}: no {self.name}")
            self.values.append(None)
            return
        x = _id_value(v, f"{where}: {self.name}")
        if self.first is None:
            self.first = (where, x)
        elif isinstance(x, str) != isinstance(self.first[1], str):
            raise _mixed(f"{where}: {self.name}", v, self.first[0], self.first[1])
        self.values.append(x)


def normalise_ids(values: Iterable[object] | pd.Series, what: str, allow_missing: bool) -> pd.Series:
    """Return ids as ``int64`` (nullable ``Int64`` with gaps) or as text.

    Parameters
    ----------
    values : iterable or Series
        Raw ids: ints, integral floats, strings, ``None``/NaN.
    what : str
        Where the ids come from, for error messages (e.g.
        ``"tracks.csv: track_id"``).
    allow_missing : bool
        Whether missing (or blank) ids are allowed (artist/album) or an error
        (track and playlist ids).

    Returns
    -------
    Series
        ``int64`` when every present id is an integer in any spelling
        (``10``, ``10.0``, ``" 10 "``), ``Int64`` when some are missing; a
        column that is already ``int32`` or ``int64`` is returned as it is,
        without a copy (at Deezer scale each id column holds ~36 M rows).
        ``object`` text, stripped, when every present id is text that is not
        a number; missing ids are then ``None``.

    Raises
    ------
    CatalogueError
        A missing id where none is allowed, a number that is not an integer,
        text mixed with integers, an integer beyond int64, a float above
        2**53, a boolean; the message names ``what`` and the 0-based row.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if not isinstance(s.index, pd.RangeIndex) or s.index.start != 0 or s.index.step != 1:
        s = s.reset_index(drop=True)
    if pd.api.types.is_bool_dtype(s.dtype):
        raise CatalogueError(f"{what}: ids must be integers or text, got booleans")
    if pd.api.types.is_integer_dtype(s.dtype) and isinstance(s.dtype, np.dtype):
        return _integer_ids(s, what)  # nothing can be missing: skip the scan
    missing = s.isna().to_numpy().copy()
    if missing.any() and not allow_missing:
        raise CatalogueError(f"{what}: row {int(np.flatnonzero(missing)[0])}: id is missing")
    if pd.api.types.is_integer_dtype(s.dtype):
        return _integer_ids(s, what)
    if pd.api.types.is_float_dtype(s.dtype):
        return _float_ids(s, missing, what)
    objs = s.to_numpy(dtype=object)
    out: list[int | str | None] = [None] * len(objs)
    first = None  # row of the first present id
    for i, v in enumerate(objs):
        if missing[i]:
            continue
        if isinstance(v, str) and not v.strip():
            if not allow_missing:
                raise CatalogueError(f"{what}: row {i}: id is empty")
            missing[i] = True
            continue
        out[i] = x = _id_value(v, f"{what}: row {i}")
        if first is None:
            first = i
        elif isinstance(x, str) != isinstance(out[first], str):
            raise _mixed(f"{what}: row {i}", objs[i], f"row {first}", out[first])
    if first is not None and isinstance(out[first], str):
        return pd.Series(out, dtype=object)
    ints = pd.Series(out, dtype="Int64")
    return ints if missing.any() else ints.astype(np.int64)


def _float_ids(s: pd.Series, missing: np.ndarray, what: str) -> pd.Series:
    """Float ids (a spreadsheet's export, or integers with gaps): integers, exactly."""
    v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~missing & ~((v == np.floor(v)) & (np.abs(v) <= _EXACT_FLOAT))  # NaN/inf compare False
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _float_id(float(v[i]), f"{what}: row {i}")  # raises, with the reason
    out = s.astype("Int64")
    return out if missing.any() else out.astype(np.int64)


def _integer_ids(s: pd.Series, what: str) -> pd.Series:
    """Integer ids: int32/int64 as they are; other widths as int64; gaps as ``Int64``."""
    if s.dtype in (np.dtype(np.int32), np.dtype(np.int64)):
        return s
    if s.dtype.kind == "u":
        # uint64 against uint64: comparing with a Python int may go through float64.
        big = s.to_numpy(dtype=np.uint64, na_value=0) > np.uint64(_INT64_MAX)
        if big.any():
            bad = int(np.flatnonzero(big)[0])
            raise CatalogueError(f"{what}: row {bad}: {s.iloc[bad]} does not fit in int64")
    if s.isna().any():
        return s.astype("Int64")
    return s.astype(np.int64)


def _arrow_ids(col: pa.ChunkedArray) -> pd.Series:
    """An Arrow id column as a Series, text spellings of integers parsed in C++.

    A text column whose every value spells an integer (``"10"``, ``" 10.0 "``)
    becomes int64 here, vectorised, rather than through a Python loop over
    ~36 M objects; any other text column is handed on as text, and
    :func:`normalise_ids` says what is wrong with it.
    """
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        trimmed = pc.utf8_trim_whitespace(col)
        odd = pc.invert(pc.match_substring_regex(trimmed, r"^[+-]?\d+(\.0*)?$"))
        if not pc.any(odd).as_py():  # None when every value is null
            digits = pc.replace_substring_regex(trimmed, pattern=r"^\+|\.0*$", replacement="")
            try:
                col = pc.cast(digits, pa.int64())
            except pa.ArrowInvalid:
                pass  # beyond int64: normalise_ids names the row
        del trimmed, odd
    return _series(col)


def _series(col: pa.ChunkedArray) -> pd.Series:
    """An Arrow column as a Series; integers with nulls as ``Int64``, not float64 (which rounds above 2**53)."""
    mapper = {col.type: pd.Int64Dtype()}.get if col.null_count and pa.types.is_integer(col.type) else None
    return col.to_pandas(types_mapper=mapper)


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
        (checked by :func:`ctxpaper.playlists.build_dataset`).
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
        # Integer ids of any width join; integers against text do not: compare
        # as text on both sides (integers written in decimal).
        pl["playlist_id"] = pl["playlist_id"].astype(str)
        tr["playlist_id"] = tr["playlist_id"].astype(str)
    return Catalogue(pl, tr)


class _JsonRows:
    """The playlists and track rows of a JSON dump, ids checked as they are added."""

    def __init__(self, pid: str, track: str, artist: str, album: str) -> None:
        self.pids, self.titles = _JsonIds(pid, False), []
        self.rows = {"playlist_id": _JsonIds(pid, False), "track_id": _JsonIds(track, False),
                     "artist_id": _JsonIds(artist, True), "album_id": _JsonIds(album, True)}

    def playlist(self, pid: object, title: object, where: str) -> None:
        self.pids.add(pid, where)
        self.titles.append(title if isinstance(title, str) else None)

    def track(self, pid: object, track: object, artist: object, album: object, where: str) -> None:
        for col, v in zip(TRACK_COLUMNS, (pid, track, artist, album)):
            self.rows[col].add(v, where)

    def catalogue(self, source: str) -> Catalogue:
        return _catalogue_from_columns(self.pids.values, self.titles,
                                       {c: ids.values for c, ids in self.rows.items()}, source, source)


# --------------------------------------------------------------------------
# JSON dumps
# --------------------------------------------------------------------------

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
        except (ValueError, RecursionError):
            return idx
        pos = ws.match(text, pos).end()
        if pos < len(text) and text[pos] == ",":
            pos += 1
            idx += 1
        elif pos < len(text) and text[pos] == "]":
            return None
        else:
            return idx


def _read_text(path: Path, max_bytes: int) -> str:
    """A JSON file's text, refusing anything but a regular file of at most ``max_bytes``."""
    try:
        # A FIFO would block the open until a writer comes; a device
        # (/dev/zero) has no end to read to: look before opening.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CatalogueError(f"{path}: not a regular file")
        with open(path, "rb") as fh:
            # Read one byte past the limit rather than trust the size on disk.
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise CatalogueError(f"{path}: file not found") from None
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read ({exc.strerror or exc}); check that the file is "
                             "readable by this user") from None
    if len(raw) > max_bytes:
        raise CatalogueError(
            f"{path}: larger than {max_bytes:,} bytes, the most a playlist JSON file may hold "
            "(an MPD slice is ~33 MB); split it, or pass a larger max_bytes"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{path}: not UTF-8 text ({exc})") from None


def _load_json(path: Path, array_key: str | None, max_bytes: int) -> object:
    text = _read_text(path, max_bytes)
    try:
        return json.loads(text)
    except RecursionError:
        # Playlist objects are ~4 levels deep; Python's parser stops near 1,000.
        raise CatalogueError(f"{path}: JSON nested too deeply to be a playlist file") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        if array_key is None:
            m = re.match(r"\s*\[", text)
        else:
            m = re.search(r'"%s"\s*:\s*\[' % re.escape(array_key), text)
        idx = _bad_array_item(text, m.end()) if m else None
        item = f"playlist index {idx}, " if idx is not None else ""
        raise CatalogueError(f"{path}: malformed JSON at {item}{where}: {exc.msg}") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise CatalogueError(f"{path}: unreadable JSON ({exc})") from None


def read_mpd(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
             max_bytes: int = MAX_JSON_BYTES) -> Catalogue:
    """Read Spotify Million Playlist Dataset slices (``mpd.slice.*.json``).

    Each file is ``{"info": ..., "playlists": [...]}``; a playlist has ``pid``,
    ``name`` and ``tracks`` with ``track_uri``, ``artist_uri``, ``album_uri``.
    Ids are kept as the URIs (text).

    Parameters
    ----------
    paths : path or iterable of paths
        Slice files, read in the given order.
    max_bytes : int
        Largest file read (default :data:`MAX_JSON_BYTES`).

    Raises
    ------
    CatalogueError
        Unreadable, oversized, too deeply nested or malformed JSON, a
        playlist without ``pid`` or with ``tracks`` that is not a list, a
        track without ``track_uri``; the message names the file, the playlist
        index and the track index.
    """
    out = _JsonRows("'pid'", "'track_uri'", "'artist_uri'", "'album_uri'")
    for path in _as_paths(paths):
        doc = _load_json(path, "playlists", max_bytes)
        if not isinstance(doc, dict) or not isinstance(doc.get("playlists"), list):
            raise CatalogueError(f"{path}: not an MPD slice (no 'playlists' list at the top level)")
        for i, p in enumerate(doc["playlists"]):
            where = f"{path}: playlist index {i}"
            if not isinstance(p, dict):
                raise CatalogueError(f"{where}: not a JSON object")
            out.playlist(p.get("pid"), p.get("name"), where)
            pid = p["pid"]
            tracks = [] if p.get("tracks") is None else p["tracks"]
            if not isinstance(tracks, list):
                raise CatalogueError(f"{where} (pid {pid}): 'tracks' is not a list")
            for j, t in enumerate(tracks):
                at = f"{where} (pid {pid}), track index {j}"
                if not isinstance(t, dict):
                    raise CatalogueError(f"{at}: not a JSON object")
                out.track(pid, t.get("track_uri"), t.get("artist_uri"), t.get("album_uri"), at)
    return out.catalogue("MPD")


def read_deezer_json(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                     max_bytes: int = MAX_JSON_BYTES) -> Catalogue:
    """Read Deezer API playlist objects (``GET /playlist/{id}`` responses).

    A file holds one playlist object or a JSON list of them. A playlist has
    ``id``, ``title`` and ``tracks.data[]`` with ``id``, ``artist.id`` and
    ``album.id``.

    Parameters
    ----------
    paths : path or iterable of paths
        JSON files, read in the given order.
    max_bytes : int
        Largest file read (default :data:`MAX_JSON_BYTES`).

    Raises
    ------
    CatalogueError
        Unreadable, oversized, too deeply nested or malformed JSON, or an API
        error object; the message names the file, the playlist index (within
        the file) and the track index.
    """
    out = _JsonRows("'id'", "track 'id'", "'artist.id'", "'album.id'")
    for path in _as_paths(paths):
        doc = _load_json(path, None, max_bytes)
        items = doc if isinstance(doc, list) else [doc]
        for i, p in enumerate(items):
            where = f"{path}: playlist index {i}"
            if not isinstance(p, dict):
                raise CatalogueError(f"{where}: not a JSON object")
            if "error" in p:
                raise CatalogueError(f"{where}: the API returned an error: {p['error']!r}")
            out.playlist(p.get("id"), p.get("title"), where)
            pid = p["id"]
            tracks = p.get("tracks") or {}
            data = (tracks.get("data") if isinstance(tracks, dict) else tracks) or []
            if not isinstance(data, list):
                raise CatalogueError(f"{where} (id {pid}): 'tracks.data' is not a list")
            for j, t in enumerate(data):
                at = f"{where} (id {pid}), track index {j}"
                if not isinstance(t, dict):
                    raise CatalogueError(f"{at}: not a JSON object")
                artist, album = t.get("artist"), t.get("album")
                out.track(pid, t.get("id"), artist.get("id") if isinstance(artist, dict) else None,
                          album.get("id") if isinstance(album, dict) else None, at)
    return out.catalogue("Deezer JSON")


# --------------------------------------------------------------------------
# CSV / Parquet tables
# --------------------------------------------------------------------------

def _check_columns(path: Path, names: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise CatalogueError(f"{path}: missing columns {missing}; expected {columns}")


def _to_series(path: Path, name: str, col: pa.ChunkedArray) -> pd.Series:
    return _titles(path, col) if name == "title" else _arrow_ids(col)


def _titles(path: Path, col: pa.ChunkedArray) -> pd.Series:
    """A title column as text; a Parquet title stored as a number ("2020") becomes that text."""
    value_type = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if pa.types.is_integer(value_type):
        col = pc.cast(col, pa.string())
    elif not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
              or pa.types.is_null(value_type)):
        raise CatalogueError(f"{path}: title: a column of {col.type}, not text")
    return _series(col)


def _read_parquet_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read the named columns of a Parquet file one at a time.

    ``pd.read_parquet`` holds the whole Arrow table and its pandas copy at
    once, then stacks same-typed columns into one block: three copies of a
    Deezer-scale track table. Column by column, the peak is the result plus
    one Arrow column.
    """
    pf = pq.ParquetFile(path)
    _check_columns(path, pf.schema_arrow.names, columns)
    return pd.DataFrame({c: _to_series(path, c, pf.read(columns=[c]).column(0)) for c in columns}, copy=False)


def _csv_options(columns: list[str], types: dict) -> pacsv.ConvertOptions:
    # Only the empty field is missing ("NA" is a title, and an id as text).
    return pacsv.ConvertOptions(include_columns=columns, column_types=types, null_values=[""],
                                strings_can_be_null=True, quoted_strings_can_be_null=True)


def _read_csv_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read the named columns of a CSV (or .csv.gz) file with Arrow's parser.

    Integer ids arrive as int64 (8 bytes a row, where pandas'
    ``dtype=object`` costs ~60): at Deezer scale that decides whether the
    table fits in memory. The file is streamed block by block with the ids
    typed as int64, so the peak is the columns plus one of them being joined.
    If some id is not written as a plain integer, the file is read again with
    Arrow's type inference, and an id column inferred as anything but
    integers or text (floats such as ``10.0``, dates, ``true``) is read as
    text, so that :func:`_arrow_ids` and :func:`normalise_ids` see exactly
    what the file says (a float column would round ids above 2**53).
    """
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
    out = {c: _to_series(path, c, pa.chunked_array(chunks.pop(c), type=types[c])) for c in columns}
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
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read ({exc})") from None
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
        Missing columns, missing or non-id values (see the module notes on
        ids); the message names the file, the column and the 0-based data row.
    """
    p_path, t_path = Path(playlists_path), Path(tracks_path)
    pl = _read_table(p_path, PLAYLIST_COLUMNS)
    tr = _read_table(t_path, TRACK_COLUMNS)
    title = pl["title"].astype(object).where(pl["title"].notna(), None)
    return _catalogue_from_columns(pl["playlist_id"], title.reset_index(drop=True), tr,
                                   str(p_path), str(t_path))
