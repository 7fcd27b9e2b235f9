"""The authors' released dataset (paper §3.2, §4.1): registry, loading, checks.

The six files of the release (DOI 10.5281/zenodo.3648287, GitHub
``KarimMibrahim/context_classification_cnn``, folder ``GroundTruth/``) are
looked up, in order, in

1. the directory named by ``CTXPAPER_DATA_DIR`` (when set, it must be a
   folder: a mistyped path is an error, never a silent fall-back to 2.);
2. the copy vendored in this project (``data/context-dataset/``);
3. the pooch download cache, filled from the pinned upstream commit.

Every file is verified by sha256 before use. Loading parses and validates the
CSVs into tidy pandas frames indexed by the Deezer ``song_id``; a missing,
unreadable or malformed file fails with a :class:`DataError` naming the file,
the row and what is wrong (or what to do).

Chapters 01 (the released dataset) to 04, 06 and 07 read the release
through this module.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import PROJECT_ROOT
from .contexts import CONTEXTS
from .fsio import sha256_file

UPSTREAM_COMMIT = "a94aad918b8cbca6ee674e673a8b2cbb1949d456"
UPSTREAM_URL = (
    "https://raw.githubusercontent.com/KarimMibrahim/context_classification_cnn/"
    f"{UPSTREAM_COMMIT}/GroundTruth/{{name}}"
)
VENDORED_DIR = PROJECT_ROOT / "data" / "context-dataset"


@dataclass(frozen=True)
class ReleasedFile:
    """One file of the release, with its pinned hash and expected row count."""

    name: str
    sha256: str
    rows: int
    description: str


REGISTRY: dict[str, ReleasedFile] = {
    f.name: f
    for f in (
        ReleasedFile("balanced_ground_truth_hot_vector.csv",
                     "f80250953d1f86a9f14fb337b896cb2fd85b4126d394f70e11b9f72c4476d848",
                     49929, "song_id + 15 binary labels"),
        ReleasedFile("balanced_ground_truth_track_count.csv",
                     "cb143c438dc414a17c4e22a6a8e02b2f7477d2444733695b98870136d2313f71",
                     49929, "song_id + 15 playlist counts n_ic (eq. 4)"),
        ReleasedFile("ground_truth_folds.csv",
                     "9890f93a25df3043313459f97042e6bac6babfd6cbe5f5b1bb9848994d36e9c3",
                     48582, "song_id, label, artist_id, fold (0 = test)"),
        ReleasedFile("train_ground_truth.csv",
                     "921ee2aa569daa71dd08f0dd99e89561c829dd595462a25b3aab071e789232c6",
                     32771, "song_id, label (training subset)"),
        ReleasedFile("validation_ground_truth.csv",
                     "a223998a783e58fc23cfa1e576d00d6c45960269455ba61e00ff4b8c1be9c06a",
                     3642, "song_id, label (validation subset)"),
        ReleasedFile("test_ground_truth.csv",
                     "861c10ce8db507dfcec9f7da17dfc8db5e8244ec447be74eaa7100f6b86d8f32",
                     12169, "song_id, label (test subset)"),
    )
}

LABELS_FILE = "balanced_ground_truth_hot_vector.csv"
COUNTS_FILE = "balanced_ground_truth_track_count.csv"
FOLDS_FILE = "ground_truth_folds.csv"
SUBSET_FILES = {
    "train": "train_ground_truth.csv",
    "validation": "validation_ground_truth.csv",
    "test": "test_ground_truth.csv",
}
TEST_FOLD = 0


class DataError(ValueError):
    """A released file is missing, altered or malformed."""


# --------------------------------------------------------------------------
# locating and verifying
# --------------------------------------------------------------------------

_FIX_READ = ("make it readable by this user (e.g. chmod a+r), or set CTXPAPER_DATA_DIR to a "
             "folder holding readable copies of the released files")


def _unreadable(path: Path, exc: OSError) -> DataError:
    return DataError(f"{path}: cannot read ({exc.strerror or exc}); {_FIX_READ}")


def _env_dir(var: str) -> Path | None:
    """The folder an environment variable names, checked: it must be a folder."""
    value = os.environ.get(var)
    if not value:
        return None
    d = Path(value).expanduser()
    try:
        st = d.stat()
    except FileNotFoundError:
        raise DataError(f"{var}={value!r}: no such folder; create it, point {var} at an existing "
                        "folder, or unset it") from None
    except OSError as exc:
        raise DataError(f"{var}={value!r}: cannot look into it ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise DataError(f"{var}={value!r} is a file, not a folder; point it at the folder "
                        "that holds the released files, or unset it")
    return d


def _candidate_dirs() -> list[Path]:
    env = _env_dir("CTXPAPER_DATA_DIR")
    return [env, VENDORED_DIR] if env else [VENDORED_DIR]


def _exists(path: Path) -> bool:
    """Whether something is at ``path``; a folder we may not look into is an error, not "no"."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return True


