"""The feature store (ctxpaper.features): rows, valid lengths, checksums, resume, deletion."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ctxpaper import audio as A
from ctxpaper import features as F
from ctxpaper import synth as S

ROOT = Path(__file__).resolve().parent.parent


def noise(seconds: float, sr: int = A.SR, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(round(seconds * sr)))).astype(np.float32)


def half(*args, **kw) -> np.ndarray:
    """What the store serves for a source: its log-mel patch rounded to float16, as float32."""
    return A.logmel(*args, **kw).astype(np.float16).astype(np.float32)


def wav_dir(tmp_path: Path, ids: list[int]) -> Path:
    d = tmp_path / "wav"
    d.mkdir()
    for i in ids:
        sf.write(d / f"{i}.wav", noise(30, sr=16000, seed=i), 16000)
    return d


def odd_source(directory: str, track_id: int):
    """A source_fn with every kind of failure, keyed by id."""
    if track_id == 900:
        return np.zeros(A.N_SAMPLES, np.float32), A.SR  # silent
    if track_id == 901:
        return noise(2), A.SR  # too short
    if track_id == 902:
        raise RuntimeError("the world has no such track")
    if track_id == 903:
        return None  # neither a path nor (waveform, sr)
    return Path(directory) / f"{track_id}.wav"  # 904 is missing on disk


def test_store_contents_failures_and_index(tmp_path):
    good = [11, 5, 7]
    d = wav_dir(tmp_path, good)
    ids = [11, 900, 5, 901, 902, 903, 904, 7]
    store = F.build_feature_store(ids, functools.partial(odd_source, str(d)), tmp_path / "store",
                                  workers=1, chunk=3, progress=False)
    assert store.ids.tolist() == good  # request order, failures left out
    assert store.features.shape == (len(ids), 646, 96) and store.features.dtype == np.float16
    for i in good:
        np.testing.assert_array_equal(store.features[store.index_of([i])[0]], half(d / f"{i}.wav"))
    np.testing.assert_array_equal(store.load([7, 11]), np.stack([half(d / "7.wav"), half(d / "11.wav")]))
    reasons = store.failures.set_index("id")["reason"]
    assert sorted(reasons.index) == [900, 901, 902, 903, 904]
    assert reasons[900].startswith("silent") and reasons[901].startswith("too_short")
    assert "RuntimeError" in reasons[902] and "bad_input" in reasons[903]
    assert "FileNotFoundError" in reasons[904] and "904.wav" in reasons[904]
    with pytest.raises(KeyError, match="900"):
        store.index_of([5, 900])
    with pytest.raises(KeyError):
        store.index_of([123456])
    # Reopening from disk gives the same view.
    again = F.FeatureStore(tmp_path / "store")
    assert again.ids.tolist() == good and again.complete
    pd.testing.assert_frame_equal(again.failures, store.failures)
    with pytest.raises(ValueError):
        again.features[0, 0, 0] = 1.0  # read-only


def test_store_rejects_bad_requests(tmp_path):
    d = wav_dir(tmp_path, [1, 2])
    src = F.PreviewFiles(d, "{id}.wav")
    with pytest.raises(ValueError, match="unique"):
        F.build_feature_store([1, 2, 1], src, tmp_path / "s", workers=1, progress=False)
    F.build_feature_store([1, 2], src, tmp_path / "s", workers=1, progress=False)
    with pytest.raises(ValueError, match="other ids"):
        F.build_feature_store([2, 1], src, tmp_path / "s", workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        F.FeatureStore(tmp_path / "nothing")
    with F._locked(tmp_path / "s"):
        with pytest.raises(RuntimeError, match="another process"):
            F.build_feature_store([1, 2], src, tmp_path / "s", workers=1, progress=False)


def test_store_with_two_processes_equals_direct_extraction(tmp_path):
    lat = pd.DataFrame([S.demo_latent(c) for c in (["club"], ["sleep"], ["sad", "night"], [], ["party"])],
                       index=[10, 20, 30, 40, 50], columns=list(S.CONTEXTS))
    src = S.SimulatedPreviews(lat, None, seed=3)
    store = F.build_feature_store(lat.index.to_numpy(), src, tmp_path / "store", workers=2, chunk=2,
                                  progress=False)
    assert store.ids.tolist() == [10, 20, 30, 40, 50]
    for i in store.ids:
        y, sr = src(int(i))
        np.testing.assert_array_equal(store.load([i])[0], half(y, sr=sr))


KILLER = textwrap.dedent("""
    import os, sys
    from ctxpaper.features import PreviewFiles, build_feature_store
    directory, store, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ids = [int(x) for x in sys.argv[4].split(",")]
    files = PreviewFiles(directory, "{id}.wav")
    def source(i):
        if i == kill_at:
            os._exit(9)  # dies like kill -9: no cleanup, no exception handlers
        return files(i)
    build_feature_store(ids, source, store, workers=1, chunk=2, progress=False)
