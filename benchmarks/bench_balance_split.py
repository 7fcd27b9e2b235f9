"""Speed of balancing (paper §3.2) and the artist-disjoint split (§4.1).

Budgets from the issue: the split of the 48,582 released tracks in under
10 s; balancing a 200k-track set in under 5 s. Prints each measurement beside
its budget (best of a few runs, wall clock).

Run: ``.venv/bin/python benchmarks/bench_balance_split.py``
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ctxpaper.balance import balance, cooccurrence
from ctxpaper.data import load_labels, load_split
from ctxpaper.splits import make_split, random_group_folds, stratified_group_folds


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def unbalanced_set(n: int = 200_000, seed: int = 0) -> pd.DataFrame:
    """A 198k-like set: 18 contexts (3 under the cap, like train/morning/shower),
    about 3.8 labels per track, positives per context from 8k to 110k."""
    rng = np.random.default_rng(seed)
    p = np.array([0.04, 0.06, 0.09, 0.11, 0.12, 0.13, 0.15, 0.16, 0.18,
                  0.2, 0.22, 0.25, 0.28, 0.3, 0.33, 0.36, 0.42, 0.55])
    # A shared latent "energy" makes contexts co-occur, as in the real data.
    z = rng.normal(size=(n, 1))
    load = rng.choice([-1.0, 1.0], size=len(p)) * 0.8
    logits = np.log(p / (1 - p)) + load * z
    y = rng.random((n, len(p))) < 1 / (1 + np.exp(-logits))
    y[~y.any(axis=1), -1] = True
    ids = rng.permutation(10 * n)[:n] + 1
    return pd.DataFrame(y, index=pd.Index(ids, name="song_id"),
                        columns=[f"ctx{j:02d}" for j in range(len(p))])


def main() -> None:
    rows = []

    big = unbalanced_set()
    kept = balance(big, cap=20_000, seed=0)
    t = best_of(lambda: balance(big, cap=20_000, seed=0))
    rows.append((f"balance {len(big):,} tracks -> {len(kept):,}", t, 5.0))
    t = best_of(lambda: cooccurrence(big))
    rows.append((f"cooccurrence {len(big):,} x {big.shape[1]}", t, None))

    official = load_split()
    labels = load_labels().loc[official.index]
    artist = official["artist_id"]
    n = len(labels)
    t = best_of(lambda: stratified_group_folds(labels, artist, seed=0), repeats=2)
    rows.append((f"stratified_group_folds {n:,} tracks (least_squares)", t, 10.0))
    t = best_of(lambda: stratified_group_folds(labels, artist, seed=0, criterion="sechidis"), repeats=2)
    rows.append((f"stratified_group_folds {n:,} tracks (sechidis)", t, 10.0))
    t = best_of(lambda: make_split(labels, artist, seed=0), repeats=2)
    rows.append((f"make_split {n:,} tracks (folds + grouped validation)", t, 10.0))
    t = best_of(lambda: random_group_folds(artist, seed=0))
    rows.append((f"random_group_folds {n:,} tracks", t, None))

    width = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(width)}  {'seconds':>8}  {'budget':>7}  {'budget/time':>11}")
    for name, secs, budget in rows:
        b = f"{budget:7.1f}" if budget else "      -"
        ratio = f"{budget / secs:10.1f}x" if budget else "          -"
        print(f"{name.ljust(width)}  {secs:8.3f}  {b}  {ratio}")
    over = [r[0] for r in rows if r[2] and r[1] > r[2]]
    if over:
        raise SystemExit(f"over budget: {over}")


if __name__ == "__main__":
    main()
