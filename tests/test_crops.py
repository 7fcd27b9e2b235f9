"""The crop the model reads: from frames that hold audio, looped when short, refused when silent.

One rule (ctxpaper.train.crop_window) serves training batches, prediction and
the tagger; these tests drive it through each of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ctxpaper import audio as A
from ctxpaper import features as F
from ctxpaper import model as M
from ctxpaper import train as T
from ctxpaper.tag import Tagger

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def noise(seconds: float, sr: int = A.SR, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(round(seconds * sr)))).astype(np.float32)


@pytest.fixture(scope="module")
def tagger32():
    return Tagger(model=M.build_model(32, "paper", seed=1), frames=32, model_variant="paper")


def test_a_12_s_file_is_read_from_its_audio_not_its_padding(tmp_path, tagger32):
    path = tmp_path / "twelve.wav"
    sf.write(path, noise(12, sr=44100, seed=3), 44100)
    patch, n_valid = A.logmel_valid(path)
    assert n_valid == 259
    old_offset = (A.FRAMES - 32) // 2  # the crop of the whole 646-frame patch: 307..338, all padding
    assert not patch[old_offset:old_offset + 32].any()
    x = tagger32.crop(patch, n_valid)
    np.testing.assert_array_equal(x[0, :, :, 0], patch[113:145])  # the middle of the 259 frames of audio
    p = tagger32.predict_file(path)
    silence = np.asarray(tagger32.model.predict_on_batch(np.zeros((1, 32, 96, 1), np.float32)))[0]
    np.testing.assert_allclose(p, tagger32.predict_patch(patch, n_valid), rtol=1e-6)
    assert np.abs(p - silence).max() > 1e-3


def test_a_clip_shorter_than_the_crop_is_looped():
    patch, n_valid = A.logmel_valid(noise(1, seed=4), sr=A.SR, min_seconds=0.5)
    assert n_valid == 22
    crop = T.crop_patch(patch, 646, n_valid)
    assert crop.shape == (646, 96)
    np.testing.assert_array_equal(crop, patch[np.arange(646) % 22])


def test_a_silent_crop_is_refused_with_its_reason(tmp_path, tagger32):
    # 20 s of near silence, then 10 s of noise: the clip is not silent, the
    # middle 32 frames the model reads are.
    y = np.concatenate([1e-6 * noise(20, seed=5), noise(10, seed=6)])
    path = tmp_path / "quiet_start.wav"
    sf.write(path, y, A.SR, subtype="FLOAT")
    patch, n_valid = A.logmel_valid(path)
    assert n_valid == 646
    with pytest.raises(A.AudioError, match="silent") as e:
        tagger32.predict_file(path)
    assert e.value.reason == "silent"
    crop = T.crop_patch(patch, 646, n_valid)  # the whole clip holds audio: accepted
    assert crop.shape == (646, 96)
    with pytest.raises(A.AudioError) as e:
        T.crop_patch(patch, 32, 0)
    assert e.value.reason == "too_short"


# ---------------------------------------------------------------- training batches


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Clips of 30, 12, 11, 25 and 30 s (the last silent where a 32-frame crop reads)."""
    tmp = tmp_path_factory.mktemp("crops")
    lengths = {1: 30, 2: 12, 3: 11, 4: 25}
    for i, seconds in lengths.items():
        sf.write(tmp / f"{i}.wav", noise(seconds, sr=16000, seed=i), 16000)
    quiet = np.concatenate([noise(10, seed=9), 1e-6 * noise(10, seed=10), noise(10, seed=11)])
    sf.write(tmp / "5.wav", quiet, A.SR, subtype="FLOAT")
    return F.build_feature_store([1, 2, 3, 4, 5], F.PreviewFiles(tmp, "{id}.wav"), tmp / "store", workers=1,
                                 progress=False)