@functools.lru_cache(maxsize=64)
def _verified(path: str, mtime_ns: int, size: int, expected: str) -> None:
    # Keyed on (mtime, size): a file changed on disk is hashed again.
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path}: sha256 mismatch (expected {expected}, got {actual}); "
            "the file is not the authors' release"
        )


def verify(path: str | os.PathLike[str], name: str | None = None) -> Path:
    """Check a file's sha256 against the registry; return its path.

    Raises
    ------
    DataError
        The file is missing, unreadable, not a regular file (a device or a
        FIFO would never finish hashing), or its hash does not match.
    """
    path = Path(path)
    entry = REGISTRY[name or path.name]
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{path}: not a regular file; the released files are plain CSV files")
        _verified(str(path), st.st_mtime_ns, st.st_size, entry.sha256)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return path


def download_dir() -> Path:
    """Where downloaded released files are cached (``CTXPAPER_DOWNLOAD_DIR`` overrides)."""
    env = os.environ.get("CTXPAPER_DOWNLOAD_DIR")
    if env:
        d = Path(env).expanduser()
        if d.exists() and not d.is_dir():
            raise DataError(f"CTXPAPER_DOWNLOAD_DIR={env!r} is a file, not a folder")
        return d
    import pooch

    return Path(pooch.os_cache("ctxpaper")) / UPSTREAM_COMMIT[:12]


def _download(name: str, url_template: str | None = None) -> Path:
    import pooch  # imported lazily: only needed when no local copy exists

    entry = REGISTRY[name]
    # pooch downloads to a temporary file, checks the hash, and only then moves
    # it into the cache: a bad download never stays there.
    path = pooch.retrieve(
        (url_template or UPSTREAM_URL).format(name=name),
        known_hash=f"sha256:{entry.sha256}",
        fname=name,
        path=download_dir(),
        progressbar=False,
    )
    return Path(path)


def locate(name: str) -> Path:
    """Return a verified local path to a released file, downloading if needed.

    Raises
    ------
    DataError
        Unknown name; ``CTXPAPER_DATA_DIR`` set to something that is not a
        folder; a found file that cannot be read or whose hash does not
        match; no copy and no download.
    """
    if name not in REGISTRY:
        raise DataError(f"unknown released file {name!r}; known: {', '.join(REGISTRY)}")
    for d in _candidate_dirs():
        p = d / name
        if _exists(p):
            return verify(p, name)
    # The download cache is looked at last: it needs pooch, which is slow to import.
    cached = download_dir() / name
    if _exists(cached):
        return verify(cached, name)
    try:
        return verify(_download(name), name)
    except DataError:
        raise
    except Exception as exc:  # network down, pooch missing, ...
        searched = ", ".join(str(d) for d in _candidate_dirs())
        raise DataError(
            f"{name}: not found in {searched} and the download failed ({exc}). "
            "Set CTXPAPER_DATA_DIR to a folder holding the released files."
        ) from exc


def data_hashes() -> pd.DataFrame:
    """Name, location, sha256 and row count of each released file (provenance)."""
    rows = []
    for name, entry in REGISTRY.items():
        path = locate(name)
        rows.append({"file": name, "sha256": entry.sha256, "rows": entry.rows,
                     "location": str(path), "content": entry.description})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# parsing and validating (public: usable on any file with the released layout)
# --------------------------------------------------------------------------

def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:  # permissions, a folder, an I/O error
        raise _unreadable(path, exc) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from exc
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None


