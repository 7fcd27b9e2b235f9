"""What the model hears: decoding, the 30 s crop and the log-mel input (paper §4.1).

The paper feeds its CNN "646 frames x 96 mel bands, representing 30 seconds
from each track cropped after 30 seconds from the start of the track to match
the Deezer preview samples". This module turns a file (MP3, OGG, FLAC, WAV, …
anything libsndfile reads) or a waveform into exactly that patch, and stores
the patches of many tracks in a resumable, memory-mapped :class:`FeatureStore`.

Design choices (the released code does not state them; they are ours):

* **Sample rate** 22,050 Hz, **hop** 1024, centred frames: 30 s = 661,500
  samples gives ``1 + 661500 // 1024 = 646`` frames, the paper's input size.
* **n_fft = 2048, fmin = 0 Hz, fmax = 11,025 Hz (Nyquist), Slaney mel scale
  and norm, power spectrogram**: librosa's defaults, which is what a call to
  ``librosa.feature.melspectrogram(y, sr=22050, n_mels=96, hop_length=1024)``
  — the likely form of the authors' call — uses.
* **Compression** ``log(1 + 100 x)`` as in the authors' code.
* **Crop**: a source of at least 60 s is cropped to [30 s, 60 s) (the paper's
  rule for full tracks); a shorter source is a preview and its first 30 s are
  used, zero-padded at the end when it is between ``MIN_SECONDS`` and 30 s
  long (Deezer previews are sometimes a few frames short). Shorter sources are
  rejected as ``too_short``.
* **Mono** by averaging the channels; resampling with soxr "HQ" (librosa's own
  default resampler).

Bad input never crashes a batch: :class:`AudioError` carries a short
``reason`` code (``unreadable``, ``empty``, ``too_short``, ``silent``,
``non_finite``, ``bad_input``) that the feature store records per track.

Notebook: 04_from_ids_to_spectrograms.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import fcntl
import functools
import glob
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from .fsio import atomic_open, atomic_path, write_json

# --------------------------------------------------------------------------
# Constants of the input representation (paper §4.1 and our documented choices)
SR: int = 22050
N_MELS: int = 96
HOP: int = 1024
N_FFT: int = 2048
FMIN: float = 0.0
FMAX: float = SR / 2
DURATION: float = 30.0
OFFSET: float = 30.0  # crop start for sources of >= OFFSET + DURATION seconds
N_SAMPLES: int = int(round(DURATION * SR))  # 661,500
FRAMES: int = 1 + N_SAMPLES // HOP  # 646 (centred frames)
COMPRESSION: float = 100.0  # log(1 + COMPRESSION * mel)
#: sources shorter than this are rejected; between this and 30 s they are padded
MIN_SECONDS: float = 10.0
#: a clip whose RMS (after mono mix and crop) is below this is "silent" (-80 dBFS)
SILENCE_RMS: float = 1e-4

FEATURE_PARAMS: dict[str, Any] = {
    "sr": SR, "n_mels": N_MELS, "hop": HOP, "n_fft": N_FFT, "fmin": FMIN, "fmax": FMAX,
    "duration": DURATION, "offset": OFFSET, "frames": FRAMES, "compression": COMPRESSION,
    "min_seconds": MIN_SECONDS, "silence_rms": SILENCE_RMS, "mel": "slaney", "power": 2.0,
    "window": "hann", "center": True, "pad_mode": "constant", "resampler": "soxr_hq",
}

#: Where the Debian packages put real recordings (used by tests and chapter 04).
REAL_RECORDINGS: dict[str, str] = {
    "asc-music": "/usr/share/games/asc/music/*.mp3",          # MP3, 22.05 kHz stereo
    "sonic-pi-samples": "/usr/share/sonic-pi/samples/*.flac",  # CC0 FLAC, 44.1 kHz
    "lmms-common": "/usr/share/lmms/samples/**/*.ogg",         # OGG Vorbis instruments
}


class AudioError(ValueError):
    """A source that cannot become a log-mel patch; ``reason`` is a short code."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason



def import_librosa():
    """Import librosa (lazily: it costs ~1 s) without a spurious warning.

    librosa imports pooch, which imports ``tqdm.auto``; in a notebook without
    ipywidgets that prints "IProgress not found" about a download bar this
    project never shows. Only that warning is silenced, only during the import.
    """
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        import librosa
    return librosa

