"""Tests for ctxpaper.experiment: ``train_variant``, the public front of a run, trained for real.

The real chain (world, balancing, split, selection, synthesised previews,
features, training) runs on the smoke profile in a temporary cache shared by
this module: one model per loss, a few seconds each.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctxpaper import experiment as E
from ctxpaper import losses, paper
from ctxpaper import model as M
from ctxpaper import train as T
from ctxpaper.contexts import CONTEXTS
from ctxpaper.profiles import get_profile
from ctxpaper.runs import Run

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
COLS = list(CONTEXTS)


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    """A cache shared by the module's trainings (the smoke world and features are built once)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTXPAPER_CACHE_DIR", str(path))
        yield path


def test_names_are_table_2_and_chapter_07():
    assert E.VARIANTS == ("none", "neg_exact", "neg_ignore_zeros", "both_exact", "both_ignore_zeros")
    assert tuple(E.VARIANT_LABELS[v] for v in E.VARIANTS) == paper.TABLE2_ROWS
    assert set(E.EXTRA_VARIANTS) == {"wan", "asl", "em"} and not set(E.EXTRA_VARIANTS) & set(E.VARIANTS)
    assert E.ALL_VARIANTS == E.VARIANTS + E.EXTRA_VARIANTS == losses.ALL_LOSSES
    assert set(losses.OBJECTIVE) == set(losses.ALL_LOSSES) and set(losses.OBJECTIVE.values()) <= set(T.LOSSES)


def test_table_2_configs_carry_no_loss_field():
    # A Table 2 loss trains eq. 2, the default objective: its config dict (in
    # the train key and the state file) has no "loss"; the extra losses name theirs.
    run = Run.of("smoke", 0)
    for v in E.VARIANTS:
        d = run.train_config(v, 4).as_dict()
        assert "loss" not in d and d == run.train_config("none", 4).as_dict()
    assert run.train_config("em", 4).as_dict()["loss"] == "em"
    assert run.train_config("wan", 4).as_dict() == run.train_config("none", 4).as_dict()
    P = get_profile("smoke")
    c = run.train_config("none", 7, "released_code")
    assert (c.frames, c.max_epochs, c.patience, c.batch_size, c.seed, c.architecture) == \
        (P.frames, P.max_epochs, P.patience, P.batch_size, 7, "released_code")
    # experiment.train_config is the same config, for readers' code (and the tagger)
    assert E.train_config("smoke", 7, "released_code") == c
    assert E.train_config(P, 2, variant="asl") == run.train_config("asl", 2)
    with pytest.raises(ValueError, match="unknown loss 'bce'"):
        E.train_config("smoke", 0, variant="bce")


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "3", None])
def test_bad_threshold_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        E.run_dir("smoke", 0, "none", min_playlists=bad)
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        E.train_variant("smoke", 0, "none", min_playlists=bad)


def test_run_dir_follows_the_threshold():
    base = E.run_dir("smoke", 0, "none", train_seed=1)
    assert E.run_dir("smoke", 0, "none", train_seed=1, min_playlists=3) == base
    assert base == Run.of("smoke", 0).run_dir("none", train_seed=1)
    dirs = {E.run_dir("smoke", 0, "none", train_seed=1, min_playlists=k) for k in (1, 2, 5)}
    assert len(dirs) == 3 and base not in dirs