def _check_columns(df: pd.DataFrame, expected: list[str], path: Path) -> None:
    cols = list(df.columns)
    if cols != expected:
        missing = [c for c in expected if c not in cols]
        extra = [c for c in cols if c not in expected]
        detail = []
        if missing:
            detail.append(f"missing columns {missing}")
        if extra:
            detail.append(f"unexpected columns {extra}")
        if not detail:
            detail.append(f"columns in the wrong order {cols}")
        raise DataError(f"{path}: {'; '.join(detail)}; expected {expected}")


def _parse_ints(series: pd.Series, path: Path, what: str) -> np.ndarray:
    """Parse a column of decimal integers, naming the first bad row (1-based data row)."""
    s = series.str.strip()
    ok = s.str.fullmatch(r"-?\d+")
    if not ok.all():
        i = int(np.flatnonzero(~ok.to_numpy())[0])
        raise DataError(f"{path}: row {i + 2} ({what}): {series.iloc[i]!r} is not an integer")
    return s.astype(np.int64).to_numpy()


def _song_index(df: pd.DataFrame, path: Path) -> pd.Index:
    ids = _parse_ints(df["song_id"], path, "song_id")
    idx = pd.Index(ids, name="song_id")
    if idx.has_duplicates:
        dup = idx[idx.duplicated()][0]
        rows = (np.flatnonzero(ids == dup) + 2).tolist()
        raise DataError(f"{path}: duplicate song_id {dup} at rows {rows}")
    return idx


def _context_matrix(df: pd.DataFrame, path: Path) -> np.ndarray:
    out = np.empty((len(df), len(CONTEXTS)), dtype=np.int64)
    for j, c in enumerate(CONTEXTS):
        out[:, j] = _parse_ints(df[c], path, f"column {c!r}")
    return out


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Parse a one-hot label file (``song_id`` + 15 columns of 0/1).

    Returns
    -------
    DataFrame
        Indexed by ``song_id`` (int), one bool column per context in
        :data:`~ctxpaper.contexts.CONTEXTS` order.
    """
    path = Path(path)
    df = _read_csv(path)
    _check_columns(df, ["song_id", *CONTEXTS], path)
    idx = _song_index(df, path)
    values = _context_matrix(df, path)
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: row {r + 2}, column {CONTEXTS[c]!r}: label {values[r, c]} is not 0 or 1"
        )
    return pd.DataFrame(values.astype(bool), index=idx, columns=list(CONTEXTS))


def read_counts(path: str | os.PathLike[str], labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Parse a playlist-count file (``song_id`` + 15 non-negative integers).

    When ``labels`` is given the result is re-ordered to its index (the two
    released files are in different row orders) and the id sets must agree.
    """
    path = Path(path)
    df = _read_csv(path)
    _check_columns(df, ["song_id", *CONTEXTS], path)
    idx = _song_index(df, path)
    values = _context_matrix(df, path)
    if (values < 0).any():
        r, c = np.argwhere(values < 0)[0]
        raise DataError(
            f"{path}: row {r + 2}, column {CONTEXTS[c]!r}: count {values[r, c]} is negative"
        )
    counts = pd.DataFrame(values, index=idx, columns=list(CONTEXTS))
    if labels is not None:
        only_counts = idx.difference(labels.index)
        only_labels = labels.index.difference(idx)
        if len(only_counts) or len(only_labels):
            raise DataError(
                f"{path}: song ids differ from the label file: {len(only_counts)} only here "
                f"(e.g. {list(only_counts[:3])}), {len(only_labels)} only in the labels "
                f"(e.g. {list(only_labels[:3])})"
            )
        counts = counts.loc[labels.index]
    return counts


def _read_label_lists(path: Path, extra: list[str]) -> pd.DataFrame:
    df = _read_csv(path)
    _check_columns(df, ["song_id", "label", *extra], path)
    idx = _song_index(df, path)
    known = set(CONTEXTS)
    for i, lab in enumerate(df["label"]):
        names = [x for x in lab.split("\t") if x]
        unknown = set(names) - known
        if unknown or not names:
            what = f"unknown context(s) {sorted(unknown)}" if unknown else "no label"
            raise DataError(f"{path}: row {i + 2}: {what}")
    df.index = idx
    return df.drop(columns="song_id")


