"""Tests for ctxpaper.sweep: the training sweep over construction thresholds (training faked)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxpaper import simdata as SD
from ctxpaper import sweep as S
from ctxpaper.contexts import CONTEXTS
from test_truth import random_truth

COLS = list(CONTEXTS)


# ---------------------------------------------------------------------------
# training sweep (train_variant monkeypatched: no training)
# ---------------------------------------------------------------------------

def _fake_selection(k: int):
    """A selection whose observed labels lose more positives as k grows."""
    observed, latent = random_truth(n=40, seed=k)
    idx = pd.Index(np.arange(40, dtype=np.int64), name="track_id")
    split = pd.DataFrame({"subset": ["train"] * 20 + ["validation"] * 5 + ["test"] * 15,
                          "fold": 0, "artist_id": 0}, index=idx)
    lab = pd.DataFrame(observed, index=idx, columns=COLS)
    return SD.Selection(split=split, labels=lab, counts=lab.astype(int),
                        latent=pd.DataFrame(latent, index=idx, columns=COLS),
                        reference_labels=lab, reference_counts=lab.astype(int))


def _fake_run(k: int, variant: str, train_seed: int):
    from types import SimpleNamespace

    rng = np.random.default_rng([k, len(variant), train_seed])
    sel = _fake_selection(k)
    test = sel.ids("test")
    scores = pd.DataFrame(rng.random((len(test), 15)), index=test, columns=COLS)
    return SimpleNamespace(labels={"test": sel.labels.loc[test]}, latent={"test": sel.latent.loc[test]},
                           scores={"test": scores}, best_epoch=1)


@pytest.fixture
def fake_training(monkeypatch):
    from ctxpaper import experiment

    calls = []

    def fake_train_variant(P, seed, variant, *, train_seed, progress, min_playlists=3):
        calls.append((min_playlists, variant, train_seed))
        return _fake_run(min_playlists, variant, train_seed)

    monkeypatch.setattr(experiment, "train_variant", fake_train_variant)
    monkeypatch.setattr(SD, "simulated_selection", lambda P, seed, k=3: _fake_selection(k))
    return calls


def test_training_sweep_adds_the_paper_threshold_and_keeps_its_seeds(fake_training):
    from ctxpaper import results
    from ctxpaper.metrics import MACRO

    runs = S.training_sweep("smoke", 4, thresholds=(5, 2, 5), variants=("none", "neg_exact"), n_seeds=2)
    # 3 is added once; its training seeds are chapter 05-06's (seed, seed + 1)
    assert fake_training == [(k, v, s) for k in (2, 3, 5) for v in ("none", "neg_exact") for s in (4, 5)]
    assert len(runs) == 3 * 2 * 2 * 2 and list(runs.columns[:2]) == ["min_playlists", "variant"]
    row = runs[(runs.min_playlists == 5) & (runs.variant == "neg_exact") & (runs.train_seed == 5)
               & (runs.against == "latent")].iloc[0]
    expected = results.run_metrics(_fake_run(5, "neg_exact", 5), "latent").loc[MACRO]
    assert row["F1"] == pytest.approx(expected["F1"]) and row["AUC"] == pytest.approx(expected["AUC"])
    sel = _fake_selection(2)
    test = sel.ids("test")
    lat, obs = sel.latent.loc[test].to_numpy(), sel.labels.loc[test].to_numpy()
    assert np.allclose(runs.loc[runs.min_playlists == 2, "missing_rate"], (lat & ~obs).sum() / lat.sum())


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_training_sweep_refuses_bad_input_before_training(fake_training, bad):
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        S.training_sweep("smoke", 0, thresholds=(2, bad))
    with pytest.raises(ValueError, match="n_seeds must be >= 1"):
        S.training_sweep("smoke", 0, n_seeds=0)
    with pytest.raises(ValueError, match="at least one"):
        S.training_sweep("smoke", 0, variants=())
    assert fake_training == []
