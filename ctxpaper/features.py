"""The feature store: the paper's 646 × 96 inputs of many tracks on disk (paper §4.1).

The CNN of §4.1 reads a 646 × 96 log-mel patch per track (:mod:`ctxpaper.audio`).
This module extracts those patches for a list of track ids, in parallel, into
a resumable directory that training reads row by row without loading it
(:class:`ctxpaper.train.FeatureBatches`), and keeps per track how many frames
hold audio, so that no crop ever reads the zero padding of a short preview.

Layout of a store directory (version :data:`STORE_VERSION`):

* ``meta.json`` — shape, dtype, version, :data:`ctxpaper.audio.FEATURE_PARAMS`,
  the blake2b of ``ids.npy`` and a blake2b of its own content; written last
  when a store is created, so its presence means the files below exist;
* ``ids.npy`` — int64 track ids, one per row, in request order;
* ``features.f16`` — raw float16 array (n, 646, 96). Half precision on disk
  halves the store (124,032 bytes per track, 6.2 GB for the 49,929 released
  tracks); batches are served as float32. ``benchmarks/bench_audio.py``
  prints the largest difference float16 makes to a patch;
* ``manifest.npz`` — per row: ``status`` (0 pending, 1 done, 2 failed),
  ``valid`` (frames that hold audio, :func:`ctxpaper.audio.valid_frames`),
  ``crc`` (zlib.crc32 of the row's bytes), and the failure reasons. It is the
  truth: a row is served only once its status says done, and the manifest is
  replaced atomically after the rows it marks are flushed to disk. It holds a
  blake2b ``digest`` of its arrays, checked when it is read.

Integrity: every row is checked against its crc32 the first time a process
reads it (:meth:`FeatureStore.read_frames`, :meth:`FeatureStore.verify`); a
damaged row is refused with its track and store named, and the next
:func:`build_feature_store` finds it and extracts it again. A store of another
version, or whose metadata fails its checksum, is rebuilt by the next build and
refused by :class:`FeatureStore` — never misread.

Notebooks: 04_from_ids_to_spectrograms (extraction), 05_cnn_baseline,
06_weighted_losses and 07_beyond_the_paper (training reads it).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .audio import FEATURE_PARAMS, FRAMES, N_MELS, AudioError, logmel_valid
from .fsio import atomic_open, atomic_path, bar_off, write_json

__all__ = [
    "STORE_VERSION", "DTYPE", "PENDING", "DONE", "FAILED", "StoreError", "DamagedRowError",
    "PreviewFiles", "features_from_source", "FeatureStore", "build_feature_store", "store_bytes",
]

#: 2: float16 rows, per-row valid length and crc32, checksummed ids and meta (1: float32).
STORE_VERSION = 2
DTYPE = np.dtype(np.float16)
FEATURES_FILE = "features.f16"
PENDING, DONE, FAILED = 0, 1, 2
#: every file a store writes; a rebuild removes exactly these
_STORE_FILES = ("meta.json", "ids.npy", "manifest.npz", FEATURES_FILE, "features.f32")


class StoreError(ValueError):
    """A feature store whose files cannot be trusted (missing, damaged, other version)."""


class DamagedRowError(StoreError):
    """A stored row whose bytes no longer match its checksum."""


def store_bytes(n_tracks: int) -> int:
    """Bytes of the ``features.f16`` file of a store of ``n_tracks`` rows."""
    return int(n_tracks) * FRAMES * N_MELS * DTYPE.itemsize


# --------------------------------------------------------------------------
# Sources


class PreviewFiles:
    """Picklable ``source_fn``: track id -> ``directory / pattern.format(id=...)``.

    Use with the previews written by :mod:`ctxpaper.deezer` (``{id}.mp3``).
    """

    def __init__(self, directory: str | os.PathLike[str], pattern: str = "{id}.mp3"):
        self.directory = str(directory)
        self.pattern = pattern

    def __call__(self, track_id: int) -> Path:
        return Path(self.directory) / self.pattern.format(id=int(track_id))

    def __repr__(self) -> str:
        return f"PreviewFiles({self.directory!r}, {self.pattern!r})"


def features_from_source(src: Any) -> tuple[np.ndarray, int]:
    """Log-mel patch and valid frames of what a ``source_fn`` returned: a path or ``(waveform, sr)``."""
    if isinstance(src, tuple):
        if len(src) != 2:
            raise AudioError("bad_input", f"source tuple must be (waveform, sr), got {len(src)} items")
        y, sr = src
        return logmel_valid(np.asarray(y), sr=sr)
    if isinstance(src, (str, os.PathLike)):
        return logmel_valid(src)
    raise AudioError("bad_input", f"source_fn must return a path or (waveform, sr), got {type(src).__name__}")


# --------------------------------------------------------------------------
# Reading a store


def _blake2b(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return _blake2b(json.dumps(body, sort_keys=True).encode())


class FeatureStore:
    """A finished or partial on-disk store of log-mel patches (layout: module docstring).

    Attributes
    ----------
    path : pathlib.Path
    all_ids : np.ndarray
        int64 ids of every requested row, row order.
    status : np.ndarray
        int8 per row: :data:`PENDING`, :data:`DONE` or :data:`FAILED`.
    valid_frames : np.ndarray
        int per row: how many leading frames hold audio (0 for rows not done).
    features : np.memmap
        Read-only float16 array (n_requested, 646, 96), every requested row
        (pending and failed ones are zeros). Prefer :meth:`read_frames` /
        :meth:`load`, which check each row's checksum and read without mapping.

    Raises
    ------
    FileNotFoundError
        No store at ``path``.
    StoreError
        Another version, or metadata, ids or manifest that fail their checks;
        the message names the file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"no feature store at {self.path} (missing meta.json)")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StoreError(f"feature store {self.path}: meta.json is not valid JSON ({e})") from None
        if not isinstance(meta, dict):
            raise StoreError(f"feature store {self.path}: meta.json is not an object")
        if meta.get("version") != STORE_VERSION:
            raise StoreError(f"feature store {self.path} has version {meta.get('version')!r}, this ctxpaper "
                             f"reads version {STORE_VERSION}: build_feature_store rebuilds it")
        if meta.get("checksum") != _meta_digest(meta):
            raise StoreError(f"feature store {self.path}: meta.json fails its checksum (edited or damaged)")
        self.meta = meta
        n = int(meta["n"])
        ids_file = self.path / "ids.npy"
        try:
            raw = ids_file.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"feature store {self.path}: ids.npy is missing") from None
        if _blake2b(raw) != meta.get("ids_blake2b"):
            raise StoreError(f"feature store {self.path}: ids.npy fails its checksum (edited or damaged)")
        with open(ids_file, "rb") as fh:
            self.all_ids = np.load(fh, allow_pickle=False)
        if self.all_ids.shape != (n,) or self.all_ids.dtype != np.int64:
            raise StoreError(f"feature store {self.path}: ids.npy holds {self.all_ids.dtype} {self.all_ids.shape}, "
                             f"expected {n} int64 ids")
        self.status, self.valid_frames, self.crc, self._fail_rows, self._fail_reasons = _read_manifest(self.path, n)
        self.shape = (n, int(meta["frames"]), int(meta["n_mels"]))
        self._row_bytes = self.shape[1] * self.shape[2] * DTYPE.itemsize
        data = self.path / FEATURES_FILE
        if not data.exists():
            raise StoreError(f"feature store {self.path}: {FEATURES_FILE} is missing")
        size = data.stat().st_size
        if size != n * self._row_bytes:
            raise StoreError(f"feature store {self.path}: {FEATURES_FILE} holds {size} bytes, expected "
                             f"{n * self._row_bytes} for shape {self.shape}")
        self._index = pd.Index(self.all_ids)
        self._verified = np.zeros(n, bool)
        self._memmap: np.ndarray | None = None
        self._fd: int | None = os.open(data, os.O_RDONLY)

    # -- views
    @property
    def ids(self) -> np.ndarray:
        """int64 ids of the tracks that have features (status done), row order."""
        return self.all_ids[self.status == DONE]

    @property
    def complete(self) -> bool:
        """True when no row is pending (failures allowed)."""
        return bool((self.status != PENDING).all())

    @property
    def failures(self) -> pd.DataFrame:
        """Columns ``id``, ``reason`` for tracks that could not be processed."""
        return pd.DataFrame({"id": self.all_ids[self._fail_rows].astype(np.int64),
                             "reason": self._fail_reasons.astype(str)})

    @property
    def features(self) -> np.ndarray:
        """Read-only float16 memmap of every requested row (no checksum checks)."""
        if self._memmap is None:
            self._memmap = (np.memmap(self.path / FEATURES_FILE, dtype=DTYPE, mode="r", shape=self.shape)
                            if self.shape[0] else np.zeros(self.shape, DTYPE))
        return self._memmap

    def index_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row numbers of ``ids``; KeyError for ids without features."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        rows = self._index.get_indexer(ids)
        bad = rows < 0
        bad[~bad] = self.status[rows[~bad]] != DONE
        if bad.any():
            raise KeyError(f"{int(bad.sum())} id(s) have no features in {self.path}, e.g. {ids[bad][:5].tolist()}")
        return rows

    # -- reading
    def _file(self) -> int:
        if self._fd is None:  # closed, or unpickled
            self._fd = os.open(self.path / FEATURES_FILE, os.O_RDONLY)
        return self._fd

    def _check_row(self, row: int, data: np.ndarray) -> None:
        if zlib.crc32(data) != int(self.crc[row]):
            raise DamagedRowError(
                f"feature store {self.path}: row {row} (track {int(self.all_ids[row])}) fails its checksum "
                "(damaged on disk); run build_feature_store again to extract it anew")
        self._verified[row] = True

    def read_frames(self, row: int, start: int, stop: int, out: np.ndarray) -> None:
        """Read frames ``[start, stop)`` of a done row into ``out`` (float16, (stop - start, n_mels)).

        The first read of a row in this process reads and checks the whole row
        (:class:`DamagedRowError` if its crc32 does not match); later reads
        fetch only the frames asked for. Reads use ``pread``, not a memory
        map, so the store's pages stay in the page cache, not in this
        process's memory.
        """
        if self.status[row] != DONE:
            raise KeyError(f"row {row} (track {int(self.all_ids[row])}) of {self.path} has no features")
        if self._verified[row]:
            self._pread(row, start, out)
        elif (start, stop) == (0, self.shape[1]):  # the whole row: check it where it lands
            self._pread(row, 0, out)
            self._check_row(row, out)
        else:
            whole = self._read(row)
            self._check_row(row, whole)
            out[...] = whole[start:stop]

    def _pread(self, row: int, start: int, out: np.ndarray) -> None:
        """``out`` (C-contiguous float16) from frame ``start`` of ``row`` on."""
        offset = row * self._row_bytes + start * self.shape[2] * DTYPE.itemsize
        got = os.preadv(self._file(), [memoryview(out).cast("B")], offset)
        if got != out.nbytes:
            raise StoreError(f"{self.path / FEATURES_FILE}: short read of row {row} ({got} of {out.nbytes} bytes)")

    def _read(self, row: int) -> np.ndarray:
        out = np.empty(self.shape[1:], DTYPE)
        self._pread(row, 0, out)
        return out

    def verify(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Check the crc32 of done rows (all of them by default); returns the damaged rows.

        Rows that pass are not checked again by this object.
        """
        rows = np.flatnonzero(self.status == DONE) if rows is None else np.asarray(rows, np.int64)
        bad = []
        for r in rows.tolist():
            if self._verified[r]:
                continue
            try:
                self._check_row(r, self._read(r))
            except DamagedRowError:
                bad.append(r)
        return np.asarray(bad, np.int64)

    def load(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features of ``ids`` as an in-memory float32 (len(ids), 646, 96) array, in that order."""
        rows = self.index_of(ids)
        out = np.empty((len(rows),) + self.shape[1:], np.float32)
        buf = np.empty(self.shape[1:], DTYPE)
        for i in np.argsort(rows, kind="stable").tolist():  # sequential reads
            self.read_frames(int(rows[i]), 0, self.shape[1], buf)
            out[i] = buf
        return out

    def close(self) -> None:
        """Release the file descriptor and memory map (reopened on demand)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._memmap = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self) -> dict[str, Any]:  # picklable: no descriptor, no map
        state = dict(self.__dict__)
        state["_fd"], state["_memmap"] = None, None
        return state

    def __len__(self) -> int:
        return int((self.status == DONE).sum())

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}: {len(self)} done, {len(self._fail_rows)} failed, "
                f"{int((self.status == PENDING).sum())} pending of {len(self.all_ids)})")


def _manifest_digest(arrays: Sequence[np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_manifest(path: Path, n: int) -> tuple[np.ndarray, ...]:
    file = path / "manifest.npz"
    try:
        with np.load(file, allow_pickle=False) as z:
            arrays = [z[k] for k in ("status", "valid", "crc", "fail_rows", "fail_reasons")]
            digest = str(z["digest"])
    except FileNotFoundError:
        raise StoreError(f"feature store {path}: manifest.npz is missing") from None
    except Exception as e:  # BadZipFile, KeyError, ValueError… of a damaged file
        raise StoreError(f"feature store {path}: manifest.npz is damaged ({type(e).__name__}: {e})") from None
    if digest != _manifest_digest(arrays):
        raise StoreError(f"feature store {path}: manifest.npz fails its checksum (edited or damaged)")
    status, valid, crc, fail_rows, fail_reasons = arrays
    status, valid, crc = status.astype(np.int8), valid.astype(np.int64), crc.astype(np.uint32)
    ok = (status.shape == valid.shape == crc.shape == (n,) and np.isin(status, (PENDING, DONE, FAILED)).all()
          and ((valid >= 1) & (valid <= FRAMES) | (status != DONE)).all()
          and fail_rows.shape == fail_reasons.shape and ((fail_rows >= 0) & (fail_rows < n)).all())
    if not ok:
        raise StoreError(f"feature store {path}: manifest.npz holds inconsistent arrays")
    return status, valid, crc, fail_rows.astype(np.int64), fail_reasons.astype(str)


def _write_manifest(path: Path, status: np.ndarray, valid: np.ndarray, crc: np.ndarray,
                    failures: dict[int, str]) -> None:
    rows = np.array(sorted(failures), dtype=np.int64)
    reasons = np.array([failures[r] for r in rows.tolist()], dtype=str) if len(rows) else np.array([], dtype="<U1")
    arrays = [status.astype(np.int8), valid.astype(np.int16), crc.astype(np.uint32), rows, reasons]
    with atomic_open(path / "manifest.npz", "wb") as fh:
        np.savez(fh, status=arrays[0], valid=arrays[1], crc=arrays[2], fail_rows=rows, fail_reasons=reasons,
                 digest=np.array(_manifest_digest(arrays)))


# --------------------------------------------------------------------------
# Writing a store


def _remove_store(path: Path) -> None:
    """Delete a store's files (meta.json first: a half-removed store is no store)."""
    for name in _STORE_FILES:
        (path / name).unlink(missing_ok=True)


def _create_store(path: Path, ids: np.ndarray) -> None:
    path.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    with atomic_path(path / FEATURES_FILE) as tmp:
        with open(tmp, "wb") as fh:  # sparse file: unwritten rows read as zeros
            fh.truncate(store_bytes(n))
    with atomic_open(path / "ids.npy", "wb") as fh:
        np.save(fh, ids.astype(np.int64), allow_pickle=False)
    zeros = np.zeros(n, np.int64)
    _write_manifest(path, zeros, zeros, zeros, {})
    meta = {"version": STORE_VERSION, "n": n, "frames": FRAMES, "n_mels": N_MELS, "dtype": DTYPE.name,
            "feature_params": FEATURE_PARAMS, "ids_blake2b": _blake2b((path / "ids.npy").read_bytes())}
    meta = json.loads(json.dumps(meta))  # the digest is of what json gives back
    meta["checksum"] = _meta_digest(meta)
    write_json(path / "meta.json", meta)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock so that two builds never write one store at once."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"feature store {path} is being built by another process") from None
        yield


def _extract_chunk(store: str, n: int, rows: list[int], ids: list[int],
                   source_fn: Callable[[int], Any]) -> tuple[list[int], list[int], list[str], list[int], list[int],
                                                             list[str | None]]:
    """Compute and write rows of a store (runs in a worker).

    Returns per row: status, failure reason, valid frames, crc32 of the written
    bytes, and the source file (for ``delete_sources``).
    """
    mm = np.memmap(Path(store) / FEATURES_FILE, dtype=DTYPE, mode="r+", shape=(n, FRAMES, N_MELS))
    status, reasons, valid, crc, files = [], [], [], [], []
    for row, tid in zip(rows, ids):
        file, outcome = None, (FAILED, "", 0, 0)
        try:
            src = source_fn(tid)
            file = str(src) if isinstance(src, (str, os.PathLike)) else None
            patch, n_valid = features_from_source(src)
            half = np.ascontiguousarray(patch, dtype=DTYPE)  # C order: the crc is of the bytes on disk
            if not np.isfinite(half).all():  # log-mel values are far below float16's 65,504
                raise AudioError("non_finite", "log-mel overflows float16")
            mm[row] = half
            outcome = (DONE, "", n_valid, zlib.crc32(half))
        except AudioError as e:
            outcome = (FAILED, str(e), 0, 0)
        except Exception as e:  # a source that cannot be produced is recorded, not fatal
            outcome = (FAILED, f"source_error: {type(e).__name__}: {e}", 0, 0)
        for column, value in zip((status, reasons, valid, crc), outcome):
            column.append(value)
        files.append(file)
    mm.flush()  # rows reach the file before the parent marks them done
    del mm
    return rows, status, reasons, valid, crc, files


def _init_worker() -> None:
    # One core per worker: keep BLAS / FFT libraries from oversubscribing.
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass


def _open_for_build(path: Path, ids: np.ndarray) -> FeatureStore:
    """The store at ``path`` for ``ids``: reopened, rebuilt when untrustworthy, or created."""
    if (path / "meta.json").exists():
        try:
            store = FeatureStore(path)
        except StoreError as e:
            warnings.warn(f"{e}; rebuilding it", stacklevel=3)
            _remove_store(path)
        else:
            if store.meta.get("feature_params") != json.loads(json.dumps(FEATURE_PARAMS)):
                raise ValueError(f"feature store {path} was built with other feature parameters; "
                                 "delete it or choose another path")
            if not np.array_equal(store.all_ids, ids):
                raise ValueError(f"feature store {path} was built for other ids ({len(store.all_ids)} stored, "
                                 f"{len(ids)} requested); delete it or choose another path")
            return store
    else:
        _remove_store(path)  # stray files of a creation killed before meta.json
    _create_store(path, ids)
    return FeatureStore(path)


def build_feature_store(ids: Sequence[int] | np.ndarray, source_fn: Callable[[int], Any],
                        path: str | os.PathLike[str], workers: int = 2, chunk: int = 64,
                        progress: bool = True, retry_failed: bool = False,
                        delete_sources: bool = False) -> FeatureStore:
    """Extract log-mel patches for ``ids`` into a resumable store at ``path``.

    Parameters
    ----------
    ids : sequence of int
        Unique track ids; their order is the row order of the store.
    source_fn : callable
        ``source_fn(track_id)`` returns a file path or a ``(waveform, sr)``
        tuple. Must be picklable (a top-level function, a ``functools.partial``
        of one, or an instance such as :class:`PreviewFiles` or
        ``ctxpaper.synth.SimulatedPreviews``) when ``workers > 1``.
    path : path-like
        Store directory. If it holds a store for the same ids, only rows not
        marked done are computed (a killed run resumes), after every done row
        is checked against its checksum: damaged rows are reported (a
        warning) and extracted again. A store of another version or with
        damaged metadata is rebuilt; a store for other ids or other feature
        parameters is an error.
    workers : int
        Processes (1: in this process).
    chunk : int
        Rows per task; the manifest is updated after each chunk.
    progress : bool
        Show a tqdm progress bar.
    retry_failed : bool
        Recompute rows recorded as failed.
    delete_sources : bool
        Delete each source file (when ``source_fn`` returns paths) once its
        row is flushed and committed with its checksum. Files of failed rows
        are kept. With :class:`PreviewFiles`, a build that was killed between a
        commit and the deletion deletes the leftovers on its next run.

    Returns
    -------
    FeatureStore
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"ids must be a 1-D array of integers, got dtype {ids.dtype} shape {ids.shape}")
    ids = ids.astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"ids must be unique; duplicated: {uniq[counts > 1][:5].tolist()}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    path = Path(path)
    with _locked(path):
        store = _open_for_build(path, ids)
        status, valid, crc = store.status.astype(np.int8), store.valid_frames.copy(), store.crc.copy()
        failures = {int(r): str(s) for r, s in zip(store._fail_rows, store._fail_reasons)}
        damaged = store.verify()
        store.close()
        if damaged.size:
            warnings.warn(f"feature store {path}: {damaged.size} row(s) fail their checksum and are extracted "
                          f"again (tracks {store.all_ids[damaged][:10].tolist()})", stacklevel=2)
            status[damaged] = PENDING
            _write_manifest(path, status, valid, crc, failures)
        if delete_sources and isinstance(source_fn, PreviewFiles):
            for tid in store.all_ids[status == DONE].tolist():
                source_fn(tid).unlink(missing_ok=True)
        todo = status == PENDING
        if retry_failed:
            todo |= status == FAILED
            for r in np.flatnonzero(status == FAILED).tolist():
                failures.pop(r, None)
        rows = np.flatnonzero(todo)
        chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
        n = len(ids)
        bar = tqdm(total=n, initial=n - len(rows), desc="log-mel features", unit="clip", **bar_off(progress))

        def record(result: tuple[list, ...]) -> None:
            r, s, reasons, v, c, files = result
            for row, st, why, nv, cc in zip(r, s, reasons, v, c):
                status[row], valid[row], crc[row] = st, nv, cc
                if st == FAILED:
                    failures[row] = why
                else:
                    failures.pop(row, None)
            _write_manifest(path, status, valid, crc, failures)  # the commit point of these rows
            if delete_sources:
                for st, file in zip(s, files):
                    if st == DONE and file is not None:
                        Path(file).unlink(missing_ok=True)
            bar.update(len(r))

        try:
            args = [(str(path), n, c.tolist(), ids[c].tolist()) for c in chunks]
            if workers == 1 or len(chunks) <= 1:
                for a in args:
                    record(_extract_chunk(*a, source_fn))
            else:
                ctx = multiprocessing.get_context("forkserver")
                # Imported once in the fork server, inherited by every worker: saves
                # each worker ~2 s of librosa/scipy imports.
                ctx.set_forkserver_preload(["ctxpaper.features", "ctxpaper.synth", "librosa.filters",
                                            "scipy.signal", "scipy.fft", "scipy.sparse"])
                with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                            initializer=_init_worker) as pool:
                    pending: set[cf.Future] = set()
                    for a in args:  # keep at most 2 chunks per worker in flight
                        pending.add(pool.submit(_extract_chunk, *a, source_fn))
                        if len(pending) >= 2 * workers:
                            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                            for f in done:
                                record(f.result())
                    for f in cf.as_completed(pending):
                        record(f.result())
        finally:
            bar.close()
    return FeatureStore(path)
