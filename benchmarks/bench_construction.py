"""Benchmark: simulated world generation and the §3.1 construction, by scale.

Prints, side by side for each scale, the world generation time, the
``build_dataset`` time, playlists per second and the process's peak RSS.
Targets (issue 4, 2-core machine): at scale 1 (~612k kept contextual
playlists) ``build_dataset`` under 60 s and 4 GB peak; the world under 2 min.

Usage: ``python benchmarks/bench_construction.py [scale ...]`` (default
``0.05 1.0``).
"""

from __future__ import annotations

import gc
import resource
import sys
import time

from ctxpaper.playlists import build_dataset
from ctxpaper.world import make_world


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def main(scales: list[float]) -> None:
    rows = []
    for scale in scales:
        t0 = time.perf_counter()
        world = make_world(scale, 0)
        t1 = time.perf_counter()
        rss_world = peak_rss_gb()
        ds = build_dataset(world.catalogue)
        t2 = time.perf_counter()
        f = ds.funnel.set_index("step")["count"]
        rows.append((scale, len(world.catalogue.playlists), len(world.catalogue.tracks),
                     int(f["kept"]), len(ds.labels), t1 - t0, t2 - t1,
                     len(world.catalogue.playlists) / (t2 - t1), rss_world, peak_rss_gb()))
        print(f"scale {scale}: done", flush=True)
        del world, ds
        gc.collect()
    hdr = ("scale", "playlists", "rows", "kept", "tagged", "world_s", "build_s",
           "playlists/s", "peakRSS_world_GB", "peakRSS_total_GB")
    print(" | ".join(f"{h:>14}" for h in hdr))
    for r in rows:
        print(" | ".join(f"{v:>14.3f}" if isinstance(v, float) else f"{v:>14}" for v in r))
    print("(peak RSS is the process maximum so far: the later rows include earlier scales' peaks)")


if __name__ == "__main__":
    main([float(a) for a in sys.argv[1:]] or [0.05, 1.0])