""")


def test_killed_build_resumes_without_recomputing_done_rows(tmp_path):
    ids = [3, 1, 4, 15, 9, 2, 6, 5]
    d = wav_dir(tmp_path, ids)
    store_dir = tmp_path / "store"
    r = subprocess.run([sys.executable, "-c", KILLER, str(d), str(store_dir), "9", ",".join(map(str, ids))],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    partial = F.FeatureStore(store_dir)
    # Chunks of 2: (3, 1) and (4, 15) were finished; the chunk holding 9 was not.
    assert partial.ids.tolist() == [3, 1, 4, 15] and not partial.complete
    # Garbage in rows not marked done (a torn write) must not survive the resume.
    mm = np.memmap(store_dir / F.FEATURES_FILE, dtype=np.float16, mode="r+", shape=partial.features.shape)
    mm[4:] = 7.0
    mm.flush()
    del mm
    calls: list[int] = []

    def counting(i: int) -> Path:
        calls.append(i)
        return d / f"{i}.wav"

    done = F.build_feature_store(ids, counting, store_dir, workers=1, chunk=2, progress=False)
    assert sorted(calls) == sorted([9, 2, 6, 5])
    assert done.ids.tolist() == ids and done.complete
    for i in ids:
        np.testing.assert_array_equal(done.load([i])[0], half(d / f"{i}.wav"))
    calls.clear()
    F.build_feature_store(ids, counting, store_dir, workers=1, chunk=2, progress=False)
    assert calls == []  # a re-run of a finished store computes nothing


POOL_RUN = textwrap.dedent("""
    import sys
    import pandas as pd
    from ctxpaper import synth as S
    from ctxpaper.features import build_feature_store
    ids = list(range(100, 124))
    lat = pd.DataFrame([S.demo_latent([S.CONTEXTS[i % 15]]) for i in ids], index=ids, columns=list(S.CONTEXTS))
    build_feature_store(ids, S.SimulatedPreviews(lat, None, seed=1), sys.argv[1], workers=2, chunk=2,
                        progress=False)
