"""Tests for ctxpaper.compare: comparisons across runs, and the sentences chapter 07 builds from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxpaper import compare as C

NAMES = {"none": "No Weights", "neg": "Negative Weights"}


def runs_frame():
    # Two losses x two seeds, against observed and latent; values chosen by hand.
    rows = []
    values = {("none", "observed"): [(0.60, 0.70), (0.62, 0.72)],
              ("none", "latent"): [(0.80, 0.60), (0.82, 0.62)],
              ("neg", "observed"): [(0.50, 0.40), (0.54, 0.42)],
              ("neg", "latent"): [(0.76, 0.50), (0.78, 0.52)]}
    for (v, a), pairs in values.items():
        for ts, (p, tn) in enumerate(pairs):
            rows.append({"loss": v, "train_seed": ts, "against": a, "Precision": p, "TN rate": tn})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------
# over training seeds
# --------------------------------------------------------------------------

def test_mean_sd_and_format():
    runs = pd.DataFrame({
        "loss": ["a", "a", "a", "b"], "train_seed": [0, 1, 2, 0],
        "against": ["observed"] * 4, "best_epoch": [1, 2, 3, 4],
        "AUC": [0.6, 0.7, 0.8, 0.5], "F1": [0.1, 0.1, 0.1, 0.2],
    })
    s = C.mean_sd(runs)
    assert list(s.columns) == [("AUC", "mean"), ("AUC", "sd"), ("F1", "mean"), ("F1", "sd")]
    assert s.loc[("observed", "a"), ("AUC", "mean")] == pytest.approx(0.7)
    assert s.loc[("observed", "a"), ("AUC", "sd")] == pytest.approx(0.1)
    assert np.isnan(s.loc[("observed", "b"), ("AUC", "sd")])
    f = C.format_mean_sd(s)
    assert f.loc[("observed", "a"), "AUC"] == "0.70 ± 0.10"
    assert f.loc[("observed", "b"), "AUC"] == "0.50"
    assert C.format_mean_sd(s, digits=3).loc[("observed", "a"), "F1"] == "0.100 ± 0.000"


def test_seed_stats_per_variant_and_one_label_set_only():
    obs = runs_frame().query("against == 'observed'")
    st = C.seed_stats(obs, "Precision")
    assert list(st.index) == ["none", "neg"] and list(st.columns) == ["mean", "sd", "seeds"]
    assert st.loc["neg", "mean"] == pytest.approx(0.52)
    assert st.loc["neg", "sd"] == pytest.approx(np.sqrt(2) * 0.02)
    assert st.loc["neg", "seeds"] == 2
    with pytest.raises(ValueError, match="several label sets"):
        C.seed_stats(runs_frame(), "Precision")


def test_difference_beyond_noise_rule():
    stats = pd.DataFrame({"mean": [0.70, 0.75, 0.71], "sd": [0.01, 0.02, 0.01]},
                         index=["none", "a", "b"])
    a = C.difference_beyond_noise(stats, "a")
    assert a["difference"] == pytest.approx(0.05) and a["spread"] == pytest.approx(0.02)
    assert a["beyond_noise"] is True          # 0.05 > 2 x 0.02
    assert C.difference_beyond_noise(stats, "b")["beyond_noise"] is False  # 0.01 < 2 x 0.01
    one_seed = stats.assign(sd=float("nan"))
    r = C.difference_beyond_noise(one_seed, "a")
    assert r["beyond_noise"] is None and r["difference"] == pytest.approx(0.05)
    undefined = stats.copy()
    undefined.loc["a", "mean"] = np.nan       # e.g. an AUC with no missing positive
    assert C.difference_beyond_noise(undefined, "a")["beyond_noise"] is None
    with pytest.raises(ValueError, match="'c' is not among the compared runs"):
        C.difference_beyond_noise(stats, "c")


# --------------------------------------------------------------------------
# observed against latent
# --------------------------------------------------------------------------

def test_apparent_vs_true_hand_computed():
    out = C.apparent_vs_true(runs_frame(), metrics=("Precision", "TN rate"))
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
        C.apparent_vs_true(runs[runs["against"] == "observed"])
    with pytest.raises(ValueError, match="baseline loss 'both'"):
        C.apparent_vs_true(runs, baseline="both")


def test_truth_gap():
    gap = C.truth_gap(runs_frame(), "Precision")
    assert list(gap.index) == ["none", "neg"]
    assert gap["none"] == pytest.approx(0.20) and gap["neg"] == pytest.approx(0.25)


def test_change_text_with_and_without_seed_spread():
    changes = C.apparent_vs_true(runs_frame(), metrics=("Precision", "TN rate"))
    assert C.change_text(changes, "Precision", "neg") == (
        "Precision -0.090 against the observed labels, -0.040 against the truth (sd 0.014 / 0.000)")
    one = C.apparent_vs_true(runs_frame().query("train_seed == 0"), metrics=("Precision",))
    assert C.change_text(one, "Precision", "neg") == (
        "Precision -0.100 against the observed labels, -0.040 against the truth")
    md = C.changes_markdown(changes, ["neg"], "SRC", names=NAMES)
    assert md.splitlines()[0] == "Changes from No Weights, mean over training seeds (SRC):"
    assert md.splitlines()[-1] == (
        "* **Negative Weights**: Precision -0.090 against the observed labels, -0.040 against the truth "
        "(sd 0.014 / 0.000); TN rate -0.300 against the observed labels, -0.100 against the truth "
        "(sd 0.000 / 0.000).")


# --------------------------------------------------------------------------
# rankings
# --------------------------------------------------------------------------

def test_variant_ranks():
    r = C.loss_ranks(runs_frame(), "Precision")
    assert r.loc["none", "observed"] == 1 and r.loc["neg", "observed"] == 2
    r = C.loss_ranks(runs_frame(), "Precision", higher_is_better=False)
    assert r.loc["none", "latent"] == 2


def test_variant_ranks_leave_an_undefined_metric_unranked():
    runs = runs_frame()
    undefined = (runs["loss"] == "neg") & (runs["against"] == "observed")
    runs.loc[undefined, "Precision"] = np.nan  # e.g. no positive predicted in any seed
    r = C.loss_ranks(runs, "Precision")
    assert pd.isna(r.loc["neg", "observed"]) and r.loc["none", "observed"] == 1
    assert r.loc["none", "latent"] == 1 and r.loc["neg", "latent"] == 2


def _hand_runs():
    # means of F1 by (k, against): loss order by hand
    f1 = {(2, "observed"): {"a": 0.3, "b": 0.2, "c": 0.1},
          (2, "latent"): {"a": 0.1, "b": 0.2, "c": 0.3},
          (3, "observed"): {"a": 0.3, "b": 0.2, "c": 0.1},
          (3, "latent"): {"a": 0.3, "b": 0.2, "c": 0.2}}
    rows = []
    for (k, against), by_v in f1.items():
        for v, m in by_v.items():
            for ts, d in ((0, -0.05), (1, 0.05)):  # two seeds around the mean
                rows.append({"min_playlists": k, "loss": v, "train_seed": ts, "against": against,
                             "F1": m + d, "AUC": 1 - m, "missing_rate": k / 10})
    return pd.DataFrame(rows)


def test_sweep_ranks_hand_case():
    ranks = C.sweep_ranks(_hand_runs(), metrics=("F1", "AUC"))
    assert list(ranks.index.get_level_values("loss")[:3]) == ["a", "b", "c"]
    f1 = ranks.loc["F1"]
    assert f1[("observed", 2)].tolist() == [1, 2, 3]
    assert f1[("latent", 2)].tolist() == [3, 2, 1]
    assert f1[("latent", 3)].tolist() == [1, 2, 2]  # tie shares the best rank
    assert ranks.loc["AUC"][("observed", 3)].tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="threshold_grid output"):
        C.sweep_ranks(_hand_runs().drop(columns="min_playlists"))


def test_ranking_agreement_hand_case():
    agree = C.ranking_agreement(C.sweep_ranks(_hand_runs(), metrics=("F1",)))
    r2, r3 = agree.loc[("F1", 2)], agree.loc[("F1", 3)]
    assert r2["observed"] == "a > b > c" and r2["latent"] == "c > b > a"
    assert r3["latent"] == "a > b = c"
    assert r2["same as at 3 (observed)"] and not r2["same as at 3 (latent)"]
    assert r3["same as at 3 (observed)"] and r3["same as at 3 (latent)"]
    assert not r2["observed = latent"] and not r3["observed = latent"]
    no3 = C.sweep_ranks(_hand_runs().query("min_playlists == 2"), metrics=("F1",))
    with pytest.raises(ValueError, match="threshold 3"):
        C.ranking_agreement(no3)


def test_ranking_agreement_with_an_undefined_metric():
    runs = _hand_runs()
    runs.loc[(runs["loss"] == "b") & (runs["min_playlists"] == 2), "F1"] = np.nan
    agree = C.ranking_agreement(C.sweep_ranks(runs, metrics=("F1",)))
    r2 = agree.loc[("F1", 2)]
    assert r2["observed"] == "a > c (undefined: b)" and r2["latent"] == "c > a (undefined: b)"
    assert not r2["same as at 3 (observed)"]
    assert C.order_text(pd.Series([pd.NA, pd.NA], index=["x", "y"], dtype="Int64")) == "(undefined: x, y)"


def _agreement(extra_k=(2,)):
    """Agreement of _hand_runs, with threshold 2's runs copied to each other threshold of ``extra_k``."""
    runs = _hand_runs()
    for k in extra_k:
        if k != 2:
            runs = pd.concat([runs, _hand_runs().query("min_playlists == 2").assign(min_playlists=k)])
    return C.ranking_agreement(C.sweep_ranks(runs, metrics=("F1", "AUC")))


