"""The training input pipeline, side by side in one run (chapters 05–07, paper §4.1 input).

Shuffled batches of 32 × 646 × 96 from an on-disk float16 feature store that
sits in the page cache, measured in samples per second:

* the raw reads the pipeline is built on: a ``np.memmap`` fancy-index read of
  the batch's rows (float16), the same rows read with ``os.preadv``, and the
  float16 → float32 conversion alone (numpy's, and the chunked torch copy
  ``FeatureBatches`` uses);
* :class:`ctxpaper.train.FeatureBatches` over the store — the real training
  path: sorted ``pread`` of each row's crop, checksum on a row's first read,
  one conversion to float32 — in its first epoch (every row checked) and
  later epochs.

Target (issue 15): >= 10,000 samples/s on 2 cores, roughly what one H100
trains this CNN at, so that a GPU never waits for data.

Memory: a second process builds the paper's 646-frame CNN, reads one whole
epoch of the store through ``FeatureBatches`` and trains a few steps on it,
then reports its peak resident memory (target: <= 4 GB for all 49,929
released tracks, because the store is read, not loaded).

Run: ``.venv/bin/python benchmarks/bench_pipeline.py [--rows 49929] [--dir /tmp]``.
The store needs ``rows × 124,032`` bytes (6.2 GB for 49,929) and is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxpaper import features as F  # noqa: E402
from ctxpaper.audio import FRAMES, N_MELS  # noqa: E402

TARGET = 10_000.0
RSS_TARGET_GB = 4.0
BATCH = 32
N_RELEASED = 49_929


def make_store(path: Path, n: int) -> F.FeatureStore:
    """A store of ``n`` rows in the real format (256 distinct log-mel-like patches, repeated)."""
    rng = np.random.default_rng(0)
    pool = np.abs(rng.normal(2.0, 1.0, size=(256, FRAMES, N_MELS))).astype(F.DTYPE)
    crcs = np.array([zlib.crc32(p) for p in pool], np.uint32)
    ids = np.arange(10_000_000, 10_000_000 + n, dtype=np.int64)
    F._create_store(path, ids)
    fd = os.open(path / F.FEATURES_FILE, os.O_WRONLY)
    try:
        block = 256
        for start in range(0, n, block):  # pwrite, not a map: this process keeps no pages
            k = min(block, n - start)
            os.pwrite(fd, pool[:k].tobytes(), F.store_bytes(start))
    finally:
        os.close(fd)
    valid = np.full(n, FRAMES, np.int64)
    valid[::7] = 259  # some 12 s previews
    F._write_manifest(path, np.full(n, F.DONE, np.int8), valid, crcs[np.arange(n) % 256], {})
    return F.FeatureStore(path)


def warm_page_cache(path: Path) -> float:
    """Read the features file once; returns seconds."""
    t = time.perf_counter()
    with open(path / F.FEATURES_FILE, "rb", buffering=0) as fh:
        buf = bytearray(64 << 20)
        while fh.readinto(buf):
            pass
    return time.perf_counter() - t


def rate_of(fn, batches: list[np.ndarray]) -> float:
    fn(batches[0])
    t = time.perf_counter()
    for b in batches:
        fn(b)
    return BATCH * len(batches) / (time.perf_counter() - t)


def side_by_side(store: F.FeatureStore, n_batches: int) -> list[tuple[str, float]]:
    from ctxpaper import train as T  # deferred: imports keras

    n = len(store.all_ids)
    rng = np.random.default_rng(1)
    batches = [np.sort(rng.choice(n, BATCH, replace=False)) for _ in range(n_batches)]
    mm = store.features
    out32 = np.empty((BATCH, FRAMES, N_MELS), np.float32)
    buf16 = np.empty((BATCH, FRAMES, N_MELS), F.DTYPE)
    fd = os.open(store.path / F.FEATURES_FILE, os.O_RDONLY)
    row_bytes = F.store_bytes(1)

    def pread(rows: np.ndarray) -> None:
        for i, r in enumerate(rows.tolist()):
            os.preadv(fd, [memoryview(buf16[i]).cast("B")], r * row_bytes)

    rows_out: list[tuple[str, float]] = [
        ("raw np.memmap read of the rows (float16)", rate_of(lambda b: mm[b], batches)),
        ("raw os.preadv of the rows (float16)", rate_of(pread, batches)),
        ("float16 -> float32 conversion alone, numpy", rate_of(lambda b: np.copyto(out32, buf16), batches)),
        ("float16 -> float32 conversion alone, chunked torch", rate_of(lambda b: T._to_float32(buf16, out32),
                                                                        batches)),
    ]
    os.close(fd)
    sample_rows = rng.permutation(n)[: n_batches * BATCH]
    ds = T.FeatureBatches(F.FeatureStore(store.path), sample_rows, None, BATCH, FRAMES, shuffle_seed=0)

    def epoch(e: int) -> float:
        ds.epoch = e
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        return sample_rows.size / (time.perf_counter() - t)

    rows_out.append(("FeatureBatches, first epoch (checksums checked)", epoch(0)))
    rows_out.append(("FeatureBatches, later epoch", epoch(1)))
    return rows_out


MEMORY_PROBE = r"""
import json, resource, sys, time
import numpy as np
from ctxpaper import features as F
from ctxpaper import model as M
from ctxpaper import train as T
store = F.FeatureStore(sys.argv[1])
n, steps = len(store.all_ids), int(sys.argv[2])
targets = M.pack_targets(np.random.default_rng(0).random((n, 15)) < 0.2)
ds = T.FeatureBatches(store, np.arange(n), targets, 32, 646, shuffle_seed=0)
t = time.perf_counter()
for i in range(len(ds)):
    ds[i]
