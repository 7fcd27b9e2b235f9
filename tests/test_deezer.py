"""Deezer client against a local HTTP server on 127.0.0.1 (no test touches the internet)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxpaper import deezer as D


def body_of(tid: int) -> bytes:
    """A distinct MP3-looking body per id (ID3 header + id-seeded bytes)."""
    return b"ID3\x04\x00" + hashlib.sha256(str(tid).encode()).digest() * (50 + tid)


# Behaviour of the fake API, per track id:
OK = 1            # preview present
UNKNOWN = 2       # {"error": {"code": 800}}
EMPTY = 3         # "preview": ""
QUOTA = 4         # quota error on the first two calls, then ok
FLAKY500 = 5      # HTTP 500 twice on /track, then ok
DEAD500 = 6       # always HTTP 500
SLOW = 7          # first /track call slower than the client's time-out
TRUNC_ONCE = 8    # preview body truncated on the first download
TRUNC_ALWAYS = 9  # preview body always truncated
NOT_MP3 = 10      # preview is an HTML page
FLAKY_DL = 11     # preview download answers 503 once


class FakeDeezer:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.api_times: list[float] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json", length: int | None = None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

            def do_GET(self):  # noqa: N802
                with fake.lock:
                    fake.hits[self.path] += 1
                    n = fake.hits[self.path]
                    if self.path.startswith("/track/"):
                        fake.api_times.append(time.monotonic())
                parts = self.path.strip("/").split("/")
                if parts[0] == "track":
                    tid = int(parts[1])
                    base = f"http://127.0.0.1:{fake.port}"
                    if tid == UNKNOWN:
                        return self._send(200, json.dumps({"error": {"type": "DataException", "message": "no data", "code": 800}}).encode())
                    if tid == QUOTA and n <= 2:
                        return self._send(200, json.dumps({"error": {"type": "Exception", "message": "Quota limit exceeded", "code": 4}}).encode())
                    if (tid == FLAKY500 and n <= 2) or tid == DEAD500:
                        return self._send(500, b"oops", "text/plain")
                    if tid == SLOW and n == 1:
                        time.sleep(1.0)
                    preview = "" if tid == EMPTY else f"{base}/preview/{tid}.mp3"
                    return self._send(200, json.dumps({"id": tid, "title": "t", "preview": preview}).encode())
                if parts[0] == "preview":
                    tid = int(parts[1].split(".")[0])
                    body = body_of(tid)
                    if tid == NOT_MP3:
                        return self._send(200, b"<html>nope</html>", "text/html")
                    if tid == FLAKY_DL and n == 1:
                        return self._send(503, b"busy", "text/plain")
                    if (tid == TRUNC_ONCE and n == 1) or tid == TRUNC_ALWAYS:
                        # Promise the full length, send half, close the connection.
                        self.close_connection = True
                        return self._send(200, body[: len(body) // 2], "audio/mpeg", length=len(body))
                    return self._send(200, body, "audio/mpeg")
                self._send(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def server():
    s = FakeDeezer()
    yield s
    s.stop()


def client(url: str, **kw) -> D.DeezerClient:
    opts = dict(max_calls=1000, period=1.0, timeout=0.5, max_retries=3, backoff=0.01, max_backoff=0.05)
    opts.update(kw)
    return D.DeezerClient(url, **opts)


ALL = [OK, UNKNOWN, EMPTY, QUOTA, FLAKY500, DEAD500, SLOW, TRUNC_ONCE, TRUNC_ALWAYS, NOT_MP3, FLAKY_DL]
EXPECTED = {OK: "ok", UNKNOWN: "no_data", EMPTY: "no_preview", QUOTA: "ok", FLAKY500: "ok", DEAD500: "error",
            SLOW: "ok", TRUNC_ONCE: "ok", TRUNC_ALWAYS: "error", NOT_MP3: "error", FLAKY_DL: "ok"}


def test_every_server_behaviour_gives_its_outcome(server, tmp_path):
    m = D.fetch_previews(ALL, tmp_path, client(server.url), workers=4, progress=False)
    got = dict(zip(m["id"], m["status"]))
    assert got == EXPECTED
    for tid, status in EXPECTED.items():
        f = tmp_path / f"{tid}.mp3"
        if status == "ok":
            data = f.read_bytes()
            assert data == body_of(tid)  # complete, never the truncated half
            row = m.set_index("id").loc[tid]
            assert row["bytes"] == len(data)
            assert row["sha256"] == hashlib.sha256(data).hexdigest()
        else:
            assert not f.exists()
    # No temporary files left behind by failed or retried downloads.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    errors = m.set_index("id")["error"]
    assert "800" in errors[UNKNOWN]
    assert "500" in errors[DEAD500]
    assert "truncated" in errors[TRUNC_ALWAYS]
    assert "not an MP3" in errors[NOT_MP3]


def test_retries_are_bounded(server, tmp_path):
    D.fetch_previews([DEAD500], tmp_path, client(server.url, max_retries=2), workers=1, progress=False)
    assert server.hits[f"/track/{DEAD500}"] == 3  # one attempt + two retries


def test_rerun_skips_finished_and_retries_errors(server, tmp_path):
    c = client(server.url)
    D.fetch_previews(ALL, tmp_path, c, workers=3, progress=False)
    before = server.hits.copy()
    m = D.fetch_previews(ALL, tmp_path, c, workers=3, progress=False)
    new = server.hits - before
    # Only the ids whose status was "error" are asked again.
    asked = {int(p.split("/")[2].split(".")[0]) for p in new}
    assert asked == {t for t, s in EXPECTED.items() if s == "error"}
    assert dict(zip(m["id"], m["status"])) == EXPECTED


def test_resume_after_kill_redownloads_missing_or_damaged(server, tmp_path):
    c = client(server.url)
    D.fetch_previews([OK, FLAKY_DL, QUOTA], tmp_path, c, workers=2, progress=False)
    # Simulate damage from a killed run: a deleted file, a truncated file, a stray
    # temporary file and a torn last manifest line.
    (tmp_path / f"{OK}.mp3").unlink()
    with open(tmp_path / f"{QUOTA}.mp3", "r+b") as fh:
        fh.truncate(10)
    (tmp_path / f".{FLAKY_DL}.mp3.abc123.tmp").write_bytes(b"half")
    with open(tmp_path / D.MANIFEST, "a") as fh:
        fh.write('{"id": 99, "stat')
    before = server.hits.copy()
    m = D.fetch_previews([OK, FLAKY_DL, QUOTA], tmp_path, c, workers=2, progress=False)
    asked = {p for p in (server.hits - before) if p.startswith("/track/")}
    assert asked == {f"/track/{OK}", f"/track/{QUOTA}"}
    assert (m["status"] == "ok").all()
    for tid in (OK, FLAKY_DL, QUOTA):
        assert (tmp_path / f"{tid}.mp3").read_bytes() == body_of(tid)
    assert not list(tmp_path.glob(".*.tmp"))


def test_verify_catches_same_size_corruption(server, tmp_path):
    c = client(server.url)
    D.fetch_previews([OK], tmp_path, c, workers=1, progress=False)
    f = tmp_path / f"{OK}.mp3"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    D.fetch_previews([OK], tmp_path, c, workers=1, progress=False)  # size check only: skipped
    assert f.read_bytes() != body_of(OK)
    D.fetch_previews([OK], tmp_path, c, workers=1, progress=False, verify=True)
    assert f.read_bytes() == body_of(OK)


def test_client_rate_limit_is_respected_by_the_server_clock(server, tmp_path):
    # 4 calls per 0.3 s at most, whatever the concurrency.
    c = client(server.url, max_calls=4, period=0.3)
    ids = [1000 + i for i in range(12)]
    D.fetch_previews(ids, tmp_path, c, workers=6, progress=False)
    t = sorted(server.api_times)
    assert len(t) == 12
    # Any 5 consecutive calls span at least one period (minus scheduling slack
    # between the client's clock reading and the server receiving the request).
    assert min(t[i + 4] - t[i] for i in range(len(t) - 4)) >= 0.3 - 0.05


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, dt: float) -> None:
        self.now += dt


@settings(max_examples=50, deadline=None)
@given(max_calls=st.integers(1, 6), period=st.floats(0.1, 3.0),
       gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40))
def test_rate_limiter_never_exceeds_window(max_calls, period, gaps):
    clk = FakeClock()
    lim = D.RateLimiter(max_calls, period, clock=clk, sleep=clk.sleep)
    granted = []
    for g in gaps:
        clk.now += g
        granted.append(lim.acquire())
    # Brute force: every half-open window [t, t + period) holds at most max_calls grants.
    for t0 in granted:
        assert sum(t0 <= t < t0 + period for t in granted) <= max_calls
    assert granted == sorted(granted)


def test_rate_limiter_rejects_bad_parameters():
    with pytest.raises(ValueError, match="max_calls"):
        D.RateLimiter(0, 1.0)


def test_read_ids_text_and_csv(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_text("# comment\n3135556\n\n1\n")
    assert D.read_ids(p) == [3135556, 1]
    bad = tmp_path / "bad.txt"
    bad.write_text("12\nabc\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: 'abc'"):
        D.read_ids(bad)
    csv = tmp_path / "labels.csv"
    csv.write_text("song_id,car,chill\n5,1,0\n7,0,1\n")
    assert D.read_ids(csv) == [5, 7]


def test_cli_fetch(server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{OK}\n{UNKNOWN}\n{EMPTY}\n")
    out = tmp_path / "previews"
    r = subprocess.run([sys.executable, "-m", "ctxpaper.deezer", "fetch", "--ids", str(ids), "--out", str(out),
                        "--base-url", server.url, "--no-progress", "--backoff", "0.01"],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert r.returncode == 0, r.stderr
    assert "3 tracks" in r.stdout
    m = D.read_manifest(out)
    assert dict(zip(m["id"], m["status"])) == {OK: "ok", UNKNOWN: "no_data", EMPTY: "no_preview"}
