"""An offline Deezer look-alike: the dress rehearsal of the released-data path (paper §3.2, §4.1).

The released dataset holds Deezer track ids; the paper's audio is the 30 s
preview the Deezer API links to (§3.2, §4.1). This module serves, on
127.0.0.1 only, an HTTP API shaped like Deezer's so that the whole
released-data path — fetch, features, training, scoring — can be rehearsed
without the internet:

* ``GET /track/{id}`` answers JSON like Deezer's (``id``, ``title``,
  ``duration``, ``preview``, ``artist``, ``album``), or, with HTTP 200, an
  error object ``{"error": {"type", "message", "code"}}``: code 4 (quota)
  past ``quota`` calls in any sliding window (default 50 per 5 s, Deezer's
  published quota; only answered calls count, so a client that backs off
  recovers after one window), code 800 ("no data") for ids outside the
  released labels and for a ``no_data`` set; ``"preview": ""`` for a
  ``no_preview`` set.
* ``GET /preview/{id}.mp3?hdnea=exp=…~acl=…~hmac=…`` answers a 128 kbit/s
  CBR MP3 at 44.1 kHz stereo, 30 s long (``short`` ids: 12 s), like Deezer's
  previews. The signed URL expires (``url_ttl``); a missing, expired or
  altered signature gets HTTP 403, as Deezer's CDN does.
* ``GET /_rehearsal/stats`` (not part of Deezer's API, not counted as a
  request): what the server has answered so far.

**The previews are synthesised from the released labels** so that a model
can learn them: a track's released contexts are the latent contexts of
:func:`ctxpaper.synth.synthesize` (the simulated world's mapping from
contexts to tempo, energy, brightness, percussiveness, mode and density; a
design choice, see that module), the style vector is a standard-normal draw
per released artist (per track for the 1,347 tracks in no fold), and a small
per-track pan makes the two channels differ while their average is the
synthesised signal. Everything is deterministic per (id, seed); rendered MP3s
are cached in ``cache_dir`` (atomic writes) under a name that hashes every
input of the rendering, so a repeated request costs a file read.

The no-data, no-preview and short ids default to shares of the released ids
drawn from the seed (:func:`special_ids`), so the run layer can count them.

Bounded for tests: ``max_requests`` and ``max_seconds`` stop the server by
itself. Command line (``python -m ctxpaper.deezer serve`` reuses
:func:`add_arguments` and :func:`serve`)::

    python -m ctxpaper.rehearsal --port 8765 [--quota 50/5] [--no-data-share 0.02]
        [--no-preview-share 0.01] [--short-share 0.01] [--seed 0] [--cache DIR]

Notebooks: 04_from_ids_to_spectrograms, 05_baseline_cnn and
06_weighted_losses (``data_source="released"`` in the offline rehearsal).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import json
import math
import re
import secrets
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
from tqdm import tqdm

from . import data, synth
from .cache import cache_root
from .contexts import CONTEXTS
from .deezer import NO_DATA_CODE, QUOTA_CODE
from .fsio import atomic_path, bar_off

#: Bump when what is rendered changes (part of every cached preview's name).
REHEARSAL_VERSION = "1"
PREVIEW_SR = 44100
PREVIEW_SECONDS = 30.0
SHORT_SECONDS = 12.0
#: libsndfile's MP3 "compression level" for 128 kbit/s CBR (320 - 288 * level),
#: the bitrate of Deezer's previews (~0.48 MB per 30 s).
MP3_LEVEL = 0.667
DEFAULT_QUOTA: tuple[int, float] = (50, 5.0)
DEFAULT_SHARES: dict[str, float] = {"no_data": 0.02, "no_preview": 0.01, "short": 0.01}
#: Largest left/right gain offset of the per-track pan.
MAX_PAN = 0.15
LOOPBACK = "127.0.0.1"

_QUOTA_ERROR = {"type": "Exception", "message": "Quota limit exceeded", "code": QUOTA_CODE}
_NO_DATA_ERROR = {"type": "DataException", "message": "no data", "code": NO_DATA_CODE}
_TRACK_PATH = re.compile(r"^/track/([^/]+)/?$")
_PREVIEW_PATH = re.compile(r"^/preview/(\d+)\.mp3$")
_HDNEA = re.compile(r"^exp=(\d+)~acl=([^~]+)~hmac=([0-9a-f]+)$")


# --------------------------------------------------------------------------
# Which ids misbehave


def special_ids(ids: Iterable[int], no_data_share: float = DEFAULT_SHARES["no_data"],
                no_preview_share: float = DEFAULT_SHARES["no_preview"],
                short_share: float = DEFAULT_SHARES["short"], seed: int = 0) -> dict[str, frozenset[int]]:
    """The ids answered "no data", "no preview" or with a short preview, drawn from the seed.

    One permutation of the sorted ids (seeded by ``seed``) is cut into three
    disjoint runs of ``round(share * len(ids))`` ids each, so the same ids and
    shares always give the same sets, whatever the order of ``ids``.

    Parameters
    ----------
    ids : iterable of int
        The catalogue (the released song ids).
    no_data_share, no_preview_share, short_share : float
        Fractions in [0, 1], summing to at most 1.
    seed : int
        Non-negative.

    Returns
    -------
    dict
        ``{"no_data": frozenset, "no_preview": frozenset, "short": frozenset}``.
    """
    shares = {"no_data": no_data_share, "no_preview": no_preview_share, "short": short_share}
    for name, s in shares.items():
        if not (isinstance(s, (int, float)) and 0.0 <= s <= 1.0):
            raise ValueError(f"{name} share must be in [0, 1], got {s!r}")
    if sum(shares.values()) > 1.0 + 1e-12:
        raise ValueError(f"the shares sum to more than 1: {shares}")
    _check_seed(seed)
    pool = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
    order = np.random.default_rng([int(seed), 0x5EED]).permutation(pool)
    out, start = {}, 0
    for name, s in shares.items():
        k = int(round(s * pool.size))
        out[name] = frozenset(order[start:start + k].tolist())
        start += k
    return out


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------
# Rendering


def render_preview(latent: np.ndarray, style: np.ndarray | None, seed: int, pan: float = 0.0,
                   duration: float = PREVIEW_SECONDS) -> np.ndarray:
    """A preview waveform like Deezer's: (samples, 2) float32 at 44.1 kHz.

    :func:`ctxpaper.synth.synthesize` renders at 22,050 Hz; the result is
    resampled (soxr HQ) and panned: left ``(1 + pan)``, right ``(1 - pan)``,
    so the channel average is the synthesised signal.
    """
    if not -1.0 < pan < 1.0:
        raise ValueError(f"pan must be in (-1, 1), got {pan!r}")
    y = synth.synthesize(latent, style, seed, duration=duration)
    y = soxr.resample(y, synth.SR, PREVIEW_SR, quality="HQ").astype(np.float32, copy=False)
    out = np.empty((y.size, 2), np.float32)
    np.multiply(y, np.float32(1.0 + pan), out=out[:, 0])
    np.multiply(y, np.float32(1.0 - pan), out=out[:, 1])
    np.clip(out, -1.0, 1.0, out=out)
    return out


def write_mp3(dest: str | Path, y: np.ndarray, sr: int = PREVIEW_SR) -> None:
    """Encode ``y`` (samples x channels) as a 128 kbit/s CBR MP3 at ``dest``, atomically."""
    with atomic_path(dest) as tmp:
        sf.write(str(tmp), y, sr, format="MP3", bitrate_mode="CONSTANT", compression_level=MP3_LEVEL)


class RehearsalPreviews:
    """The rehearsal's catalogue: released id -> latent contexts, style, pan, cached MP3.

    Parameters
    ----------
    cache_dir : path-like
        Rendered MP3s go to ``cache_dir/previews-v{REHEARSAL_VERSION}/``.
    seed : int
        Same (id, seed), same preview, byte for byte.
    short : iterable of int
        Ids whose preview lasts ``short_seconds`` instead of 30 s.
    short_seconds : float
        In (0, 30].
    labels : pd.DataFrame, optional
        Bool, indexed by song id, with the :data:`~ctxpaper.contexts.CONTEXTS`
        columns; default the released labels (:func:`ctxpaper.data.load_labels`).
    artists : pd.Series, optional
        Artist id per song id; default the released fold file's ``artist_id``.
        Tracks without one get a style of their own.
    """

    def __init__(self, cache_dir: str | Path, seed: int = 0, short: Iterable[int] = (),
                 short_seconds: float = SHORT_SECONDS, labels: pd.DataFrame | None = None,
                 artists: pd.Series | None = None):
        self.seed = _check_seed(seed)
        if not (isinstance(short_seconds, (int, float)) and 0.0 < short_seconds <= PREVIEW_SECONDS):
            raise ValueError(f"short_seconds must be in (0, {PREVIEW_SECONDS:g}], got {short_seconds!r}")
        self.short_seconds = float(short_seconds)
        if labels is None:
            labels = data.load_labels()
        missing = [c for c in CONTEXTS if c not in labels.columns]
        if missing:
            raise ValueError(f"labels are missing context columns {missing}")
        if artists is None:
            artists = data.load_split()["artist_id"]
        self.ids = pd.Index(np.asarray(labels.index, dtype=np.int64))
        if not self.ids.is_unique:
            raise ValueError("labels have duplicated song ids")
        self._latent = labels[list(CONTEXTS)].to_numpy(bool)
        art = pd.Series(artists).reindex(self.ids)
        self._artist = np.where(art.notna(), art.fillna(-1), -1).astype(np.int64)
        self.short = frozenset(int(i) for i in short)
        self.dir = Path(cache_dir) / f"previews-v{REHEARSAL_VERSION}"
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.rendered = 0  # previews rendered by this object (not found in the cache)

    def __contains__(self, track_id: object) -> bool:
        return isinstance(track_id, (int, np.integer)) and int(track_id) in self.ids

    def _row(self, track_id: int) -> int:
        row = int(self.ids.get_indexer([int(track_id)])[0])
        if row < 0:
            raise KeyError(f"song id {track_id} is not in the released labels")
        return row

    def artist_id(self, track_id: int) -> int | None:
        """The released artist id, or None for a track in no fold."""
        a = int(self._artist[self._row(track_id)])
        return None if a < 0 else a

    def style_of(self, track_id: int) -> np.ndarray:
        """Standard-normal style: one draw per artist (per track when the artist is unknown)."""
        a = self.artist_id(track_id)
        key = [self.seed, 1, a] if a is not None else [self.seed, 2, int(track_id)]
        return np.random.default_rng(key).standard_normal(synth.STYLE_DIM)

    def pan_of(self, track_id: int) -> float:
        """The track's pan in [-MAX_PAN, MAX_PAN] (left gain ``1 + pan``, right ``1 - pan``)."""
        return float(np.random.default_rng([self.seed, 3, int(track_id)]).uniform(-MAX_PAN, MAX_PAN))

    def duration_of(self, track_id: int) -> float:
        """Seconds of the track's preview: ``short_seconds`` for a short id, else 30."""
        return self.short_seconds if int(track_id) in self.short else PREVIEW_SECONDS

    def latent_of(self, track_id: int) -> np.ndarray:
        """The (15,) bool released labels the preview is synthesised from."""
        return self._latent[self._row(track_id)].copy()

    def waveform(self, track_id: int) -> np.ndarray:
        """The preview's (samples, 2) float32 waveform at 44.1 kHz, before MP3 encoding."""
        tid = int(track_id)
        return render_preview(self._latent[self._row(tid)], self.style_of(tid),
                              synth.track_seed(self.seed, tid), self.pan_of(tid), self.duration_of(tid))

    def path_of(self, track_id: int) -> Path:
        """Where the track's MP3 is cached: the name hashes every input of the rendering."""
        tid = int(track_id)
        key = json.dumps([REHEARSAL_VERSION, synth.SYNTH_VERSION, self.seed, tid,
                          self._latent[self._row(tid)].astype(int).tolist(),
                          np.round(self.style_of(tid), 12).tolist(), round(self.pan_of(tid), 12),
                          self.duration_of(tid), PREVIEW_SR, MP3_LEVEL])
        return self.dir / f"{tid}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.mp3"

    def mp3(self, track_id: int) -> Path:
        """The cached MP3 of a released track, rendered first when absent."""
        tid = int(track_id)
        path = self.path_of(tid)
        if path.exists():
            return path
        with self._locks_guard:
            lock = self._locks.setdefault(tid, threading.Lock())
        with lock:  # two requests for one id render it once
            if not path.exists():
                write_mp3(path, self.waveform(tid))
                with self._locks_guard:
                    self.rendered += 1
        return path

    def prerender(self, ids: Iterable[int], workers: int = 2, progress: bool = False) -> dict[str, int]:
        """Render (or find cached) the MP3s of ``ids``; ids outside the catalogue are skipped.

        Threads suffice: libsndfile encodes with the GIL released.

        Returns
        -------
        dict
            Counts ``rendered``, ``cached`` and ``skipped``.
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        wanted = list(dict.fromkeys(int(i) for i in ids))
        known = [i for i in wanted if i in self]
        todo = [i for i in known if not self.path_of(i).exists()]
        with cf.ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(todo), desc="rehearsal previews", unit="track", **bar_off(progress)) as bar:
            for f in cf.as_completed([pool.submit(self.mp3, i) for i in todo]):
                f.result()
                bar.update(1)
        return {"rendered": len(todo), "cached": len(known) - len(todo), "skipped": len(wanted) - len(known)}


# --------------------------------------------------------------------------
# The HTTP server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    rehearsal: "RehearsalServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Deezer's servers
    server_version = "ctxpaper-rehearsal/" + REHEARSAL_VERSION
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.rehearsal._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.rehearsal._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.rehearsal.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.rehearsal._handle(self)

    def send_body(self, code: int, body: bytes, ctype: str, close: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj: Any, code: int = 200, close: bool = False) -> None:
        self.send_body(code, json.dumps(obj).encode(), "application/json; charset=utf-8", close)

    def send_file(self, path: Path) -> None:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.connection.sendfile(fh)  # zero-copy: the server is not the fetch's bottleneck


class RehearsalServer:
    """A local Deezer-compatible API and preview CDN (see the module docstring).

    Use as a context manager::

        with RehearsalServer(port=0, cache_dir=tmp, max_seconds=600) as srv:
            fetch_previews(ids, out, DeezerClient(srv.url))

    Parameters
    ----------
    port : int
        TCP port on 127.0.0.1; 0 picks a free one (read :attr:`port` / :attr:`url`).
    quota : (int, float) or None
        At most ``quota[0]`` answered ``/track`` calls in any ``quota[1]``
        seconds; more get the code-4 error. None lifts the quota.
    no_data, no_preview, short : iterable of int, optional
        Ids answered "no data" (code 800), with ``"preview": ""``, or with a
        ``short_seconds`` preview. Each one left out is drawn by
        :func:`special_ids` from the released ids with ``shares`` and ``seed``.
        An id in several sets: no data wins over no preview over short.
    cache_dir : path-like, optional
        Rendered MP3s; default ``{cache root}/rehearsal``.
    seed : int
        Seed of the syntheses and of the default id sets.
    max_requests : int, optional
        Stop by itself after answering this many requests (stats excluded).
    max_seconds : float, optional
        Stop by itself this many seconds after starting.
    short_seconds : float
        Length of the short previews.
    shares : dict, optional
        ``no_data`` / ``no_preview`` / ``short`` shares (default :data:`DEFAULT_SHARES`).
    url_ttl : float
        Seconds a signed preview URL stays valid.
    host : str
        Must be ``"127.0.0.1"`` (or ``"localhost"``): the server never listens elsewhere.
    labels, artists : optional
        Passed to :class:`RehearsalPreviews` (default: the released files).
    verbose : bool
        Log every request to stderr.
    """

    def __init__(self, port: int = 0, quota: tuple[int, float] | None = DEFAULT_QUOTA,
                 no_data: Iterable[int] | None = None, no_preview: Iterable[int] | None = None,
                 short: Iterable[int] | None = None, cache_dir: str | Path | None = None, seed: int = 0,
                 max_requests: int | None = None, max_seconds: float | None = None,
                 short_seconds: float = SHORT_SECONDS, shares: dict[str, float] | None = None,
                 url_ttl: float = 900.0, host: str = LOOPBACK, labels: pd.DataFrame | None = None,
                 artists: pd.Series | None = None, verbose: bool = False):
        if host not in (LOOPBACK, "localhost"):
            raise ValueError(f"the rehearsal server binds {LOOPBACK} only, refusing host={host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        if quota is not None:
            calls, period = quota
            if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1 \
                    or not (isinstance(period, (int, float)) and math.isfinite(period) and period > 0):
                raise ValueError(f"quota must be (calls >= 1, seconds > 0) or None, got {quota!r}")
            quota = (int(calls), float(period))
        if max_requests is not None and (isinstance(max_requests, bool) or not isinstance(max_requests, int)
                                         or max_requests < 1):
            raise ValueError(f"max_requests must be a positive integer or None, got {max_requests!r}")
        if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
            raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
        if not (isinstance(url_ttl, (int, float)) and url_ttl > 0):
            raise ValueError(f"url_ttl must be a positive number of seconds, got {url_ttl!r}")
        unknown = set(shares or {}) - set(DEFAULT_SHARES)
        if unknown:
            raise ValueError(f"unknown shares {sorted(unknown)}; known: {sorted(DEFAULT_SHARES)}")
        seed = _check_seed(seed)
        self.port = port
        self.quota = quota
        self.seed = seed
        self.max_requests = max_requests
        self.max_seconds = None if max_seconds is None else float(max_seconds)
        self.url_ttl = float(url_ttl)
        self.verbose = bool(verbose)
        cache = Path(cache_dir) if cache_dir is not None else cache_root() / "rehearsal"

        catalogue = RehearsalPreviews(cache, seed, (), short_seconds, labels, artists)
        drawn = special_ids(catalogue.ids, seed=seed, **{f"{k}_share": v for k, v in
                                                        {**DEFAULT_SHARES, **(shares or {})}.items()})
        given = {"no_data": no_data, "no_preview": no_preview, "short": short}
        sets = {k: frozenset(int(i) for i in v) if v is not None else drawn[k] for k, v in given.items()}
        self.no_data: frozenset[int] = sets["no_data"]
        self.no_preview: frozenset[int] = sets["no_preview"] - self.no_data
        self.short: frozenset[int] = sets["short"] - self.no_data - self.no_preview
        catalogue.short = self.short
        self.previews = catalogue

        self._secret = secrets.token_hex(16)  # preview URLs of another server instance are refused
        self._lock = threading.Lock()
        self._calls: deque[float] = deque()
        self._counts: Counter[str] = Counter()
        self._busy = 0.0
        self._active = 0
        self._connections: set[socket.socket] = set()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None

    # -- life cycle
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the port is known once started)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None and not self._stopped.is_set()

    def start(self) -> "RehearsalServer":
        """Bind and serve in background threads; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the rehearsal server was already started")
        try:
            httpd = _HTTPServer((LOOPBACK, self.port), _Handler)
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on {LOOPBACK}:{self.port}: {e.strerror}") from None
        httpd.rehearsal = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self.started_at = time.monotonic()
        serve = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"rehearsal-serve-{self.port}", daemon=True)
        watch = threading.Thread(target=self._watchdog, name=f"rehearsal-watchdog-{self.port}", daemon=True)
        self._threads = [serve, watch]
        serve.start()
        watch.start()
        return self

    def _watchdog(self) -> None:
        self._stop.wait(self.max_seconds)
        httpd = self._httpd
        assert httpd is not None
        httpd.shutdown()  # serve_forever returns; no new connection is accepted
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # let answers in flight finish
            with self._lock:
                if self._active == 0:
                    break
            time.sleep(0.01)
        with self._lock:
            conns = list(self._connections)
        for c in conns:  # idle keep-alive connections would otherwise still be served
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        self._stopped.set()

    def stop(self) -> None:
        """Stop serving and wait until the port is closed."""
        self._stop.set()
        self.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (by itself or by :meth:`stop`); True if it has."""
        if self._httpd is None:
            return True
        return self._stopped.wait(timeout)

    def __enter__(self) -> "RehearsalServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def prerender(self, ids: Iterable[int], workers: int = 2, progress: bool = False) -> dict[str, int]:
        """Render the previews of ``ids`` that this server would serve (see :meth:`RehearsalPreviews.prerender`)."""
        servable = [int(i) for i in ids if int(i) not in self.no_data and int(i) not in self.no_preview]
        return self.previews.prerender(servable, workers=workers, progress=progress)

    def stats(self) -> dict[str, Any]:
        """Requests answered so far, by outcome; seconds spent answering them (summed over
        threads) and the CPU time of the whole process (where a fetch's time goes)."""
        with self._lock:
            counts = dict(self._counts)
            busy = self._busy
        return {"requests": counts.pop("requests", 0), **counts, "busy_seconds": round(busy, 6),
                "process_cpu_seconds": round(time.process_time(), 6),
                "rendered": self.previews.rendered, "catalogue": len(self.previews.ids),
                "no_data_ids": len(self.no_data), "no_preview_ids": len(self.no_preview),
                "short_ids": len(self.short), "quota_limit": self.quota, "seed": self.seed}

    # -- bookkeeping used by the handler
    def _connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1

    def _admit(self) -> tuple[bool, bool]:
        """(admitted, last): refuse once stopping; flag the request that reaches max_requests."""
        with self._lock:
            n = self._counts["requests"]
            if self._stop.is_set() or (self.max_requests is not None and n >= self.max_requests):
                return False, False
            self._counts["requests"] = n + 1
            self._active += 1
            return True, self.max_requests is not None and n + 1 >= self.max_requests

    def _within_quota(self) -> bool:
        if self.quota is None:
            return True
        calls, period = self.quota
        now = time.monotonic()
        with self._lock:
            while self._calls and self._calls[0] <= now - period:
                self._calls.popleft()
            if len(self._calls) >= calls:
                return False
            self._calls.append(now)
            return True

    # -- routes
    def _handle(self, h: _Handler) -> None:
        path, _, query = h.path.partition("?")
        if path == "/_rehearsal/stats":
            return h.send_json(self.stats())
        admitted, last = self._admit()
        if not admitted:
            self._count("refused_stopping")
            return h.send_body(503, b"the rehearsal server is stopping\n", "text/plain", close=True)
        t0 = time.perf_counter()
        try:
            if (m := _TRACK_PATH.match(path)) is not None:
                self._track(h, m.group(1))
            elif (m := _PREVIEW_PATH.match(path)) is not None:
                self._preview(h, int(m.group(1)), query)
            else:
                self._count("not_found")
                h.send_json({"error": {"type": "NotFound", "message": f"no route {path}", "code": 404}}, 404)
        except (BrokenPipeError, ConnectionResetError):
            self._count("client_gone")
        except Exception as e:  # e.g. an unwritable cache: say so to the client, keep serving
            self._count("server_error")
            msg = f"{h.path}: {type(e).__name__}: {e}"
            sys.stderr.write(f"rehearsal server error: {msg}\n")
            with contextlib.suppress(OSError):
                h.send_body(500, (msg + "\n").encode(), "text/plain", close=True)
        finally:
            with self._lock:
                self._busy += time.perf_counter() - t0
                self._active -= 1
            if last:
                self._stop.set()

    def _track(self, h: _Handler, raw_id: str) -> None:
        if not self._within_quota():
            self._count("quota")
            return h.send_json({"error": _QUOTA_ERROR})
        tid = int(raw_id) if raw_id.isdigit() else None
        if tid is None or tid not in self.previews or tid in self.no_data:
            self._count("no_data")
            return h.send_json({"error": _NO_DATA_ERROR})
        preview = ""
        if tid in self.no_preview:
            self._count("no_preview")
        else:
            self._count("track")
            exp = int(time.time() + self.url_ttl)
            acl = f"/preview/{tid}.mp3"
            preview = f"{self.url}{acl}?hdnea=exp={exp}~acl={acl}~hmac={self._sign(acl, exp)}"
        h.send_json(self._track_json(tid, preview))

    def _track_json(self, tid: int, preview: str) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, 4, tid])
        artist = self.previews.artist_id(tid)
        name = f"Rehearsal artist {artist}" if artist is not None else "Rehearsal artist (not in a fold)"
        title = f"Rehearsal track {tid}"
        return {
            "id": tid, "readable": True, "title": title, "title_short": title,
            "link": f"https://www.deezer.com/track/{tid}",
            "duration": int(rng.integers(120, 361)),  # the full track's length, as Deezer reports it
            "rank": int(rng.integers(1000, 1_000_000)), "explicit_lyrics": False,
            "preview": preview,
            "artist": {"id": artist if artist is not None else 0, "name": name, "type": "artist"},
            "album": {"id": int(rng.integers(1, 10**9)), "title": f"Rehearsal album of {name}", "type": "album"},
            "type": "track",
        }

    def _sign(self, acl: str, exp: int) -> str:
        return hashlib.sha256(f"{self._secret}~{acl}~{exp}".encode()).hexdigest()[:32]

    def _preview(self, h: _Handler, tid: int, query: str) -> None:
        acl = f"/preview/{tid}.mp3"
        token = (parse_qs(query).get("hdnea") or [""])[0]
        m = _HDNEA.match(token)
        if m is None or m.group(2) != acl or m.group(3) != self._sign(acl, int(m.group(1))):
            self._count("forbidden")
            return h.send_body(403, b"invalid or missing hdnea signature\n", "text/plain")
        if int(m.group(1)) < time.time():
            self._count("expired")
            return h.send_body(403, b"preview URL expired\n", "text/plain")
        if tid not in self.previews or tid in self.no_data or tid in self.no_preview:
            self._count("not_found")
            return h.send_body(404, b"no such preview\n", "text/plain")
        path = self.previews.mp3(tid)
        self._count("preview")
        h.send_file(path)


