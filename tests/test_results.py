"""Aggregation of loss-variant runs over training seeds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ctxpaper import experiment, results
from ctxpaper.contexts import CONTEXTS
from ctxpaper.metrics import MACRO, per_context_metrics


def _fake_run(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    idx = pd.Index(range(n), name="track_id")
    latent = pd.DataFrame(rng.random((n, 15)) < 0.5, index=idx, columns=list(CONTEXTS))
    observed = latent & (rng.random((n, 15)) < 0.7)  # some true positives missing
    scores = pd.DataFrame(np.clip(latent * 0.6 + rng.random((n, 15)) * 0.5, 0, 1),
                          index=idx, columns=list(CONTEXTS))
    return SimpleNamespace(labels={"test": observed}, latent={"test": latent},
                           scores={"test": scores}, best_epoch=seed % 3 + 1)


def test_run_metrics_uses_the_requested_truth():
    run = _fake_run(0)
    obs = results.run_metrics(run, "observed")
    lat = results.run_metrics(run, "latent")
    pd.testing.assert_frame_equal(obs, per_context_metrics(run.labels["test"], run.scores["test"]))
    pd.testing.assert_frame_equal(lat, per_context_metrics(run.latent["test"], run.scores["test"]))
    # missing positives count as false positives against the observed labels
    assert lat.loc[MACRO, "Precision"] > obs.loc[MACRO, "Precision"]
    with pytest.raises(ValueError, match="against must be one of"):
        results.run_metrics(run, "truth")


def test_collect_trains_each_variant_with_consecutive_seeds(monkeypatch):
    calls = []

    def fake_train_variant(P, seed, variant, *, train_seed, progress, min_playlists=3):
        calls.append((P.name, seed, variant, train_seed))
        return _fake_run(train_seed)

    monkeypatch.setattr(experiment, "train_variant", fake_train_variant)
    runs = results.collect("smoke", 5, ["none", "neg_exact"], n_seeds=3)
    assert calls == [("smoke", 5, v, s) for v in ("none", "neg_exact") for s in (5, 6, 7)]
    assert len(runs) == 2 * 3 * 2
    row = runs[(runs.variant == "none") & (runs.train_seed == 6) & (runs.against == "latent")].iloc[0]
    expected = results.run_metrics(_fake_run(6), "latent").loc[MACRO]
    assert row["AUC"] == pytest.approx(expected["AUC"]) and row["best_epoch"] == 6 % 3 + 1


def test_train_seeds():
    assert results.train_seeds(3, 2) == [3, 4]
    with pytest.raises(ValueError, match="n_seeds must be >= 1"):
        results.train_seeds(0, 0)


def test_collect_passes_the_threshold_to_training(monkeypatch):
    calls = []

    def fake_train_variant(P, seed, variant, *, train_seed, progress, min_playlists=3):
        calls.append((variant, train_seed, min_playlists))
        return _fake_run(train_seed)

    monkeypatch.setattr(experiment, "train_variant", fake_train_variant)
    results.collect("smoke", 0, ["none"], n_seeds=2, min_playlists=5)
    results.collect("smoke", 0, ["none"], n_seeds=1)
    assert calls == [("none", 0, 5), ("none", 1, 5), ("none", 0, 3)]
