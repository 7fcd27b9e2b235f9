"""Atomic writes, the artifact cache and the run profiles."""

from __future__ import annotations

import json

import pytest

from ctxpaper import cache, fsio, profiles


def test_atomic_open_replaces_only_on_success(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with fsio.atomic_open(dest) as fh:
            fh.write("half of the new")
            raise RuntimeError("interrupted")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left
    with fsio.atomic_open(dest) as fh:
        fh.write("new")
    assert dest.read_text() == "new"


def test_atomic_path_keeps_extension_and_creates_parent(tmp_path):
    dest = tmp_path / "a" / "b" / "nb.ipynb"
    with fsio.atomic_path(dest) as tmp:
        assert tmp.suffix == ".ipynb" and tmp.parent == dest.parent and tmp != dest
        tmp.write_text("{}")
    assert dest.read_text() == "{}"


def test_atomic_open_refuses_read_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must contain 'w'"):
        with fsio.atomic_open(tmp_path / "x", "r"):
            pass


def test_params_key_is_order_independent_and_sensitive():
    a = fsio.params_key({"profile": "smoke", "seed": 1})
    assert a == fsio.params_key({"seed": 1, "profile": "smoke"})
    assert a != fsio.params_key({"profile": "smoke", "seed": 2})


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_build_once_builds_once_and_keys_by_params_and_version(cache_dir):
    calls = []

    def build(d):
        calls.append(d)
        (d / "x.json").write_text(json.dumps(len(calls)))

    p1 = cache.build_once("stage", {"seed": 1}, build)
    p2 = cache.build_once("stage", {"seed": 1}, build)
    assert p1 == p2 and len(calls) == 1 and p1.parent.parent == cache_dir
    assert json.loads((p1 / "params.json").read_text())["params"] == {"seed": 1}
    p3 = cache.build_once("stage", {"seed": 2}, build)
    p4 = cache.build_once("stage", {"seed": 1}, build, version="2")
    assert len({p1, p3, p4}) == 3 and len(calls) == 3


def test_failed_build_leaves_no_entry(cache_dir):
    def build(d):
        (d / "partial.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.build_once("stage", {"seed": 1}, build)
    assert list((cache_dir / "stage").iterdir()) == []
    # and the next call really builds
    path = cache.build_once("stage", {"seed": 1}, lambda d: (d / "ok").write_text("1"))
    assert (path / "ok").exists() and not (path / "partial.bin").exists()


def test_artifact_dir_is_persistent(cache_dir):
    d = cache.artifact_dir("train", {"seed": 0})
    (d / "checkpoint").write_text("epoch 3")
    assert cache.artifact_dir("train", {"seed": 0}) == d
    assert (d / "checkpoint").read_text() == "epoch 3"
    with pytest.raises(ValueError, match="invalid cache stage"):
        cache.artifact_dir("a/b", {})


def test_profiles_validation():
    assert profiles.get_profile("smoke").name == "smoke"
    assert profiles.validate_params("full", 3) == (profiles.PROFILES["full"], 3)
    for bad in ("fast", None, 3):
        with pytest.raises(ValueError, match="unknown profile"):
            profiles.get_profile(bad)
    for bad in (-1, 1.0, "1", True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            profiles.validate_seed(bad)


def test_profiles_are_ordered_by_cost():
    s, q, f = (profiles.PROFILES[n] for n in ("smoke", "quick", "full"))
    assert f.frames == 646 and f.world_scale == 1.0 and f.n_tracks is None and f.patience == 10
    assert s.frames <= q.frames <= f.frames
    assert s.world_scale < q.world_scale < f.world_scale
    assert s.n_tracks < q.n_tracks
    for p in (s, q, f):
        assert p.frames % 16 == 0 or p.frames == 646  # four 2x2 poolings
