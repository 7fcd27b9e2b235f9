"""Run a snippet of Python as an unprivileged user, for permission tests.

Root ignores permission bits, so "unreadable" and "unwritable" can only be
observed by another user. When the tests run as root, the snippet runs as
``nobody`` (uid 65534) in a child process started by ``setpriv`` (util-linux;
the test is skipped without it); otherwise it runs as the current user, who is
already bound by the permission bits.

Not part of the ``ctxpaper`` package: nothing the book needs to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def run_unprivileged(code: str, cwd: str | os.PathLike[str]) -> subprocess.CompletedProcess:
    """Run ``python -c code`` (ctxpaper importable) as a user bound by permissions."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot test as a user bound by permissions")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    # The other user cannot write the caches of ours (numba's beside librosa, keras' in HOME).
    home = Path(cwd) / ".home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HOME": str(home),
           "NUMBA_CACHE_DIR": str(home / "numba"), "MPLCONFIGDIR": str(home / "mpl")}
    return subprocess.run([*prefix, sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A temporary folder that the unprivileged user can enter (pytest's are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ctxpaper-perm-"))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