""")


def test_sigkill_during_parallel_build_then_resume(tmp_path):
    store_dir = tmp_path / "store"
    p = subprocess.Popen([sys.executable, "-c", POOL_RUN, str(store_dir)], cwd=ROOT, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        n_done = 0
        while time.monotonic() < deadline and p.poll() is None:
            try:
                n_done = len(F.FeatureStore(store_dir))
            except (FileNotFoundError, ValueError, OSError, KeyError):
                n_done = 0
            if n_done >= 4:
                break
            time.sleep(0.05)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)  # the run and its pool workers, mid-flight
        p.wait()
    before = F.FeatureStore(store_dir)
    assert 4 <= len(before) <= 24
    ids = list(range(100, 124))
    lat = pd.DataFrame([S.demo_latent([S.CONTEXTS[i % 15]]) for i in ids], index=ids, columns=list(S.CONTEXTS))
    src = S.SimulatedPreviews(lat, None, seed=1)
    after = F.build_feature_store(ids, src, store_dir, workers=1, chunk=4, progress=False)
    assert after.ids.tolist() == ids
    for i in (ids[0], ids[7], ids[-1]) + tuple(before.ids[:2].tolist()):
        y, sr = src(int(i))
        np.testing.assert_array_equal(after.load([i])[0], half(y, sr=sr))




# ---------------------------------------------------------------- valid length, size


def test_store_records_how_many_frames_hold_audio(tmp_path):
    d = tmp_path / "wav"
    d.mkdir()
    for i, seconds in ((1, 30), (2, 12), (3, 75)):
        sf.write(d / f"{i}.wav", noise(seconds, sr=16000, seed=i), 16000)
    store = F.build_feature_store([1, 2, 3], F.PreviewFiles(d, "{id}.wav"), tmp_path / "s", workers=1,
                                  progress=False)
    assert store.valid_frames.tolist() == [646, A.valid_frames(12 * A.SR), 646]
    assert store.valid_frames[1] == 259
    assert F.FeatureStore(tmp_path / "s").valid_frames.tolist() == store.valid_frames.tolist()


def test_float16_store_size_for_the_released_tracks():
    assert F.store_bytes(1) == 646 * 96 * 2 == 124_032
    assert F.store_bytes(49_929) <= 6.5e9


# ---------------------------------------------------------------- checksums


@pytest.fixture
def built(tmp_path):
    ids = [4, 8, 15, 16]
    d = wav_dir(tmp_path, ids)
    src = F.PreviewFiles(d, "{id}.wav")
    store = F.build_feature_store(ids, src, tmp_path / "store", workers=1, progress=False)
    return store, src, ids, d


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x10]))


def test_a_damaged_row_is_refused_then_extracted_again(built):
    store, src, ids, d = built
    row = int(store.index_of([15])[0])
    flip_byte(store.path / F.FEATURES_FILE, F.store_bytes(row) + 5000)
    fresh = F.FeatureStore(store.path)  # opening is cheap: rows are checked when read
    with pytest.raises(F.DamagedRowError, match=rf"{store.path}.*row {row} \(track 15\) fails its checksum"):
        fresh.load([15])
    out = np.empty((10, 96), np.float16)
    with pytest.raises(F.DamagedRowError):
        F.FeatureStore(store.path).read_frames(row, 0, 10, out)
    np.testing.assert_array_equal(fresh.load([4, 8, 16]), np.stack([half(d / f"{i}.wav") for i in (4, 8, 16)]))
    assert F.FeatureStore(store.path).verify().tolist() == [row]
    calls: list[int] = []

    def counting(i: int) -> Path:
        calls.append(i)
        return src(i)

    with pytest.warns(UserWarning, match=r"1 row\(s\) fail their checksum.*\[15\]"):
        again = F.build_feature_store(ids, counting, store.path, workers=1, progress=False)
    assert calls == [15]
    np.testing.assert_array_equal(again.load([15])[0], half(d / "15.wav"))
    assert again.verify().size == 0


def test_damaged_ids_or_meta_name_the_store_and_are_rebuilt(built):
    store, src, ids, d = built
    flip_byte(store.path / "ids.npy", 130)  # inside the ids, after the .npy header
    with pytest.raises(F.StoreError, match=rf"feature store {store.path}: ids.npy fails its checksum"):
        F.FeatureStore(store.path)
    with pytest.warns(UserWarning, match=r"ids.npy fails its checksum.*; rebuilding it"):
        rebuilt = F.build_feature_store(ids, src, store.path, workers=1, progress=False)
    assert rebuilt.ids.tolist() == ids
    np.testing.assert_array_equal(rebuilt.load([8])[0], half(d / "8.wav"))

    meta = json.loads((store.path / "meta.json").read_text())
    meta["n_mels"] = 40  # an edit that keeps valid JSON
    (store.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(F.StoreError, match=rf"feature store {store.path}: meta.json fails its checksum"):
        F.FeatureStore(store.path)
    (store.path / "meta.json").write_text("{not json")
    with pytest.raises(F.StoreError, match=rf"feature store {store.path}: meta.json is not valid JSON"):
        F.FeatureStore(store.path)


def test_damaged_manifest_names_the_store(built):
    store = built[0]
    file = store.path / "manifest.npz"
    original = file.read_bytes()
    with zipfile.ZipFile(file) as z:
        members = z.infolist()
    for m in members:  # one flipped byte in the header and one in the values of each array
        start = m.header_offset + 30 + len(m.filename.encode()) + len(m.extra)
        for offset in (start + 20, start + m.compress_size - 1):
            flip_byte(file, offset)
            with pytest.raises(F.StoreError, match=rf"feature store {store.path}: manifest.npz"):
                F.FeatureStore(store.path)
            file.write_bytes(original)
    assert len(F.FeatureStore(store.path)) == 4


def test_a_store_of_the_old_version_is_rebuilt_never_misread(tmp_path):
    ids = [1, 2]
    d = wav_dir(tmp_path, ids)
    path = tmp_path / "store"
    path.mkdir()
    # A version-1 store: float32 rows, no checksums.
    np.save(path / "ids.npy", np.array(ids, np.int64))
    np.zeros((2, 646, 96), np.float32).tofile(path / "features.f32")
    np.savez(path / "manifest.npz", status=np.ones(2, np.int8), fail_rows=np.zeros(0, np.int64),
             fail_reasons=np.array([], dtype="<U1"))
    (path / "meta.json").write_text(json.dumps({"version": 1, "n": 2, "frames": 646, "n_mels": 96,
                                                "dtype": "float32", "feature_params": A.FEATURE_PARAMS}))
    with pytest.raises(F.StoreError, match=rf"feature store {path} has version 1"):
        F.FeatureStore(path)
    with pytest.warns(UserWarning, match="rebuilding it"):
        store = F.build_feature_store(ids, F.PreviewFiles(d, "{id}.wav"), path, workers=1, progress=False)
    assert not (path / "features.f32").exists()
    np.testing.assert_array_equal(store.load([2])[0], half(d / "2.wav"))


# ---------------------------------------------------------------- deleting the sources


def test_sources_are_deleted_only_once_their_rows_are_stored(tmp_path):
    d = wav_dir(tmp_path, [1, 2, 3])
    (d / "4.wav").write_text("not audio")  # fails: kept for a look
    src = F.PreviewFiles(d, "{id}.wav")
    kept = F.build_feature_store([1, 2], src, tmp_path / "keep", workers=1, progress=False)
    assert (d / "1.wav").exists() and (d / "2.wav").exists() and len(kept) == 2
    expected = {i: half(d / f"{i}.wav") for i in (1, 2, 3)}
    store = F.build_feature_store([1, 2, 3, 4], src, tmp_path / "s", workers=1, chunk=2, progress=False,
                                  delete_sources=True)
    assert sorted(p.name for p in d.iterdir()) == ["4.wav"]
    assert store.failures["id"].tolist() == [4]
    for i in (1, 2, 3):
        np.testing.assert_array_equal(store.load([i])[0], expected[i])


def test_sources_left_by_a_kill_after_their_commit_are_deleted_next_time(tmp_path):
    # A build killed between a chunk's commit and the deletion of its sources
    # leaves done rows whose files still exist: the next build deletes them.
    d = wav_dir(tmp_path, [1, 2])
    src = F.PreviewFiles(d, "{id}.wav")
    expected = half(d / "2.wav")
    F.build_feature_store([1, 2], src, tmp_path / "s", workers=1, progress=False)
    assert (d / "1.wav").exists() and (d / "2.wav").exists()
    store = F.build_feature_store([1, 2], src, tmp_path / "s", workers=1, progress=False, delete_sources=True)
    assert list(d.iterdir()) == []
    np.testing.assert_array_equal(store.load([2])[0], expected)


def test_a_truncated_features_file_names_the_store(built):
    store = built[0]
    os.truncate(store.path / F.FEATURES_FILE, F.store_bytes(3))
    with pytest.raises(F.StoreError, match=rf"feature store {store.path}: features.f16 holds"):
        F.FeatureStore(store.path)
    (store.path / F.FEATURES_FILE).unlink()
    with pytest.raises(F.StoreError, match=rf"feature store {store.path}: features.f16 is missing"):
        F.FeatureStore(store.path)
