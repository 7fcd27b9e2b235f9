"""Tests for ctxpaper.paper: transcription checks, the macro-row finding, side_by_side, facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxpaper.contexts import CONTEXTS
from ctxpaper.metrics import MACRO, per_context_metrics
from ctxpaper.paper import (
    DATASET_FACTS,
    TABLE2_CONFIGS,
    TABLE2_ROWS,
    facts_table,
    side_by_side,
    table1,
    table1_macro_discrepancy,
    table1_row_mean,
    table2,
)

PAPER_MD = Path("/work/shared/paper/ibrahim2020-contextual-tags.md")


def test_table1_has_the_layout_of_our_metrics():
    rng = np.random.default_rng(0)
    y = rng.random((30, 15)) < 0.5
    ours = per_context_metrics(y, rng.random((30, 15)))
    t = table1()
    assert list(t.index) == list(ours.index)
    assert list(t.columns) == list(ours.columns)
    assert list(table2().columns) == list(ours.columns)
    assert list(table2().index) == list(TABLE2_ROWS) == list(TABLE2_CONFIGS)


def test_values_are_rates():
    for t in (table1(), table2()):
        v = t.to_numpy()
        assert ((v > 0) & (v < 1)).all()


def test_f1_consistent_with_recall_and_precision():
    # Transcription check independent of the typing: F1 = 2PR/(P+R) up to the
    # paper's two-decimal rounding (not for the macro row: a mean of F1s).
    for t in (table1().loc[list(CONTEXTS)], table2()):
        p, r = t["Precision"], t["Recall"]
        np.testing.assert_allclose(t["F1"], 2 * p * r / (p + r), atol=0.011)


@pytest.fixture(scope="module")
def test_prevalence():
    from ctxpaper.data import load_labels, load_split
    split = load_split()
    lab = load_labels().loc[split.index[split["subset"] == "test"]]
    return lab.mean()


def test_table1_consistent_with_real_test_prevalence(test_prevalence):
    # With π the share of positives in the released test set, a context's
    # HL = π(1 − recall) + (1 − π)(1 − TN rate) and
    # precision = π·recall / (π·recall + (1 − π)(1 − TN rate)).
    t = table1().loc[list(CONTEXTS)]
    pi = test_prevalence[list(CONTEXTS)]
    fp = (1 - pi) * (1 - t["TN rate"])
    np.testing.assert_allclose(t["HL"], pi * (1 - t["Recall"]) + fp, atol=0.02)
    np.testing.assert_allclose(t["Precision"], pi * t["Recall"] / (pi * t["Recall"] + fp), atol=0.02)


def test_table1_macro_row_versus_mean_of_rows():
    printed = table1().loc[MACRO]
    mean = table1_row_mean().round(2)
    for m in ("HL", "AUC", "F1", "TN rate"):
        assert mean[m] == pytest.approx(printed[m])
    # recall and precision: the printed macro row has them swapped
    assert mean["Recall"] != pytest.approx(printed["Recall"])
    assert mean["Recall"] == pytest.approx(printed["Precision"])
    assert mean["Precision"] == pytest.approx(printed["Recall"])
    d = table1_macro_discrepancy()
    assert list(d.index) == list(printed.index)


def test_table2_no_weights_is_table1_row_mean():
    np.testing.assert_allclose(table2().loc["No Weights"], table1_row_mean().round(2), atol=1e-9)


def test_side_by_side():
    ours = table1() * 0 + 0.5
    ours = ours.drop(index="car")
    ours.loc["extra"] = 0.1
    sbs = side_by_side(ours, table1(), "ours (test)", "paper Table 1")
    assert list(sbs.columns.get_level_values(0).unique()) == list(table1().columns)
    assert set(sbs.columns.get_level_values(1)) == {"ours (test)", "paper Table 1"}
    assert list(sbs.index) == [*table1().index, "extra"]
    assert sbs.loc["chill", ("AUC", "paper Table 1")] == 0.71
    assert sbs.loc["chill", ("AUC", "ours (test)")] == 0.5
    assert np.isnan(sbs.loc["car", ("HL", "ours (test)")])
    assert np.isnan(sbs.loc["extra", ("HL", "paper Table 1")])
    with pytest.raises(ValueError, match="different labels"):
        side_by_side(ours, table1(), "x", "x")
    with pytest.raises(ValueError, match="metric columns differ"):
        side_by_side(ours[["HL"]], table1(), "a", "b")


@pytest.mark.skipif(not PAPER_MD.exists(), reason="the paper's text is not on this machine")
def test_fact_quotes_are_verbatim():
    text = " ".join(PAPER_MD.read_text(encoding="utf-8").split())
    for name, f in DATASET_FACTS.items():
        assert f.quote in text, name


def test_facts_against_the_released_files():
    from ctxpaper.data import load_labels, load_split
    lab = load_labels()
    assert len(lab) == DATASET_FACTS["n_tracks"].value
    assert lab.shape[1] == DATASET_FACTS["n_contexts"].value
    assert round(lab.sum(axis=1).mean()) == DATASET_FACTS["labels_per_track"].value
    assert abs(lab.sum(axis=0).mean() - DATASET_FACTS["positives_per_label"].value) < 500
    assert lab.sum(axis=0).min() == DATASET_FACTS["balancing_cap"].value
    split = load_split()
    share = split["subset"].value_counts(normalize=True)
    train, val, test = DATASET_FACTS["split"].value
    assert share["test"] == pytest.approx(test, abs=0.01)
    # "10% validation" is 10% of the non-test tracks in the released split
    assert share["validation"] / (1 - share["test"]) == pytest.approx(val, abs=0.01)
    assert isinstance(facts_table(), pd.DataFrame)


def test_dataset_facts_table_measures_the_given_labels():
    from ctxpaper.paper import dataset_facts_table
    ids = pd.Index([1, 2, 3, 4], name="song_id")
    lab = pd.DataFrame(False, index=ids, columns=list(CONTEXTS))
    lab.iloc[:, 0] = True
    lab.iloc[:2, 1] = True
    split = pd.DataFrame({"subset": ["train", "train", "validation", "test"]}, index=ids)
    t = dataset_facts_table(lab, split)
    assert list(t.index) == list(DATASET_FACTS)
    assert t.loc["n_tracks", "measured (released files)"] == "4"
    assert t.loc["labels_per_track", "measured (released files)"] == "1.50"
    assert t.loc["split", "measured (released files)"].startswith("50.0% / 25.0% / 25.0%")
    assert t.loc["n_tracks", "paper"] == "49,929"
    assert t.loc["positives_per_label", "paper"].startswith("~")