epoch_s = time.perf_counter() - t
model = M.build_model(646, "paper", seed=0)
M.compile_model(model)
t = time.perf_counter()
for i in range(steps):
    model.train_on_batch(*ds[i])
step_s = (time.perf_counter() - t) / max(steps, 1)
with open("/proc/self/status") as fh:
    hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
print(json.dumps({"rows": n, "epoch_seconds": epoch_s, "train_step_seconds": step_s,
                  "peak_rss_gb": hwm / 1e6, "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=N_RELEASED, help="store rows (default: all released tracks)")
    ap.add_argument("--batches", type=int, default=300, help="batches per throughput measurement")
    ap.add_argument("--train-steps", type=int, default=3, help="training steps in the memory probe")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the store")
    a = ap.parse_args()
    need = F.store_bytes(a.rows)
    free = shutil.disk_usage(a.dir).free
    if need > 0.8 * free:
        raise SystemExit(f"a {a.rows:,}-row store needs {need / 1e9:.1f} GB; {a.dir} has {free / 1e9:.1f} GB free: "
                         "pass --rows smaller or --dir elsewhere")
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_", dir=a.dir))
    try:
        t = time.perf_counter()
        store = make_store(tmp / "store", a.rows)
        print(f"store of {a.rows:,} rows ({need / 1e9:.2f} GB float16, {F.store_bytes(1):,} bytes per track) "
              f"written in {time.perf_counter() - t:.1f} s; page cache warmed in {warm_page_cache(store.path):.1f} s")
        rows = side_by_side(store, min(a.batches, a.rows // BATCH))
        width = max(len(r[0]) for r in rows)
        print(f"\nshuffled batches of {BATCH} x {FRAMES} x {N_MELS}, store in page cache, "
              f"{os.cpu_count()} cores (shared: numbers vary with load)\n")
        print(f"{'step':<{width}}  samples/s  GB/s (float16 read)  >= {TARGET:,.0f}/s")
        for name, r in rows:
            print(f"{name:<{width}}  {r:9,.0f}  {r * F.store_bytes(1) / 1e9:19.2f}  {'yes' if r >= TARGET else 'NO'}")
        fb = rows[-1][1]
        print(f"\nFeatureBatches (later epoch) / raw memmap read: {fb / rows[0][1]:.2f}x; "
              f"/ its own conversion alone: {fb / rows[3][1]:.2f}x")

        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(store.path), str(a.train_steps)],
                           env=env, capture_output=True, text=True, check=True)
        probe = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"\nmemory: one epoch over all {probe['rows']:,} rows through FeatureBatches "
              f"({probe['epoch_seconds']:.1f} s) + {a.train_steps} training steps of the 646-frame CNN "
              f"({probe['train_step_seconds']:.2f} s/step on CPU): peak RSS {probe['peak_rss_gb']:.2f} GB "
              f"(target <= {RSS_TARGET_GB:g} GB: {'yes' if probe['peak_rss_gb'] <= RSS_TARGET_GB else 'NO'}); "
              f"the store is {need / 1e9:.2f} GB")
        print(f"this process (memmap reads included): peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