def test_moves_text_same_one_and_several_thresholds():
    one, two = _agreement(), _agreement((2, 5))
    assert C.moves_text(one, "F1", "observed") == "the same at every threshold"
    assert C.moves_text(one, "F1", "latent") == "different from threshold 3's at threshold 2"
    assert C.moves_text(two, "F1", "latent") == "different from threshold 3's at thresholds 2 and 5"


def test_ordering_markdown_caveat_depends_on_the_seeds():
    agree = _agreement()
    md = C.ordering_markdown(agree, "SRC", n_seeds=3)
    assert md.startswith("Measured (SRC):\n\n* **F1**: the order is the same at every threshold against the "
                         "observed labels and different from threshold 3's at threshold 2 against the truth; "
                         "the observed and latent orders agree at 0 of 2 thresholds.")
    # AUC = 1 - F1 mean: observed c > b > a at both thresholds; latent a > b > c at 2, b = c > a at 3
    assert "* **AUC**: the order is the same at every threshold against the observed labels and different " \
           "from threshold 3's at threshold 2 against the truth; the observed and latent orders agree at 0 of 2" in md
    assert agree.loc[("AUC", 3), "latent"] == "b = c > a"
    assert md.endswith("which averages 3 training seeds.")
    assert C.ordering_markdown(agree, "SRC", n_seeds=1).endswith(
        "none of these orders can be told apart from training noise.")


