"""Synthesised previews (ctxpaper.synth): determinism, design intent, bad input."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxpaper import synth as S
from ctxpaper.contexts import CONTEXTS


def rms_db(y: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)))


def centroid(y: np.ndarray) -> float:
    """Magnitude-weighted spectral centroid (as librosa's), in Hz."""
    spec = np.abs(np.fft.rfft(y[: 2**18]))
    f = np.fft.rfftfreq(2**18, 1 / S.SR)
    return float((f * spec).sum() / spec.sum())


def brute_auc(x: np.ndarray, pos: np.ndarray) -> float:
    p, n = x[pos], x[~pos]
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in p for b in n]))


def test_same_seed_same_waveform_other_seed_other_waveform():
    lat = S.demo_latent(["party", "summer"])
    a = S.synthesize(lat, np.array([0.3, -1.0, 0.5, 2.0]), seed=7)
    b = S.synthesize(lat, np.array([0.3, -1.0, 0.5, 2.0]), seed=7)
    c = S.synthesize(lat, np.array([0.3, -1.0, 0.5, 2.0]), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=10, deadline=None)
@given(bits=st.lists(st.booleans(), min_size=15, max_size=15), seed=st.integers(0, 2**31),
       style=st.one_of(st.none(), st.lists(st.floats(-3, 3), min_size=0, max_size=6)))
def test_any_track_gives_a_valid_30s_clip(bits, seed, style):
    y = S.synthesize(np.array(bits), None if style is None else np.array(style), seed)
    assert y.shape == (30 * 22050,) and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    p = S.design(np.array(bits), style, seed)
    assert 60 <= p["tempo_bpm"] <= 180 and 1 <= p["voices"] <= 5 and 0 < p["percussiveness"] < 1
    # The loudness is the designed one (the noise floor is 40 dB down).
    assert abs(rms_db(y) - p["level_db"]) < 1.0


def test_duration_parameter():
    y = S.synthesize(S.demo_latent(["chill"]), None, 1, duration=2.5)
    assert y.shape == (int(2.5 * 22050),)


def test_design_is_monotone_in_a_context_push():
    # Same seed, so the same noise: a lone context moves the descriptors by its push.
    base = S.design(S.demo_latent([]), None, 3)
    for ctx in CONTEXTS:
        p = S.design(S.demo_latent([ctx]), None, 3)
        for d in S.DESCRIPTORS:
            push = S.CONTEXT_EFFECTS.loc[ctx, d]
            np.testing.assert_allclose(p[f"z_{d}"] - base[f"z_{d}"], np.tanh(push), atol=1e-12)


def test_style_moves_each_descriptor_by_its_gain():
    lat = S.demo_latent(["chill"])
    base = S.design(lat, None, 4)
    for i, d in enumerate(S.DESCRIPTORS):
        style = np.zeros(S.STYLE_DIM)
        style[i] = 1.0
        p = S.design(lat, style, 4)
        for j, other in enumerate(S.DESCRIPTORS):
            moved = p[f"z_{other}"] - base[f"z_{other}"]
            assert moved == pytest.approx(S.STYLE_GAIN if i == j else 0.0, abs=1e-12)
    assert S.design(lat, [3.0] * 6, 4)["odd_harmonics"] > 0.99
    assert S.design(lat, [-3.0] * 6, 4)["odd_harmonics"] < 0.01


def test_easy_contexts_are_audible_and_hard_ones_are_not():
    """The design intent, measured on the rendered audio (not on the parameters)."""
    seeds = range(24)
    groups = {name: [S.synthesize(S.demo_latent(c), None, 1000 + s) for s in seeds]
              for name, c in {"club": ["club"], "sleep": ["sleep"], "car": ["car"], "none": []}.items()}
    loud = {k: np.array([rms_db(y) for y in v]) for k, v in groups.items()}
    bright = {k: np.array([centroid(y) for y in v]) for k, v in groups.items()}

    def auc(a, b):
        x = np.concatenate([a, b])
        return brute_auc(x, np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)])

    assert auc(loud["club"], loud["sleep"]) > 0.95
    assert auc(bright["club"], bright["sleep"]) > 0.9
    assert 0.25 < auc(loud["car"], loud["none"]) < 0.85  # barely separable


