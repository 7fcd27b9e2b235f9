"""Throughput of the audio pipeline (chapter 04), side by side in one run.

Measures clips per second, with 1 and 2 worker processes, of

* decode + log-mel of 30 s MP3s (44.1 kHz stereo, like Deezer previews) with
  ``ctxpaper.audio.logmel`` and with librosa's own default path
  (``librosa.load(sr=22050)`` + ``librosa.feature.melspectrogram`` + log1p);
* the feature store filling from those MP3s (``ctxpaper.features.build_feature_store``:
  646 × 96 float16 rows with their valid length and checksum);
* preview synthesis (``ctxpaper.synth.synthesize``);
* synthesis + features into a store (what the quick profile runs).

Target (issue 15): >= 55 clips/s from MP3 previews into the store on 2 cores,
i.e. features for all 49,929 released tracks in about 15 minutes.

It also measures what storing float16 instead of float32 changes: the largest
absolute difference of a log-mel value, and of the 15 probabilities of the
paper's 646-frame CNN (seeded initial weights, not a trained model) fed the
float16 patch instead of the float32 one, over the MP3s (and the real MP3s of
the Debian package ``asc-music`` when installed); with the bytes per track and
for all released tracks (target <= 6.5 GB).

Run: ``.venv/bin/python benchmarks/bench_audio.py [--clips N]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxpaper import audio as A  # noqa: E402
from ctxpaper import features as F  # noqa: E402
from ctxpaper import synth as S  # noqa: E402
from ctxpaper.contexts import CONTEXTS  # noqa: E402

TARGET = 55.0
SIZE_TARGET_GB = 6.5
N_RELEASED = 49_929


def ours(path: str) -> float:
    return float(A.logmel(path).mean())


def librosa_default(path: str) -> float:
    import librosa

    y, sr = librosa.load(path, sr=22050, mono=True, duration=30.0)
    m = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=96, hop_length=1024)
    return float(np.log1p(100 * m).mean())


def synth_one(i: int) -> float:
    lat = np.array([(i >> k) & 1 for k in range(15)], bool)
    return float(S.synthesize(lat, None, i)[:10].sum())


def _init() -> None:
    F._init_worker()


def rate(fn, items, workers: int) -> float:
    """Clips per second of ``fn`` over ``items`` (pool started and warmed up first)."""
    if workers == 1:
        fn(items[0])  # warm caches (imports, filterbank)
        t = time.perf_counter()
        for x in items:
            fn(x)
        return len(items) / (time.perf_counter() - t)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["ctxpaper.audio", "ctxpaper.features", "ctxpaper.synth", "librosa.filters", "librosa.feature",
                                "scipy.signal", "scipy.fft", "scipy.sparse"])
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init) as pool:
        list(pool.map(fn, items[:workers]))  # start the workers and warm them up
        t = time.perf_counter()
        list(pool.map(fn, items, chunksize=4))
        return len(items) / (time.perf_counter() - t)


def store_rate(ids, source_fn, workers: int, tmp: Path) -> float:
    path = tmp / f"store-{workers}-{time.monotonic_ns()}"
    t = time.perf_counter()
    F.build_feature_store(ids, source_fn, path, workers=workers, chunk=8, progress=False)
    r = len(ids) / (time.perf_counter() - t)
    shutil.rmtree(path)
    return r


def stage_times(paths: list[str]) -> None:
    """Print where one clip's extraction time goes (one process), and the 2-core ceiling it implies."""
    import zlib

    def timed(fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - t

    ms: dict[str, float] = {}
    for p in paths:
        y, dt = timed(A._read_file, Path(p))
        ms["decode MP3 (libsndfile / mpg123)"] = ms.get("decode MP3 (libsndfile / mpg123)", 0.0) + dt
        m, dt = timed(A._to_mono, y[0])
        ms["mono mix"] = ms.get("mono mix", 0.0) + dt
        r, dt = timed(lambda a: soxr.resample(a, y[1], A.SR, quality="HQ")[:A.N_SAMPLES], m)
        ms["resample 44.1 -> 22.05 kHz (soxr HQ)"] = ms.get("resample 44.1 -> 22.05 kHz (soxr HQ)", 0.0) + dt
        r = np.pad(r, (0, A.N_SAMPLES - r.size))
        pw, dt = timed(A.mel_power, r)
        ms["STFT + mel (mel_power)"] = ms.get("STFT + mel (mel_power)", 0.0) + dt
        _, dt = timed(lambda a: zlib.crc32(np.ascontiguousarray(np.log1p(100 * a), dtype=np.float16)), pw)
        ms["log1p, float16, crc32"] = ms.get("log1p, float16, crc32", 0.0) + dt
    total = sum(ms.values()) / len(paths) * 1e3
    print("\nwhere a clip's time goes (1 process, ms per clip):")
    for k, v in ms.items():
        print(f"  {k:<40} {v / len(paths) * 1e3:6.1f}")
    print(f"  {'total':<40} {total:6.1f}  -> at most {2000 / total:.0f} clips/s on 2 idle cores")


def float16_effect(paths: list[str]) -> None:
    """Print what float16 storage changes in the patches and in a CNN's outputs."""
    from ctxpaper import model as M  # deferred: imports keras

    paths = paths + [str(p) for p in A.real_recordings("asc-music")]
    patches = np.stack([A.logmel(p) for p in paths])
    halves = patches.astype(np.float16).astype(np.float32)
    diff = np.abs(patches - halves)
    cnn = M.build_model(A.FRAMES, "paper", seed=0)
    p32 = np.asarray(cnn.predict(patches[..., None], verbose=0))
    p16 = np.asarray(cnn.predict(halves[..., None], verbose=0))
    n_real = len(A.real_recordings("asc-music"))
    print(f"\nfloat16 on disk, over {len(paths)} 30 s MP3s ({n_real} real, from asc-music):")
    print(f"  log-mel values {patches.min():.2f} .. {patches.max():.2f}; max abs difference float32 vs float16 "
          f"{diff.max():.2e} (mean {diff.mean():.2e}; max relative {(diff / np.maximum(patches, 1e-3)).max():.2e})")
    print(f"  646-frame CNN (seeded initial weights): max abs difference of the probabilities {np.abs(p32 - p16).max():.2e}")
    per_track = F.store_bytes(1)
    total = F.store_bytes(N_RELEASED) / 1e9
    print(f"  bytes per track: {per_track:,} (float32: {2 * per_track:,}); all {N_RELEASED:,} released tracks: "
          f"{total:.2f} GB (float32: {2 * total:.2f} GB; target <= {SIZE_TARGET_GB} GB: "
          f"{'yes' if total <= SIZE_TARGET_GB else 'NO'})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=32)
    a = ap.parse_args()
    n = a.clips
    tmp = Path(tempfile.mkdtemp(prefix="bench_audio_"))
    try:
        print(f"Making {n} 30 s MP3s (44.1 kHz stereo) from synthesised previews ...", flush=True)
        paths = []
        for i in range(n):
            y = S.synthesize(np.array([(i >> k) & 1 for k in range(15)], bool), None, i)
            y44 = soxr.resample(y, 22050, 44100)
            p = tmp / f"{i}.mp3"
            sf.write(p, np.stack([y44, y44], axis=1), 44100, format="MP3")
            paths.append(str(p))
        lat = pd.DataFrame([[(i >> k) & 1 for k in range(15)] for i in range(n)], columns=list(CONTEXTS),
                           index=np.arange(n)).astype(bool)
        sim = S.SimulatedPreviews(lat, None, seed=0)
        files = F.PreviewFiles(tmp, "{id}.mp3")
        rows = []
        for w in (1, 2):
            rows.append(("decode + log-mel, ctxpaper.audio.logmel", w, rate(ours, paths, w)))
            rows.append(("decode + log-mel, librosa default path", w, rate(librosa_default, paths, w)))
            rows.append(("MP3s -> feature store (build_feature_store)", w, store_rate(np.arange(n), files, w, tmp)))
            rows.append(("synthesis (synth.synthesize)", w, rate(synth_one, list(range(n)), w)))
            rows.append(("synthesis + features -> store", w, store_rate(np.arange(n), sim, w, tmp)))
        df = pd.DataFrame(rows, columns=["step", "workers", "clips_per_s"])
        table = df.pivot(index="step", columns="workers", values="clips_per_s")
        table.columns = [f"{c} worker{'s' if c > 1 else ''} (clips/s)" for c in table.columns]
        table["speed-up 2/1"] = table.iloc[:, 1] / table.iloc[:, 0]
        table[f"minutes for {N_RELEASED:,} (2 workers)"] = N_RELEASED / table.iloc[:, 1] / 60
        table[f">= {TARGET:g}/s"] = np.where(table.iloc[:, 1] >= TARGET, "yes", "NO")
        pd.set_option("display.width", 200)
        print(f"\n{n} clips each; machine: {multiprocessing.cpu_count()} cores (shared: numbers vary with load)\n")
        print(table.round(2).to_string())
        lib = table.loc["decode + log-mel, librosa default path"].iloc[1]
        us = table.loc["decode + log-mel, ctxpaper.audio.logmel"].iloc[1]
        print(f"\nctxpaper.audio.logmel / librosa default path (2 workers): {us / lib:.2f}x")
        stage_times(paths)
        float16_effect(paths)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