def test_thresholds_point():
    text = C.thresholds_point(_agreement((2, 5)), "SWEEP", compared="a, b and c")
    assert text.startswith("**Other thresholds.** Retrained at thresholds 2 and 5 (one training seed each), "
                           "the F1 order of a, b and c is different from threshold 3's at thresholds 2 and 5 "
                           "against the truth and the same at every threshold against the observed labels;")
    assert "(SWEEP)" in text
    assert C.thresholds_point(_agreement(), "S").startswith("**Other thresholds.** Retrained at threshold 2 (")
    only3 = C.ranking_agreement(C.sweep_ranks(_hand_runs().query("min_playlists == 3"), metrics=("F1", "AUC")))
    with pytest.raises(ValueError, match="besides the paper's 3"):
        C.thresholds_point(only3, "S")


def test_missing_by_threshold_and_its_sentence():
    miss = C.missing_by_threshold(_hand_runs())
    assert miss.to_dict() == {2: pytest.approx(0.2), 3: pytest.approx(0.3)}
    md = C.threshold_missing_markdown(miss, "SRC", "SPREAD")
    assert md == ("Share of the test tracks' true positives missing from their observed labels: 20.0% at "
                  "threshold 2, 30.0% at threshold 3 (SRC; each threshold has its own selection of tracks). SPREAD")
    with pytest.raises(ValueError, match="threshold_grid output"):
        C.missing_by_threshold(runs_frame())


def test_seed_spread_text():
    runs = _hand_runs().query("min_playlists == 3")
    # F1 per (against, loss): two seeds at mean -/+ 0.05, sd 0.0707; AUC constant, sd 0
    text = C.seed_spread_text(runs, ["a", "b"], "SRC")
    assert text == ("For scale: at threshold 3, the standard deviation of a loss's macro F1 over chapter "
                    "06's 2 training seeds is 0.071 to 0.071, of its AUC 0.000 to 0.000 (SRC, both label sets).")
    assert C.seed_spread_text(runs.query("train_seed == 0"), ["a"], "SRC") == ""


# --------------------------------------------------------------------------
# recovery of the missing positives
# --------------------------------------------------------------------------

def _recovery():
    """Per-seed cell recovery: 'neg' separates better than 'none' beyond noise, 'tie' does not."""
    rows = []
    for v, aucs, mp, tn in (("none", (0.60, 0.62), 0.10, 0.05), ("neg", (0.70, 0.72), 0.40, 0.20),
                            ("tie", (0.61, 0.60), 0.12, 0.06)):
        for ts, a in enumerate(aucs):
            rows.append({"loss": v, "train_seed": ts, "missing vs true negative AUC": a,
                         "missing positive predicted positive": mp, "true negative predicted positive": tn})
    return pd.DataFrame(rows)


