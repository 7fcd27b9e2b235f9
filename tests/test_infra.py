"""Atomic writes, the artifact cache and the run profiles."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from ctxpaper import cache, fsio, profiles
from ctxpaper import PROJECT_ROOT


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


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_build_once_folders_and_files_follow_the_umask(cache_dir, mask):
    old = os.umask(mask)
    try:
        path = cache.build_once("stage", {"mask": mask}, lambda d: (d / "x.txt").write_text("1"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((path / "params.json").stat().st_mode) == 0o666 & ~mask


_KILLED_BUILD = """if True:
    import os, signal
    from ctxpaper import cache
    def build(d):
        (d / "half.bin").write_bytes(b"x" * 4096)
        os.kill(os.getpid(), signal.SIGKILL)
    cache.build_once("stage", {"seed": 1}, build)
"""


def test_a_killed_build_leaves_a_folder_that_the_next_build_removes(cache_dir):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "CTXPAPER_CACHE_DIR": str(cache_dir)}
    res = subprocess.run([sys.executable, "-c", _KILLED_BUILD], env=env, capture_output=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr
    final = cache.entry_path("stage", {"seed": 1})
    left = [p for p in final.parent.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(f".{final.name}.tmp-")
    assert (left[0] / "half.bin").stat().st_size == 4096  # a real leftover: written, then killed
    path = cache.build_once("stage", {"seed": 1}, lambda d: (d / "ok").write_text("1"))
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]
    assert sorted(p.name for p in path.iterdir()) == ["ok", "params.json"]


def test_stale_temp_dirs_only_the_dead_are_removed(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = fsio.make_temp_dir(tmp_path, "key")                      # this process: alive
        theirs = tmp_path / f".key.tmp-{fsio._HOST}-{live.pid}-abcd1234"  # a live build elsewhere
        theirs.mkdir()
        reused = tmp_path / f".key.tmp-{fsio._HOST}-{live.pid}-zzzz0000"  # pid reused since then
        reused.mkdir()
        os.utime(reused, (time.time() - 86400, time.time() - 86400))
        other_host = tmp_path / f".key.tmp-elsewhere{fsio._HOST}-1-abcd1234"
        other_host.mkdir()
        legacy = tmp_path / ".key.a1b2c3d4"                              # old unlabelled name
        legacy.mkdir()
        os.utime(legacy, (0, 0))
        unrelated = tmp_path / ".keyring.tmp-x-1-abcd"
        unrelated.mkdir()
        removed = fsio.remove_stale_temp_dirs(tmp_path, "key")
        assert sorted(removed) == sorted([reused, legacy])
        assert all(p.exists() for p in (mine, theirs, other_host, unrelated))
    finally:
        live.kill()
        live.wait()
    assert fsio.remove_stale_temp_dirs(tmp_path, "key") == [theirs]  # now its owner is gone
    assert mine.exists()


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
