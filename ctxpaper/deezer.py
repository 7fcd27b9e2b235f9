"""Deezer preview client: from the released track ids to 30 s MP3s (paper §3.2, §4.1).

The released dataset holds Deezer track ids only; "the audio content for each
track is available as a 30 seconds snippet through the Deezer API using the
track ID" (§3.2). ``GET {base}/track/{id}`` returns JSON whose ``preview``
field is the MP3's URL, or an error object such as
``{"error": {"type": "DataException", "message": "no data", "code": 800}}``;
code 4 means the quota (about 50 requests per 5 s) is exceeded.

:func:`fetch_previews` downloads many previews with

* bounded concurrency (``workers`` threads) and a client-side sliding-window
  rate limit on API calls (default 45 per 5 s, under the quota; ``max_calls``
  and ``period`` of :class:`DeezerClient`);
* a **wall-clock deadline** per request (connect, headers and the whole body):
  a watchdog shuts the socket of a request that outlives it, so a server that
  trickles bytes cannot hold a worker;
* retries with exponential backoff and jitter on quota errors, HTTP 429/5xx,
  time-outs, dropped connections and truncated bodies, honouring
  ``Retry-After`` (seconds or an HTTP date, capped at ``max_backoff``);
* atomic writes (temporary file + rename: a preview on disk is complete);
  temporary files left by a killed run are removed by the next one;
* an append-only manifest ``manifest.jsonl`` (id, status, bytes, sha256,
  error): an interrupted run resumes, a re-run skips what is done, and files
  that disagree with it (missing, other size, other sha256) are fetched again.
  Statuses ``ok``, ``no_data`` (unknown id) and ``no_preview`` (empty preview
  field) are final; ``error`` is retried by the next run. Every failure of one
  id, whatever raised it, is recorded for that id and never stops the batch;
* one Ctrl-C stops the batch promptly: no new ids are started, requests in
  flight are aborted, their temporary files removed, and the manifest keeps
  the records completed so far;
* early detection of an unreachable server (``unreachable_after`` connection
  failures in a row with no response between): one message naming the URL and
  how to rehearse offline, instead of hours of retries.

Defaults come from the environment: ``CTXPAPER_DEEZER_URL`` (the API root,
else https://api.deezer.com) and ``CTXPAPER_PREVIEWS_DIR`` (the previews
folder, else ``previews/`` under the artifact cache, :func:`ctxpaper.cache.cache_root`).

Command line::

    python -m ctxpaper.deezer fetch --ids FILE [--out DIR] [--workers N] [--limit N] ...
    python -m ctxpaper.deezer serve --port P      # the offline rehearsal server (ctxpaper.rehearsal)

``--ids`` takes a plain list (one id per line, ``#`` comments), a CSV whose
id column is ``song_id``, ``track_id`` or ``id`` (one column or many, e.g. the
released label files). Exit status of ``fetch``:

* 0 — every requested id ended in a final status (``ok``, ``no_data``, ``no_preview``);
* 1 — some ids ended ``error`` (the others are saved; a rerun retries those);
* 2 — bad arguments or input (ids file, ``--out`` not a writable folder or in
  use by another fetch); nothing was fetched;
* 3 — the API or preview server could not be reached; nothing half-written;
* 130 — interrupted by Ctrl-C (143 for SIGTERM); a rerun continues.

``serve`` takes the options of ``python -m ctxpaper.rehearsal``
(:func:`ctxpaper.rehearsal.add_arguments`) and exits 0 when it stops (Ctrl-C,
``--max-requests``, ``--max-seconds``), 2 on a bad option or a port in use.
``ctxpaper-deezer`` (:func:`cli`) is the console entry point.

Notebook: 04_from_ids_to_spectrograms (``data_source="deezer"``).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import csv
import email.utils
import errno
import fcntl
import hashlib
import http.client
import io
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.exceptions
from tqdm import tqdm

from .cache import cache_root
from .fsio import atomic_open, atomic_path, bar_off

DEFAULT_BASE_URL = "https://api.deezer.com"
BASE_URL_ENV = "CTXPAPER_DEEZER_URL"
PREVIEWS_DIR_ENV = "CTXPAPER_PREVIEWS_DIR"
DEFAULT_WORKERS = 4
QUOTA_CODE = 4
NO_DATA_CODE = 800
STATUSES = ("ok", "no_data", "no_preview", "error")
FINAL_STATUSES = frozenset({"ok", "no_data", "no_preview"})
MANIFEST = "manifest.jsonl"
MANIFEST_COLUMNS = ["id", "status", "bytes", "sha256", "error"]
RESULT_COLUMNS = MANIFEST_COLUMNS + ["path"]
LOCK_FILE = ".fetch.lock"
MAX_JSON_BYTES = 1 << 20
MAX_PREVIEW_BYTES = 50 << 20
MAX_TRACK_ID = 2**63 - 1  # ids live in int64 columns downstream

EXIT_OK, EXIT_SOME_ERRORS, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# The names fsio.atomic_path gives a preview's temporary file: ".{id}.<mkstemp>.tmp.mp3".
_LEFTOVER = re.compile(r"^\.\d+\.[^./]+\.tmp\.mp3$")
_ID_TEXT = re.compile(r"^\+?(\d+)(?:\.0*)?$")  # 10, +10, 10.0 (a spreadsheet's float) -- never 1e7
_ID_HEADERS = ("song_id", "track_id", "id")


def default_base_url() -> str:
    """The API root: ``$CTXPAPER_DEEZER_URL`` when set, else the public API."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def default_previews_dir() -> Path:
    """The previews folder: ``$CTXPAPER_PREVIEWS_DIR`` when set, else ``<cache>/previews``."""
    env = os.environ.get(PREVIEWS_DIR_ENV)
    return Path(env).expanduser() if env else cache_root() / "previews"


