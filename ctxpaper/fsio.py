"""Crash-safe file writing, careful file reading and content hashing shared by every module.

Nothing in this project writes an output in place: a file is written to a
temporary sibling and renamed over its destination, so an interrupted job
leaves either the old complete file or the new complete file, never half of
one. ``os.replace`` is atomic on POSIX within one file system. What is written
gets the permissions the user's umask allows (``0o666 & ~umask`` for files,
``0o777 & ~umask`` for folders), as ``open`` and ``mkdir`` would give.

Reading back trusts nothing: :func:`open_regular` refuses devices, FIFOs and
folders (a file linked to ``/dev/zero`` would hang a hash), :func:`read_json`
caps the size and the nesting depth and names the file in every error, and
:func:`check_output` checks a command's output destination before any work.

Not tied to one section of the paper: every chapter (notebook) writes through
this module, via the artifact cache (:mod:`ctxpaper.cache`), the tag command
(:mod:`ctxpaper.tag`, chapter 05) and the book builder (:mod:`ctxpaper.book`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import psutil

#: Largest JSON file :func:`read_json` reads unless told otherwise.
MAX_JSON_BYTES = 256 << 20
#: Deepest nesting of arrays and objects :func:`read_json` accepts unless told otherwise.
MAX_JSON_DEPTH = 64

_UMASK_LOCK = threading.Lock()
# The host part of temporary folder names, so that a cache shared between
# machines never has a live build of another host taken for a leftover.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


class BadFileError(ValueError):
    """A file that cannot be read as asked: not a regular file, too large, not valid JSON…

    The message names the file.
    """


class DestinationError(ValueError):
    """An output destination that must not or cannot be written; the message names it."""


# ----------------------------------------------------------------------------
# permissions
# ----------------------------------------------------------------------------

def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way is to set it and put it back; the lock keeps two
    # threads of this module from seeing each other's placeholder.
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as printable UTF-8 text: bytes that are not UTF-8 become ``\\xNN``.

    A file name on Linux is bytes; Python keeps undecodable ones as surrogates,
    which ``print`` and UTF-8 files refuse. Use this for messages and tables.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# ----------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path that is renamed onto ``dest`` on success.

    On any exception the temporary file is removed and ``dest`` is untouched.
    The file gets ``0o666 & ~umask`` permissions, as ``open`` would give it.

    Parameters
    ----------
    dest : path-like
        Final destination. Its parent directory is created if missing.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Keep the extension: tools such as papermill check it.
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp gives 0600
    finally:
        os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(dest: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``dest`` when closed cleanly."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes a new file; mode must contain 'w', got {mode!r}")
    with atomic_path(dest) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_json(dest: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_open(dest, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")


def make_temp_dir(parent: str | os.PathLike[str], name: str) -> Path:
    """Create the temporary sibling folder in which ``parent/name`` is built.

    Its name, ``.NAME.tmp-HOST-PID-XXXXXXXX``, records the building process so
    that :func:`remove_stale_temp_dirs` can tell a leftover of a killed build
    from a build still running. Permissions are ``0o777 & ~umask``
    (``mkdtemp`` alone gives 0700).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{_HOST}-{os.getpid()}-", dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def _owner_is_gone(pid: int, since: float) -> bool:
    """Whether no live process can have made a folder last changed at ``since``."""
    if pid == os.getpid():
        return False  # ours: another thread may be building it
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        # A process started after the folder's last change has only its pid in common.
        return proc.create_time() > since + 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # cannot tell (another user's process): keep the folder