def real_recordings(package: str) -> list[Path]:
    """Audio files installed by a Debian package of :data:`REAL_RECORDINGS`.

    Returns an empty list when the package is not installed.
    """
    try:
        pattern = REAL_RECORDINGS[package]
    except KeyError:
        raise ValueError(f"unknown package {package!r}: choose one of {', '.join(REAL_RECORDINGS)}") from None
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True))


# --------------------------------------------------------------------------
# Decoding, mono, resampling, crop


def _crop_bounds(n: int, sr: int) -> tuple[int, int]:
    """Native-rate [start, stop) of the 30 s excerpt of an n-sample source."""
    need = int(round(DURATION * sr))
    if n >= int(round((OFFSET + DURATION) * sr)):
        start = int(round(OFFSET * sr))
        return start, start + need
    return 0, min(n, need)


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    """Decode the excerpt of a file (frames x channels float32) at its native rate."""
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            n = int(f.frames)
            start, stop = _crop_bounds(n, sr)
            if start:
                f.seek(start)
            y = f.read(stop - start, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        if isinstance(e, OSError) and not path.exists():
            raise FileNotFoundError(f"no such audio file: {path}") from e
        raise AudioError("unreadable", f"{path}: {e}") from None
    return y, sr


def _to_mono(y: np.ndarray) -> np.ndarray:
    """Average the channels of a (samples, channels) float32 array.

    Column by column: ``y.mean(axis=1)`` reduces along the short, strided axis
    and costs ~10x more (a third of the decode + log-mel time of a stereo MP3).
    """
    if y.shape[1] == 1:
        return y[:, 0]
    out = y[:, 0].copy()
    for c in range(1, y.shape[1]):
        out += y[:, c]
    out *= np.float32(1.0 / y.shape[1])
    return out


def load_audio(source: str | os.PathLike[str] | np.ndarray, sr: int | None = None,
               min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Decode a source into the mono, 22,050 Hz, 30 s excerpt the model hears.

    Parameters
    ----------
    source : path or np.ndarray
        An audio file (anything libsndfile decodes: MP3, OGG, FLAC, WAV…), or a
        waveform: 1-D (samples) or 2-D (samples x channels).
    sr : int, optional
        Sample rate of a waveform source (required then; ignored for files).
    min_seconds : float
        Sources shorter than this raise ``AudioError('too_short')``.

    Returns
    -------
    np.ndarray
        float32 array of exactly :data:`N_SAMPLES` samples (see the module
        docstring for the crop / pad rule).

    Raises
    ------
    AudioError
        With ``reason`` in {unreadable, empty, too_short, silent, non_finite, bad_input}.
    FileNotFoundError
        When a path does not exist.
    """
    if isinstance(source, np.ndarray):
        if sr is None:
            raise AudioError("bad_input", "a waveform source needs its sample rate: logmel(y, sr=...)")
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise AudioError("bad_input", f"sample rate must be a positive integer, got {sr!r}")
        y = source
        if y.ndim == 1:
            y = y[:, None]
        elif y.ndim != 2:
            raise AudioError("bad_input", f"waveform must be 1-D or 2-D (samples x channels), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
            raise AudioError("bad_input", f"waveform must be real numbers, got dtype {y.dtype}")
        sr = int(sr)
        start, stop = _crop_bounds(y.shape[0], sr)
        y = np.asarray(y[start:stop], dtype=np.float32)
        name = "waveform"
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such audio file: {path}")
        if path.stat().st_size == 0:
            raise AudioError("empty", f"{path} is 0 bytes")
        y, sr = _read_file(path)
        name = str(path)
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise AudioError("empty", f"{name} has no samples")
    if not np.isfinite(y).all():
        raise AudioError("non_finite", f"{name} contains NaN or infinite samples")
    seconds = y.shape[0] / sr
    if seconds < min_seconds:
        raise AudioError("too_short", f"{name} lasts {seconds:.2f} s, less than {min_seconds:g} s")
    y = _to_mono(y)
    if sr != SR:
        y = soxr.resample(y, sr, SR, quality="HQ").astype(np.float32, copy=False)
    if y.shape[0] >= N_SAMPLES:
        y = y[:N_SAMPLES]
    else:  # a preview a little shorter than 30 s: pad the end with silence
        y = np.pad(y, (0, N_SAMPLES - y.shape[0]))
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms < SILENCE_RMS:
        raise AudioError("silent", f"{name} is silent (RMS {rms:.2e} < {SILENCE_RMS:g})")
    return np.ascontiguousarray(y, dtype=np.float32)


# --------------------------------------------------------------------------
# Log-mel


@functools.lru_cache(maxsize=1)
def mel_basis() -> np.ndarray:
    """The (96, 1025) Slaney mel filterbank used by :func:`logmel`."""
    librosa = import_librosa()

    return librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mel_basis_t() -> Any:
    # Sparse (each filter spans a few bins): faster than BLAS here and, unlike a
    # threaded BLAS, gives bit-identical results in any process -> reproducible stores.
    import scipy.sparse

    return scipy.sparse.csr_matrix(mel_basis().T)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    import scipy.signal

    return scipy.signal.get_window("hann", N_FFT, fftbins=True).astype(np.float32)


def mel_power(y: np.ndarray) -> np.ndarray:
    """Mel power spectrogram (FRAMES x N_MELS) of an :data:`N_SAMPLES` waveform.

    Centred Hann frames with zero padding of ``N_FFT // 2`` at both ends, as
    librosa's ``stft(center=True, pad_mode='constant')``.
    """
    if y.shape != (N_SAMPLES,):
        raise AudioError("bad_input", f"mel_power expects {N_SAMPLES} samples, got shape {y.shape}")
    pad = N_FFT // 2
    yp = np.pad(y.astype(np.float32, copy=False), (pad, pad))
    frames = np.lib.stride_tricks.sliding_window_view(yp, N_FFT)[::HOP]  # (646, 2048) view
    import scipy.fft

    spec = scipy.fft.rfft(frames * _window(), axis=1)  # complex64, faster than numpy's
    power = spec.real**2 + spec.imag**2  # (646, 1025) float32
    return np.asarray(power @ _mel_basis_t(), dtype=np.float32)


def logmel(source: str | os.PathLike[str] | np.ndarray, sr: int | None = None,
           min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """The paper's CNN input: a (646, 96) float32 log-mel patch (frames x bands).

    Parameters
    ----------
    source : path or np.ndarray
        Audio file, or waveform (1-D, or samples x channels) with ``sr`` given.
    sr : int, optional
        Sample rate of a waveform source.
    min_seconds : float
        Shortest accepted source; see :func:`load_audio`.

    Returns
    -------
    np.ndarray
        ``log(1 + 100 * mel_power)``, shape ``(FRAMES, N_MELS)``, float32, finite.

    Notebook: 04_from_ids_to_spectrograms.
    """
    y = load_audio(source, sr=sr, min_seconds=min_seconds)
    out = np.log1p(COMPRESSION * mel_power(y)).astype(np.float32, copy=False)
    if not np.isfinite(out).all():  # cannot happen for finite input; guard the store anyway
        raise AudioError("non_finite", "log-mel has non-finite values")
    return out


def audio_descriptors(y: np.ndarray, sr: int = SR) -> dict[str, float]:
    """Three interpretable descriptors of a clip: tempo, loudness, brightness.

    Returns ``tempo_bpm`` (librosa's onset-autocorrelation estimate), ``rms``
    (mean frame RMS, linear) and ``centroid_hz`` (mean spectral centroid).

    Notebook: 04_from_ids_to_spectrograms.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    onset = librosa.onset.onset_strength(y=y, sr=sr, hop_length=512)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=512))[0])
    rms = float(librosa.feature.rms(y=y, frame_length=2048, hop_length=HOP).mean())
    centroid = float(librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP).mean())
    return {"tempo_bpm": tempo, "rms": rms, "centroid_hz": centroid}


