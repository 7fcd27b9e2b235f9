"""Tests for ctxpaper.recovery: trained scores against the simulated truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxpaper import recovery as R


def test_cell_recovery_hand_computed():
    observed = np.array([[1, 0, 0], [0, 1, 0]], bool)
    latent = np.array([[1, 1, 0], [1, 1, 0]], bool)
    scores = np.array([[0.9, 0.6, 0.2], [0.4, 0.7, 0.55]])
    r = R.cell_recovery(scores, observed, latent)
    assert r["observed positive cells"] == 2 and r["observed positive mean score"] == pytest.approx(0.8)
    assert r["observed positive predicted positive"] == 1.0
    # Missing positives: (0,1) = 0.6 and (1,0) = 0.4.
    assert r["missing positive cells"] == 2 and r["missing positive mean score"] == pytest.approx(0.5)
    assert r["missing positive predicted positive"] == 0.5
    # True negatives: (0,2) = 0.2 and (1,2) = 0.55.
    assert r["true negative mean score"] == pytest.approx(0.375)
    assert r["true negative predicted positive"] == 0.5
    # Pairs (missing, negative): 0.6>0.2, 0.6>0.55, 0.4>0.2, 0.4<0.55 -> 3/4.
    assert r["missing vs true negative AUC"] == pytest.approx(0.75)


def test_cell_recovery_without_missing_cells_and_bad_shapes():
    y = np.eye(3, dtype=bool)
    r = R.cell_recovery(np.full((3, 3), 0.3), y, y)
    assert r["missing positive cells"] == 0 and np.isnan(r["missing positive mean score"])
    assert np.isnan(r["missing vs true negative AUC"])
    with pytest.raises(ValueError, match="one shape"):
        R.cell_recovery(np.zeros((3, 2)), y, y)


def runs_frame():
    # Two variants x two seeds, against observed and latent; values chosen by hand.
    rows = []
    values = {("none", "observed"): [(0.60, 0.70), (0.62, 0.72)],
              ("none", "latent"): [(0.80, 0.60), (0.82, 0.62)],
              ("neg", "observed"): [(0.50, 0.40), (0.54, 0.42)],
              ("neg", "latent"): [(0.76, 0.50), (0.78, 0.52)]}
    for (v, a), pairs in values.items():
        for ts, (p, tn) in enumerate(pairs):
            rows.append({"variant": v, "train_seed": ts, "against": a, "Precision": p, "TN rate": tn})
    return pd.DataFrame(rows)


def test_apparent_vs_true_hand_computed():
    out = R.apparent_vs_true(runs_frame(), metrics=("Precision", "TN rate"))
    p = out.loc[("Precision", "neg")]
    assert p["observed"] == pytest.approx(0.52) and p["latent"] == pytest.approx(0.77)
    # Per seed: 0.50 - 0.60 and 0.54 - 0.62.
    assert p["change (observed)"] == pytest.approx(-0.09)
    assert p["sd (observed)"] == pytest.approx(np.sqrt(2 * 0.01 ** 2))
    assert p["change (latent)"] == pytest.approx(-0.04) and p["sd (latent)"] == pytest.approx(0.0)
    assert p["share explained by missing labels"] == pytest.approx(1 - 0.04 / 0.09)
    tn = out.loc[("TN rate", "neg")]
    assert tn["change (observed)"] == pytest.approx(-0.30) and tn["change (latent)"] == pytest.approx(-0.10)
    assert tn["share explained by missing labels"] == pytest.approx(2 / 3)
    # The baseline's own change is zero, its share undefined.
    assert out.loc[("Precision", "none"), "change (latent)"] == 0
    assert np.isnan(out.loc[("Precision", "none"), "share explained by missing labels"])


def test_apparent_vs_true_needs_both_label_sets():
    runs = runs_frame()
    with pytest.raises(ValueError, match="observed and latent"):
        R.apparent_vs_true(runs[runs["against"] == "observed"])
    with pytest.raises(ValueError, match="baseline variant 'both'"):
        R.apparent_vs_true(runs, baseline="both")


def test_variant_ranks():
    r = R.variant_ranks(runs_frame(), "Precision")
    assert r.loc["none", "observed"] == 1 and r.loc["neg", "observed"] == 2
    r = R.variant_ranks(runs_frame(), "Precision", higher_is_better=False)
    assert r.loc["none", "latent"] == 2


def test_variant_ranks_leave_an_undefined_metric_unranked():
    runs = runs_frame()
    undefined = (runs["variant"] == "neg") & (runs["against"] == "observed")
    runs.loc[undefined, "Precision"] = np.nan  # e.g. no positive predicted in any seed
    r = R.variant_ranks(runs, "Precision")
    assert pd.isna(r.loc["neg", "observed"]) and r.loc["none", "observed"] == 1
    assert r.loc["none", "latent"] == 1 and r.loc["neg", "latent"] == 2


def test_difference_beyond_noise_rule():
    import pandas as pd

    from ctxpaper.recovery import difference_beyond_noise

    stats = pd.DataFrame({"mean": [0.70, 0.75, 0.71], "std": [0.01, 0.02, 0.01]},
                         index=["none", "a", "b"])
    a = difference_beyond_noise(stats, "a")
    assert a["difference"] == pytest.approx(0.05) and a["spread"] == pytest.approx(0.02)
    assert a["beyond_noise"] is True          # 0.05 > 2 x 0.02
    assert difference_beyond_noise(stats, "b")["beyond_noise"] is False  # 0.01 < 2 x 0.01
    one_seed = stats.assign(std=float("nan"))
    r = difference_beyond_noise(one_seed, "a")
    assert r["beyond_noise"] is None and r["difference"] == pytest.approx(0.05)
