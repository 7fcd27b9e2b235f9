"""Synthesised 30 s previews for the simulated world (stands in for paper §4.1's audio).

This machine is offline, so the chapters that train the paper's CNN hear
previews synthesised from each simulated track's **latent** contexts rather
than Deezer previews. The mapping below is a *design choice* of this project,
made so that the simulated world behaves like the paper's findings (club,
party, sad and sleep easy to hear; car, work and night barely audible); it is
not a finding about music.

How a preview is made (:func:`design` then :func:`render`):

1. Each context pushes six musical descriptors — tempo, energy, brightness,
   percussiveness, mode (major/minor) and harmonic density — by the amounts
   in :data:`CONTEXT_EFFECTS`. The pushes of a track's active contexts are
   summed, divided by the square root of their number and squashed with
   ``tanh``; the artist's ``style`` vector and per-track noise are added.
2. The descriptors become concrete parameters (bpm, loudness, low-pass
   cut-off, drum level and pattern, major or minor key, number of voices).
3. A four-bar loop is rendered (chord pads from a wavetable, a bass line, a
   synthetic drum kit) and tiled to 30 s at 22,050 Hz, with a noise floor.

``style`` is a small float vector per artist, standard normal, one entry per
descriptor in :data:`DESCRIPTORS` order (``ctxpaper.world`` draws it as the
``style_*`` columns of :data:`STYLE_COLUMNS`): each entry moves its descriptor
by ``STYLE_GAIN`` per unit, and the artist's timbre (odd vs all harmonics)
follows the sum of the entries, so an artist's tracks share a sound whatever
their contexts. Missing entries count as 0, extra entries are ignored.
Everything random comes from ``seed``.

Notebook: 04_from_ids_to_spectrograms.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.signal

from .contexts import CONTEXTS

SR: int = 22050
DURATION: float = 30.0
DESCRIPTORS: tuple[str, ...] = ("tempo", "energy", "brightness", "percussiveness", "mode", "density")
STYLE_DIM: int = len(DESCRIPTORS)
#: Column names of the style vector in a world's ``artists`` table (``ctxpaper.world``
#: draws them under these names: the one definition).
STYLE_COLUMNS: tuple[str, ...] = tuple(f"style_{d}" for d in DESCRIPTORS)
#: How much one unit of artist style moves its descriptor.
STYLE_GAIN: float = 0.35
#: Standard deviation of the per-track noise added to every descriptor.
NOISE_SD: float = 0.35

# Rows: CONTEXTS order; columns: DESCRIPTORS. A design choice (module docstring).
_EFFECTS = {
    #          tempo energy bright  perc  mode  density
    "car":     (0.10, 0.10, 0.05, 0.05, 0.00, 0.00),   # barely audible
    "chill":   (-0.30, -0.35, -0.10, -0.25, 0.05, -0.10),
    "club":    (0.55, 0.90, 0.35, 1.00, -0.20, 0.30),
    "dance":   (0.50, 0.70, 0.45, 0.80, 0.30, 0.30),
    "gym":     (0.40, 0.70, 0.20, 0.60, 0.00, 0.20),
    "happy":   (0.25, 0.30, 0.45, 0.10, 0.90, 0.20),
    "night":   (-0.05, 0.00, -0.15, 0.00, -0.10, 0.00),  # barely audible
    "party":   (0.50, 0.90, 0.50, 0.85, 0.40, 0.40),
    "relax":   (-0.50, -0.70, -0.40, -0.60, 0.10, -0.30),
    "running": (0.60, 0.50, 0.20, 0.50, 0.10, 0.10),
    "sad":     (-0.40, -0.50, -0.50, -0.30, -1.20, -0.20),
    "sleep":   (-0.80, -1.00, -0.70, -1.00, 0.00, -0.60),
    "summer":  (0.20, 0.30, 0.40, 0.20, 0.40, 0.10),
    "work":    (0.00, 0.05, 0.10, 0.00, 0.00, 0.00),    # barely audible
    "workout": (0.60, 0.80, 0.30, 0.80, 0.00, 0.20),
}
#: (15, 6) pushes of each context on each descriptor, CONTEXTS x DESCRIPTORS.
CONTEXT_EFFECTS: pd.DataFrame = pd.DataFrame([_EFFECTS[c] for c in CONTEXTS], index=list(CONTEXTS),
                                             columns=list(DESCRIPTORS))
_W = CONTEXT_EFFECTS.to_numpy(np.float64)


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _check_latent(latent: Any) -> np.ndarray:
    lat = np.asarray(latent)
    if lat.shape != (len(CONTEXTS),):
        raise ValueError(f"latent must have shape ({len(CONTEXTS)},) in CONTEXTS order, got {lat.shape}")
    if lat.dtype != bool:
        if not np.isin(lat, (0, 1)).all():
            raise ValueError(f"latent must be boolean (or 0/1), got values {np.unique(lat)[:5]}")
        lat = lat.astype(bool)
    return lat


def _check_style(style: Any) -> np.ndarray:
    s = np.zeros(STYLE_DIM)
    if style is None:
        return s
    v = np.asarray(style, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        raise ValueError(f"style must be finite, got {v}")
    k = min(STYLE_DIM, v.size)
    s[:k] = v[:k]
    return s


def latent_scores(latent: np.ndarray) -> np.ndarray:
    """Noise-free descriptor scores in (-1, 1) from a (15,) latent context vector.

    ``tanh(sum of active contexts' pushes / sqrt(number active))``; zeros for
    a track with no context.
    """
    lat = _check_latent(latent)
    k = int(lat.sum())
    if k == 0:
        return np.zeros(len(DESCRIPTORS))
    return np.tanh(_W[lat].sum(axis=0) / np.sqrt(k))


def design(latent: np.ndarray, style: np.ndarray | None, seed: int) -> dict[str, Any]:
    """The musical parameters of a track's preview (before rendering).

    Returns a dict with the descriptor values ``z_<descriptor>`` (latent score
    + style + noise) and the concrete parameters: ``tempo_bpm``, ``level_db``
    (target RMS in dBFS), ``cutoff_hz`` (low-pass), ``percussiveness`` (0–1),
    ``major`` (bool), ``voices`` (1–5), ``odd_harmonics`` (0–1), ``root_midi``.
    """
    s = _check_style(style)
    rng = np.random.default_rng([int(seed), 0])
    z = latent_scores(latent) + rng.normal(0.0, NOISE_SD, len(DESCRIPTORS))
    z += STYLE_GAIN * s
    zd = dict(zip(DESCRIPTORS, z.tolist()))
    p_major = _sigmoid(3.0 * (zd["mode"] + 0.15))
    return {
        **{f"z_{k}": v for k, v in zd.items()},
        "tempo_bpm": float(np.clip(110.0 + 40.0 * zd["tempo"], 60.0, 180.0)),
        "level_db": float(np.clip(-22.0 + 9.0 * zd["energy"], -38.0, -10.0)),
        "cutoff_hz": float(np.clip(2200.0 * 2.0 ** (1.6 * zd["brightness"]), 400.0, 9000.0)),
        "percussiveness": _sigmoid(3.0 * zd["percussiveness"]),
        "major": bool(rng.random() < p_major),
        "voices": int(np.clip(np.round(3.0 + 1.6 * zd["density"]), 1, 5)),
        "odd_harmonics": _sigmoid(2.0 * s.sum() / np.sqrt(STYLE_DIM)),
        "root_midi": int(45 + rng.integers(0, 12)),
    }


# --------------------------------------------------------------------------
# Rendering

_TABLE = 2048


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _wavetable(odd: float, rolloff: float) -> np.ndarray:
    """One period of a waveform with 12 harmonics (float32, peak-normalised)."""
    ph = np.arange(_TABLE) / _TABLE
    k = np.arange(1, 13)
    amp = k ** (-rolloff) * np.where(k % 2 == 1, 1.0, 1.0 - odd)
    w = (amp[:, None] * np.sin(2 * np.pi * k[:, None] * ph[None, :])).sum(axis=0)
    return (w / np.abs(w).max()).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _ramp_u32(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.uint32)


def _osc(table: np.ndarray, hz: float, n: int, phase0: float) -> np.ndarray:
    # 32-bit fixed-point phase: uint32 arithmetic wraps exactly at one period.
    inc = np.uint32(int(round(hz / SR * 2**32)) % 2**32)
    p0 = np.uint32(int(phase0 * 2**32) % 2**32)
    idx = (_ramp_u32(n) * inc + p0) >> np.uint32(32 - 11)  # 2**11 == _TABLE
    return table[idx]


def _drum_kit(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic kick, snare and closed hat (float32 one-shots)."""
    t = np.arange(int(0.35 * SR)) / SR
    f = 45.0 + 90.0 * np.exp(-t / 0.03)  # pitch sweep 135 -> 45 Hz
    kick = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.12)
    ts = t[: int(0.25 * SR)]
    snare = (0.7 * rng.standard_normal(ts.size) + 0.5 * np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts / 0.06)
    th = t[: int(0.06 * SR)]
    hat = np.diff(rng.standard_normal(th.size + 1)) * np.exp(-th / 0.012) * 0.35
    return {"kick": kick.astype(np.float32), "snare": snare.astype(np.float32), "hat": hat.astype(np.float32)}