# --------------------------------------------------------------------------
# Sources for the feature store


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


def features_from_source(src: Any) -> np.ndarray:
    """Log-mel of what a ``source_fn`` returned: a path or a ``(waveform, sr)`` tuple."""
    if isinstance(src, tuple):
        if len(src) != 2:
            raise AudioError("bad_input", f"source tuple must be (waveform, sr), got {len(src)} items")
        y, sr = src
        return logmel(np.asarray(y), sr=sr)
    if isinstance(src, (str, os.PathLike)):
        return logmel(src)
    raise AudioError("bad_input", f"source_fn must return a path or (waveform, sr), got {type(src).__name__}")


# --------------------------------------------------------------------------
# Feature store

PENDING, DONE, FAILED = 0, 1, 2
_STORE_VERSION = 1


class FeatureStore:
    """A finished or partial on-disk store of log-mel patches.

    Layout of the directory ``path``:

    * ``meta.json`` — shape, version and :data:`FEATURE_PARAMS`; written last
      when the store is created, so its presence means the files below exist;
    * ``ids.npy`` — int64 track ids, one per row, in request order;
    * ``features.f32`` — raw float32 array (n_requested, 646, 96), memory-mapped;
    * ``manifest.npz`` — ``status`` per row (0 pending, 1 done, 2 failed) and the
      failure reasons. It is the truth: a row is valid only once its status
      says done, and the manifest is replaced atomically after the rows it
      marks are flushed to disk.

    Attributes
    ----------
    ids : np.ndarray
        int64 ids of the tracks that have features (status done), row order.
    features : np.memmap
        Read-only array of shape (n_requested, 646, 96): every requested row,
        including pending/failed ones (zeros); index it with :meth:`index_of`.
    failures : pd.DataFrame
        Columns ``id``, ``reason`` for tracks that could not be processed.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"no feature store at {self.path} (missing meta.json)")
        self.meta = json.loads(meta_file.read_text())
        if self.meta.get("version") != _STORE_VERSION:
            raise ValueError(f"{meta_file}: unsupported store version {self.meta.get('version')!r}")
        self.all_ids = np.load(self.path / "ids.npy", allow_pickle=False)
        n = int(self.meta["n"])
        if self.all_ids.shape != (n,) or self.all_ids.dtype != np.int64:
            raise ValueError(f"{self.path / 'ids.npy'}: expected {n} int64 ids, got {self.all_ids.dtype} {self.all_ids.shape}")
        self.status, self._fail_rows, self._fail_reasons = _read_manifest(self.path, n)
        shape = (n, int(self.meta["frames"]), int(self.meta["n_mels"]))
        expected = int(np.prod(shape)) * 4
        size = (self.path / "features.f32").stat().st_size
        if size != expected:
            raise ValueError(f"{self.path / 'features.f32'}: {size} bytes, expected {expected} for shape {shape}")
        self.features = (np.memmap(self.path / "features.f32", dtype=np.float32, mode="r", shape=shape)
                         if n else np.zeros(shape, np.float32))
        self._index = pd.Index(self.all_ids)

    @property
    def ids(self) -> np.ndarray:
        return self.all_ids[self.status == DONE]

    @property
    def complete(self) -> bool:
        """True when no row is pending (failures allowed)."""
        return bool((self.status != PENDING).all())

    @property
    def failures(self) -> pd.DataFrame:
        return pd.DataFrame({"id": self.all_ids[self._fail_rows].astype(np.int64),
                             "reason": self._fail_reasons.astype(str)})

    def index_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row numbers in :attr:`features` of ``ids``; KeyError for ids without features."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        rows = self._index.get_indexer(ids)
        bad = rows < 0
        bad[~bad] = self.status[rows[~bad]] != DONE
        if bad.any():
            raise KeyError(f"{int(bad.sum())} id(s) have no features in {self.path}, e.g. {ids[bad][:5].tolist()}")
        return rows

    def load(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features of ``ids`` as an in-memory (len(ids), 646, 96) array, in that order."""
        rows = self.index_of(ids)
        order = np.argsort(rows, kind="stable")  # read the memmap sequentially
        out = np.empty((len(rows),) + self.features.shape[1:], np.float32)
        out[order] = self.features[rows[order]]
        return out

    def __len__(self) -> int:
        return int((self.status == DONE).sum())

    def __repr__(self) -> str:
        return (f"FeatureStore({str(self.path)!r}: {len(self)} done, {len(self._fail_rows)} failed, "
                f"{int((self.status == PENDING).sum())} pending of {len(self.all_ids)})")