def test_brightness_follows_the_cutoff():
    p = S.design(S.demo_latent(["summer"]), None, 2)
    dark = S.render({**p, "cutoff_hz": 600.0}, 2)
    light = S.render({**p, "cutoff_hz": 6000.0}, 2)
    assert centroid(dark) < centroid(light)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="latent must have shape"):
        S.synthesize(np.zeros(14, bool), None, 0)
    with pytest.raises(ValueError, match="boolean"):
        S.synthesize(np.full(15, 2), None, 0)
    with pytest.raises(ValueError, match="22050"):
        S.synthesize(S.demo_latent([]), None, 0, sr=44100)
    with pytest.raises(ValueError, match="seed"):
        S.synthesize(S.demo_latent([]), None, -1)
    with pytest.raises(ValueError, match="style"):
        S.synthesize(S.demo_latent([]), np.array([np.nan]), 0)
    with pytest.raises(ValueError, match="duration"):
        S.synthesize(S.demo_latent([]), None, 0, duration=0)
    with pytest.raises(ValueError, match="unknown contexts"):
        S.demo_latent(["disco"])


def _latent_frame() -> pd.DataFrame:
    rows = [S.demo_latent(c) for c in (["club"], ["sleep", "sad"], [])]
    return pd.DataFrame(rows, index=[101, 7, 55], columns=list(CONTEXTS))


def test_simulated_previews_is_a_picklable_source():
    lat = _latent_frame()
    styles = pd.DataFrame({"style_a": [1.0, -1.0], "label": ["x", "y"]}, index=[7, 101])
    src = S.SimulatedPreviews(lat, styles, seed=5)
    y, sr = src(7)
    assert sr == 22050
    np.testing.assert_array_equal(y, S.synthesize(lat.loc[7].to_numpy(), np.array([1.0]), S.track_seed(5, 7)))
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone(101)[0], src(101)[0])
    np.testing.assert_array_equal(src.style_of(55), [0.0])  # absent from styles: neutral
    with pytest.raises(KeyError, match="999"):
        src(999)
    assert S.track_seed(5, 7) != S.track_seed(5, 101) != S.track_seed(6, 101)


def test_from_world_joins_artist_style_to_tracks():
    lat = _latent_frame()
    world = SimpleNamespace(
        latent=lat, seed=9,
        tracks=pd.DataFrame({"track_id": [101, 7, 55], "artist_id": [2, 1, 2]}),
        artists=pd.DataFrame({"artist_id": [1, 2], "popularity": [3.0, 4.0], "style_energy": [1.0, 2.0],
                              "style_tempo": [0.5, -0.5]}),
    )
    src = S.SimulatedPreviews.from_world(world)
    assert src.seed == 9
    np.testing.assert_array_equal(src.style_of(7), [0.5, 1.0])
    np.testing.assert_array_equal(src.style_of(55), [-0.5, 2.0])


def test_from_a_real_simulated_world():
    from ctxpaper.world import make_world

    world = make_world(0.004, 0)
    # the contract with ctxpaper.world: its artists carry the synthesiser's style columns
    assert set(S.STYLE_COLUMNS) <= set(world.artists.columns)
    src = S.SimulatedPreviews.from_world(world)
    tid = int(world.latent.index[3])
    artist = world.tracks.loc[tid, "artist_id"]
    np.testing.assert_array_equal(src.style_of(tid), world.artists.loc[artist, list(S.STYLE_COLUMNS)].to_numpy(float))
    np.testing.assert_array_equal(src.latent_of(tid), world.latent.loc[tid].to_numpy(bool))


def test_simulated_previews_rejects_incomplete_latent():
    with pytest.raises(ValueError, match="missing context columns"):
        S.SimulatedPreviews(_latent_frame().drop(columns=["car"]), None, 0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=25))
def test_descriptor_auc_equals_pairwise_brute_force(rows):
    x = np.array([r[0] for r in rows], float)  # small integers: many ties
    pos = np.array([r[1] for r in rows])
    desc = pd.DataFrame({"d": x})
    lat = pd.DataFrame({"c": pos})
    got = S.descriptor_auc(desc, lat).loc["c", "d"]
    if pos.all() or (~pos).all():
        assert np.isnan(got)
    else:
        assert got == pytest.approx(brute_auc(x, pos))


def test_context_separation_picks_the_best_descriptor():
    desc = pd.DataFrame({"a": [1, 2, 3, 4.0], "b": [4, 3, 2, 1.0]})
    lat = pd.DataFrame({"hi": [False, False, True, True], "mixed": [True, False, True, False]})
    sep = S.context_separation(desc, lat)
    assert sep["hi"] == pytest.approx(0.5)  # perfectly separated (by both, in opposite directions)
    assert sep["mixed"] == pytest.approx(0.25)