def remove_stale_temp_dirs(parent: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove the temporary folders that killed builds of ``parent/name`` left behind.

    A folder made by :func:`make_temp_dir` on this host is stale when the
    process that made it is gone (no such pid, a zombie, or a pid reused by a
    younger process). A folder of the older unlabelled form ``.NAME.XXXXXXXX``
    is stale when it was last changed before this process started. Folders of
    other hosts, or of live processes, are kept.

    Returns
    -------
    list of pathlib.Path
        The folders removed.
    """
    parent = Path(parent)
    labelled = re.compile(rf"\.{re.escape(name)}\.tmp-([A-Za-z0-9]*)-(\d+)-[a-z0-9_]+")
    unlabelled = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}")
    started = psutil.Process().create_time()
    removed = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]
    except FileNotFoundError:
        return []
    for p in candidates:
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        m = labelled.fullmatch(p.name)
        if m:
            stale = m.group(1) == _HOST and _owner_is_gone(int(m.group(2)), st.st_mtime)
        else:
            stale = bool(unlabelled.fullmatch(p.name)) and st.st_mtime < started
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def check_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]] = (), *,
                 refuse_suffixes: Collection[str] = (), what: str = "output") -> Path:
    """Check an output destination before any work; return the file to write.

    Refused, with a :class:`DestinationError` naming the path and the reason:
    an empty path, a directory, a name ending in one of ``refuse_suffixes``
    (case-insensitive, e.g. audio extensions: ``--csv *.mp3`` expanded by the
    shell must never replace a recording), one of ``inputs`` (same file, by
    device and inode, so links and other spellings count), an existing file
    that is not a regular file or is read-only, a parent folder that does not
    exist or where a file cannot be created (checked by creating one).

    Parameters
    ----------
    path : path-like
        The destination as given.
    inputs : iterable of path-like
        Files the command reads; none of them may be the destination.
    refuse_suffixes : collection of str
        Extensions (with the dot) the destination must not have.
    what : str
        How the destination is named in messages, e.g. ``"--csv"``.

    Returns
    -------
    pathlib.Path
        Where to write: ``path`` with a symbolic link resolved, so that the file
        it points at is replaced rather than the link.
    """
    text = os.fspath(path)
    shown = display_path(text)
    if not text:
        raise DestinationError(f"{what}: empty path")
    p = Path(text)
    if text.endswith(os.sep) or p.is_dir():
        raise DestinationError(f"{what} {shown} is a directory; give a file name")
    suffixes = {s.lower() for s in refuse_suffixes}
    if p.suffix.lower() in suffixes:
        raise DestinationError(f"{what} {shown}: refusing to write over a file named as audio "
                               f"({p.suffix}); did the shell expand a wildcard after {what}?")
    real = Path(os.path.realpath(p))
    if real.suffix.lower() in suffixes:
        raise DestinationError(f"{what} {shown} links to {display_path(real)}, named as audio: refusing")
    try:
        st = real.stat()
    except FileNotFoundError:
        st = None
    if st is not None:
        for item in inputs:
            with contextlib.suppress(OSError):
                other = os.stat(item)
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    raise DestinationError(f"{what} {shown} is one of the inputs ({display_path(item)}); "
                                           "refusing to overwrite it")
        if not stat.S_ISREG(st.st_mode):
            raise DestinationError(f"{what} {shown} exists and is {_kind(st.st_mode)}, not a regular file")
        if not os.access(real, os.W_OK):
            raise DestinationError(f"{what} {shown} exists and is read-only")
    parent = real.parent
    if not parent.is_dir():
        raise DestinationError(f"{what} {shown}: directory {display_path(parent)} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise DestinationError(f"{what} {shown}: cannot create a file in {display_path(parent)} "
                               f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return real


# ----------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------

def _kind(mode: int) -> str:
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str], what: str = "file") -> BinaryIO:
    """Open a regular file for binary reading; refuse anything else.

    A FIFO, a device (``/dev/zero``, a link to one) or a folder would hang or
    mislead a reader; they raise :class:`BadFileError` naming the path. Opening
    does not block on a FIFO (``O_NONBLOCK``). ``FileNotFoundError`` and other
    ``OSError`` pass through.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise BadFileError(f"{what} {display_path(path)} is {_kind(mode)}, not a regular file; "
                               "refusing to read it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a regular file, read in chunks.

    Raises
    ------
    BadFileError
        ``path`` is not a regular file (a device, a FIFO, a folder).
    """
    h = hashlib.sha256()
    with open_regular(path) as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _json_depth(data: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text, strings left out."""
    if b"\\" in data:  # escaped quotes: let the regex find where strings end
        data = _JSON_STRING.sub(b'""', data)
    b = np.frombuffer(data, dtype=np.uint8)
    # Without escapes, a byte is inside a string when an odd number of quotes
    # precede it (the count wraps at 256, which keeps its parity).
    outside = (np.cumsum(b == ord('"'), dtype=np.uint8) & 1) == 0
    brackets = b[np.isin(b, np.frombuffer(b"[]{}", dtype=np.uint8)) & outside]
    if brackets.size == 0:
        return 0
    step = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(step).max())


def read_json(path: str | os.PathLike[str], what: str = "JSON file", *,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read a JSON file that may have been damaged or planted; every error names it.

    Parameters
    ----------
    path : path-like
        The file; it must be a regular file (:func:`open_regular`).
    what : str
        What the file is, for messages (``"tagger metadata"``, ``"cache entry"``…).
    max_bytes : int
        Larger files are refused before they are read.
    max_depth : int
        Deeper nesting of arrays and objects is refused before parsing (the
        standard parser would recurse until ``RecursionError``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    BadFileError
        Not a regular file, unreadable, too large, not UTF-8, nested too deep,
        or not valid JSON.
    """
    shown = f"{what} {display_path(path)}"
    try:
        with open_regular(path, what) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise BadFileError(f"{shown} is {size:,} bytes, more than the {max_bytes:,} allowed")
            data = fh.read(max_bytes + 1)
    except (FileNotFoundError, BadFileError):
        raise
    except OSError as e:
        raise BadFileError(f"{shown} cannot be read: {e.strerror or e}") from None
    if len(data) > max_bytes:  # grew while being read
        raise BadFileError(f"{shown} is more than the {max_bytes:,} bytes allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadFileError(f"{shown} is not UTF-8 text (byte {e.start})") from None
    depth = _json_depth(data)
    if depth > max_depth:
        raise BadFileError(f"{shown} nests arrays/objects {depth} deep, more than the {max_depth} allowed")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadFileError(f"{shown} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:  # a depth the guard above under-counted (an unterminated string)
        raise BadFileError(f"{shown} nests arrays/objects too deep") from None


def params_key(params: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able parameter dict (cache keys)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def bar_off(progress: bool) -> dict[str, bool]:
    """tqdm keyword arguments: off when ``progress`` is false, else tqdm's defaults.

    Passing ``disable=False`` would override ``TQDM_DISABLE``, which the book
    runner sets so that library progress bars stay off the pages.
    """
    return {} if progress else {"disable": True}