def _check_base_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {url!r} is not an http(s) URL")
    return url.rstrip("/")


# --------------------------------------------------------------------------
# Errors


class DeezerError(Exception):
    """An error object returned by the API (``{"error": {...}}``) or an unusable response."""

    def __init__(self, code: int | None, type_: str, message: str):
        super().__init__(f"Deezer API error {code} ({type_}): {message}" if code is not None
                         else f"{type_}: {message}")
        self.code = code
        self.type = type_
        self.message = message


class TransientError(Exception):
    """A failure worth retrying: quota, 5xx, time-out, dropped or truncated response.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class NetworkUnreachable(Exception):
    """Every recent connection attempt failed: the network or the server is down."""

    def __init__(self, url: str, attempts: int, last: str):
        super().__init__(
            f"cannot reach {url}: {attempts} connection attempts in a row failed (last: {last}). "
            "Check the network; to rehearse offline, run `python -m ctxpaper.deezer serve --port P` "
            "and set CTXPAPER_DEEZER_URL=http://127.0.0.1:P")
        self.url = url


class FetchCancelled(Exception):
    """The batch was stopped (Ctrl-C, an unreachable server): this id was not finished."""


class FolderBusy(Exception):
    """Another fetch is writing into the same previews folder."""


# --------------------------------------------------------------------------
# Wall-clock deadlines: a watchdog thread shuts the sockets of overdue requests


_tls = threading.local()  # the request a worker thread is making, for the connection hooks


class _Request:
    __slots__ = ("deadline", "expired", "socks", "watchdog")

    def __init__(self, watchdog: _Watchdog, deadline: float):
        self.watchdog = watchdog
        self.deadline = deadline
        self.expired = False
        self.socks: list[socket.socket] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def _shut(sock: socket.socket) -> None:
    # shutdown (not close) wakes a thread blocked in recv on this socket at once.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """Tracks the requests in flight; shuts their sockets at their deadline or on cancel."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._live: set[_Request] = set()
        self._cancelled = False
        self._thread: threading.Thread | None = None

    def begin(self, seconds: float) -> _Request:
        with self._cond:
            if self._cancelled:
                raise FetchCancelled("the batch was stopped")
            req = _Request(self, time.monotonic() + seconds)
            self._live.add(req)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deezer-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return req

    def end(self, req: _Request) -> None:
        with self._cond:
            self._live.discard(req)

    def attach(self, req: _Request, sock: socket.socket) -> None:
        with self._cond:
            req.socks.append(sock)
            if req.expired or self._cancelled:
                _shut(sock)

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            for req in self._live:
                for s in req.socks:
                    _shut(s)

    def reset(self) -> None:
        with self._cond:
            self._cancelled = False

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                nxt = None
                for req in self._live:
                    if req.expired:
                        continue
                    if req.deadline <= now:
                        req.expired = True
                        for s in req.socks:
                            _shut(s)
                    elif nxt is None or req.deadline < nxt:
                        nxt = req.deadline
                if nxt is None and not self._live:
                    # Idle: exit after a while so unused clients leave no thread behind.
                    self._cond.wait(5.0)
                    if not self._live:
                        self._thread = None
                        return
                    continue
                self._cond.wait(None if nxt is None else nxt - now)


def _attach_current(sock: socket.socket | None) -> None:
    req = getattr(_tls, "request", None)
    if req is not None and sock is not None:
        req.watchdog.attach(req, sock)


class _DeadlineConnectionMixin:
    # _new_conn covers a fresh connection from the TCP connect on (TLS handshake,
    # headers, body); getresponse covers a reused keep-alive connection.
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _attach_current(sock)
        return sock

    def getresponse(self) -> Any:
        _attach_current(getattr(self, "sock", None))
        return super().getresponse()  # type: ignore[misc]


class _HTTPConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _DeadlineAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections report their sockets to the watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        pm = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring their own connections
            pm.pool_classes_by_scheme = dict(_POOLS)
        return pm