@pytest.mark.parametrize("frames", [32, 646])
def test_training_batches_never_read_padding(store, frames):
    rows = np.arange(4)
    ds = T.FeatureBatches(store, rows, M.pack_targets(np.zeros((4, 15), bool)), 3, frames, shuffle_seed=2)
    windows = ds.crop_windows()
    valid = store.valid_frames[rows]
    assert valid.tolist() == [646, 259, A.valid_frames(11 * A.SR), A.valid_frames(25 * A.SR)]
    assert (windows[:, 0] >= 0).all() and (windows[:, 1] <= valid).all()
    full = store.load(store.all_ids[rows])
    seen = []
    for b in range(len(ds)):
        x, _ = ds[b]
        assert x.dtype == np.float32 and x.shape[1:] == (frames, 96, 1)
        for j, k in enumerate(ds.order(0)[b * 3:(b + 1) * 3]):
            a, z = windows[k]
            expected = full[k, a:z][np.arange(frames) % (z - a)]  # the window, looped if short
            np.testing.assert_array_equal(x[j, :, :, 0], expected)
            seen.append(int(k))
    assert sorted(seen) == [0, 1, 2, 3]


def test_prediction_reads_the_same_crops_as_training(store):
    model = M.build_model(32, "paper", seed=0)
    rows = np.arange(4)
    p = T.predict(model, T.FeatureBatches(store, rows, None, 2, 32))
    patches = store.load(store.all_ids[rows])
    one_by_one = [np.asarray(model.predict_on_batch(T.crop_patch(patches[k], 32, store.valid_frames[k])[None, :, :, None]))[0]
                  for k in range(4)]
    np.testing.assert_allclose(p, np.stack(one_by_one), rtol=1e-5, atol=1e-6)


def test_problem_rows_are_listed_and_refused_before_training(store):
    rows = np.arange(5)
    reasons = T.crop_problems(store, rows, 32)
    assert reasons.tolist() == ["", "", "", "", "silent"]
    assert T.crop_problems(store, rows, 646).tolist() == [""] * 5  # the whole of track 5 is audible
    with pytest.raises(ValueError, match=r"track 5 \(store row 4\) are silent where the model reads \(silent\)"):
        T.check_features(store, rows, 32, ids=store.all_ids[rows])
    T.check_features(store, rows[:4], 32)
    # An array without valid lengths is taken as all audio; given them, the same rule applies.
    arr = np.zeros((2, 646, 96), np.float32)
    arr[:, :100] = 1.0
    assert T.crop_problems(arr, np.arange(2), 32).tolist() == ["silent", "silent"]
    assert T.crop_problems(arr, np.arange(2), 32, valid_frames=np.array([100, 0])).tolist() == ["", "too_short"]


def test_a_damaged_row_is_never_served(tmp_path):
    for i in (1, 2):
        sf.write(tmp_path / f"{i}.wav", noise(30, sr=16000, seed=i), 16000)
    built = F.build_feature_store([1, 2], F.PreviewFiles(tmp_path, "{id}.wav"), tmp_path / "s", workers=1,
                                  progress=False)
    with open(built.path / F.FEATURES_FILE, "r+b") as fh:  # one byte of track 2's row
        fh.seek(F.store_bytes(1) + 100)
        b = fh.read(1)[0]
        fh.seek(F.store_bytes(1) + 100)
        fh.write(bytes([b ^ 0x01]))
    store = F.FeatureStore(built.path)
    assert T.crop_problems(store, np.arange(2), 32).tolist() == ["", "damaged"]
    with pytest.raises(F.DamagedRowError, match=r"track 2"):
        T.FeatureBatches(F.FeatureStore(built.path), np.arange(2), None, 2, 32)[0]


def test_store_batches_are_the_float16_rows_as_float32(store):
    ds = T.FeatureBatches(store, np.array([0]), None, 1, 646)
    (x,) = ds[0]
    np.testing.assert_array_equal(x[0, :, :, 0], np.asarray(store.features[0], np.float32))


def test_batches_refuse_rows_without_features(tmp_path):
    sf.write(tmp_path / "1.wav", noise(30, sr=16000, seed=1), 16000)
    (tmp_path / "2.wav").write_text("not audio")
    store = F.build_feature_store([1, 2], F.PreviewFiles(tmp_path, "{id}.wav"), tmp_path / "s", workers=1,
                                  progress=False)
    with pytest.raises(ValueError, match=r"store row 1 \(track 2\) .* has no features"):
        T.FeatureBatches(store, np.arange(2), None, 2, 32)