def read_split(
    folds_path: str | os.PathLike[str],
    subset_paths: dict[str, str | os.PathLike[str]],
    labels: pd.DataFrame,
) -> pd.DataFrame:
    """Parse the fold file and the three subset files into one split table.

    Returns
    -------
    DataFrame
        Indexed by ``song_id`` with ``artist_id`` (int), ``fold`` (0–3) and
        ``subset`` (``train``/``validation``/``test``), in fold-file order.
    """
    folds_path = Path(folds_path)
    folds = _read_label_lists(folds_path, ["artist_id", "fold"])
    artist = _parse_ints(folds["artist_id"], folds_path, "artist_id")
    fold = _parse_ints(folds["fold"], folds_path, "fold")
    if not np.isin(fold, (0, 1, 2, 3)).all():
        i = int(np.flatnonzero(~np.isin(fold, (0, 1, 2, 3)))[0])
        raise DataError(f"{folds_path}: row {i + 2}: fold {fold[i]} is not in 0–3")
    absent = folds.index.difference(labels.index)
    if len(absent):
        raise DataError(
            f"{folds_path}: {len(absent)} song ids are not in the label file "
            f"(e.g. {list(absent[:3])})"
        )
    subset = pd.Series(pd.NA, index=folds.index, dtype="object")
    for name, p in subset_paths.items():
        p = Path(p)
        ids = _read_label_lists(p, []).index
        outside = ids.difference(folds.index)
        if len(outside):
            raise DataError(
                f"{p}: {len(outside)} song ids are not in {folds_path.name} "
                f"(e.g. {list(outside[:3])})"
            )
        twice = ids[subset.loc[ids].notna().to_numpy()]
        if len(twice):
            raise DataError(f"{p}: song ids also in another subset (e.g. {list(twice[:3])})")
        subset.loc[ids] = name
    out = pd.DataFrame({"artist_id": artist, "fold": fold, "subset": subset}, index=folds.index)
    unassigned = out["subset"].isna()
    if unassigned.any():
        raise DataError(
            f"{folds_path}: {int(unassigned.sum())} song ids are in no subset file "
            f"(e.g. {list(out.index[unassigned][:3])})"
        )
    test_fold = out["fold"] == TEST_FOLD
    mismatch = test_fold != (out["subset"] == "test")
    if mismatch.any():
        raise DataError(
            f"{folds_path}: the test subset is not fold {TEST_FOLD} "
            f"({int(mismatch.sum())} tracks disagree)"
        )
    out["subset"] = pd.Categorical(out["subset"], categories=["train", "validation", "test"])
    return out


# --------------------------------------------------------------------------
# the released dataset
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _labels_cached() -> pd.DataFrame:
    return read_labels(locate(LABELS_FILE))


def load_labels() -> pd.DataFrame:
    """The released balanced labels: 49,929 × 15 bool, indexed by ``song_id``."""
    return _labels_cached().copy()


def load_counts() -> pd.DataFrame:
    """The released playlist counts n_ic, aligned to :func:`load_labels` by song id."""
    return read_counts(locate(COUNTS_FILE), labels=_labels_cached())


def load_split() -> pd.DataFrame:
    """The official split: 48,582 tracks with ``artist_id``, ``fold``, ``subset``.

    Fold 0 is the test set (12,169); folds 1–3 hold train (32,771) and
    validation (3,642).
    """
    return read_split(
        locate(FOLDS_FILE),
        {k: locate(v) for k, v in SUBSET_FILES.items()},
        labels=_labels_cached(),
    )


def label_count_disagreements(labels: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """Cells where ``count > 0`` and the label disagree (a data-quality table).

    The released files hold 36 such cells. They are reported, not fixed: the
    labels stay the authors'.

    Returns
    -------
    DataFrame
        One row per cell: ``song_id``, ``context``, ``label``, ``count``, and
        ``kind`` ('label without count' or 'count without label').
    """
    counts = counts.loc[labels.index]
    lab = labels.to_numpy()
    cnt = counts.to_numpy()
    r, c = np.nonzero(lab != (cnt > 0))
    out = pd.DataFrame({
        "song_id": labels.index[r],
        "context": np.asarray(CONTEXTS)[c],
        "label": lab[r, c],
        "count": cnt[r, c],
    })
    out["kind"] = np.where(out["label"], "label without count", "count without label")
    return out