def _content_length(headers: Any, url: str) -> int | None:
    """The declared body length, or None; a malformed or conflicting value is an error.

    RFC 9112 §6.3: identical repeated values may be accepted; anything else makes
    the framing invalid.
    """
    raw = headers.get("Content-Length")
    if raw is None:
        return None
    values = {v.strip() for v in str(raw).split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise DeezerError(None, "BadResponse", f"GET {url}: invalid Content-Length header {raw!r}")
    return int(values.pop())


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_connect_failure(exc: BaseException) -> bool:
    """True when the error means no connection was made (refused, no route, DNS, connect time-out)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, urllib3.exceptions.NewConnectionError):  # includes NameResolutionError
            return True
        if isinstance(e, urllib3.exceptions.MaxRetryError):
            e = e.reason
            continue
        e = e.args[0] if e.args and isinstance(e.args[0], BaseException) else e.__cause__
    return False


def _looks_like_mp3(head: bytes) -> bool:
    # An ID3v2 tag, or an MPEG audio frame sync (11 set bits).
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)


# --------------------------------------------------------------------------
# The client


class RateLimiter:
    """At most ``max_calls`` acquisitions in any window of ``period`` seconds (thread-safe).

    ``clock`` and ``sleep`` are injectable so the guarantee can be tested
    without waiting.
    """

    def __init__(self, max_calls: int = 45, period: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if max_calls < 1 or period <= 0:
            raise ValueError(f"rate limit needs max_calls >= 1 and period > 0, got {max_calls}, {period}")
        self.max_calls = int(max_calls)
        self.period = float(period)
        self._clock = clock
        self._sleep = sleep
        self._calls: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a call is allowed; return the time it was granted."""
        while True:
            with self._lock:
                now = self._clock()
                while self._calls and self._calls[0] <= now - self.period:
                    self._calls.popleft()
                if len(self._calls) < self.max_calls:
                    self._calls.append(now)
                    return now
                wait = self._calls[0] + self.period - now
            self._sleep(max(wait, 1e-4))


@dataclass
class FetchResult:
    """One manifest row."""

    id: int
    status: str
    bytes: int = 0
    sha256: str = ""
    error: str = ""


class DeezerClient:
    """A small, polite client for ``/track/{id}`` and preview downloads.

    One client serves one batch at a time (:meth:`cancel` stops the current one).

    Parameters
    ----------
    base_url : str, optional
        API root; default :func:`default_base_url` (``$CTXPAPER_DEEZER_URL``).
    max_calls, period : int, float
        Client-side rate limit on API calls: at most ``max_calls`` per ``period`` s.
    timeout : float
        Seconds allowed for the TCP connect and for any one pause of the server.
    max_retries : int
        Retries of a transient failure (so up to ``max_retries + 1`` attempts).
    backoff, max_backoff : float
        Retry ``k`` waits ``min(max_backoff, backoff * 2**k)`` seconds times a
        jitter in [0.5, 1); a ``Retry-After`` from the server replaces that
        wait, capped at ``max_backoff`` too.
    seed : int
        Seed of the jitter.
    deadline : float
        Wall-clock seconds for one whole request: connect, headers and body.
    unreachable_after : int
        Connection failures in a row (no response between) after which the
        server counts as unreachable and the batch stops with
        :class:`NetworkUnreachable`.
    """

    def __init__(self, base_url: str | None = None, max_calls: int = 45, period: float = 5.0,
                 timeout: float = 10.0, max_retries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0, seed: int = 0, *, deadline: float = 60.0,
                 unreachable_after: int = 8):
        if base_url is None:
            base_url = _check_base_url(default_base_url(), BASE_URL_ENV)
        self.base_url = _check_base_url(base_url, "base_url")
        for name, v in (("timeout", timeout), ("deadline", deadline)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {v}")
        if max_retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError(f"max_retries, backoff and max_backoff must be >= 0, "
                             f"got {max_retries}, {backoff}, {max_backoff}")
        if unreachable_after < 1:
            raise ValueError(f"unreachable_after must be >= 1, got {unreachable_after}")
        self.limiter = RateLimiter(max_calls, period, sleep=self._pause)
        self.timeout = float(timeout)
        self.deadline = float(deadline)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.unreachable_after = int(unreachable_after)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._watchdog = _Watchdog()
        self._connect_failures = 0
        self._unreachable: NetworkUnreachable | None = None

    # -- batch control
    def begin_batch(self) -> None:
        """Clear a previous :meth:`cancel` and the unreachable count (called by :func:`fetch_previews`)."""
        self._stop.clear()
        self._watchdog.reset()
        with self._lock:
            self._connect_failures = 0
            self._unreachable = None

    def cancel(self) -> None:
        """Stop the batch: no new request starts, requests in flight are aborted now."""
        self._stop.set()
        self._watchdog.cancel()

    def _pause(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise FetchCancelled("the batch was stopped")

    # -- plumbing
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = "ctxpaper (research reproduction; https://doi.org/10.5281/zenodo.3648287)"
            s.mount("http://", _DeadlineAdapter())
            s.mount("https://", _DeadlineAdapter())
            self._local.session = s
        return s

    def _drop_session(self) -> None:
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()
            self._local.session = None

    def _connect_failed(self, url: str, exc: BaseException) -> None:
        with self._lock:
            self._connect_failures += 1
            if self._connect_failures >= self.unreachable_after and self._unreachable is None:
                reason = getattr(exc, "args", [""])[0]
                self._unreachable = NetworkUnreachable(url, self._connect_failures,
                                                       f"{type(exc).__name__}: {str(reason)[:200]}")
            if self._unreachable is not None:
                raise self._unreachable

    def _retry(self, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except TransientError as e:
                if attempt == self.max_retries:
                    raise
                if e.retry_after is not None:
                    delay = e.retry_after
                else:
                    with self._lock:
                        jitter = 0.5 + 0.5 * self._rng.random()
                    delay = self.backoff * 2**attempt * jitter
                self._pause(min(self.max_backoff, delay))
        raise AssertionError("unreachable")  # pragma: no cover

    def _overdue(self, url: str) -> TransientError:
        self._drop_session()  # its socket was shut under it
        return TransientError(f"GET {url}: no complete response within the {self.deadline:g} s deadline")

    def _get(self, url: str, on_block: Callable[[bytes], None], max_bytes: int) -> int:
        """One GET within the deadline; the decoded body goes to ``on_block``; returns its size."""
        if self._stop.is_set():
            raise FetchCancelled("the batch was stopped")
        req = self._watchdog.begin(self.deadline)
        _tls.request = req
        try:
            t = max(1e-3, min(self.timeout, req.remaining()))
            with self._session().get(url, timeout=(t, t), stream=True) as r:
                with self._lock:
                    self._connect_failures = 0
                if r.status_code == 429 or r.status_code >= 500:
                    raise TransientError(f"GET {url}: HTTP {r.status_code}",
                                         _retry_after(r.headers.get("Retry-After")))
                if r.status_code != 200:
                    raise DeezerError(None, f"HTTP {r.status_code}", f"GET {url}")
                expected = _content_length(r.headers, url)
                n = 0
                for block in r.iter_content(1 << 16):
                    n += len(block)
                    if n > max_bytes:
                        raise DeezerError(None, "TooLarge", f"GET {url}: body exceeds {max_bytes} bytes")
                    on_block(block)
                if req.expired:  # a shut socket can look like a short but complete response
                    raise self._overdue(url)
                # Content-Length counts the bytes on the wire: compressed when
                # the server used Content-Encoding (gzip), not what we decoded.
                wire = r.raw.tell()
                if expected is not None and wire != expected:
                    raise TransientError(f"GET {url}: truncated body ({wire} of {expected} bytes)")
                return n
        except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                ConnectionError, TimeoutError) as e:
            if self._stop.is_set():
                raise FetchCancelled("the batch was stopped") from e
            if req.expired:
                raise self._overdue(url) from e
            if _is_connect_failure(e):
                self._connect_failed(url, e)
            if isinstance(e, requests.exceptions.ChunkedEncodingError):
                # urllib3 raises this when the connection closes before Content-Length bytes.
                raise TransientError(f"GET {url}: truncated body (connection closed early)") from e
            if isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                              requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader,
                              urllib3.exceptions.InvalidHeader)):
                raise DeezerError(None, "BadResponse", f"GET {url}: {e}") from e
            raise TransientError(f"GET {url}: {type(e).__name__}") from e
        finally:
            _tls.request = None
            self._watchdog.end(req)

    # -- API
    def _track_once(self, track_id: int) -> dict[str, Any]:
        self.limiter.acquire()
        url = f"{self.base_url}/track/{int(track_id)}"
        buf = bytearray()
        self._get(url, buf.extend, MAX_JSON_BYTES)
        try:
            data = json.loads(buf.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise TransientError(f"GET {url}: response is not JSON") from e
        if not isinstance(data, dict):
            raise DeezerError(None, "BadResponse", f"GET {url}: expected a JSON object")
        err = data.get("error")
        if err:
            code = err.get("code") if isinstance(err, dict) else None
            if code == QUOTA_CODE:
                raise TransientError(f"GET {url}: quota exceeded (code 4)")
            if isinstance(err, dict):
                raise DeezerError(code, str(err.get("type", "")), str(err.get("message", "")))
            raise DeezerError(None, "Unknown", str(err))
        return data

    def track(self, track_id: int) -> dict[str, Any]:
        """The ``/track/{id}`` JSON; DeezerError for API errors, TransientError after retries."""
        return self._retry(lambda: self._track_once(track_id))

    def preview_url(self, track_id: int) -> str | None:
        """The preview MP3 URL of a track, or None when the track has none."""
        url = self.track(track_id).get("preview")
        if not url:
            return None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise DeezerError(None, "BadResponse", f"track {track_id}: preview field {url!r} is not an http(s) URL")
        return url

    def _download_once(self, url: str, dest: Path) -> tuple[int, str]:
        h = hashlib.sha256()
        head = bytearray()
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as fh:
                def sink(block: bytes) -> None:
                    if len(head) < 4:
                        head.extend(block[: 4 - len(head)])
                    h.update(block)
                    fh.write(block)

                n = self._get(url, sink, MAX_PREVIEW_BYTES)
                if n == 0:
                    raise TransientError(f"GET {url}: empty body")
                if not _looks_like_mp3(bytes(head)):
                    raise DeezerError(None, "NotMP3", f"GET {url}: body is not an MP3 (starts {bytes(head)!r})")
                fh.flush()
                os.fsync(fh.fileno())
        return n, h.hexdigest()

    def download(self, url: str, dest: str | os.PathLike[str]) -> tuple[int, str]:
        """Download ``url`` to ``dest`` atomically; return (bytes, sha256) of the decoded body."""
        return self._retry(lambda: self._download_once(url, Path(dest)))

    def fetch_one(self, track_id: int, out_dir: str | os.PathLike[str]) -> FetchResult:
        """Track id -> ``out_dir/{id}.mp3``; every outcome is a :class:`FetchResult`.

        Only :class:`FetchCancelled` and :class:`NetworkUnreachable` propagate:
        they stop the batch and say nothing about this id.
        """
        tid = int(track_id)
        try:
            url = self.preview_url(tid)
            if url is None:
                return FetchResult(tid, "no_preview", error="empty preview field")
            n, digest = self.download(url, Path(out_dir) / f"{tid}.mp3")
            return FetchResult(tid, "ok", n, digest)
        except (FetchCancelled, NetworkUnreachable):
            raise
        except DeezerError as e:
            if e.code == NO_DATA_CODE:
                return FetchResult(tid, "no_data", error=str(e))
            return FetchResult(tid, "error", error=str(e))
        except TransientError as e:
            return FetchResult(tid, "error", error=f"gave up after {self.max_retries} retries: {e}")
        except Exception as e:  # noqa: BLE001 -- one id's failure, whatever it is, is that id's record
            return FetchResult(tid, "error", error=f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------------
# Manifest


def _read_records(path: Path) -> tuple[dict[int, dict[str, Any]], list[int], int]:
    """(latest record per id, numbers of unreadable lines, number of lines)."""
    rows: dict[int, dict[str, Any]] = {}
    bad: list[int] = []
    n = 0
    if not path.exists():
        return rows, bad, n
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                bad.append(n)
                continue
            try:
                rec = json.loads(line)
                tid = int(rec["id"])
                if rec["status"] not in STATUSES or not 0 < tid <= MAX_TRACK_ID:
                    raise ValueError(rec["status"])
                rows[tid] = {"id": tid, "status": rec["status"], "bytes": int(rec.get("bytes") or 0),
                             "sha256": str(rec.get("sha256") or ""), "error": str(rec.get("error") or "")}
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                bad.append(n)
    return rows, bad, n


def _warn_unreadable(path: Path, bad: list[int]) -> None:
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        warnings.warn(f"{path}: unreadable manifest line(s) {shown} skipped (torn by an interrupted run?); "
                      "their ids are fetched again", stacklevel=3)


def _frame(rows: Iterable[dict[str, Any]], out_dir: Path) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=MANIFEST_COLUMNS)
    df = df.astype({"id": "int64", "bytes": "int64"})
    df["path"] = [str(out_dir / f"{i}.mp3") if s == "ok" else "" for i, s in zip(df["id"], df["status"])]
    return df.reset_index(drop=True)


def read_manifest(out_dir: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The latest manifest row per id: columns id, status, bytes, sha256, error, path.

    Unreadable lines (a line torn by a kill) are skipped with a warning naming
    their line numbers, also listed in ``.attrs["unreadable_lines"]``; their ids
    count as not fetched.
    """
    out = Path(out_dir) if out_dir is not None else default_previews_dir()
    path = out / MANIFEST
    rows, bad, _ = _read_records(path)
    _warn_unreadable(path, bad)
    df = _frame(rows.values(), out)
    df.attrs["unreadable_lines"] = bad
    return df


class _ManifestWriter:
    """Appends one JSON line per result with a single write on an O_APPEND descriptor.

    A single small write to a regular file is not torn by a signal; a line torn
    by a kill -9 is closed with a newline first so it cannot swallow the next record.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.count = 0

    def write(self, res: FetchResult) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self.fd).st_size
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        os.write(self.fd, b"\n")
        os.write(self.fd, (json.dumps(asdict(res)) + "\n").encode())
        self.count += 1
        if self.count % 100 == 0:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None


def _compact(path: Path, rows: dict[int, dict[str, Any]]) -> None:
    """Rewrite the manifest with one readable line per id (atomically)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for rec in rows.values():
            fh.write(json.dumps(rec) + "\n")


def _file_matches(f: Path, rec: dict[str, Any], verify: bool) -> bool:
    try:
        if f.stat().st_size != rec["bytes"]:
            return False
        if not verify:
            return True
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        return h.hexdigest() == rec["sha256"]
    except OSError:
        return False


class _FolderLock:
    """An exclusive lock on a previews folder, so two fetches never clean up each other's files."""

    def __init__(self, out: Path):
        self.path = out / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> _FolderLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise FolderBusy(f"{self.path.parent}: another fetch is writing into this folder") from None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock
            self.fd = None


def _prepare_out_dir(out: Path) -> bool:
    """Create ``out`` if needed and check it is a writable folder; True if it was created."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: previews folder is not a directory")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"{out}: cannot create the previews folder ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"{out}: previews folder is not writable")
    return created


def _as_track_id(value: Any, where: str) -> int:
    """An id as a positive int64; ``where`` names it in the error."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not a track id")
    number: Any = value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{where}: {value!r} is not an integer track id")
        number = int(value)
    elif isinstance(value, str):
        m = _ID_TEXT.match(value.strip().strip('"').strip())
        if not m:
            raise ValueError(f"{where}: {value!r} is not an integer track id")
        number = int(m.group(1))
    try:
        tid = int(number)  # numpy integers too
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not an integer track id") from None
    if tid != number or not 0 < tid <= MAX_TRACK_ID:
        raise ValueError(f"{where}: {value!r} is not a positive 64-bit track id")
    return tid


def status_counts(manifest: pd.DataFrame) -> dict[str, int]:
    """Rows per status, every status present (``ok``, ``no_data``, ``no_preview``, ``error``)."""
    counts = manifest["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def fetch_previews(ids: Iterable[Any], out_dir: str | os.PathLike[str] | None = None, *,
                   client: DeezerClient | None = None, workers: int = DEFAULT_WORKERS,
                   progress: bool = True, verify: bool = True,
                   on_result: Callable[[FetchResult], None] | None = None) -> pd.DataFrame:
    """Download the previews of ``ids`` into ``out_dir``, resumably.

    Parameters
    ----------
    ids : iterable of int
        Deezer track ids (ints, or integer text such as ``"10"`` / ``"10.0"``;
        duplicates are fetched once).
    out_dir : path-like, optional
        Receives ``{id}.mp3`` files and ``manifest.jsonl``; default
        :func:`default_previews_dir`.
    client : DeezerClient, optional
        Defaults to a client for :func:`default_base_url`.
    workers : int
        Concurrent requests at most.
    progress : bool
        Show a progress bar with an ETA and the counts per status on stderr.
    verify : bool
        Re-hash files recorded as ok before skipping them (else size only).
    on_result : callable, optional
        Called in the calling thread with each :class:`FetchResult` once it is
        in the manifest (an exception raised there stops the batch cleanly).

    Returns
    -------
    pd.DataFrame
        One row per requested id, in order: id, status, bytes, sha256, error,
        path (the MP3 for ``ok``, else ""). ``.attrs["refetched"]`` counts
        ids recorded as ok whose file was missing or differed.

    Raises
    ------
    NetworkUnreachable
        No connection could be made; the records completed before are kept.
    KeyboardInterrupt
        After a clean stop: nothing half-written, the manifest holds the
        completed records, a rerun continues.
    FolderBusy
        Another fetch holds ``out_dir``.
    """
    wanted = list(dict.fromkeys(_as_track_id(v, f"ids[{k}]") for k, v in enumerate(ids)))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    client = client if client is not None else DeezerClient()
    out = Path(out_dir) if out_dir is not None else default_previews_dir()
    created = _prepare_out_dir(out)
    writer = _ManifestWriter(out / MANIFEST)
    try:
        with _FolderLock(out):
            return _fetch_locked(wanted, out, client, workers, progress, verify, on_result, writer)
    except NetworkUnreachable:
        # Nothing was fetched into a folder this call made: leave no trace of it.
        if created and writer.count == 0:
            (out / LOCK_FILE).unlink(missing_ok=True)
            (out / MANIFEST).unlink(missing_ok=True)
            try:
                out.rmdir()
            except OSError:
                pass
        raise


def _fetch_locked(wanted: list[int], out: Path, client: DeezerClient, workers: int, progress: bool,
                  verify: bool, on_result: Callable[[FetchResult], None] | None,
                  writer: _ManifestWriter) -> pd.DataFrame:
    for f in out.iterdir():  # temporary files of a killed run
        if _LEFTOVER.match(f.name):
            f.unlink(missing_ok=True)
    path = out / MANIFEST
    rows, bad, n_lines = _read_records(path)
    _warn_unreadable(path, bad)
    if bad or n_lines > len(rows):
        _compact(path, rows)

    client.begin_batch()
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deezer")
    finished = False
    counts = dict.fromkeys(STATUSES, 0)
    try:
        recorded = {i: rows[i] for i in wanted if i in rows}
        ok_ids = [i for i, r in recorded.items() if r["status"] == "ok"]
        # Hashing releases the GIL: check the files on the worker threads.
        checks = pool.map(lambda i: _file_matches(out / f"{i}.mp3", rows[i], verify), ok_ids)
        matches = dict(zip(ok_ids, tqdm(checks, total=len(ok_ids), desc="Checking previews", unit="file",
                                        file=sys.stderr, **bar_off(progress and verify and bool(ok_ids)),
                                        dynamic_ncols=True)))
        refetched = [i for i, good in matches.items() if not good]
        todo = [i for i in wanted
                if i not in recorded or recorded[i]["status"] not in FINAL_STATUSES or not matches.get(i, True)]
        todo_set = set(todo)
        for i in wanted:
            if i not in todo_set:
                counts[recorded[i]["status"]] += 1
        bar = tqdm(total=len(wanted), initial=len(wanted) - len(todo), desc="Deezer previews", unit="track",
                   file=sys.stderr, dynamic_ncols=True, **bar_off(progress))
        bar.set_postfix(counts, refresh=False)
        pending = {pool.submit(client.fetch_one, tid, out) for tid in todo}
        ready: list[cf.Future[FetchResult]] = []
        try:
            while pending or ready:
                if not ready:
                    done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                    ready = list(done)
                while ready:
                    res = ready[-1].result()  # only FetchCancelled / NetworkUnreachable raise
                    writer.write(res)
                    ready.pop()  # after the write: an interrupt before it leaves the result in `ready`
                    rows[res.id] = asdict(res)
                    counts[res.status] += 1
                    bar.set_postfix(counts, refresh=False)
                    bar.update(1)
                    if on_result is not None:
                        on_result(res)
            finished = True
        except BaseException:
            # Stop taking ids, abort what is in flight, keep what completed.
            client.cancel()
            for f in pending:
                f.cancel()
            done, _ = cf.wait(pending, timeout=min(5.0, client.timeout))
            for f in [*ready, *done]:
                if not f.cancelled() and f.exception() is None:
                    writer.write(f.result())
            raise
        finally:
            bar.close()
    finally:
        writer.close()
        # A worker still inside a TCP connect cannot be woken; do not wait for it.
        pool.shutdown(wait=finished, cancel_futures=True)
    df = _frame((rows[i] for i in wanted), out)
    df.attrs["refetched"] = len(refetched)
    return df


# --------------------------------------------------------------------------
# Command line


def read_ids(path: str | os.PathLike[str]) -> list[int]:
    """Track ids from a file, in file order.

    Accepted: a plain list (one id per line; blank lines and ``#`` comments
    skipped) or a CSV whose header names the id column ``song_id``,
    ``track_id`` or ``id`` -- one column or many, such as the released label
    files. Ids may be spelled ``10`` or ``10.0``; anything else is a
    ValueError naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot read the ids file ({e.strerror})") from None
    lines = text.splitlines()
    first = next((k for k, s in enumerate(lines) if s.strip() and not s.lstrip().startswith("#")), None)
    if first is None:
        raise ValueError(f"{path}: holds no track ids")
    header = next(csv.reader([lines[first]]))
    names = [h.strip().lower() for h in header]
    ids: list[int] = []
    if len(header) > 1 or names[0] in _ID_HEADERS:
        col = next((names.index(h) for h in _ID_HEADERS if h in names), None)
        if col is None:
            raise ValueError(f"{path}, line {first + 1}: CSV header {header!r} has no song_id, track_id "
                             "or id column")
        reader = csv.reader(io.StringIO("\n".join(lines[first + 1:])))
        for k, row in enumerate(reader, first + 2):
            if not row or not any(c.strip() for c in row):
                continue
            if col >= len(row):
                raise ValueError(f"{path}, line {k}: no {header[col]!r} value")
            ids.append(_as_track_id(row[col], f"{path}, line {k}"))
    else:
        for k, line in enumerate(lines[first:], first + 1):
            s = line.strip()
            if s and not s.startswith("#"):
                ids.append(_as_track_id(s, f"{path}, line {k}"))
    if not ids:
        raise ValueError(f"{path}: holds no track ids")
    return ids


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2 (raised to main)
        raise _UsageError(f"{self.prog}: {message} (see --help)")


def _typed(kind: type, test: Callable[[Any], bool], need: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {need}") from None
        if not test(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not {need}")
        return v
    return parse


_POSITIVE_INT = _typed(int, lambda v: v >= 1, "a positive integer")
_NONNEG_INT = _typed(int, lambda v: v >= 0, "a non-negative integer")
_POSITIVE_FLOAT = _typed(float, lambda v: v > 0 and v != float("inf"), "a positive number of seconds")
_NONNEG_FLOAT = _typed(float, lambda v: 0 <= v < float("inf"), "a non-negative number of seconds")


def _parser() -> _Parser:
    p = _Parser(prog="python -m ctxpaper.deezer", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    f = sub.add_parser("fetch", help="download previews for a list of track ids")
    f.add_argument("--ids", required=True,
                   help="plain list (one id per line) or CSV with a song_id, track_id or id column")
    f.add_argument("--out", default=None,
                   help=f"previews folder (default ${PREVIEWS_DIR_ENV}, else <cache>/previews)")
    f.add_argument("--base-url", default=None, help=f"API root (default ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})")
    f.add_argument("--workers", type=_POSITIVE_INT, default=DEFAULT_WORKERS)
    f.add_argument("--rate", type=_POSITIVE_INT, default=45, help="API calls per --period seconds")
    f.add_argument("--period", type=_POSITIVE_FLOAT, default=5.0)
    f.add_argument("--timeout", type=_POSITIVE_FLOAT, default=10.0, help="connect / stall time-out (s)")
    f.add_argument("--deadline", type=_POSITIVE_FLOAT, default=60.0, help="wall-clock limit per request (s)")
    f.add_argument("--retries", type=_NONNEG_INT, default=5)
    f.add_argument("--backoff", type=_NONNEG_FLOAT, default=0.5)
    f.add_argument("--limit", type=_POSITIVE_INT, default=None, help="only the first N distinct ids")
    f.add_argument("--no-verify", action="store_true", help="trust finished files of the right size (skip hashing)")
    f.add_argument("--no-progress", action="store_true")
    # Deferred: the rehearsal server imports this module (its error codes).
    from . import rehearsal

    rehearsal.add_arguments(sub.add_parser(
        "serve", help="run the offline rehearsal server on 127.0.0.1 (ctxpaper.rehearsal)",
        description=rehearsal.__doc__.splitlines()[0]))
    return p


class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum: int, frame: Any) -> None:
    raise _Signalled(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; see the module docstring. Returns the exit status."""
    err = sys.stderr
    try:
        a = _parser().parse_args(argv)
    except _UsageError as e:
        print(e, file=err)
        return EXIT_USAGE
    if a.cmd == "serve":
        from . import rehearsal  # deferred, as in _parser

        try:
            return rehearsal.serve(a)
        except (ValueError, OSError) as e:  # a bad option value, a port in use, an unreadable --prerender
            print(f"python -m ctxpaper.deezer serve: {e}", file=err)
            return EXIT_USAGE
        except KeyboardInterrupt:  # during --prerender (serving itself stops cleanly on Ctrl-C)
            print("python -m ctxpaper.deezer serve: interrupted", file=err)
            return EXIT_INTERRUPTED
    try:
        base = a.base_url if a.base_url is not None else default_base_url()
        what = "--base-url" if a.base_url is not None else BASE_URL_ENV
        client = DeezerClient(_check_base_url(base, what), max_calls=a.rate, period=a.period,
                              timeout=a.timeout, deadline=a.deadline, max_retries=a.retries, backoff=a.backoff)
        ids = list(dict.fromkeys(read_ids(a.ids)))[: a.limit]
        out = Path(a.out) if a.out is not None else default_previews_dir()
    except (ValueError, OSError) as e:
        print(f"python -m ctxpaper.deezer: {e}", file=err)
        return EXIT_USAGE
    old_term = signal.signal(signal.SIGTERM, _raise_signalled) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        m = fetch_previews(ids, out, client=client, workers=a.workers, progress=not a.no_progress,
                           verify=not a.no_verify)
    except (ValueError, OSError, FolderBusy) as e:
        print(f"python -m ctxpaper.deezer: {e}", file=err)
        return EXIT_USAGE
    except NetworkUnreachable as e:
        print(f"python -m ctxpaper.deezer: {e}", file=err)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, _Signalled) else signal.SIGINT
        done = read_manifest(out)
        print(f"python -m ctxpaper.deezer: interrupted; {len(done)} ids recorded in {out / MANIFEST}; "
              "run the same command again to continue", file=err)
        return 128 + int(signum)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    refetched = m.attrs.get("refetched", 0)
    note = f" ({refetched} fetched again: file missing or changed)" if refetched else ""
    print(f"{len(m)} tracks: {_summary(status_counts(m))} -> {out}{note}")
    return EXIT_OK if (m["status"] != "error").all() else EXIT_SOME_ERRORS


def cli() -> None:
    """Console entry point ``ctxpaper-deezer``: exit with :func:`main`'s status."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
