"""Fetch throughput of ``ctxpaper.deezer`` against the offline rehearsal server (issue 15).

Side by side in one run, over the same released ids (previews pre-rendered,
so the server only reads files):

(a) the client's default rate limit (45 calls / 5 s) against the server's
    default quota (50 calls / 5 s, Deezer's): tracks/s and the share of the
    quota used. Target: >= 90 % of the quota, >= 8.1 tracks/s.
(b) the quota lifted and the client's limit raised: tracks/s of the client
    itself. Target: >= 100 tracks/s.

The server runs in its own process (``python -m ctxpaper.rehearsal``) so it
does not share the client's interpreter lock; for each run the CPU seconds of
client and server and the server's summed answering time are printed, which
says where the time goes when a target is missed.

Run: ``.venv/bin/python benchmarks/bench_fetch.py [--n 500]`` (about a minute
for (a) at n = 500, plus the one-off rendering of the previews, cached in
``{cache root}/rehearsal``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctxpaper import data  # noqa: E402
from ctxpaper import deezer as D  # noqa: E402
from ctxpaper import rehearsal as R  # noqa: E402
from ctxpaper.cache import cache_root  # noqa: E402

TARGET_SHARE = 0.90
TARGET_DEFAULT = 8.1
TARGET_LIFTED = 100.0
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def server_process(quota: str, cache: Path, seed: int, max_seconds: float) -> Iterator[str]:
    """A rehearsal server in a child process; yields its URL, stops it with SIGINT."""
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "url"
        cmd = [sys.executable, "-m", "ctxpaper.rehearsal", "--port", "0", "--quota", quota, "--seed", str(seed),
               "--cache", str(cache), "--max-seconds", str(max_seconds), "--url-file", str(url_file)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not url_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the rehearsal server did not start: {' '.join(cmd)}")
                time.sleep(0.05)
            yield url_file.read_text().strip()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def fetch_run(url: str, ids: list[int], client: D.DeezerClient, workers: int) -> dict[str, float]:
    """Fetch ``ids`` into a fresh folder; rate, outcome counts and CPU seconds of both sides."""
    before = requests.get(f"{url}/_rehearsal/stats", timeout=10).json()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        m = D.fetch_previews(ids, out, client=client, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    after = requests.get(f"{url}/_rehearsal/stats", timeout=10).json()
    status = m["status"].value_counts().to_dict()
    return {"wall": wall, "rate": len(m) / wall, "client_cpu": cpu,
            "server_cpu": after["process_cpu_seconds"] - before["process_cpu_seconds"],
            "server_busy": after["busy_seconds"] - before["busy_seconds"],
            "quota_errors": after.get("quota", 0) - before.get("quota", 0),
            "ok": status.get("ok", 0), "final": int(m["status"].isin(D.FINAL_STATUSES).sum()),
            "errors": status.get("error", 0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500, help="released ids fetched in each run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="rendered previews (default {cache root}/rehearsal)")
    p.add_argument("--workers", type=int, default=4, help="client threads in (a) (fetch_previews' default)")
    p.add_argument("--fast-workers", type=int, nargs="+", default=[4, 8, 16], help="client threads tried in (b)")
    p.add_argument("--render-workers", type=int, default=2)
    a = p.parse_args(argv)
    if a.n < 1:
        p.error(f"--n must be >= 1, got {a.n}")
    cache = a.cache or cache_root() / "rehearsal"

    labels = data.load_labels()
    ids = np.random.default_rng([a.seed, 15]).permutation(labels.index.to_numpy())[: a.n].tolist()
    srv = R.RehearsalServer(cache_dir=cache, seed=a.seed, labels=labels)  # same sets as the CLI's defaults
    t0 = time.perf_counter()
    done = srv.prerender(ids, workers=a.render_workers, progress=sys.stderr.isatty())
    print(f"pre-rendered {done['rendered']} previews in {time.perf_counter() - t0:.0f} s "
          f"({done['cached']} cached, {a.n - done['rendered'] - done['cached']} ids with no preview)")

    quota_calls, quota_period = R.DEFAULT_QUOTA
    default_client = D.DeezerClient()
    limit = (default_client.limiter.max_calls, default_client.limiter.period)
    # Allow (a) its full expected length (the quota sets it) plus slack.
    with server_process(f"{quota_calls}/{quota_period:g}", cache, a.seed, 3 * a.n / 8.0 + 120) as url:
        run_a = fetch_run(url, ids, D.DeezerClient(url), a.workers)
    runs_b = {}
    with server_process("none", cache, a.seed, 60 * len(a.fast_workers) + 120) as url:
        for w in a.fast_workers:
            runs_b[w] = fetch_run(url, ids, D.DeezerClient(url, max_calls=10**6, period=1.0), w)

    quota_rate = quota_calls / quota_period
    limit_rate = limit[0] / limit[1]
    rows = [("(a) default client", f"{limit[0]}/{limit[1]:g} s", f"{quota_calls}/{quota_period:g} s",
             a.workers, run_a, f"{run_a['rate'] / quota_rate:.0%}", f"{run_a['rate'] / limit_rate:.0%}")]
    rows += [("(b) quota lifted", "1000000/1 s", "none", w, r, "-", "-") for w, r in runs_b.items()]
    print(f"\nfetch of {a.n} released ids from the local rehearsal server (previews pre-rendered), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    head = (f"{'run':<20} {'client limit':>12} {'quota':>9} {'threads':>7} {'tracks/s':>9} {'of quota':>8} "
            f"{'of limit':>8} {'wall s':>7} {'client cpu s':>12} {'server cpu s':>12} {'server busy s':>13} "
            f"{'quota err':>9} {'final':>6} {'error':>5}")
    print(head)
    print("-" * len(head))
    for name, lim, quota, w, r, of_quota, of_limit in rows:
        print(f"{name:<20} {lim:>12} {quota:>9} {w:>7} {r['rate']:>9.1f} {of_quota:>8} {of_limit:>8} "
              f"{r['wall']:>7.1f} {r['client_cpu']:>12.1f} {r['server_cpu']:>12.1f} {r['server_busy']:>13.1f} "
              f"{r['quota_errors']:>9} {r['final']:>6} {r['errors']:>5}")
    best_w, best = max(runs_b.items(), key=lambda kv: kv[1]["rate"])
    ok_a = run_a["rate"] >= TARGET_DEFAULT and run_a["rate"] / quota_rate >= TARGET_SHARE
    ok_b = best["rate"] >= TARGET_LIFTED
    print(f"\n(a) target >= {TARGET_SHARE:.0%} of the quota and >= {TARGET_DEFAULT} tracks/s: "
          f"{run_a['rate']:.1f} tracks/s = {run_a['rate'] / quota_rate:.0%} -> {'met' if ok_a else 'MISSED'}")
    print(f"(b) target >= {TARGET_LIFTED:.0f} tracks/s: best {best['rate']:.1f} tracks/s with {best_w} threads "
          f"-> {'met' if ok_b else 'MISSED'}")
    if not ok_b:
        side = "client" if best["client_cpu"] >= best["server_cpu"] else "server"
        print(f"    where the time goes in that run: client {best['client_cpu'] / best['wall']:.0%} of a core, "
              f"server {best['server_cpu'] / best['wall']:.0%} of a core -> the {side} is the bottleneck")
    return 0


if __name__ == "__main__":
    sys.exit(main())
