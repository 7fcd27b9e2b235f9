"""Deezer preview client: from the released track ids to 30 s MP3s (paper §3.2, §4.1).

The released dataset holds Deezer track ids only; "the audio content for each
track is available as a 30 seconds snippet through the Deezer API using the
track ID" (§3.2). ``GET {base}/track/{id}`` returns JSON whose ``preview``
field is the MP3's URL, or an error object such as
``{"error": {"type": "DataException", "message": "no data", "code": 800}}``;
code 4 means the quota (about 50 requests per 5 s) is exceeded.

:func:`fetch_previews` downloads many previews with

* bounded concurrency (a thread pool) and a client-side sliding-window rate
  limit on API calls (default 45 per 5 s, under the quota);
* retries with exponential backoff and jitter on quota errors, HTTP 429/5xx,
  time-outs, dropped connections and truncated bodies;
* atomic writes (temporary file + rename: a preview on disk is complete);
* an append-only manifest ``manifest.jsonl`` (id, status, bytes, sha256,
  error): an interrupted run resumes, a re-run skips what is done. Statuses
  ``ok``, ``no_data`` (unknown id) and ``no_preview`` (empty preview field)
  are final; ``error`` is retried by the next run.

Command line: ``python -m ctxpaper.deezer fetch --ids FILE --out DIR``.

Notebook: 04_from_ids_to_spectrograms (``data_source="deezer"``).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import glob
import hashlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from .fsio import atomic_path

DEFAULT_BASE_URL = "https://api.deezer.com"
QUOTA_CODE = 4
NO_DATA_CODE = 800
FINAL_STATUSES = frozenset({"ok", "no_data", "no_preview"})
MANIFEST = "manifest.jsonl"
MANIFEST_COLUMNS = ["id", "status", "bytes", "sha256", "error"]


class DeezerError(Exception):
    """An error object returned by the API (``{"error": {...}}``)."""

    def __init__(self, code: int | None, type_: str, message: str):
        super().__init__(f"Deezer API error {code} ({type_}): {message}")
        self.code = code
        self.type = type_
        self.message = message


class TransientError(Exception):
    """A failure worth retrying: quota, 5xx, time-out, dropped or truncated response."""


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


def _looks_like_mp3(head: bytes) -> bool:
    # An ID3v2 tag, or an MPEG audio frame sync (11 set bits).
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)


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

    Parameters
    ----------
    base_url : str
        API root (tests point it at a local server).
    max_calls, period : int, float
        Client-side rate limit on API calls.
    timeout : float
        Seconds for connect and for each read.
    max_retries : int
        Retries of a transient failure (so up to ``max_retries + 1`` attempts).
    backoff, max_backoff : float
        Retry ``k`` waits ``min(max_backoff, backoff * 2**k)`` seconds times a
        jitter in [0.5, 1).
    seed : int
        Seed of the jitter.
    """

    def __init__(self, base_url: str = DEFAULT_BASE_URL, max_calls: int = 45, period: float = 5.0,
                 timeout: float = 10.0, max_retries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0, seed: int = 0):
        self.base_url = base_url.rstrip("/")
        self.limiter = RateLimiter(max_calls, period)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._local = threading.local()

    # -- plumbing
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = "ctxpaper (research reproduction; https://doi.org/10.5281/zenodo.3648287)"
            self._local.session = s
        return s

    def _retry(self, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except TransientError:
                if attempt == self.max_retries:
                    raise
                with self._rng_lock:
                    jitter = 0.5 + 0.5 * self._rng.random()
                time.sleep(min(self.max_backoff, self.backoff * 2**attempt) * jitter)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- API
    def _track_once(self, track_id: int) -> dict[str, Any]:
        self.limiter.acquire()
        url = f"{self.base_url}/track/{int(track_id)}"
        try:
            r = self._session().get(url, timeout=self.timeout)
        except (requests.Timeout, requests.ConnectionError) as e:
            raise TransientError(f"GET {url}: {type(e).__name__}") from e
        if r.status_code == 429 or r.status_code >= 500:
            raise TransientError(f"GET {url}: HTTP {r.status_code}")
        if r.status_code != 200:
            raise DeezerError(None, f"HTTP {r.status_code}", f"GET {url}")
        try:
            data = r.json()
        except ValueError as e:
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
        return url or None

    def _download_once(self, url: str, dest: Path) -> tuple[int, str]:
        try:
            with self._session().get(url, timeout=self.timeout, stream=True) as r:
                if r.status_code == 429 or r.status_code >= 500:
                    raise TransientError(f"GET {url}: HTTP {r.status_code}")
                if r.status_code != 200:
                    raise DeezerError(None, f"HTTP {r.status_code}", f"GET {url}")
                expected = r.headers.get("Content-Length")
                h = hashlib.sha256()
                n = 0
                head = b""
                with atomic_path(dest) as tmp:
                    with open(tmp, "wb") as fh:
                        for block in r.iter_content(1 << 16):
                            if len(head) < 4:
                                head += block[:4]
                            h.update(block)
                            fh.write(block)
                            n += len(block)
                        if expected is not None and int(expected) != n:
                            raise TransientError(f"GET {url}: truncated body ({n} of {expected} bytes)")
                        if n == 0:
                            raise TransientError(f"GET {url}: empty body")
                        if not _looks_like_mp3(head):
                            raise DeezerError(None, "NotMP3", f"GET {url}: body is not an MP3 (starts {head[:4]!r})")
                        fh.flush()
                        os.fsync(fh.fileno())
        except requests.exceptions.ChunkedEncodingError as e:
            # urllib3 raises this when the connection closes before Content-Length bytes.
            raise TransientError(f"GET {url}: truncated body (connection closed early)") from e
        except (requests.Timeout, requests.ConnectionError) as e:
            raise TransientError(f"GET {url}: {type(e).__name__}") from e
        return n, h.hexdigest()

    def download(self, url: str, dest: str | os.PathLike[str]) -> tuple[int, str]:
        """Download ``url`` to ``dest`` atomically; return (bytes, sha256)."""
        return self._retry(lambda: self._download_once(url, Path(dest)))

    def fetch_one(self, track_id: int, out_dir: str | os.PathLike[str]) -> FetchResult:
        """Track id -> ``out_dir/{id}.mp3``; every outcome is a :class:`FetchResult`."""
        tid = int(track_id)
        try:
            url = self.preview_url(tid)
            if url is None:
                return FetchResult(tid, "no_preview", error="empty preview field")
            n, digest = self.download(url, Path(out_dir) / f"{tid}.mp3")
            return FetchResult(tid, "ok", n, digest)
        except DeezerError as e:
            if e.code == NO_DATA_CODE:
                return FetchResult(tid, "no_data", error=str(e))
            return FetchResult(tid, "error", error=str(e))
        except TransientError as e:
            return FetchResult(tid, "error", error=f"gave up after {self.max_retries} retries: {e}")
        except (requests.RequestException, OSError) as e:
            return FetchResult(tid, "error", error=f"{type(e).__name__}: {e}")


# --------------------------------------------------------------------------
# Manifest


def read_manifest(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The latest manifest row per id (columns id, status, bytes, sha256, error).

    A torn last line (the run was killed while writing it) is ignored: that id
    is simply fetched again.
    """
    path = Path(out_dir) / MANIFEST
    rows: dict[int, dict[str, Any]] = {}
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    rows[int(rec["id"])] = {k: rec.get(k) for k in MANIFEST_COLUMNS}
                except (ValueError, KeyError, TypeError):
                    continue
    df = pd.DataFrame(list(rows.values()), columns=MANIFEST_COLUMNS)
    return df.astype({"id": "int64", "bytes": "int64"}).reset_index(drop=True)


def _is_done(row: pd.Series, out_dir: Path, verify: bool) -> bool:
    if row["status"] not in FINAL_STATUSES:
        return False
    if row["status"] != "ok":
        return True
    f = out_dir / f"{int(row['id'])}.mp3"
    if not f.exists() or f.stat().st_size != int(row["bytes"]):
        return False
    if verify:
        h = hashlib.sha256(f.read_bytes()).hexdigest()
        return h == row["sha256"]
    return True


def fetch_previews(ids: Iterable[int], out_dir: str | os.PathLike[str], client: DeezerClient | None = None,
                   workers: int = 4, progress: bool = True, verify: bool = False) -> pd.DataFrame:
    """Download the previews of ``ids`` into ``out_dir``, resumably.

    Parameters
    ----------
    ids : iterable of int
        Deezer track ids (duplicates are fetched once).
    out_dir : path-like
        Receives ``{id}.mp3`` files and ``manifest.jsonl``.
    client : DeezerClient, optional
        Defaults to a client for the public API.
    workers : int
        Concurrent requests at most.
    progress : bool
        Show a tqdm progress bar.
    verify : bool
        Re-hash files recorded as ok before skipping them (default: size check).

    Returns
    -------
    pd.DataFrame
        The manifest restricted to ``ids`` (latest row per id).
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    client = client or DeezerClient()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(str(out / ".*.mp3.*.tmp")):  # left by a killed run
        os.unlink(stale)
    wanted = list(dict.fromkeys(int(i) for i in ids))
    manifest = read_manifest(out).set_index("id", drop=False)
    done = {int(i) for i, row in manifest.iterrows() if _is_done(row, out, verify)}
    todo = [i for i in wanted if i not in done]
    bar = tqdm(total=len(wanted), initial=len(wanted) - len(todo), desc="Deezer previews",
               unit="track", disable=not progress)
    with open(out / MANIFEST, "a", encoding="utf-8") as log, \
            cf.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(client.fetch_one, tid, out) for tid in todo]
        try:
            for k, f in enumerate(cf.as_completed(futures), 1):
                res = f.result()
                log.write(json.dumps(asdict(res)) + "\n")
                log.flush()
                if k % 100 == 0:
                    os.fsync(log.fileno())
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            log.flush()
            os.fsync(log.fileno())
            bar.close()
    final = read_manifest(out)
    return final[final["id"].isin(wanted)].reset_index(drop=True)


# --------------------------------------------------------------------------
# Command line


def read_ids(path: str | os.PathLike[str]) -> list[int]:
    """Track ids from a text file (one per line) or a CSV with a ``song_id``/``id`` column."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and "," in lines[0]:
        df = pd.read_csv(path)
        col = next((c for c in ("song_id", "id", "track_id") if c in df.columns), df.columns[0])
        try:
            return [int(v) for v in df[col]]
        except (TypeError, ValueError):
            raise ValueError(f"{path}: column {col!r} holds non-integer track ids") from None
    out = []
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            out.append(int(s))
        except ValueError:
            raise ValueError(f"{path}, line {n}: {s!r} is not an integer track id") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctxpaper.deezer fetch --ids FILE --out DIR``."""
    p = argparse.ArgumentParser(prog="python -m ctxpaper.deezer", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download previews for a list of track ids")
    f.add_argument("--ids", required=True, help="text file (one id per line) or CSV with a song_id column")
    f.add_argument("--out", required=True, help="output directory (previews + manifest.jsonl)")
    f.add_argument("--base-url", default=DEFAULT_BASE_URL)
    f.add_argument("--workers", type=int, default=4)
    f.add_argument("--rate", type=int, default=45, help="API calls per --period seconds")
    f.add_argument("--period", type=float, default=5.0)
    f.add_argument("--timeout", type=float, default=10.0)
    f.add_argument("--retries", type=int, default=5)
    f.add_argument("--backoff", type=float, default=0.5)
    f.add_argument("--limit", type=int, default=None, help="only the first N ids")
    f.add_argument("--verify", action="store_true", help="re-hash finished files before skipping them")
    f.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    ids = read_ids(a.ids)[: a.limit]
    client = DeezerClient(a.base_url, max_calls=a.rate, period=a.period, timeout=a.timeout,
                          max_retries=a.retries, backoff=a.backoff)
    m = fetch_previews(ids, a.out, client, workers=a.workers, progress=not a.no_progress, verify=a.verify)
    counts = m["status"].value_counts().to_dict()
    print(f"{len(m)} tracks: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f" -> {a.out}")
    return 0 if (m["status"] != "error").all() else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