def test_separation_text_beyond_within_and_one_seed():
    auc = C.seed_stats(_recovery(), "missing vs true negative AUC")
    # neg - none = 0.10; the larger sd is 0.0141, twice 0.028 < 0.10
    assert C.separation_text(auc, "neg") == (
        "a difference of +0.100 in AUC, larger than twice the larger standard deviation over seeds (0.014)")
    assert C.separation_text(auc, "tie") == (
        "a difference of -0.005 in AUC, within twice the larger standard deviation over seeds (0.014)")
    one = C.seed_stats(_recovery().query("train_seed == 0"), "missing vs true negative AUC")
    assert C.separation_text(one, "neg") == (
        "a difference of +0.100 in AUC from a single training seed, which cannot be told apart from "
        "seed-to-seed variation")


def test_recovery_markdown_and_point():
    rec = _recovery()
    means = rec.groupby("loss", sort=False).mean()
    md = C.recovery_markdown(means, ["neg"], "SRC", names=NAMES)
    assert md == ("Means over SRC:\n\n* **Negative Weights**: recall of missing positives 40.0% "
                  "(No Weights: 10.0%), true negatives predicted positive 20.0% (5.0%); "
                  "missing-vs-true-negative AUC 0.710 (0.610).")
    auc = C.seed_stats(rec, "missing vs true negative AUC")
    point = C.recovery_point(means, auc, "neg", "SRC", names=NAMES)
    assert point.startswith("**Recovering missing positives.** Negative Weights predicts *positive* for 40.0% "
                            "of the missing positives (No Weights: 10.0%), but also for 20.0% of the true "
                            "negatives (No Weights: 5.0%).")
    assert point.endswith("compared with No Weights: a difference of +0.100 in AUC, larger than twice the larger "
                          "standard deviation over seeds (0.014) (SRC).")


def test_precision_point():
    runs = runs_frame()
    changes = C.apparent_vs_true(runs, metrics=("Precision", "TN rate"))
    text = C.precision_point(runs, changes, "neg", "SRC", names=NAMES)
    assert "precision is higher than against the observed labels for 2 of the 2 losses " \
           "(by +0.200 to +0.250; SRC)." in text
    assert "the precision change of Negative Weights from No Weights is -0.090 against the observed labels " \
           "and -0.040 against the truth; its TN-rate change is -0.300 and -0.100 (sd over seeds of the " \
           "precision change: 0.014 observed, 0.000 latent)." in text
    one = runs.query("train_seed == 0")
    text1 = C.precision_point(one, C.apparent_vs_true(one, metrics=("Precision", "TN rate")), "neg", "SRC")
    assert "from none is -0.100 against the observed labels and -0.040 against the truth; its TN-rate " \
           "change is -0.300 and -0.100. The table" in text1


# --------------------------------------------------------------------------
# detectors on hidden real positives
# --------------------------------------------------------------------------

def _detection():
    idx = pd.MultiIndex.from_product([[0.1, 0.3], ["w exact", "w iz", "prior"]], names=["fraction", "detector"])
    return pd.DataFrame({"roc_auc": [0.60, 0.55, 0.70, 0.58, 0.52, 0.69],
                         "roc_auc ±95%": [0.01, 0.02, 0.005, 0.01, 0.02, 0.004]}, index=idx)


def test_intervals_and_detector_point():
    det = _detection()
    assert C.interval_text(det, 0.1, "w iz") == "0.550 ± 0.020"
    md = C.intervals_markdown(det, 0.1, ["w exact", "w iz", "prior"], "REAL", 5)
    assert md == ("With 10% of the positives hidden (REAL, 5 maskings), ROC-AUC is 0.600 ± 0.010 for *w exact*, "
                  "0.550 ± 0.020 for *w iz*, 0.700 ± 0.005 for *prior*. The highest is *prior*.")
    weights = pd.DataFrame({"roc_auc": [0.61, 0.57]}, index=["exact", "iz"])
    point = C.detector_point(weights, det, ["w exact", "w iz"], "SIM", "REAL", 5)
    assert "with ROC-AUC 0.610 (exact match) and 0.570 (ignore zeros) (SIM); on the real labels with 10% of " \
           "the positives hidden at random, 0.600 ± 0.010 and 0.550 ± 0.020 (95% intervals over 5 maskings, " \
           "REAL)." in point


def test_numbered():
    assert C.numbered(["a.", "b."]) == "1. a.\n\n2. b."
