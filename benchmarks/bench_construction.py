"""Benchmark: simulated world generation and the §3.1 construction, by scale.

Prints, side by side for each scale, the world generation time, the
``build_dataset`` time, playlists per second and peak memory. Targets (issue
4, 2-core machine): at scale 1 (~612k kept contextual playlists)
``build_dataset`` under 60 s and 4 GB peak; the world under 2 min.

The world is generated in this process; ``build_dataset`` runs in a fresh
child process that reads the catalogue back from disk (``read_tables``),
so its peak memory is its own (catalogue + construction), not the world
generator's. The child runs three times: on the world's int32 ids; on the
same catalogue with every id shifted above 2**31, as real Deezer ids are, so
the int64 columns a real dump needs are measured too; and on that int64
catalogue written as CSV.

Usage: ``python benchmarks/bench_construction.py [scale ...]`` (default
``0.05 1.0``).
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ctxpaper.catalogue import read_tables
from ctxpaper.playlists import build_dataset
from ctxpaper.world import make_world


#: Added to every id for the int64 run: Deezer's track ids passed 2**31 long ago.
DEEZER_ID_SHIFT = 3_000_000_000


def peak_rss_gb() -> float:
    """This process's peak resident memory, in GB.

    ``VmHWM`` from /proc (Linux) rather than ``getrusage``: Linux carries
    ``ru_maxrss`` over fork + exec, so a child started by a 4 GB parent would
    report at least 4 GB whatever it used itself.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def child(playlists: str, tracks: str) -> None:
    """Run in a fresh process: read the catalogue, build the dataset, report."""
    t0 = time.perf_counter()
    cat = read_tables(playlists, tracks)
    t1 = time.perf_counter()
    rss_read = peak_rss_gb()
    ds = build_dataset(cat)
    t2 = time.perf_counter()
    kept = int(ds.funnel.set_index("step")["count"]["kept"])
    print(json.dumps({"read_s": t1 - t0, "build_s": t2 - t1, "kept": kept, "tagged": len(ds.labels),
                      "rss_after_read_gb": rss_read, "peak_gb": peak_rss_gb()}))


def _to_csv(parquet: Path) -> Path:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = parquet.with_suffix(".csv")
    pacsv.write_csv(pq.read_table(parquet), out)
    return out


def main(scales: list[float]) -> None:
    rows = []
    for scale in scales:
        t0 = time.perf_counter()
        world = make_world(scale, 0)
        world_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            files = {}
            cat = world.catalogue
            for ids in ("int32", "int64"):
                pl, tr = Path(tmp) / f"playlists-{ids}.parquet", Path(tmp) / f"tracks-{ids}.parquet"
                shift = 0 if ids == "int32" else DEEZER_ID_SHIFT
                cat.playlists.assign(playlist_id=cat.playlists["playlist_id"].astype(ids) + shift
                                     ).to_parquet(pl)
                cat.tracks.astype(ids).add(shift).to_parquet(tr)
                files[ids] = (pl, tr)
            # The same int64 catalogue as CSV: the text path a plain dump takes.
            files["int64 csv"] = tuple(_to_csv(f) for f in files["int64"])
            n_pl, n_rows = len(cat.playlists), len(cat.tracks)
            del world, cat
            gc.collect()
            for ids, (pl, tr) in files.items():
                out = subprocess.run([sys.executable, __file__, "--child", str(pl), str(tr)],
                                     check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                rows.append((scale, ids, n_pl, n_rows, r["kept"], r["tagged"], world_s, r["read_s"], r["build_s"],
                             n_pl / r["build_s"], peak_rss_gb(), r["rss_after_read_gb"],
                             r["peak_gb"]))
        print(f"scale {scale}: done", flush=True)
    hdr = ("scale", "ids", "playlists", "rows", "kept", "tagged", "world_s", "read_s", "build_s",
           "playlists/s", "world_peak_GB", "build_read_GB", "build_peak_GB")
    print(" | ".join(f"{h:>13}" for h in hdr))
    for r in rows:
        print(" | ".join(f"{v:>13.3f}" if isinstance(v, float) else f"{v:>13}" for v in r))
    print("world_peak_GB: this process (world generation, cumulative over scales); "
          "build_*: the child that reads the catalogue and runs build_dataset "
          "(after reading, and its peak).")
    big = [r for r in rows if r[0] >= 1.0]
    for r in big:
        print(f"scale {r[0]:g}, {r[1]} ids: build_dataset {r[8]:.1f} s "
              f"(target < 60: {'yes' if r[8] < 60 else 'NO'}), "
              f"peak {r[12]:.2f} GB (target < 4: {'yes' if r[12] < 4 else 'NO'}); "
              f"world {r[6]:.1f} s (target < 120: {'yes' if r[6] < 120 else 'NO'})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main([float(a) for a in sys.argv[1:]] or [0.05, 1.0])