# --------------------------------------------------------------------------
# Command line


def parse_quota(text: str) -> tuple[int, float] | None:
    """``"50/5"`` -> (50, 5.0); ``"none"`` or ``"off"`` -> None (quota lifted)."""
    if text.strip().lower() in ("none", "off"):
        return None
    calls, sep, period = text.partition("/")
    try:
        q = (int(calls), float(period))
    except ValueError:
        q = None
    if not sep or q is None or q[0] < 1 or not (math.isfinite(q[1]) and q[1] > 0):
        raise argparse.ArgumentTypeError(f"--quota must look like CALLS/SECONDS (e.g. 50/5) or 'none', got {text!r}")
    return q


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"a share must be a number in [0, 1], got {text!r}")
    return v


def read_id_list(path: str | Path) -> list[int]:
    """Song ids from a text file, one per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            if not s.isdigit():
                raise ValueError(f"{path}, line {n}: {s!r} is not a song id")
            out.append(int(s))
    return out


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the server's options to ``p`` (for ``python -m ctxpaper.deezer serve`` too)."""
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free port, printed)")
    p.add_argument("--quota", type=parse_quota, default=DEFAULT_QUOTA,
                   help="API calls per sliding window, CALLS/SECONDS, or 'none' (default 50/5)")
    p.add_argument("--no-data-share", type=_share, default=DEFAULT_SHARES["no_data"],
                   help="share of released ids answered 'no data' (code 800)")
    p.add_argument("--no-preview-share", type=_share, default=DEFAULT_SHARES["no_preview"],
                   help="share of released ids with an empty preview field")
    p.add_argument("--short-share", type=_share, default=DEFAULT_SHARES["short"],
                   help="share of released ids with a short preview")
    p.add_argument("--short-seconds", type=float, default=SHORT_SECONDS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="folder of rendered MP3s (default: {cache root}/rehearsal)")
    p.add_argument("--prerender", default=None, metavar="FILE",
                   help="render the previews of these song ids (one per line) before serving")
    p.add_argument("--workers", type=int, default=2, help="threads rendering with --prerender")
    p.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--url-file", default=None, help="write the server's URL to this file once listening")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def serve(args: argparse.Namespace) -> int:
    """Run the server from parsed :func:`add_arguments` options until it stops or Ctrl-C."""
    srv = RehearsalServer(
        port=args.port, quota=args.quota, cache_dir=args.cache, seed=args.seed,
        max_requests=args.max_requests, max_seconds=args.max_seconds, short_seconds=args.short_seconds,
        shares={"no_data": args.no_data_share, "no_preview": args.no_preview_share, "short": args.short_share},
        verbose=args.verbose)
    if args.prerender:
        done = srv.prerender(read_id_list(args.prerender), workers=args.workers, progress=True)
        print(f"pre-rendered {done['rendered']} previews ({done['cached']} cached, "
              f"{done['skipped']} not served)", flush=True)
    with srv:
        if args.url_file:
            with atomic_path(args.url_file) as tmp:
                tmp.write_text(srv.url + "\n", encoding="utf-8")
        quota = "none" if srv.quota is None else f"{srv.quota[0]} calls / {srv.quota[1]:g} s"
        print(f"Deezer rehearsal server on {srv.url} (quota {quota}; {len(srv.previews.ids)} released ids: "
              f"{len(srv.no_data)} no data, {len(srv.no_preview)} no preview, {len(srv.short)} short; "
              f"seed {srv.seed}). Point the client at it: CTXPAPER_DEEZER_URL={srv.url}", flush=True)
        try:
            srv.wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
    s = srv.stats()
    print(f"served {s['requests']} requests: " + ", ".join(
        f"{k} {s[k]}" for k in ("track", "preview", "quota", "no_data", "no_preview", "forbidden", "expired",
                                "not_found") if s.get(k)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m ctxpaper.rehearsal") -> int:
    """``python -m ctxpaper.rehearsal --port P [--quota 50/5] ...``: serve until stopped."""
    p = add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0]))
    args = p.parse_args(argv)
    try:
        return serve(args)
    except (ValueError, OSError) as e:
        p.exit(2, f"{prog}: error: {e}\n")
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
