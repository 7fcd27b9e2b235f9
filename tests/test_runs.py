"""Tests for ctxpaper.runs: the run value, its cache keys, the selection and the grid.

Selections are built for real (the smoke world, the vendored released files)
in a temporary cache; the grid tests replace :meth:`Run.train` by a fake that
returns :class:`TrainedRun` values with known scores, so no model is trained
here (the real training is in ``test_experiment.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxpaper import data, runs
from ctxpaper.cache import entry_path
from ctxpaper.contexts import CONTEXTS
from ctxpaper.losses import ALL_LOSSES
from ctxpaper.metrics import MACRO, per_context_metrics
from ctxpaper.profiles import get_profile
from ctxpaper.runs import STAGE_VERSIONS, Run, Selection, TrainedRun, provenance, select_tracks, threshold_grid
from ctxpaper.truth import cell_recovery, missing_summary

COLS = list(CONTEXTS)
SMOKE = get_profile("smoke")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path))
    return tmp_path


# ---------------------------------------------------------------------------
# parameters, validated once
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "tiny"}, "unknown profile 'tiny'"),
    ({"profile": None}, "unknown profile None"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"seed": True}, "seed must be a non-negative integer, got True"),
    ({"seed": 1.0}, "seed must be a non-negative integer"),
    ({"source": "deezer"}, "unknown data_source 'deezer'"),
    ({"min_playlists": 0}, "min_playlists must be an integer >= 1, got 0"),
    ({"min_playlists": True}, "min_playlists must be an integer >= 1"),
    ({"min_playlists": 2.5}, "min_playlists must be an integer >= 1"),
    ({"source": "released", "min_playlists": 2}, "released labels were built with min_playlists=3"),
])
def test_run_of_refuses_bad_parameters_by_name(kwargs, message):
    args = {"profile": "smoke", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        Run.of(**args)


def test_run_of_resolves_and_run_needs_a_profile():
    r = Run.of("quick", 4, "released")
    assert r.profile is get_profile("quick") and (r.seed, r.source, r.min_playlists) == (4, "released", 3)
    assert Run.of(SMOKE, 0) == Run.of("smoke") == Run(SMOKE, 0)
    with pytest.raises(TypeError, match="Run.profile must be a Profile"):
        Run("smoke", 0)
    with pytest.raises(ValueError, match="unknown data source 'x'"):
        Run(SMOKE, 0, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seed = 1
    assert Run.of("smoke", 0).with_threshold(5).min_playlists == 5
    with pytest.raises(ValueError, match="min_playlists must be an integer >= 1"):
        Run.of("smoke", 0).with_threshold(0)


def test_against_and_train_seeds():
    sim, rel = Run.of("smoke", 3), Run.of("smoke", 3, "released")
    assert sim.has_truth and sim.against == ("observed", "latent")
    assert not rel.has_truth and rel.against == ("observed",)
    assert sim.train_seeds(3) == [3, 4, 5]
    assert sim.train_seeds() == [3 + k for k in range(SMOKE.n_seeds)]
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="n_seeds must be an integer >= 1"):
            sim.train_seeds(bad)
    with pytest.raises(ValueError, match="only a released run fetches previews"):
        sim.fetch_previews(progress=False)
    with pytest.raises(ValueError, match="a released run has no simulated world"):
        rel.balanced()


# ---------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------

def test_provenance_strings(monkeypatch):
    assert provenance("simulated", "quick", 0) == "simulated run (profile quick, seed 0)"
    assert provenance("released", SMOKE, 2, train_seeds=[2, 3]) == \
        "released-data run (profile smoke, seed 2, 2 training seeds (2, 3))"
    assert provenance("simulated", "smoke", 0, train_seeds=[0]) == \
        "simulated run (profile smoke, seed 0, 1 training seed (0))"
    assert provenance("paper") == "the paper"
    assert provenance("labels", detail="balanced files") == "real released labels (balanced files)"
    with pytest.raises(KeyError):
        provenance("elsewhere")

    monkeypatch.delenv("CTXPAPER_DEEZER_URL", raising=False)
    assert Run.of("smoke", 1).provenance() == "simulated run (profile smoke, seed 1)"
    assert Run.of("smoke", 1, min_playlists=5).provenance([1, 2]) == \
        "simulated run (profile smoke, seed 1, 2 training seeds (1, 2), min_playlists 5)"
    public = Run.of("smoke", 0, "released")
    assert not public.rehearsal and public.provenance() == "released-data run (profile smoke, seed 0)"
    monkeypatch.setenv("CTXPAPER_DEEZER_URL", "http://127.0.0.1:9/")
    rehearsed = Run.of("smoke", 0, "released")
    assert rehearsed.rehearsal and rehearsed == public  # the API root is not part of the run's identity
    assert rehearsed.provenance() == \
        "released-data run (profile smoke, seed 0, rehearsal previews from http://127.0.0.1:9/)"
    assert not Run.of("smoke", 0).rehearsal  # a simulated run fetches nothing


# ---------------------------------------------------------------------------
# cache keys
# ---------------------------------------------------------------------------

def features_dir(run: Run) -> Path:
    """The features folder of a simulated run (as :meth:`Run.features` names it)."""
    return entry_path("features", run._features_key(run._simulated_previews()), STAGE_VERSIONS["features"])


def test_each_parameter_has_its_own_selection_folder(cache):
    fewer = dataclasses.replace(SMOKE, n_tracks=50)
    made = [Run.of("smoke", 0), Run.of("smoke", 1), Run.of("smoke", 0, min_playlists=2), Run.of(fewer, 0),
            Run.of("smoke", 0, "released")]
    sels = [r.selection() for r in made]
    folders = sorted(p.name for p in (cache / "selection").iterdir())
    assert len(folders) == len(made)
    assert [len(s.split) for s in sels] == [96, 96, 96, 50, 96]
    assert not sels[0].split.index.equals(sels[1].split.index)  # another world
    # The same parameters find the same folder: nothing new is built.
    again = Run.of("smoke", 0).selection()
    pd.testing.assert_frame_equal(again.split, sels[0].split)
    pd.testing.assert_frame_equal(again.labels, sels[0].labels)
    assert sorted(p.name for p in (cache / "selection").iterdir()) == folders
    # Training sizes that do not change the data keep the selection and features.
    shorter = Run.of(dataclasses.replace(SMOKE, frames=16, max_epochs=3), 0)
    shorter.selection()
    assert sorted(p.name for p in (cache / "selection").iterdir()) == folders
    assert features_dir(shorter) == features_dir(made[0])
    assert shorter.run_dir("none") != made[0].run_dir("none")


def test_features_and_train_folders_differ_per_parameter():
    base = Run.of("smoke", 0)
    others = [Run.of("smoke", 1), Run.of("smoke", 0, min_playlists=2),
              Run.of(dataclasses.replace(SMOKE, n_tracks=50), 0), Run.of("quick", 0)]
    feats = [features_dir(r) for r in [base, *others]]
    assert len(set(feats)) == len(feats)
    assert features_dir(Run.of("smoke", 0)) == feats[0]
    dirs = {base.run_dir(loss) for loss in ("none", "neg_exact", "asl")}
    dirs |= {base.run_dir("none", train_seed=1), base.run_dir("none", architecture="released_code")}
    dirs |= {r.run_dir("none") for r in others}
    assert len(dirs) == 5 + len(others)
    assert base.run_dir("none") == Run.of("smoke", 0).run_dir("none", train_seed=0)
    with pytest.raises(ValueError, match="unknown loss 'neg'"):
        base.run_dir("neg")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        base.run_dir("none", train_seed=-1)
    with pytest.raises(ValueError, match="known once its previews are fetched"):
        Run.of("smoke", 0, "released").run_dir("none")


@pytest.mark.parametrize("stage", list(STAGE_VERSIONS))
def test_a_version_bump_reaches_every_stage_downstream(stage, monkeypatch):
    run = Run.of("smoke", 0)
    before = {"features": features_dir(run), "train": run.run_dir("none")}
    monkeypatch.setitem(STAGE_VERSIONS, stage, STAGE_VERSIONS[stage] + "-bumped")
    assert run.run_dir("none") != before["train"]
    assert (features_dir(run) != before["features"]) == (stage != "train")


def test_run_dir_is_the_folder_train_uses(cache, monkeypatch):
    """The folder computed without training is the one training writes (no model is trained)."""

    class Trained(Exception):
        pass

    def stop(store, sel, loss, config, directory, progress=True):
        raise Trained(directory, sorted(sel.split.index) == sorted(store.ids))

    monkeypatch.setattr(runs, "_fit_and_score", stop)
    run = Run.of("smoke", 2)
    for loss, ts in (("none", None), ("em", 5)):
        with pytest.raises(Trained) as got:
            run.train(loss, train_seed=ts, progress=False)
        directory, same_tracks = got.value.args
        assert directory == run.run_dir(loss, train_seed=ts) and same_tracks


# ---------------------------------------------------------------------------
# select_tracks
# ---------------------------------------------------------------------------

def synthetic_split(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    subset = rng.choice(["train", "validation", "test"], size=n, p=[0.65, 0.1, 0.25])
    return pd.DataFrame({"subset": subset, "fold": 0, "artist_id": rng.integers(0, 50, n)},
                        index=pd.Index(np.arange(1000, 1000 + n, dtype=np.int64), name="track_id"))


def skewed_labels(index, seed=0):
    """Contexts from rare (3 %) to common (50 %): a uniform draw of a few tracks misses the shares."""
    rng = np.random.default_rng([seed, 7])
    return pd.DataFrame(rng.random((len(index), 15)) < np.linspace(0.03, 0.5, 15), index=index, columns=COLS)


@pytest.mark.parametrize("n_tracks", [3, 17, 60, 199])
@pytest.mark.parametrize("stratified", [False, True])
def test_select_tracks_keeps_subset_proportions(n_tracks, stratified):
    split = synthetic_split(200)
    labels = skewed_labels(split.index) if stratified else None
    kept = select_tracks(split, n_tracks, seed=1, labels=labels)
    assert len(kept) == n_tracks and kept.is_unique and kept.isin(split.index).all()
    got = split.loc[kept, "subset"].value_counts()
    share = split["subset"].value_counts() / len(split)
    for s in ("validation", "test"):
        assert abs(got.get(s, 0) - n_tracks * share[s]) <= 1
        assert got.get(s, 0) >= 1
    assert got.sum() == n_tracks
    assert list(kept) == [i for i in split.index if i in set(kept)]  # split order


def test_select_tracks_is_seeded_all_when_none_and_refuses_too_few():
    split = synthetic_split(200)
    a, b, c = (select_tracks(split, 50, s) for s in (1, 1, 2))
    assert a.equals(b) and not a.equals(c)
    assert select_tracks(split, None, 0).equals(split.index)
    assert select_tracks(split, 10**6, 0).equals(split.index)
    for bad in (2, 0, True, 10.0):
        with pytest.raises(ValueError, match="n_tracks must be an integer >= 3 or None"):
            select_tracks(split, bad, 0)


def test_stratified_draw_follows_each_subsets_label_shares():
    split = synthetic_split()
    labels = skewed_labels(split.index)

    def error(kept):
        """Mean |share of a context among the drawn tracks − among the subset's|, over subsets."""
        out = []
        for s in ("train", "validation", "test"):
            drawn = kept[split.loc[kept, "subset"].to_numpy() == s]
            whole = split.index[split["subset"] == s]
            out.append((labels.loc[drawn].mean() - labels.loc[whole].mean()).abs().mean())
        return np.mean(out)

    seeds = range(8)
    stratified = [error(select_tracks(split, 100, s, labels=labels)) for s in seeds]
    uniform = [error(select_tracks(split, 100, s)) for s in seeds]
    assert np.mean(stratified) < 0.7 * np.mean(uniform)
    # and the subsets are still exact
    kept = select_tracks(split, 100, 0, labels=labels)
    assert split.loc[kept, "subset"].value_counts().to_dict() == \
        split.loc[select_tracks(split, 100, 0), "subset"].value_counts().to_dict()


