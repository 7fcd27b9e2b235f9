"""Decoding, crop, valid length and log-mel (ctxpaper.audio)."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxpaper import audio as A
from ctxpaper import synth as S

def noise(seconds: float, sr: int = A.SR, seed: int = 0, channels: int | None = None) -> np.ndarray:
    shape = (int(round(seconds * sr)),) if channels is None else (int(round(seconds * sr)), channels)
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def sine(hz: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# ---------------------------------------------------------------- constants


def test_constants_give_the_papers_input_size():
    assert (A.FRAMES, A.N_MELS) == (646, 96)
    assert A.N_SAMPLES == 30 * 22050
    # centred frames: one frame per hop plus the one at t = 0
    assert A.FRAMES == len(range(0, A.N_SAMPLES + 1, A.HOP))


# ---------------------------------------------------------------- log-mel


def test_mel_power_matches_librosa_reference():
    y = noise(30, seed=1)
    ours = A.mel_power(y)
    ref = librosa.feature.melspectrogram(y=y, sr=A.SR, n_fft=A.N_FFT, hop_length=A.HOP, n_mels=A.N_MELS,
                                         fmin=A.FMIN, fmax=A.FMAX).T
    assert ours.shape == ref.shape == (646, 96)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


@pytest.mark.parametrize("frame", [0, 1, 317, 645])
def test_mel_power_frame_by_brute_force_dft(frame):
    y = noise(30, seed=2).astype(np.float64)
    padded = np.concatenate([np.zeros(A.N_FFT // 2), y, np.zeros(A.N_FFT // 2)])
    seg = padded[frame * A.HOP: frame * A.HOP + A.N_FFT]
    n = np.arange(A.N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / A.N_FFT)  # periodic Hann
    k = np.arange(A.N_FFT // 2 + 1)
    dft = (np.exp(-2j * np.pi * np.outer(k, n) / A.N_FFT) @ (window * seg))
    expected = A.mel_basis().astype(np.float64) @ np.abs(dft) ** 2
    np.testing.assert_allclose(A.mel_power(y.astype(np.float32))[frame], expected, rtol=2e-3,
                               atol=1e-5 * expected.max())


def test_logmel_is_log1p_100x_of_mel_power():
    y = noise(30, seed=3)
    np.testing.assert_allclose(A.logmel(y, sr=A.SR), np.log1p(100 * A.mel_power(y)), rtol=1e-6)


def _band_of(hz: float) -> int:
    """Index of the mel band whose filter responds most to ``hz``."""
    bin_ = int(round(hz * A.N_FFT / A.SR))
    return int(np.argmax(A.mel_basis()[:, bin_]))


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 44100, 48000])
def test_sine_lands_in_its_mel_band_at_any_source_rate(sr):
    X = A.logmel(sine(1000.0, 30, sr), sr=sr)
    assert X.shape == (646, 96) and X.dtype == np.float32
    peak = np.bincount(X.argmax(axis=1)).argmax()
    assert abs(int(peak) - _band_of(1000.0)) <= 1


def test_8khz_source_has_nothing_above_its_nyquist():
    X = A.logmel(noise(30, sr=8000), sr=8000)
    above = X[:, _band_of(4600.0):].mean()
    below = X[:, : _band_of(3500.0)].mean()
    assert above < 0.01 * below


# ---------------------------------------------------------------- crop / pad


def test_long_source_is_cropped_to_30_60_seconds():
    a, b, c = noise(30, seed=10), noise(30, seed=11), noise(30, seed=12)
    np.testing.assert_array_equal(A.load_audio(np.concatenate([a, b, c]), sr=A.SR), b)
    np.testing.assert_array_equal(A.logmel(np.concatenate([a, b, c]), sr=A.SR), A.logmel(b, sr=A.SR))


def test_preview_length_source_uses_its_first_30_seconds():
    a, b = noise(30, seed=20), noise(15, seed=21)  # 45 s < 60 s: a preview, not a full track
    np.testing.assert_array_equal(A.load_audio(np.concatenate([a, b]), sr=A.SR), a)


def test_short_preview_is_zero_padded_at_the_end():
    a = noise(20, seed=22)
    y, n_audio = A.decode(a, sr=A.SR)
    np.testing.assert_array_equal(y[: a.size], a)
    assert n_audio == a.size and not y[a.size:].any()


@pytest.mark.parametrize("seconds, frames", [(30, 646), (12, 259), (1, 22), (0, 0), (75, 646)])
def test_valid_frames_count_the_frames_centred_on_audio(seconds, frames):
    assert A.valid_frames(int(round(seconds * A.SR))) == frames


def test_valid_frames_end_where_the_padding_begins():
    a = noise(12, seed=23)
    X, n_valid = A.logmel_valid(a, sr=A.SR)
    assert n_valid == A.valid_frames(a.size) == 259
    # Frames centred on audio have energy; frames centred on padding beyond
    # half a window of it hold nothing at all.
    assert (X[:n_valid].mean(axis=1) > 0.01).all()
    assert not X[n_valid + A.N_FFT // A.HOP // 2 + 1:].any()


def test_silence_threshold_of_crops_matches_the_waveform_one():
    # SILENCE_LOGMEL is the log-mel picture of SILENCE_RMS: white noise at
    # that level has that mean log-mel value.
    y = (A.SILENCE_RMS * np.random.default_rng(0).standard_normal(A.N_SAMPLES)).astype(np.float32)
    level = np.log1p(A.COMPRESSION * A.mel_power(y)).mean()
    assert level == pytest.approx(A.SILENCE_LOGMEL, rel=0.05)


@settings(max_examples=12, deadline=None)
@given(sr=st.sampled_from([8000, 16000, 22050, 44100, 48000]), seconds=st.floats(A.MIN_SECONDS, 75.0),
       channels=st.integers(1, 3))
def test_any_valid_source_gives_exactly_30_s(sr, seconds, channels):
    y = noise(seconds, sr=sr, channels=channels)
    out = A.load_audio(y, sr=sr)
    assert out.shape == (A.N_SAMPLES,) and out.dtype == np.float32 and np.isfinite(out).all()


# ---------------------------------------------------------------- channels


def test_stereo_identical_channels_equal_mono():
    x = noise(30, seed=30)
    np.testing.assert_allclose(A.logmel(np.stack([x, x], axis=1), sr=A.SR), A.logmel(x, sr=A.SR), rtol=1e-6)


def test_multichannel_is_the_channel_mean():
    m = noise(30, seed=31, channels=4)
    np.testing.assert_allclose(A.load_audio(m, sr=A.SR), m.mean(axis=1), rtol=1e-6, atol=1e-7)


def test_antiphase_stereo_is_silent():
    x = noise(30, seed=32)
    with pytest.raises(A.AudioError) as e:
        A.logmel(np.stack([x, -x], axis=1), sr=A.SR)
    assert e.value.reason == "silent"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("y, sr, reason", [
    (np.zeros(A.N_SAMPLES, np.float32), A.SR, "silent"),
    (np.full(A.N_SAMPLES, 1e-6, np.float32), A.SR, "silent"),
    (np.where(np.arange(A.N_SAMPLES) == 5, np.nan, 0.1).astype(np.float32), A.SR, "non_finite"),
    (np.full(A.N_SAMPLES, np.inf, np.float32), A.SR, "non_finite"),
    (np.zeros(0, np.float32), A.SR, "empty"),
    (noise(3), A.SR, "too_short"),
    (noise(30), None, "bad_input"),
    (noise(30), 0, "bad_input"),
    (np.zeros((2, 2, 2)), A.SR, "bad_input"),
])
def test_bad_waveforms_raise_a_named_reason(y, sr, reason):
    with pytest.raises(A.AudioError) as e:
        A.logmel(y, sr=sr)
    assert e.value.reason == reason
    assert str(e.value).startswith(reason)


def test_bad_files_raise_a_named_reason(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 100)
    for path, reason in [(empty, "empty"), (text, "unreadable")]:
        with pytest.raises(A.AudioError) as e:
            A.logmel(path)
        assert e.value.reason == reason
        assert str(path) in str(e.value)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        A.logmel(tmp_path / "nope.wav")


@pytest.mark.parametrize("fmt, ext, sr, channels", [
    ("WAV", "wav", 8000, 1), ("WAV", "wav", 48000, 2), ("FLAC", "flac", 44100, 2),
    ("OGG", "ogg", 44100, 1), ("MP3", "mp3", 44100, 2), ("WAV", "wav", 22050, 6),
])
def test_formats_rates_and_channels_decode_to_the_same_picture(tmp_path, fmt, ext, sr, channels):
    y = sine(1000.0, 30, sr) + sine(3000.0, 30, sr)
    data = np.repeat(y[:, None], channels, axis=1)
    path = tmp_path / f"clip.{ext}"
    sf.write(path, data, sr, format=fmt)
    X = A.logmel(path)
    assert X.shape == (646, 96) and X.dtype == np.float32
    ref = A.logmel(y, sr=sr)
    # Lossy codecs and resampling change details, not which bands are lit.
    assert np.corrcoef(X.mean(axis=0), ref.mean(axis=0))[0, 1] > 0.99


def test_truncated_mp3_is_a_recorded_outcome(tmp_path):
    src = tmp_path / "full.mp3"
    sf.write(src, noise(40, sr=44100, channels=2), 44100, format="MP3")
    data = src.read_bytes()
    half = tmp_path / "half.mp3"
    half.write_bytes(data[: len(data) // 2])  # ~20 s of audio: padded, usable
    X, n_valid = A.logmel_valid(half)
    assert X.shape == (646, 96) and np.isfinite(X).all()
    assert abs(n_valid - A.valid_frames(20 * A.SR)) <= 3  # its real length, not the header's 40 s
    stub = tmp_path / "stub.mp3"
    stub.write_bytes(data[:3000])  # a fraction of a second
    with pytest.raises(A.AudioError) as e:
        A.logmel(stub)
    assert e.value.reason in {"too_short", "unreadable", "empty"}


def test_truncated_mp3_is_decoded_to_where_it_ends_not_to_its_header(tmp_path):
    # A 70 s MP3 cut in half keeps a header promising 70 s: taken at its word,
    # the crop [30 s, 60 s) would hold 5 s and the file be refused as too short.
    y = noise(70, sr=44100, seed=5)
    full = tmp_path / "full.mp3"
    sf.write(full, np.stack([y, y], axis=1), 44100, format="MP3")
    data = full.read_bytes()
    half = tmp_path / "half.mp3"
    half.write_bytes(data[: len(data) // 2])
    assert sf.info(half).duration > 60  # the header still says 70 s
    got, n_audio = A.decode(half)
    assert n_audio == A.N_SAMPLES  # 35 s real: a preview, its first 30 s
    # The same samples as the first 30 s of the intact file (the preview rule).
    first, sr = sf.read(full, frames=30 * 44100, dtype="float32")
    expected = A.load_audio(first, sr=sr)
    assert np.corrcoef(got, expected)[0, 1] > 0.999


# ---------------------------------------------------------------- real recordings (Debian packages)


def _need(package: str) -> list[Path]:
    files = A.real_recordings(package)
    if not files:
        pytest.skip(f"Debian package {package} not installed (apt-get install {package}); "
                    f"no files match {A.REAL_RECORDINGS[package]}")
    return files


def test_real_mp3_from_asc_music_crops_30_to_60_seconds():
    path = _need("asc-music")[0]
    info = sf.info(path)
    assert info.duration > 60
    full, sr = sf.read(path, dtype="float32", frames=int(61 * info.samplerate))
    expected = full[30 * sr: 60 * sr].mean(axis=1)
    if sr != A.SR:
        expected = librosa.resample(expected, orig_sr=sr, target_sr=A.SR)
    got = A.load_audio(path)
    assert got.shape == (A.N_SAMPLES,)
    assert np.corrcoef(got[1000:-1000], expected[1000:A.N_SAMPLES - 1000])[0, 1] > 0.999
    X = A.logmel(path)
    assert X.shape == (646, 96) and np.isfinite(X).all() and X.std() > 0.1


def test_real_flac_loop_from_sonic_pi_samples():
    files = _need("sonic-pi-samples")
    path = next((p for p in files if p.name == "loop_amen.flac"), files[0])
    info = sf.info(path)
    y = A.load_audio(path, min_seconds=0.1)
    n_audio = int(round(info.duration * A.SR))
    assert y.shape == (A.N_SAMPLES,)
    assert np.abs(y[: n_audio - 100]).max() > 0.01 and not y[n_audio + 100:].any()
    with pytest.raises(A.AudioError) as e:  # a 2 s loop is too short as a preview
        A.logmel(path)
    assert e.value.reason == "too_short"


def test_real_ogg_instrument_from_lmms():
    path = _need("lmms-common")[0]
    X = A.logmel(path, min_seconds=0.05)
    assert X.shape == (646, 96) and np.isfinite(X).all() and X[:5].max() > 0


def test_audio_descriptors_follow_tempo_loudness_and_brightness():
    slow = S.render({**S.design(S.demo_latent([]), None, 0), "tempo_bpm": 80.0, "level_db": -30.0,
                     "cutoff_hz": 800.0, "percussiveness": 0.9}, 0)
    fast = S.render({**S.design(S.demo_latent([]), None, 0), "tempo_bpm": 140.0, "level_db": -15.0,
                     "cutoff_hz": 6000.0, "percussiveness": 0.9}, 0)
    a, b = A.audio_descriptors(slow), A.audio_descriptors(fast)
    assert a["rms"] < b["rms"] and a["centroid_hz"] < b["centroid_hz"]
    # Tempo estimates may pick a metrical multiple; compare on a log-2 circle.
    for d, bpm in ((a, 80.0), (b, 140.0)):
        octave = np.log2(d["tempo_bpm"] / bpm)
        assert abs(octave - round(octave)) < 0.1