def _add(buf: np.ndarray, shot: np.ndarray, at: int, gain: float) -> None:
    # The loop wraps around, so a hit near the end rings into the start.
    n = buf.size
    m = min(shot.size, n)
    end = at + m
    if end <= n:
        buf[at:end] += gain * shot[:m]
    else:
        buf[at:] += gain * shot[: n - at]
        buf[: end - n] += gain * shot[n - at:m]


_PROGRESSIONS = {True: [(0, 7, 9, 5), (0, 5, 7, 0), (0, 9, 5, 7)],    # I-V-vi-IV, I-IV-V-I, I-vi-IV-V
                 False: [(0, 8, 3, 10), (0, 5, 7, 0), (0, 10, 8, 7)]}  # i-VI-III-VII, i-iv-v-i, i-VII-VI-v


def render(params: dict[str, Any], seed: int, duration: float = DURATION) -> np.ndarray:
    """Render the waveform (float32, 22,050 Hz) of a :func:`design` result."""
    rng = np.random.default_rng([int(seed), 1])
    n_total = int(round(duration * SR))
    beat = int(round(60.0 / params["tempo_bpm"] * SR))
    bar = 4 * beat
    loop_n = 4 * bar
    perc = params["percussiveness"]
    major = params["major"]
    prog = _PROGRESSIONS[major][int(rng.integers(0, 3))]
    third = 4 if major else 3
    chord = [0, third, 7, 12, third + 12][: params["voices"]]
    rolloff = float(np.clip(2.6 - 1.2 * params["z_brightness"], 0.8, 3.5))
    table = _wavetable(params["odd_harmonics"], rolloff)
    bass_table = _wavetable(0.0, 3.0)

    harm = np.zeros(loop_n, np.float32)
    bass = np.zeros(loop_n, np.float32)
    tb = np.arange(bar, dtype=np.float32)
    # Pads sustain across the bar; percussive tracks get plucked, per-beat envelopes.
    tau = (0.08 + 1.5 * (1.0 - perc)) * SR
    beat_env = np.tile(np.exp(-np.arange(beat, dtype=np.float32) / np.float32(tau)), 4)
    bar_env = (np.minimum(1.0, tb / (0.02 * SR)) * np.minimum(1.0, (bar - tb) / (0.05 * SR))).astype(np.float32)
    env = bar_env * (perc * beat_env + (1.0 - perc))
    for i, degree in enumerate(prog):
        root = params["root_midi"] + degree
        seg = np.zeros(bar, np.float32)
        for interval in chord:
            seg += _osc(table, _midi_hz(root + 12 + interval), bar, float(rng.random()))
        harm[i * bar:(i + 1) * bar] = seg * env / max(1, len(chord)) ** 0.5
        bass[i * bar:(i + 1) * bar] = _osc(bass_table, _midi_hz(root - 12), bar, 0.0) * beat_env

    drums = np.zeros(loop_n, np.float32)
    kit = _drum_kit(rng)
    eighth = beat // 2
    for b in range(16):  # 16 beats in the loop
        at = b * beat
        if perc > 0.5 or b % 2 == 0:
            _add(drums, kit["kick"], at, 1.0)
        if b % 2 == 1 and perc > 0.3:
            _add(drums, kit["snare"], at, 0.6)
        if perc > 0.4:
            for h in range(4 if perc > 0.7 else 2):
                _add(drums, kit["hat"], at + h * (beat // (4 if perc > 0.7 else 2)), 0.5)
        elif perc > 0.2:
            _add(drums, kit["hat"], at + eighth, 0.3)

    loop = (1.0 - 0.6 * perc) * harm + 0.5 * bass + (0.15 + 1.6 * perc) * drums
    # Brightness: a 2nd-order low-pass at the designed cut-off (applied on the loop only).
    b_, a_ = scipy.signal.butter(2, min(params["cutoff_hz"], 0.45 * SR), fs=SR)
    warm = min(loop_n, 4096)  # filter state settles within a few ms; wrap the loop's tail in
    loop = scipy.signal.lfilter(b_, a_, np.concatenate([loop[-warm:], loop]))[warm:].astype(np.float32)

    # Tile the loop to the clip length with a per-repetition gain drift (+-1.5 dB)
    # so the clip is not perfectly periodic.
    reps = -(-n_total // loop_n)
    drift = 10 ** (rng.uniform(-1.5, 1.5, reps) / 20.0)
    y = np.empty(n_total, np.float32)
    for r in range(reps):
        a = r * loop_n
        b = min(n_total, a + loop_n)
        np.multiply(loop[: b - a], np.float32(drift[r]), out=y[a:b])
    # Fade in/out of 50 ms, like an excerpt.
    fade = int(0.05 * SR)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    y[:fade] *= ramp
    y[-fade:] *= ramp[::-1]
    rms = float(np.sqrt(np.dot(y, y) / n_total))
    target = 10 ** (params["level_db"] / 20.0)
    y *= np.float32(target / max(rms, 1e-9))
    # Noise floor 40 dB below the music, tilted to low frequencies by a 2-tap average.
    # A 1.5 s noise block tiled (drawing 30 s of Gaussian noise costs more than
    # the rest of the synthesis; a periodic floor 40 dB down is inaudible here).
    w = rng.standard_normal(32769, dtype=np.float32)
    w[:-1] *= np.float32(0.8)
    w[1:] += w[:-1]
    w = w[1:] * np.float32(target * 0.01 / 1.28)
    for a in range(0, n_total, w.size):
        b = min(n_total, a + w.size)
        y[a:b] += w[: b - a]
    np.clip(y, -1.0, 1.0, out=y)
    return y


def synthesize(latent: np.ndarray, style: np.ndarray | None, seed: int, sr: int = SR,
               duration: float = DURATION) -> np.ndarray:
    """A synthetic preview for a track: float32 waveform at ``sr``, ``duration`` seconds.

    Parameters
    ----------
    latent : np.ndarray
        (15,) bool, the track's latent contexts in :data:`ctxpaper.contexts.CONTEXTS` order.
    style : np.ndarray or None
        The artist's style vector (see module docstring); None means neutral.
    seed : int
        Same seed, same inputs -> the same waveform, sample for sample.
    sr : int
        Only 22,050 Hz is supported (the model's rate).
    duration : float
        Seconds (positive).

    Notebook: 04_from_ids_to_spectrograms.
    """
    if sr != SR:
        raise ValueError(f"synthesize renders at {SR} Hz only, got sr={sr!r}")
    if not (isinstance(duration, (int, float)) and np.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return render(design(latent, style, int(seed)), int(seed), float(duration))


def track_seed(seed: int, track_id: int) -> int:
    """The synthesis seed of one track: a hash of the world seed and the id."""
    return int(np.random.SeedSequence([int(seed), int(track_id)]).generate_state(1, np.uint32)[0])


class SimulatedPreviews:
    """Picklable ``source_fn``: ``track_id -> (waveform, 22050)`` for the feature store.

    Parameters
    ----------
    latent : pd.DataFrame
        Bool, indexed by track id, with the :data:`CONTEXTS` columns.
    styles : pd.DataFrame or None
        Indexed by track id; its numeric columns, in order, are the style
        vector (see module docstring). Tracks absent from it get a neutral style.
    seed : int
        World seed; each track's preview uses :func:`track_seed`.
    """

    def __init__(self, latent: pd.DataFrame, styles: pd.DataFrame | None, seed: int):
        missing = [c for c in CONTEXTS if c not in latent.columns]
        if missing:
            raise ValueError(f"latent is missing context columns {missing}")
        self._ids = pd.Index(np.asarray(latent.index, dtype=np.int64))
        if not self._ids.is_unique:
            raise ValueError("latent has duplicated track ids")
        self._latent = latent[list(CONTEXTS)].to_numpy(bool)
        if styles is None:
            self._styles = np.zeros((len(self._ids), 0))
        else:
            num = styles.select_dtypes("number")
            num = num.reindex(self._ids).fillna(0.0)
            self._styles = num.to_numpy(np.float64)
        self.seed = int(seed)

    @classmethod
    def from_world(cls, world: Any, seed: int | None = None) -> "SimulatedPreviews":
        """Build from a ``ctxpaper.world.World``: per-artist style joined to tracks.

        Uses the :data:`STYLE_COLUMNS` of ``world.artists`` (else its numeric
        columns whose names start with ``style``), joined through
        ``world.tracks.artist_id``.
        """
        artists = world.artists
        if "artist_id" in artists.columns:
            artists = artists.set_index("artist_id")
        cols = [c for c in STYLE_COLUMNS if c in artists.columns] or \
            [c for c in artists.columns if str(c).startswith("style")]
        if not cols:
            raise ValueError(f"world.artists has no style columns (expected {STYLE_COLUMNS})")
        num = artists[cols]
        tracks = world.tracks
        if "track_id" in tracks.columns:
            tracks = tracks.set_index("track_id")
        styles = num.reindex(tracks["artist_id"].to_numpy())
        styles.index = tracks.index
        return cls(world.latent, styles, world.seed if seed is None else seed)

    def style_of(self, track_id: int) -> np.ndarray:
        return self._styles[self._row(track_id)]

    def latent_of(self, track_id: int) -> np.ndarray:
        return self._latent[self._row(track_id)]

    def _row(self, track_id: int) -> int:
        row = self._ids.get_indexer([int(track_id)])[0]
        if row < 0:
            raise KeyError(f"track id {track_id} is not in the simulated world")
        return int(row)

    def design(self, track_id: int) -> dict[str, Any]:
        """The :func:`design` parameters of one track's preview."""
        r = self._row(track_id)
        return design(self._latent[r], self._styles[r], track_seed(self.seed, track_id))

    def __call__(self, track_id: int) -> tuple[np.ndarray, int]:
        r = self._row(track_id)
        y = synthesize(self._latent[r], self._styles[r], track_seed(self.seed, track_id))
        return y, SR

    def __repr__(self) -> str:
        return f"SimulatedPreviews({len(self._ids)} tracks, seed={self.seed})"


def descriptor_auc(descriptors: pd.DataFrame, latent: pd.DataFrame) -> pd.DataFrame:
    """How well each descriptor alone separates each context: ROC AUC, contexts x descriptors.

    AUC = P(descriptor of a random positive > that of a random negative), ties
    counting one half (the Mann–Whitney statistic). 0.5: no separation; far
    from 0.5 in either direction: separation. NaN when a context has no
    positive or no negative among the rows.

    Notebook: 04_from_ids_to_spectrograms.
    """
    from scipy.stats import rankdata

    if not descriptors.index.equals(latent.index):
        latent = latent.reindex(descriptors.index)
        if latent.isna().any().any():
            raise ValueError("latent has no row for some descriptor rows")
    lat = latent.astype(bool)
    out = pd.DataFrame(index=list(lat.columns), columns=list(descriptors.columns), dtype=float)
    for d in descriptors.columns:
        r = rankdata(descriptors[d].to_numpy(np.float64))
        for c in lat.columns:
            pos = lat[c].to_numpy()
            n1, n0 = int(pos.sum()), int((~pos).sum())
            if n1 == 0 or n0 == 0:
                continue
            out.loc[c, d] = (r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out


def context_separation(descriptors: pd.DataFrame, latent: pd.DataFrame) -> pd.Series:
    """Per context, the largest ``|AUC - 0.5|`` over descriptors (0 none, 0.5 perfect)."""
    return (descriptor_auc(descriptors, latent) - 0.5).abs().max(axis=1).rename("separation")


def demo_latent(contexts: Sequence[str]) -> np.ndarray:
    """A (15,) latent vector with exactly ``contexts`` active (for galleries and tests)."""
    unknown = [c for c in contexts if c not in CONTEXTS]
    if unknown:
        raise ValueError(f"unknown contexts {unknown}: choose from {CONTEXTS}")
    return np.array([c in contexts for c in CONTEXTS], dtype=bool)


#: Bump when the synthesis changes what it renders (part of feature-store cache keys).
SYNTH_VERSION = "1"