def _read_manifest(path: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path / "manifest.npz", allow_pickle=False) as z:
        status = z["status"].astype(np.int8)
        fail_rows = z["fail_rows"].astype(np.int64)
        fail_reasons = z["fail_reasons"].astype(str)
    if status.shape != (n,) or not np.isin(status, (PENDING, DONE, FAILED)).all():
        raise ValueError(f"{path / 'manifest.npz'}: corrupt status array")
    return status, fail_rows, fail_reasons


def _write_manifest(path: Path, status: np.ndarray, failures: dict[int, str]) -> None:
    rows = np.array(sorted(failures), dtype=np.int64)
    reasons = np.array([failures[r] for r in rows.tolist()], dtype=str) if len(rows) else np.array([], dtype="<U1")
    with atomic_open(path / "manifest.npz", "wb") as fh:
        np.savez(fh, status=status.astype(np.int8), fail_rows=rows, fail_reasons=reasons)


def _create_store(path: Path, ids: np.ndarray) -> None:
    path.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    with atomic_path(path / "features.f32") as tmp:
        with open(tmp, "wb") as fh:  # sparse file: unwritten rows read as zeros
            fh.truncate(n * FRAMES * N_MELS * 4)
    with atomic_open(path / "ids.npy", "wb") as fh:
        np.save(fh, ids.astype(np.int64), allow_pickle=False)
    _write_manifest(path, np.zeros(n, np.int8), {})
    write_json(path / "meta.json", {"version": _STORE_VERSION, "n": n, "frames": FRAMES,
                                    "n_mels": N_MELS, "dtype": "float32", "feature_params": FEATURE_PARAMS})


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
                   source_fn: Callable[[int], Any]) -> tuple[list[int], list[int], list[str]]:
    """Compute and write rows of a store (runs in a worker); returns (rows, status, reasons)."""
    mm = np.memmap(Path(store) / "features.f32", dtype=np.float32, mode="r+", shape=(n, FRAMES, N_MELS))
    status, reasons = [], []
    for row, tid in zip(rows, ids):
        try:
            mm[row] = features_from_source(source_fn(tid))
            status.append(DONE)
            reasons.append("")
        except AudioError as e:
            status.append(FAILED)
            reasons.append(str(e))
        except Exception as e:  # a source that cannot be produced is recorded, not fatal
            status.append(FAILED)
            reasons.append(f"source_error: {type(e).__name__}: {e}")
    mm.flush()  # rows reach the file before the parent marks them done
    del mm
    return rows, status, reasons


