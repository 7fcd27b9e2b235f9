"""What the model hears: decoding, the 30 s crop and the log-mel input (paper §4.1).

The paper feeds its CNN "646 frames x 96 mel bands, representing 30 seconds
from each track cropped after 30 seconds from the start of the track to match
the Deezer preview samples". This module turns a file (MP3, OGG, FLAC, WAV, …
anything libsndfile reads) or a waveform into exactly that patch, and says how
many of its frames hold audio. It is DSP only: the on-disk store of many
patches is :mod:`ctxpaper.features`, the crop the model reads is
:func:`ctxpaper.train.crop_window`.

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
  long (Deezer previews are sometimes shorter). The padding is never read as
  audio: :func:`valid_frames` counts the frames whose centre lies on audio and
  every crop is taken from those. Shorter sources are rejected as ``too_short``.
  The length is the decoded one, not the header's: a truncated MP3 whose
  header still promises its full duration is used up to where it ends.
* **Mono** by averaging the channels; resampling with soxr "HQ" (librosa's own
  default resampler).

Bad input never crashes a batch: :class:`AudioError` carries a short
``reason`` code (``unreadable``, ``empty``, ``too_short``, ``silent``,
``non_finite``, ``bad_input``) that the feature store records per track.

Notebooks: 04_from_ids_to_spectrograms (and 05 through :mod:`ctxpaper.tag`).
"""

from __future__ import annotations

import functools
import glob
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
import scipy.sparse
import soundfile as sf
import soxr

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
#: the same threshold on what the model reads: a crop whose mean log-mel value is
#: below this is "silent". It is the mean log-mel of white noise at SILENCE_RMS
#: (measured: 7.10e-05; tests/test_audio.py checks the calibration).
SILENCE_LOGMEL: float = 7.1e-5

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



def import_librosa() -> Any:
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
    """Decode the excerpt of a file (frames x channels float32) at its native rate.

    The header's length decides the crop; when the decoder delivers fewer
    samples than it promised (a truncated MP3 keeps its Xing header), the file
    is read again from its start, up to the longest excerpt rule
    (``OFFSET + DURATION``), and the crop is chosen from its real length.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            start, stop = _crop_bounds(int(f.frames), sr)
            try:
                if start:
                    f.seek(start)
                y = f.read(stop - start, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError):  # seek past the real end
                y = np.zeros((0, f.channels), np.float32)
            if y.shape[0] < stop - start:  # shorter than its header says
                f.seek(0)
                head = f.read(int(round((OFFSET + DURATION) * sr)), dtype="float32", always_2d=True)
                start, stop = _crop_bounds(head.shape[0], sr)
                y = head[start:stop]
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


def valid_frames(n_samples: int) -> int:
    """How many of the :data:`FRAMES` centred frames hold audio, for a clip of ``n_samples``.

    Frame ``k`` is centred on sample ``k * HOP``; it holds audio when that
    sample does. A 30 s clip fills all 646 frames, a 12 s preview 259; the
    rest of its patch is the log-mel of zero padding, which no crop reads.
    """
    n = int(n_samples)
    if n < 0:
        raise ValueError(f"n_samples must be >= 0, got {n}")
    return min(FRAMES, -(-n // HOP))


def decode(source: str | os.PathLike[str] | np.ndarray, sr: int | None = None,
           min_seconds: float = MIN_SECONDS) -> tuple[np.ndarray, int]:
    """Decode a source into the mono, 22,050 Hz, 30 s excerpt and its audio length.

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
    y : np.ndarray
        float32 array of exactly :data:`N_SAMPLES` samples (see the module
        docstring for the crop / pad rule).
    n_audio : int
        How many leading samples of ``y`` hold audio (the rest is padding).

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
    n_audio = min(y.shape[0], N_SAMPLES)
    if y.shape[0] >= N_SAMPLES:
        y = y[:N_SAMPLES]
    else:  # a preview shorter than 30 s: pad the end with silence (never read, see valid_frames)
        y = np.pad(y, (0, N_SAMPLES - y.shape[0]))
    rms = float(np.sqrt(np.mean(np.square(y[:n_audio], dtype=np.float64))))
    if rms < SILENCE_RMS:
        raise AudioError("silent", f"{name} is silent (RMS {rms:.2e} < {SILENCE_RMS:g})")
    return np.ascontiguousarray(y, dtype=np.float32), n_audio


def load_audio(source: str | os.PathLike[str] | np.ndarray, sr: int | None = None,
               min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """The 30 s mono 22,050 Hz excerpt of a source, padded: :func:`decode` without the length."""
    return decode(source, sr=sr, min_seconds=min_seconds)[0]


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
    return scipy.sparse.csr_matrix(mel_basis().T)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
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
    spec = scipy.fft.rfft(frames * _window(), axis=1)  # complex64, faster than numpy's
    power = spec.real**2 + spec.imag**2  # (646, 1025) float32
    return np.asarray(power @ _mel_basis_t(), dtype=np.float32)


def logmel_valid(source: str | os.PathLike[str] | np.ndarray, sr: int | None = None,
                 min_seconds: float = MIN_SECONDS) -> tuple[np.ndarray, int]:
    """The paper's CNN input and how many of its frames hold audio.

    Parameters
    ----------
    source : path or np.ndarray
        Audio file, or waveform (1-D, or samples x channels) with ``sr`` given.
    sr : int, optional
        Sample rate of a waveform source.
    min_seconds : float
        Shortest accepted source; see :func:`decode`.

    Returns
    -------
    patch : np.ndarray
        ``log(1 + 100 * mel_power)``, shape ``(FRAMES, N_MELS)``, float32, finite.
    n_valid : int
        :func:`valid_frames` of the decoded audio: frames ``[0, n_valid)`` hold
        audio, the others zero padding.

    Notebooks: 04_from_ids_to_spectrograms, 05_cnn_baseline (through :mod:`ctxpaper.tag`).
    """
    y, n_audio = decode(source, sr=sr, min_seconds=min_seconds)
    out = np.log1p(COMPRESSION * mel_power(y)).astype(np.float32, copy=False)
    if not np.isfinite(out).all():  # cannot happen for finite input; guard the store anyway
        raise AudioError("non_finite", "log-mel has non-finite values")
    return out, valid_frames(n_audio)


def logmel(source: str | os.PathLike[str] | np.ndarray, sr: int | None = None,
           min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """The paper's CNN input: the (646, 96) float32 patch of :func:`logmel_valid`, alone.

    Notebook: 04_from_ids_to_spectrograms.
    """
    return logmel_valid(source, sr=sr, min_seconds=min_seconds)[0]


def audio_descriptors(y: np.ndarray, sr: int = SR) -> dict[str, float]:
    """Three interpretable descriptors of a clip: tempo, loudness, brightness.

    Returns ``tempo_bpm`` (librosa's onset-autocorrelation estimate), ``rms``
    (mean frame RMS, linear) and ``centroid_hz`` (mean spectral centroid).

    Notebook: 04_from_ids_to_spectrograms.
    """
    librosa = import_librosa()  # deferred: librosa costs ~1 s to import

    y = np.asarray(y, dtype=np.float32)
    onset = librosa.onset.onset_strength(y=y, sr=sr, hop_length=512)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=512))[0])
    rms = float(librosa.feature.rms(y=y, frame_length=2048, hop_length=HOP).mean())
    centroid = float(librosa.feature.spectral_centroid(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP).mean())
    return {"tempo_bpm": tempo, "rms": rms, "centroid_hz": centroid}