@pytest.mark.parametrize("kwargs, message", [
    ({"variant": "both"}, "unknown loss 'both'"),
    ({"variant": "none", "model_variant": "resnet"}, "unknown architecture 'resnet'"),
    ({"variant": "none", "train_seed": -1}, "seed must be a non-negative integer"),
    ({"variant": "none", "data_source": "deezer"}, "unknown data_source 'deezer'"),
    ({"variant": "none", "profile": "tiny"}, "unknown profile 'tiny'"),
])
def test_bad_parameters_are_refused_before_any_work(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path))
    args = {"profile": "smoke", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        E.train_variant(args.pop("profile"), args.pop("seed"), args.pop("variant"), progress=False, **args)
    assert list(tmp_path.iterdir()) == []  # nothing built


def test_train_variant_smoke_end_to_end(smoke_cache, monkeypatch):
    packed, trainings = [], []
    pack, train = M.pack_targets, T.train
    monkeypatch.setattr(M, "pack_targets", lambda y, *w: packed.append((y, *w)) or pack(y, *w))
    monkeypatch.setattr(T, "train", lambda *a, **k: trainings.append(a[2]) or train(*a, **k))

    run = E.train_variant("smoke", 0, "both_exact", progress=False)
    sel = Run.of("smoke", 0).selection()
    assert len(trainings) == 1 and run.directory == E.run_dir("smoke", 0, "both_exact")
    assert (run.loss, run.train_seed, run.architecture, run.profile, run.seed) == \
        ("both_exact", 0, "paper", "smoke", 0)
    for s in ("validation", "test"):
        assert run.scores[s].index.equals(pd.Index(sel.ids(s))) and list(run.scores[s].columns) == COLS
        assert ((run.scores[s] > 0) & (run.scores[s] < 1)).all().all()
        pd.testing.assert_frame_equal(run.labels[s], sel.labels.loc[sel.ids(s)], check_names=False)
        pd.testing.assert_frame_equal(run.latent[s], sel.latent.loc[sel.ids(s)], check_names=False)
    assert len(run.history) == 1 and run.best_epoch == 1
    assert run.metrics("latent").shape == run.metrics("observed").shape

    # The training targets are the train tracks' labels with losses.loss_weights,
    # fitted on every balanced track (the reference), not on the 96 selected.
    y, w_pos, w_neg = packed[0]
    train_pos = sel.labels.index.get_indexer(sel.ids("train"))
    want_pos, want_neg = losses.loss_weights("both_exact", sel.labels, sel.counts,
                                             sel.reference_labels, sel.reference_counts)
    np.testing.assert_array_equal(y, sel.labels.to_numpy(bool)[train_pos])
    np.testing.assert_allclose(w_pos, want_pos[train_pos])
    np.testing.assert_allclose(w_neg, want_neg[train_pos])
    own_pos, own_neg = losses.loss_weights("both_exact", sel.labels, sel.counts, sel.labels, sel.counts)
    assert not (np.allclose(own_pos, want_pos) and np.allclose(own_neg, want_neg))

    # A second call loads: no training, the run folder untouched, the same scores.
    state = run.directory / "run" / T.STATE_FILE
    before = {p.name: p.stat().st_mtime_ns for p in (run.directory / "run").iterdir()}
    again = E.train_variant("smoke", 0, "both_exact", progress=False)
    assert len(trainings) == 1 and json.loads(state.read_text())
    assert {p.name: p.stat().st_mtime_ns for p in (run.directory / "run").iterdir()} == before
    for s in ("validation", "test"):
        pd.testing.assert_frame_equal(again.scores[s], run.scores[s])
    # The loaded model is the trained one: it reproduces the saved test scores.
    store = Run.of("smoke", 0).features(progress=False)
    test_ids = sel.ids("test")
    x = T.FeatureBatches(store, store.index_of(test_ids), None, 32, get_profile("smoke").frames)
    np.testing.assert_allclose(T.predict(again.model, x), run.scores["test"].to_numpy(), rtol=1e-5, atol=1e-6)


def _val_probs(run):
    y = run.labels["validation"].to_numpy(bool)
    p = np.clip(run.scores["validation"].to_numpy().astype(np.float64), losses.EPSILON, 1 - losses.EPSILON)
    return y, p


def test_extra_losses_train_with_their_own_objective(smoke_cache):
    # The validation loss logged is the loss of the saved validation scores.
    asl = E.train_variant("smoke", 0, "asl", progress=False)
    y, p = _val_probs(asl)
    assert json.loads((asl.directory / "run" / T.STATE_FILE).read_text())["config"]["loss"] == "asl"
    assert asl.history["val_loss"].iloc[0] == pytest.approx(losses.numpy_reference("asl", y, p).mean(),
                                                            rel=1e-4, abs=1e-6)
    # WAN is eq. 2 with constant negative weights: the plain positive term
    # plus 1/14 of the negative term.
    wan = E.train_variant("smoke", 0, "wan", progress=False)
    y, p = _val_probs(wan)
    ref = -(y * np.log(p) + (~y) * np.log(1 - p) / 14).mean()
    assert wan.history["val_loss"].iloc[0] == pytest.approx(ref, rel=1e-4)
    assert asl.directory != wan.directory
