"""The released-data path rehearsed offline: chapters 04–06 against a local Deezer server.

A :class:`ctxpaper.rehearsal.RehearsalServer` on 127.0.0.1 (a free port,
bounded in time) stands in for the API; its previews are synthesised from the
released labels. The chapters run with ``data_source="released"`` on
``smoke`` exactly as ``make book DATA=released`` would, then the trained
model's scores are checked against the official split and the released labels.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

from _book import copy_book_sources

from ctxpaper import book, data, metrics
from ctxpaper.profiles import Profile
from ctxpaper.rehearsal import RehearsalServer
from ctxpaper.runs import Run

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """A running rehearsal server with the environment pointing at it (restored after)."""
    tmp = tmp_path_factory.mktemp("rehearsal")
    # Every preview 12 s instead of 30 (ctxpaper.audio.MIN_SECONDS is 10):
    # encoding MP3s is most of this test's cost, and short previews also
    # exercise the crops of short audio.
    short = data.load_labels().index
    with pytest.MonkeyPatch.context() as env, \
            RehearsalServer(port=0, cache_dir=tmp / "mp3", seed=0, max_seconds=1500, short=short,
                            short_seconds=12.0) as srv:
        env.setenv("CTXPAPER_DEEZER_URL", srv.url)
        env.setenv("CTXPAPER_PREVIEWS_DIR", str(tmp / "previews"))
        env.setenv("CTXPAPER_CACHE_DIR", str(tmp / "cache"))
        yield srv, tmp
    assert not srv.running


@pytest.fixture(scope="module")
def released_book(rehearsal) -> Path:
    """Chapters 04–06 executed on smoke with the released source; returns the executed folder."""
    srv, tmp = rehearsal
    srv.prerender(Run.of("smoke", 0, "released").selection().split.index, workers=2)
    root = copy_book_sources(tmp / "book")
    book.run("smoke", 0, ["04", "05", "06"], data_source="released", root=root,
             html=False, progress=False)
    return root / book.EXECUTED_SUBDIR


def _text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


def test_chapters_run_on_the_released_tracks_and_say_so(released_book, rehearsal):
    srv, _ = rehearsal
    ch04, ch05, ch06 = (_text(released_book / f"{n}.ipynb") for n in
                        ("04_from_ids_to_spectrograms", "05_cnn_baseline", "06_weighted_cross_entropy"))
    for text in (ch04, ch05, ch06):
        assert "released-data run (profile smoke, seed 0, " in text
        assert f"rehearsal previews from {srv.url})" in text
    assert "no latent" in ch04 and "no latent labels" in ch05
    assert "simulated run" not in ch05


def test_scored_tracks_are_the_official_test_fold_with_the_released_labels(released_book):
    trained = Run.of("smoke", 0, "released").train("none", progress=False)  # loads the chapter's model
    official = data.load_split()
    test_ids = trained.scores["test"].index
    assert len(test_ids) > 0
    assert (official.loc[test_ids, "fold"] == data.TEST_FOLD).all()
    assert set(official.loc[trained.scores["validation"].index, "subset"]) == {"validation"}
    released = data.load_labels()
    assert trained.labels["test"].equals(released.loc[test_ids, trained.labels["test"].columns])
    assert trained.latent is None


def test_a_model_trained_on_the_rehearsal_audio_beats_chance(rehearsal):
    srv, _ = rehearsal
    # Bigger than smoke so that learning can show: 240 tracks, 8 epochs of 1.5 s crops.
    P = Profile("rehearsal", world_scale=0.004, n_tracks=240, frames=32, max_epochs=8, patience=8,
                batch_size=16, n_seeds=1, n_repeats=1)
    run = Run(P, 0, "released")
    srv.prerender(run.selection().split.index, workers=2)
    trained = run.train("none", progress=False)
    auc = trained.metrics().loc[metrics.MACRO, "AUC"]
    assert auc > 0.6, f"macro test AUC {auc:.3f} on the rehearsal audio"
    assert np.isfinite(trained.scores["test"].to_numpy()).all()


def test_deleting_previews_after_extraction_never_fetches_them_again(rehearsal, tmp_path, monkeypatch):
    srv, _ = rehearsal
    monkeypatch.setenv("CTXPAPER_PREVIEWS_DIR", str(tmp_path / "previews"))
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    P = Profile("tiny", world_scale=0.004, n_tracks=12, frames=32, max_epochs=1, patience=1,
                batch_size=4, n_seeds=1, n_repeats=1)
    run = Run(P, 0, "released")
    srv.prerender(run.selection().split.index, workers=2)
    store = run.features(workers=1, progress=False, delete_previews=True)
    assert len(store) > 0
    assert not list((tmp_path / "previews").glob("*.mp3"))  # every extracted MP3 is gone
    counts = run.preview_counts(progress=False)
    assert list(counts.index) == ["train", "validation", "test"]
    assert counts["ok"].sum() == len(store)
    assert counts[["ok", "no_data", "no_preview", "error"]].sum(axis=1).sum() == 12
    assert counts.loc["test", "official split (released files)"] == 12169
    calls = srv.stats()["requests"]
    # A new process (the in-process memo cleared) finds the record, not the API.
    monkeypatch.setattr("ctxpaper.runs._FETCHED", {})
    again = Run(P, 0, "released").features(workers=1, progress=False)
    assert np.array_equal(again.ids, store.ids)
    assert srv.stats()["requests"] == calls
    assert not list((tmp_path / "previews").glob("*.mp3"))
