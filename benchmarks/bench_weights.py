"""Benchmark: vectorised weights and metrics against direct implementations.

Run: ``.venv/bin/python benchmarks/bench_weights.py``. Prints, in one run and on
the real released labels, the time of

* ``ctxpaper.weights`` (bitmask + bincount) for the full 49,929 × 15 matrix, and
  a direct per-row implementation of the definitions (each row compared with
  the whole matrix, as the authors' code does) timed on a sample of rows and
  extrapolated to all rows;
* ``ctxpaper.metrics.bootstrap_ci`` (200 resamples on the 12,169 test tracks
  with synthetic scores) against per-resample scikit-learn metrics timed on a
  few resamples and extrapolated.
"""

from __future__ import annotations

import time

import numpy as np

from ctxpaper.data import load_counts, load_labels, load_split
from ctxpaper.metrics import bootstrap_ci, bootstrap_indices
from ctxpaper.weights import negative_weights, positive_weights


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def direct_negative(lab: np.ndarray, rows: np.ndarray, mode: str) -> np.ndarray:
    out = np.zeros((len(rows), lab.shape[1]))
    for k, i in enumerate(rows):
        y = lab[i]
        if mode == "exact":
            diff = lab != y
            nd = diff.sum(1)
            same = (nd == 0).sum()
            for c in np.flatnonzero(~y):
                out[k, c] = same / (same + ((nd == 1) & diff[:, c]).sum())
        else:
            contains = lab[:, y].all(1)
            tot = contains.sum()
            for c in np.flatnonzero(~y):
                out[k, c] = 1 - (contains & lab[:, c]).sum() / tot
    return out


def pandas_positive(C, L):
    """Eq. 4 written with pandas frame operations, step by step."""
    tf = C / C.sum()
    t = tf.mul(np.log(15 / L.sum(axis=1)), axis=0)
    pos = t[t > 0]
    z = ((pos - pos.mean()) / pos.std() + 1).clip(lower=0, upper=2)
    return z.fillna(0).to_numpy()


def main() -> None:
    L = load_labels()
    C = load_counts()
    lab = L.to_numpy()
    n = len(lab)
    rng = np.random.default_rng(0)
    sample = rng.choice(n, size=300, replace=False)
    print(f"real released labels: {n} tracks x {lab.shape[1]} contexts\n")
    print(f"{'step':34s} {'vectorised (s)':>15s} {'direct, all rows (s)':>22s} {'speed-up':>9s}")
    for mode in ("exact", "ignore_zeros"):
        tv, w = best_of(lambda: negative_weights(L, mode))
        td, wd = best_of(lambda: direct_negative(lab, sample, mode), repeat=1)
        assert np.allclose(w[sample], wd)
        td_all = td / len(sample) * n
        print(f"{'negative_weights ' + mode:34s} {tv:15.3f} {td_all:19.1f} (x) {td_all / tv:8.0f}x")
    for variant in ("released", "corrected"):
        tv, w = best_of(lambda: positive_weights(C, L, variant))
        if variant == "released":
            td, wd = best_of(lambda: pandas_positive(C, L))
            assert np.allclose(w, wd)
            print(f"{'positive_weights ' + variant:34s} {tv:15.3f} {td:19.3f} (p) {td / tv:8.1f}x")
        else:
            print(f"{'positive_weights ' + variant:34s} {tv:15.3f} {'-':>22s} {'-':>9s}")
    print("(x) extrapolated from 300 rows timed directly; (p) the definition in pandas, all rows\n")

    split = load_split()
    test = L.loc[split.index[split["subset"] == "test"]].to_numpy()
    scores = np.clip(0.25 * test + rng.random(test.shape) * 0.75, 0, 1)
    tb, _ = best_of(lambda: bootstrap_ci(test, scores, n_boot=200, seed=0), repeat=2)

    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
    idx = bootstrap_indices(len(test), 3, 0)
    t = time.perf_counter()
    for b in range(3):
        y, s = test[idx[b]], scores[idx[b]]
        p = s > 0.5
        roc_auc_score(y, s, average=None)
        precision_score(y, p, average=None, zero_division=0)
        recall_score(y, p, average=None, zero_division=0)
        f1_score(y, p, average=None, zero_division=0)
        recall_score(1 - y, 1 - p, average=None, zero_division=0)
        (y != p).mean(0)
    ts = (time.perf_counter() - t) / 3 * 200
    print(f"{'bootstrap_ci 200 x ' + str(len(test)) + ' x 15':34s} {tb:15.3f} {ts:19.1f} (y) {ts / tb:8.1f}x")
    print("(y) scikit-learn per resample, extrapolated from 3 resamples")


if __name__ == "__main__":
    main()
