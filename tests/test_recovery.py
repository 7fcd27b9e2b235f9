"""Tests for ctxpaper.recovery: cell recovery collected over (variant, training seed) runs (training faked)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ctxpaper import experiment, recovery
from ctxpaper.contexts import CONTEXTS
from ctxpaper.truth import cell_recovery


def _fake_run(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    idx = pd.Index(range(n), name="track_id")
    latent = pd.DataFrame(rng.random((n, 15)) < 0.5, index=idx, columns=list(CONTEXTS))
    observed = latent & (rng.random((n, 15)) < 0.7)
    scores = pd.DataFrame(rng.random((n, 15)), index=idx, columns=list(CONTEXTS))
    return SimpleNamespace(labels={"test": observed}, latent={"test": latent}, scores={"test": scores})


def test_collect_recovery_scores_every_variant_and_seed(monkeypatch):
    calls = []
    monkeypatch.setattr(experiment, "train_variant", lambda P, seed, v, *, train_seed, progress: (
        calls.append((P.name, seed, v, train_seed)) or _fake_run(train_seed)))
    rec = recovery.collect_recovery("smoke", 2, ["none", "neg_exact"], n_seeds=2)
    assert calls == [("smoke", 2, v, s) for v in ("none", "neg_exact") for s in (2, 3)]
    assert list(rec[["variant", "train_seed"]].itertuples(index=False, name=None)) == \
        [(v, s) for _, _, v, s in calls]
    run = _fake_run(3)
    want = cell_recovery(run.scores["test"], run.labels["test"], run.latent["test"])
    row = rec[(rec.variant == "neg_exact") & (rec.train_seed == 3)].iloc[0]
    for key, v in want.items():
        assert row[key] == pytest.approx(v, nan_ok=True)