def _init_worker() -> None:
    # One core per worker: keep BLAS / FFT libraries from oversubscribing.
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass


def build_feature_store(ids: Sequence[int] | np.ndarray, source_fn: Callable[[int], Any],
                        path: str | os.PathLike[str], workers: int = 2, chunk: int = 64,
                        progress: bool = True, retry_failed: bool = False) -> FeatureStore:
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
        marked done are computed (a killed run resumes); a store for other ids
        or other feature parameters is an error.
    workers : int
        Processes (1: in this process).
    chunk : int
        Rows per task; the manifest is updated after each chunk.
    progress : bool
        Show a tqdm progress bar.
    retry_failed : bool
        Recompute rows recorded as failed.

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
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    path = Path(path)
    with _locked(path):
        if (path / "meta.json").exists():
            store = FeatureStore(path)
            if store.meta.get("feature_params") != json.loads(json.dumps(FEATURE_PARAMS)):
                raise ValueError(f"feature store {path} was built with other feature parameters; "
                                 "delete it or choose another path")
            if not np.array_equal(store.all_ids, ids):
                raise ValueError(f"feature store {path} was built for other ids "
                                 f"({len(store.all_ids)} stored, {len(ids)} requested); delete it or choose another path")
        else:
            _create_store(path, ids)
            store = FeatureStore(path)
        status = store.status.copy()
        failures = {int(r): str(s) for r, s in zip(store._fail_rows, store._fail_reasons)}
        todo = status == PENDING
        if retry_failed:
            todo |= status == FAILED
            for r in np.flatnonzero(status == FAILED).tolist():
                failures.pop(r, None)
        rows = np.flatnonzero(todo)
        chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
        n = len(ids)

        from tqdm import tqdm

        bar = tqdm(total=n, initial=n - len(rows), desc="log-mel features", unit="clip", disable=not progress)

        def record(result: tuple[list[int], list[int], list[str]]) -> None:
            r, s, reasons = result
            for row, st, why in zip(r, s, reasons):
                status[row] = st
                if st == FAILED:
                    failures[row] = why
                else:
                    failures.pop(row, None)
            _write_manifest(path, status, failures)
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
                ctx.set_forkserver_preload(["ctxpaper.audio", "ctxpaper.synth", "librosa.filters",
                                            "scipy.signal", "scipy.fft", "scipy.sparse"])
                with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                            initializer=_init_worker) as pool:
                    pending: set[cf.Future] = set()
                    it = iter(args)
                    for a in it:  # keep at most 2 chunks per worker in flight
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
