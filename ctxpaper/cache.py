"""The artifact cache: every chapter asks for what it needs, built once.

A notebook never relies on another having run first: it calls the library,
which loads an artifact from this cache or builds it. An artifact lives in
``<root>/<stage>/<key>/`` where ``key`` hashes the parameters that produced it
(profile, seed, …) together with the stage's version string, so changing a
parameter or the producing code gives a new entry instead of a stale one.

Two ways to fill an entry:

* :func:`build_once` for artifacts produced in one go: built in a temporary
  sibling directory and renamed into place, so an interrupted build leaves
  nothing behind that could be mistaken for a result (and a killed build's
  temporary folder is removed by the next build of that entry);
* :func:`artifact_dir` for long, resumable jobs (feature extraction, training)
  that keep their own manifest and checkpoints inside a persistent directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import PROJECT_ROOT
from .fsio import make_temp_dir, params_key, remove_stale_temp_dirs, write_json



def cache_root() -> Path:
    """Root of the artifact cache.

    ``CTXPAPER_CACHE_DIR`` when set; else ``.cache/`` in the project checkout
    (git-ignored); else ``~/.cache/ctxpaper`` for an installed package.
    """
    env = os.environ.get("CTXPAPER_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / ".cache"
    return Path.home() / ".cache" / "ctxpaper"


def entry_path(stage: str, params: dict[str, Any], version: str = "1") -> Path:
    """Where the artifact of (stage, params, version) lives; computed, never created."""
    if not stage or "/" in stage:
        raise ValueError(f"invalid cache stage name {stage!r}")
    key = params_key({"params": params, "version": version})
    return cache_root() / stage / key


def artifact_dir(stage: str, params: dict[str, Any], version: str = "1") -> Path:
    """Persistent working directory for a resumable job; created on demand.

    The parameters are written beside it (``params.json``) so that a cache entry
    can be inspected by a person.
    """
    path = entry_path(stage, params, version)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "params.json").exists():
        write_json(path / "params.json", {"stage": stage, "version": version, "params": params})
    return path


def build_once(
    stage: str,
    params: dict[str, Any],
    build: Callable[[Path], None],
    version: str = "1",
) -> Path:
    """Return the directory of a finished artifact, building it if absent.

    Parameters
    ----------
    stage : str
        Name of the producing step (a folder name).
    params : dict
        JSON-able parameters that determine the artifact.
    build : callable
        ``build(tmpdir)`` writes the artifact's files into ``tmpdir``. It runs in
        a temporary sibling directory which is renamed into place only when it
        returns, so a failed or interrupted build leaves no entry.
    version : str
        Bump when the producing code changes what it writes.

    Notes
    -----
    The folders (the entry and its stage) get ``0o777 & ~umask`` permissions,
    so a colleague sharing the cache can read it when the umask allows. The
    temporary folders of killed builds of the same entry (whose process is
    gone) are removed before building.
    """
    final = entry_path(stage, params, version)
    if (final / "params.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(final.parent, final.name)
    tmp = make_temp_dir(final.parent, final.name)
    try:
        build(tmp)
        write_json(tmp / "params.json", {"stage": stage, "version": version, "params": params})
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same entry first: keep theirs.
            if not (final / "params.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