# ---------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------

def small_selection(n=40, seed=0, truth=True):
    idx = pd.Index(np.arange(100, 100 + n, dtype=np.int64), name="track_id")
    rng = np.random.default_rng(seed)
    split = pd.DataFrame({"subset": ["train"] * (n // 2) + ["validation"] * (n // 8)
                          + ["test"] * (n - n // 2 - n // 8), "fold": 0, "artist_id": 0}, index=idx)
    latent = pd.DataFrame(rng.random((n, 15)) < 0.4, index=idx, columns=COLS)
    observed = latent & (rng.random((n, 15)) < 0.6 + 0.01 * seed)
    return Selection(split=split, labels=observed, counts=observed.astype(int) * 3,
                     latent=latent if truth else None, reference_labels=observed,
                     reference_counts=observed.astype(int) * 3)


def test_selection_restrict_sizes_and_ids():
    sel = small_selection(40)
    assert sel.sizes().to_dict() == {"train": 20, "validation": 5, "test": 15}
    assert list(sel.sizes().index) == ["train", "validation", "test"]
    keep = sel.split.index[::3]
    sub = sel.restrict(np.asarray(keep))
    assert sub.split.index.equals(keep) and sub.labels.index.equals(keep)
    assert sub.counts.index.equals(keep) and sub.latent.index.equals(keep)
    assert sub.reference_labels is sel.reference_labels  # the weights' reference is all tracks
    assert sub.sizes().sum() == len(keep) and set(sub.ids("test")) == set(keep) & set(sel.ids("test"))
    assert sel.restrict([]).sizes().sum() == 0
    assert small_selection(10, truth=False).restrict([100, 101]).latent is None
    with pytest.raises(ValueError, match="unknown subset 'valid'"):
        sel.ids("valid")


def test_simulated_selection(cache):
    sel = Run.of("smoke", 0).selection()
    assert len(sel.split) == SMOKE.n_tracks and sel.excluded == 0
    assert sel.labels.index.equals(sel.split.index) and list(sel.labels.columns) == COLS
    # Train, validation and test share no artist.
    a = sel.split.groupby("subset", observed=True)["artist_id"].apply(set)
    assert not (a["train"] & a["test"]) and not (a["train"] & a["validation"]) \
        and not (a["validation"] & a["test"])
    # Latent labels contain the observed ones (labels are only ever missing).
    assert (sel.latent.to_numpy() >= sel.labels.to_numpy()).all()
    assert (sel.labels.to_numpy() == (sel.counts.to_numpy() > 0)).all()
    # The weights' reference is every balanced track of the world, the selection among them.
    assert set(sel.reference_labels.index) == set(Run.of("smoke", 0).balanced())
    assert len(sel.reference_labels) > len(sel.split) and sel.split.index.isin(sel.reference_labels.index).all()


# ---------------------------------------------------------------------------
# the released selection (the vendored files, no network)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def released(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTXPAPER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield {"smoke": Run.of("smoke", 0, "released").selection(),
               "full": Run.of("full", 0, "released").selection(),
               "split": data.load_split(), "labels": data.load_labels(), "counts": data.load_counts()}


def test_released_selection_keeps_the_official_split(released):
    sel, official = released["smoke"], released["split"]
    assert len(sel.split) == SMOKE.n_tracks and sel.latent is None and sel.excluded == 1347
    test_ids = sel.ids("test")
    fold0 = official.index[official["fold"] == data.TEST_FOLD]
    assert len(test_ids) and set(test_ids) <= set(fold0)
    assert (sel.split["subset"].astype(str) == official.loc[sel.split.index, "subset"].astype(str)).all()
    assert (sel.split["fold"] == official.loc[sel.split.index, "fold"]).all()
    assert sel.sizes().to_dict() == {"train": 65, "validation": 7, "test": 24}
    pd.testing.assert_frame_equal(sel.labels, released["labels"].loc[sel.split.index, COLS], check_names=False)
    pd.testing.assert_frame_equal(sel.counts, released["counts"].loc[sel.split.index, COLS],
                                  check_names=False, check_dtype=False)
    # The weights' reference: all 49,929 balanced tracks, as the authors fitted them.
    assert len(sel.reference_labels) == 49929
    pd.testing.assert_frame_equal(sel.reference_labels, released["labels"][COLS], check_names=False)


def test_released_full_selection_is_the_papers(released):
    sel = released["full"]
    assert sel.sizes().to_dict() == {"train": 32771, "validation": 3642, "test": 12169}
    assert sel.excluded == 1347 and sel.latent is None
    assert set(sel.ids("test")) == set(released["split"].index[released["split"]["fold"] == 0])


# ---------------------------------------------------------------------------
# the grid (training faked: Run.train returns TrainedRun values with known scores)
# ---------------------------------------------------------------------------

def known_trained(run: Run, loss: str, train_seed: int, n: int = 40) -> TrainedRun:
    """A TrainedRun whose scores follow its latent labels, seeded by (threshold, loss, training seed)."""
    rng = np.random.default_rng([run.min_playlists, ALL_LOSSES.index(loss), train_seed])
    parts = {}
    for s, m in (("validation", n // 4), ("test", n)):
        idx = pd.Index(np.arange(m, dtype=np.int64) + (10_000 if s == "test" else 0), name="track_id")
        latent = pd.DataFrame(rng.random((m, 15)) < 0.5, index=idx, columns=COLS)
        observed = latent & (rng.random((m, 15)) < 0.7)  # some true positives missing
        scores = pd.DataFrame(np.clip(latent * 0.6 + rng.random((m, 15)) * 0.5, 0, 1), index=idx, columns=COLS)
        parts[s] = (scores, observed, latent)
    return TrainedRun(run=run, loss=loss, train_seed=train_seed, architecture="paper", model=None,
                      history=pd.DataFrame(), best_epoch=train_seed % 3 + 1, stop_reason="max_epochs",
                      scores={s: p[0] for s, p in parts.items()}, labels={s: p[1] for s, p in parts.items()},
                      latent={s: p[2] for s, p in parts.items()} if run.has_truth else None,
                      directory=Path("/nonexistent"))


@pytest.fixture
def fake_training(monkeypatch):
    calls = []

    def train(self, loss, *, train_seed=None, architecture="paper", progress=True, workers=2):
        calls.append((self.source, self.min_playlists, loss, train_seed))
        return known_trained(self, loss, train_seed)

    monkeypatch.setattr(Run, "train", train)
    return calls


def test_trained_run_metrics_by_truth():
    t = known_trained(Run.of("smoke", 0), "none", 0)
    obs, lat = t.metrics("observed"), t.metrics("latent")
    pd.testing.assert_frame_equal(obs, per_context_metrics(t.labels["test"], t.scores["test"]))
    pd.testing.assert_frame_equal(t.metrics("latent", "validation"),
                                  per_context_metrics(t.latent["validation"], t.scores["validation"]))
    # Missing positives count as false positives against the observed labels.
    assert lat.loc[MACRO, "Precision"] > obs.loc[MACRO, "Precision"]
    assert (t.profile, t.seed) == ("smoke", 0)
    with pytest.raises(ValueError, match="against must be one of"):
        t.metrics("truth")
    with pytest.raises(ValueError, match="released run has no latent labels"):
        known_trained(Run.of("smoke", 0, "released"), "none", 0).metrics("latent")


def test_grid_trains_each_loss_with_consecutive_seeds(fake_training):
    out = Run.of("smoke", 5).grid(["none", "neg_exact"], n_seeds=3, progress=False)
    assert fake_training == [("simulated", 3, loss, s) for loss in ("none", "neg_exact") for s in (5, 6, 7)]
    assert list(out.columns[:4]) == ["loss", "train_seed", "against", "best_epoch"]
    assert {"AUC", "F1", "Precision", "Recall"} <= set(out.columns)
    assert len(out) == 2 * 3 * 2 and set(out["against"]) == {"observed", "latent"}
    row = out[(out.loss == "none") & (out.train_seed == 6) & (out.against == "latent")].iloc[0]
    expected = known_trained(Run.of("smoke", 5), "none", 6).metrics("latent").loc[MACRO]
    assert row["AUC"] == pytest.approx(expected["AUC"]) and row["best_epoch"] == 6 % 3 + 1
    other = out[(out.loss == "none") & (out.train_seed == 6) & (out.against == "observed")].iloc[0]
    assert other["Precision"] < row["Precision"]
    # default n_seeds: the profile's
    fake_training.clear()
    Run.of("smoke", 2).grid(["em"], progress=False)
    assert fake_training == [("simulated", 3, "em", 2 + k) for k in range(SMOKE.n_seeds)]


def test_released_grid_is_scored_against_the_observed_labels_only(fake_training):
    run = Run.of("smoke", 1, "released")
    out = run.grid(["none", "both_exact"], n_seeds=2, progress=False)
    assert len(out) == 4 and set(out["against"]) == {"observed"}
    assert fake_training == [("released", 3, loss, s) for loss in ("none", "both_exact") for s in (1, 2)]
    with pytest.raises(ValueError, match="no latent labels"):
        run.cell_grid(["none"])


@pytest.mark.parametrize("call, message", [
    (lambda r: r.grid([], progress=False), "at least one loss"),
    (lambda r: r.grid(["none", "neg"], progress=False), "unknown loss 'neg'"),
    (lambda r: r.grid(["none"], n_seeds=0, progress=False), "n_seeds must be an integer >= 1"),
    (lambda r: r.grid(["none"], against=["truth"], progress=False), "not 'truth'"),
    (lambda r: Run.of("smoke", 0, "released").grid(["none"], against=["latent"]), "not 'latent'"),
    (lambda r: r.cell_grid(["none"], subset="train"), "subset must be 'validation' or 'test'"),
    (lambda r: r.cell_grid(["both"]), "unknown loss 'both'"),
    (lambda r: threshold_grid(r, thresholds=(2, 0)), "min_playlists must be an integer >= 1"),
    (lambda r: threshold_grid(r, thresholds=(2, True)), "min_playlists must be an integer >= 1"),
    (lambda r: threshold_grid(r, n_seeds=0), "n_seeds must be an integer >= 1"),
    (lambda r: threshold_grid(r, losses_=()), "at least one loss"),
    (lambda r: threshold_grid(Run.of("smoke", 0, "released")), "needs the simulated source"),
])
def test_bad_grid_input_is_refused_before_any_training(fake_training, call, message):
    with pytest.raises(ValueError, match=message):
        call(Run.of("smoke", 0))
    assert fake_training == []


def test_cell_grid_scores_every_loss_and_seed(fake_training):
    run = Run.of("smoke", 2)
    rec = run.cell_grid(["none", "neg_exact"], n_seeds=2, progress=False)
    assert fake_training == [("simulated", 3, loss, s) for loss in ("none", "neg_exact") for s in (2, 3)]
    assert list(rec[["loss", "train_seed"]].itertuples(index=False, name=None)) == \
        [(loss, s) for _, _, loss, s in fake_training]
    t = known_trained(run, "neg_exact", 3)
    row = rec[(rec.loss == "neg_exact") & (rec.train_seed == 3)].iloc[0]
    for key, v in cell_recovery(t.scores["test"], t.labels["test"], t.latent["test"]).items():
        assert row[key] == pytest.approx(v, nan_ok=True)
    val = run.cell_grid(["neg_exact"], n_seeds=2, subset="validation", progress=False).iloc[1]
    for key, v in cell_recovery(t.scores["validation"], t.labels["validation"], t.latent["validation"]).items():
        assert val[key] == pytest.approx(v, nan_ok=True)


def test_threshold_grid_adds_the_papers_threshold_and_keeps_its_seeds(fake_training, monkeypatch):
    sels = {k: small_selection(40, seed=k) for k in (2, 3, 5)}
    monkeypatch.setattr(Run, "selection", lambda self: sels[self.min_playlists])
    run = Run.of("smoke", 4)
    out = threshold_grid(run, thresholds=(5, 2, 5), losses_=("none", "neg_exact"), n_seeds=2)
    # 3 is added once; its training seeds are chapters 05-06's (seed, seed + 1)
    assert fake_training == [("simulated", k, loss, s) for k in (2, 3, 5) for loss in ("none", "neg_exact")
                             for s in (4, 5)]
    assert len(out) == 3 * 2 * 2 * 2 and list(out.columns[:2]) == ["min_playlists", "loss"]
    row = out[(out.min_playlists == 5) & (out.loss == "neg_exact") & (out.train_seed == 5)
              & (out.against == "latent")].iloc[0]
    expected = known_trained(run.with_threshold(5), "neg_exact", 5).metrics("latent").loc[MACRO]
    assert row["F1"] == pytest.approx(expected["F1"]) and row["AUC"] == pytest.approx(expected["AUC"])
    for k, sel in sels.items():
        test = sel.ids("test")
        lat, obs = sel.latent.loc[test].to_numpy(), sel.labels.loc[test].to_numpy()
        rate = (lat & ~obs).sum() / lat.sum()
        assert rate == pytest.approx(missing_summary(sel.labels.loc[test], sel.latent.loc[test])["missing_rate"])
        assert np.allclose(out.loc[out.min_playlists == k, "missing_rate"], rate)
    assert out.loc[out.min_playlists == 2, "missing_rate"].iloc[0] != \
        out.loc[out.min_playlists == 5, "missing_rate"].iloc[0]
