"""Headline tables recorded by chapters and rendered for the intro."""

from __future__ import annotations

import pandas as pd
import pytest

from ctxpaper import glance


def _table():
    return pd.DataFrame({"AUC": [0.731, 0.62], "Recall": [0.69, None]},
                        index=["paper (Table 2)", "ours (simulated run, profile smoke, seed 0)"])


def test_record_without_the_runner_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(glance.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    t = _table()
    assert glance.record("table2", t, "Table 2", "paper and ours", "06_x") is t
    assert list(tmp_path.iterdir()) == []


def test_record_and_render(tmp_path, monkeypatch):
    monkeypatch.setenv(glance.ENV, str(tmp_path / "results"))
    glance.record("table2", _table(), "Table 2, macro", "paper: Table 2; ours: simulated", "06_weighted")
    glance.record("facts", pd.DataFrame({"paper": ["~7"], "measured": [7.21]}, index=["labels per track"]),
                  "Dataset", "paper and released labels", "01_released")
    md = glance.render(tmp_path / "results")
    # chapter order, each with its link and source
    assert md.index("**Dataset**") < md.index("**Table 2, macro**")
    assert "{doc}`06_weighted <_executed/06_weighted>`" in md
    assert "Source: paper: Table 2; ours: simulated." in md
    assert "| paper (Table 2) | 0.73 | 0.69 |" in md
    assert "| ours (simulated run, profile smoke, seed 0) | 0.62 |  |" in md
    assert "| labels per track | ~7 | 7.21 |" in md


def test_render_empty_and_bad_key(tmp_path):
    assert "run `make book`" in glance.render(tmp_path / "nothing")
    with pytest.raises(ValueError, match="key must be"):
        glance.record("../x", _table(), "t", "s", "c")
