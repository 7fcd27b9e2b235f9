"""Deezer client against a local HTTP server on 127.0.0.1 (no test touches the internet)."""

from __future__ import annotations

import email.utils
import fcntl
import gzip
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxpaper import data
from ctxpaper import deezer as D
from ctxpaper.fsio import atomic_path

ROOT = Path(__file__).resolve().parent.parent


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
TRICKLE_BODY = 12  # preview body: one byte every 50 ms (each read well inside the time-out)
TRICKLE_HEAD = 13  # preview status line and headers: one byte every 50 ms
CL_NONNUM = 14    # preview with "Content-Length: abc"
CL_DUP_SAME = 15  # preview with the same Content-Length twice (RFC 9112 allows it)
CL_DUP_DIFF = 16  # preview with two different Content-Length values
GZIP = 17         # preview sent gzip-encoded; Content-Length is the compressed size
RETRY_SECS = 18   # first /track call: 429 with "Retry-After: 1"
RETRY_DATE = 19   # first /track call: 503 with Retry-After an HTTP date 2 s ahead
RETRY_HUGE = 20   # first /track call: 429 with "Retry-After: 3600"
BAD_PREVIEW = 21  # "preview" is a JSON object, not a URL
TRICKLE_STEP = 0.05
TRICKLE_MAX = 400  # bytes at most: every trickle ends by itself within 20 s


class FakeDeezer:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.api_times: list[float] = []
        self.times: defaultdict[str, list[float]] = defaultdict(list)
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

            def _raw(self, head: bytes, body: bytes) -> None:
                # A response written by hand: headers http.server would not produce.
                self.close_connection = True
                try:
                    self.wfile.write(head + b"\r\n" + body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _trickle(self, data: bytes) -> None:
                self.close_connection = True
                try:
                    for k in range(min(len(data), TRICKLE_MAX)):
                        self.wfile.write(data[k:k + 1])
                        time.sleep(TRICKLE_STEP)
                except (BrokenPipeError, ConnectionResetError, OSError):  # the client gave up: good
                    pass

            def do_GET(self):  # noqa: N802
                with fake.lock:
                    fake.hits[self.path] += 1
                    n = fake.hits[self.path]
                    fake.times[self.path].append(time.monotonic())
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
                    if tid == RETRY_SECS and n == 1:
                        return self._raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n", b"")
                    if tid == RETRY_DATE and n == 1:
                        when = email.utils.formatdate(time.time() + 2, usegmt=True).encode()
                        return self._raw(b"HTTP/1.1 503 Busy\r\nRetry-After: " + when + b"\r\nContent-Length: 0\r\n", b"")
                    if tid == RETRY_HUGE and n == 1:
                        return self._raw(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\nContent-Length: 0\r\n", b"")
                    if tid == BAD_PREVIEW:
                        return self._send(200, json.dumps({"id": tid, "preview": {"url": "x"}}).encode())
                    if tid == SLOW and n == 1:
                        time.sleep(1.0)
                    preview = "" if tid == EMPTY else f"{base}/preview/{tid}.mp3"
                    return self._send(200, json.dumps({"id": tid, "title": "t", "preview": preview}).encode())
                if parts[0] == "preview":
                    tid = int(parts[1].split(".")[0])
                    body = body_of(tid)
                    if tid == NOT_MP3:
                        return self._send(200, b"<html>nope</html>", "text/html")
                    if tid == TRICKLE_BODY:
                        self._raw(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: %d\r\n" % len(body), b"")
                        return self._trickle(body)
                    if tid == TRICKLE_HEAD:
                        return self._trickle(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n" + b"X-Pad: a\r\n" * 50)
                    if tid == CL_NONNUM:
                        return self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n", body)
                    if tid == CL_DUP_SAME:
                        return self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body)), body)
                    if tid == CL_DUP_DIFF:
                        return self._raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: 5\r\n" % len(body), body)
                    if tid == GZIP:
                        z = gzip.compress(body)
                        return self._raw(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n" % len(z), z)
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
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
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


EXPECTED = {OK: "ok", UNKNOWN: "no_data", EMPTY: "no_preview", QUOTA: "ok", FLAKY500: "ok", DEAD500: "error",
            SLOW: "ok", TRUNC_ONCE: "ok", TRUNC_ALWAYS: "error", NOT_MP3: "error", FLAKY_DL: "ok",
            CL_NONNUM: "error", CL_DUP_SAME: "ok", CL_DUP_DIFF: "error", GZIP: "ok", BAD_PREVIEW: "error"}
ALL = list(EXPECTED)
LEFTOVER = re.compile(r"^\.\d+\..+\.tmp\.mp3$")


def leftovers(folder: Path) -> list[str]:
    """Temporary previews in ``folder`` (atomic_path names them .{id}.<random>.tmp.mp3)."""
    return sorted(p.name for p in folder.iterdir() if LEFTOVER.match(p.name))


def manifest_lines(folder: Path) -> list[dict]:
    """Every line of the manifest, parsed (fails on a torn or merged line)."""
    return [json.loads(line) for line in (folder / D.MANIFEST).read_text().splitlines()]


def test_every_server_behaviour_gives_its_outcome(server, tmp_path):
    m = D.fetch_previews(ALL, tmp_path, client=client(server.url), workers=4, progress=False)
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
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [D.LOCK_FILE]
    errors = m.set_index("id")["error"]
    assert "800" in errors[UNKNOWN]
    assert "500" in errors[DEAD500]
    assert "truncated" in errors[TRUNC_ALWAYS]
    assert "not an MP3" in errors[NOT_MP3]
    assert "invalid Content-Length header 'abc'" in errors[CL_NONNUM]
    assert "Content-Length" in errors[CL_DUP_DIFF]
    assert "not an http(s) URL" in errors[BAD_PREVIEW]
    # The gzip preview really was compressed on the wire, and is stored decoded.
    assert len(gzip.compress(body_of(GZIP))) < len(body_of(GZIP))
    assert list(m["id"]) == ALL  # one row per requested id, in order
    assert list(m.columns) == D.RESULT_COLUMNS
    assert m.set_index("id").loc[OK, "path"] == str(tmp_path / f"{OK}.mp3")
    assert m.set_index("id").loc[UNKNOWN, "path"] == ""


def test_retries_are_bounded(server, tmp_path):
    D.fetch_previews([DEAD500], tmp_path, client=client(server.url, max_retries=2), workers=1, progress=False)
    assert server.hits[f"/track/{DEAD500}"] == 3  # one attempt + two retries


def test_rerun_skips_finished_and_retries_errors(server, tmp_path):
    c = client(server.url)
    D.fetch_previews(ALL, tmp_path, client=c, workers=3, progress=False)
    before = server.hits.copy()
    m = D.fetch_previews(ALL, tmp_path, client=c, workers=3, progress=False)
    new = server.hits - before
    # Only the ids whose status was "error" are asked again.
    asked = {int(p.split("/")[2].split(".")[0]) for p in new}
    assert asked == {t for t, s in EXPECTED.items() if s == "error"}
    assert dict(zip(m["id"], m["status"])) == EXPECTED


def test_resume_after_damage_redownloads_missing_or_changed(server, tmp_path):
    c = client(server.url)
    D.fetch_previews([OK, FLAKY_DL, QUOTA], tmp_path, client=c, workers=2, progress=False)
    # Damage as a killed run or a careless user leaves it: a deleted file, a
    # truncated file, and a torn last manifest line (no newline).
    (tmp_path / f"{OK}.mp3").unlink()
    with open(tmp_path / f"{QUOTA}.mp3", "r+b") as fh:
        fh.truncate(10)
    with open(tmp_path / D.MANIFEST, "a") as fh:
        fh.write('{"id": 99, "stat')
    n_lines = len((tmp_path / D.MANIFEST).read_text().splitlines())
    with pytest.warns(UserWarning, match=rf"line\(s\) {n_lines} skipped"):
        assert set(D.read_manifest(tmp_path)["id"]) == {OK, FLAKY_DL, QUOTA}
    before = server.hits.copy()
    with pytest.warns(UserWarning, match="torn"):
        m = D.fetch_previews([OK, FLAKY_DL, QUOTA], tmp_path, client=c, workers=2, progress=False)
    asked = {p for p in (server.hits - before) if p.startswith("/track/")}
    assert asked == {f"/track/{OK}", f"/track/{QUOTA}"}
    assert m.attrs["refetched"] == 2
    assert (m["status"] == "ok").all()
    for tid in (OK, FLAKY_DL, QUOTA):
        assert (tmp_path / f"{tid}.mp3").read_bytes() == body_of(tid)
    # Every line readable again: the torn record did not swallow the next one.
    assert {r["id"] for r in manifest_lines(tmp_path)} == {OK, FLAKY_DL, QUOTA}


def test_append_after_a_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / D.MANIFEST
    path.write_text(json.dumps({"id": 5, "status": "no_data", "bytes": 0, "sha256": "", "error": ""})
                    + '\n{"id": 6, "sta')
    w = D._ManifestWriter(path)
    w.write(D.FetchResult(7, "no_preview"))
    w.close()
    with pytest.warns(UserWarning, match=r"line\(s\) 2 skipped"):
        m = D.read_manifest(tmp_path)
    assert dict(zip(m["id"], m["status"])) == {5: "no_data", 7: "no_preview"}
    assert m.attrs["unreadable_lines"] == [2]


def test_files_that_disagree_with_the_manifest_are_fetched_again(server, tmp_path):
    c = client(server.url)
    D.fetch_previews([OK], tmp_path, client=c, workers=1, progress=False)
    f = tmp_path / f"{OK}.mp3"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # same size, other sha256
    f.write_bytes(bytes(data))
    m = D.fetch_previews([OK], tmp_path, client=c, workers=1, progress=False, verify=False)
    assert f.read_bytes() != body_of(OK) and m.attrs["refetched"] == 0  # size check only: trusted
    m = D.fetch_previews([OK], tmp_path, client=c, workers=1, progress=False)  # verify is the default
    assert f.read_bytes() == body_of(OK) and m.attrs["refetched"] == 1


def test_trickling_server_cannot_outlast_the_deadline(server, tmp_path):
    # Each byte arrives well within the 0.5 s read time-out; only a wall-clock deadline stops it.
    c = client(server.url, deadline=1.0, max_retries=0)
    t0 = time.monotonic()
    m = D.fetch_previews([TRICKLE_BODY, TRICKLE_HEAD, OK], tmp_path, client=c, workers=3, progress=False)
    elapsed = time.monotonic() - t0
    got = m.set_index("id")
    assert got.loc[OK, "status"] == "ok"
    for tid in (TRICKLE_BODY, TRICKLE_HEAD):
        assert got.loc[tid, "status"] == "error"
        assert "1 s deadline" in got.loc[tid, "error"]
    assert elapsed < 3.0, elapsed  # without the deadline: TRICKLE_MAX * TRICKLE_STEP = 20 s
    assert leftovers(tmp_path) == []


def test_retry_after_seconds_and_http_date_are_honoured(server, tmp_path):
    c = client(server.url, backoff=0.01, max_backoff=5.0)
    D.fetch_previews([RETRY_SECS, RETRY_DATE], tmp_path, client=c, workers=2, progress=False)
    for tid, least in ((RETRY_SECS, 1.0), (RETRY_DATE, 1.0)):  # the date has whole seconds: 1 to 2 s
        t = server.times[f"/track/{tid}"]
        assert len(t) == 2 and t[1] - t[0] >= least - 0.05, (tid, t)


def test_retry_after_is_capped(server, tmp_path):
    c = client(server.url, backoff=0.01, max_backoff=0.3)
    t0 = time.monotonic()
    m = D.fetch_previews([RETRY_HUGE], tmp_path, client=c, workers=1, progress=False)
    assert m["status"].tolist() == ["ok"] and time.monotonic() - t0 < 2.0


def test_retry_after_parsing():
    assert D._retry_after("7") == 7.0
    later = D._retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert 28 <= later <= 30
    assert D._retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    for bad in (None, "", "soon", "-3", "1.5"):
        assert D._retry_after(bad) is None


def test_interrupt_from_the_result_hook_stops_cleanly_and_resumes(server, tmp_path):
    # One worker is stuck on a trickling preview (deadline 30 s) when the interrupt comes.
    c = client(server.url, deadline=30.0, max_calls=10, period=0.5)
    ids = [TRICKLE_BODY] + [1000 + i for i in range(40)]
    seen = []
    raised_at = []

    def hook(res):
        seen.append(res.id)
        if len(seen) == 3:
            raised_at.append(time.monotonic())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        D.fetch_previews(ids, tmp_path, client=c, workers=2, progress=False, on_result=hook)
    assert time.monotonic() - raised_at[0] < 1.0
    # The stuck download was aborted (its temporary file is gone), not left to run to its deadline.
    assert leftovers(tmp_path) == []
    recs = manifest_lines(tmp_path)  # every line complete
    assert 3 <= len(recs) < len(ids) and {r["id"] for r in recs} >= set(seen)
    for r in recs:
        assert r["status"] == "ok" and (tmp_path / f"{r['id']}.mp3").read_bytes() == body_of(r["id"])
    before = server.hits.copy()
    rest = [i for i in ids if i != TRICKLE_BODY]
    m = D.fetch_previews(rest, tmp_path, client=c, workers=4, progress=False)
    assert (m["status"] == "ok").all()
    asked = {int(p.split("/")[2]) for p in (server.hits - before) if p.startswith("/track/")}
    assert asked == set(rest) - {r["id"] for r in recs}


def test_ctrl_c_signal_stops_a_stalled_fetch_promptly(server, tmp_path):
    main = threading.main_thread().ident
    c = client(server.url, deadline=30.0)

    def interrupt_when_downloading():
        end = time.monotonic() + 10
        while time.monotonic() < end and not (leftovers(tmp_path) and (tmp_path / D.MANIFEST).exists()):
            time.sleep(0.02)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt_when_downloading, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        D.fetch_previews([OK, TRICKLE_BODY], tmp_path, client=c, workers=2, progress=False)
    assert time.monotonic() - t0 < 3.0  # the trickle alone would take 20 s
    assert leftovers(tmp_path) == []
    assert [r["id"] for r in manifest_lines(tmp_path)] == [OK]


def test_killed_run_leftovers_are_removed(server, tmp_path):
    out = tmp_path / "previews"
    code = ("import sys; from ctxpaper import deezer as D; "
            "D.fetch_previews([int(sys.argv[3])], sys.argv[1], workers=1, progress=False, "
            "client=D.DeezerClient(sys.argv[2], deadline=60, timeout=5))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), server.url, str(TRICKLE_BODY)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not (out.exists() and leftovers(out)):
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no cleanup can run
        proc.wait()
    planted = leftovers(out)
    assert len(planted) == 1 and planted[0].startswith(f".{TRICKLE_BODY}.")
    # The name is the one fsio.atomic_path writes for this preview.
    with atomic_path(out / f"{TRICKLE_BODY}.mp3") as tmp:
        assert re.sub(r"\.[^.]+\.tmp", ".X.tmp", tmp.name) == re.sub(r"\.[^.]+\.tmp", ".X.tmp", planted[0])
        tmp.write_bytes(b"ID3")
    (out / "notes.txt").write_text("mine")
    (out / ".hidden.mp3").write_text("mine too")
    D.fetch_previews([OK], out, client=client(server.url), workers=1, progress=False)
    assert leftovers(out) == []
    assert (out / "notes.txt").exists() and (out / ".hidden.mp3").exists()


def test_unreachable_server_fails_fast_with_one_message(tmp_path):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "new"
    t0 = time.monotonic()
    with pytest.raises(D.NetworkUnreachable) as e:
        D.fetch_previews(range(1000, 1200), out, client=client(url, unreachable_after=4), workers=2,
                         progress=False)
    assert time.monotonic() - t0 < 3.0
    assert url in str(e.value) and "ctxpaper.deezer serve --port" in str(e.value)
    assert not out.exists()  # nothing half-written


def test_unreachable_keeps_an_existing_folder_and_its_records(server, tmp_path):
    D.fetch_previews([OK], tmp_path, client=client(server.url), workers=1, progress=False)
    before = (tmp_path / D.MANIFEST).read_bytes()
    server.stop()
    with pytest.raises(D.NetworkUnreachable):
        D.fetch_previews([OK, 1000, 1001, 1002], tmp_path, client=client(server.url, unreachable_after=3),
                         workers=2, progress=False)
    assert (tmp_path / D.MANIFEST).read_bytes() == before
    assert (tmp_path / f"{OK}.mp3").read_bytes() == body_of(OK)


def test_folder_in_use_by_another_fetch_is_refused(server, tmp_path):
    fd = os.open(tmp_path / D.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(D.FolderBusy, match=str(tmp_path)):
            D.fetch_previews([OK], tmp_path, client=client(server.url), progress=False)
    finally:
        os.close(fd)
    assert server.hits == Counter()


def test_bad_api_arguments_are_named():
    with pytest.raises(ValueError, match=r"ids\[1\]: 'abc'"):
        D.fetch_previews([1, "abc"], "/nonexistent", progress=False)
    with pytest.raises(ValueError, match="workers"):
        D.fetch_previews([1], "/nonexistent", workers=0, progress=False)
    with pytest.raises(ValueError, match="base_url 'ftp://x'"):
        D.DeezerClient("ftp://x")


def test_defaults_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(D.BASE_URL_ENV, raising=False)
    monkeypatch.delenv(D.PREVIEWS_DIR_ENV, raising=False)
    monkeypatch.setenv("CTXPAPER_CACHE_DIR", str(tmp_path / "cache"))
    assert D.DeezerClient().base_url == D.DEFAULT_BASE_URL
    assert D.default_previews_dir() == tmp_path / "cache" / "previews"
    monkeypatch.setenv(D.BASE_URL_ENV, "http://127.0.0.1:9/")
    monkeypatch.setenv(D.PREVIEWS_DIR_ENV, str(tmp_path / "p"))
    assert D.DeezerClient().base_url == "http://127.0.0.1:9"
    assert D.default_previews_dir() == tmp_path / "p"


def test_progress_bar_shows_eta_and_counts(server, tmp_path, capsys):
    D.fetch_previews([OK, UNKNOWN, EMPTY], tmp_path, client=client(server.url), workers=1, progress=True)
    err = capsys.readouterr().err
    assert "Deezer previews" in err and "3/3" in err
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", err)  # elapsed<remaining
    assert "ok=1" in err and "no_data=1" in err and "no_preview=1" in err and "error=0" in err


def test_client_rate_limit_is_respected_by_the_server_clock(server, tmp_path):
    # 4 calls per 0.3 s at most, whatever the concurrency.
    c = client(server.url, max_calls=4, period=0.3)
    ids = [1000 + i for i in range(12)]
    D.fetch_previews(ids, tmp_path, client=c, workers=6, progress=False)
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


def test_read_ids_formats(tmp_path):
    cases = {
        "list.txt": "# comment\n3135556\n\n1\n",
        "one_col.csv": "song_id\n3135556\n1\n",
        "track.csv": "track_id\r\n3135556\r\n1\r\n",
        "id.csv": "\ufeffid\n3135556\n1.0\n",  # BOM and a spreadsheet's 1.0
        "labels.csv": "song_id,car,chill\n3135556,1,0\n1,0,1\n",
        "other_first.csv": "label,track_id\nx,3135556\n\"y\",\"1\"\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert D.read_ids(tmp_path / name) == [3135556, 1], name


def test_read_ids_released_label_file():
    path = ROOT / "data" / "context-dataset" / "validation_ground_truth.csv"
    ids = D.read_ids(path)
    assert len(ids) == 3642 and len(set(ids)) == 3642
    assert ids[0] == 52880151


@pytest.mark.parametrize("text, message", [
    ("12\nabc\n", r"line 2: 'abc' is not an integer"),
    ("song_id\n12\n1e7\n", r"line 3: '1e7' is not an integer"),
    ("song_id,x\n12,1\n12.5,1\n", r"line 3: '12.5' is not an integer"),
    ("12\n-5\n", r"line 2: '-5' is not an integer"),
    ("0\n", r"line 1: '0' is not a positive 64-bit"),
    ("9223372036854775808\n", r"line 1: '9223372036854775808' is not a positive 64-bit"),
    ("name,artist\nx,y\n", r"line 1: CSV header .* has no song_id, track_id or id column"),
    ("song_id,car\n5,1\n\n7\n", None),
    ("song_id\n", r"holds no track ids"),
    ("# nothing\n\n", r"holds no track ids"),
])
def test_read_ids_rejects_bad_input(tmp_path, text, message):
    p = tmp_path / "ids.csv"
    p.write_text(text)
    if message is None:
        assert D.read_ids(p) == [5, 7]
        return
    with pytest.raises(ValueError, match=rf"ids.csv.*{message}"):
        D.read_ids(p)


def test_read_ids_rejects_non_utf8(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_bytes(b"12\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"ids.txt: not UTF-8"):
        D.read_ids(p)


@settings(max_examples=40, deadline=None)
@given(ids=st.lists(st.integers(1, D.MAX_TRACK_ID), min_size=1, max_size=20),
       fmt=st.sampled_from(["text", "one_col", "labels", "float"]))
def test_read_ids_round_trip(tmp_path_factory, ids, fmt):
    p = tmp_path_factory.mktemp("ids") / "ids.csv"
    if fmt == "text":
        p.write_text("".join(f"{i}\n" for i in ids))
    elif fmt == "one_col":
        p.write_text("song_id\n" + "".join(f"{i}\n" for i in ids))
    elif fmt == "labels":
        p.write_text("song_id,label\n" + "".join(f'{i},"car\tsad"\n' for i in ids))
    else:
        p.write_text("track_id\n" + "".join(f"{i}.0\n" for i in ids))
    assert D.read_ids(p) == ids


def run_main(argv, capsys):
    rc = D.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args, message", [
    (["--limit", "-1"], r"argument --limit: '-1' is not a positive integer"),
    (["--limit", "0"], r"argument --limit: '0' is not a positive integer"),
    (["--workers", "0"], r"argument --workers: '0' is not a positive integer"),
    (["--timeout", "nan"], r"argument --timeout: 'nan' is not a positive number"),
    (["--base-url", "ftp://example.org"], r"--base-url 'ftp://example.org' is not an http\(s\) URL"),
    (["--bogus"], r"unrecognized arguments: --bogus"),
])
def test_cli_bad_arguments_one_line_exit_2(tmp_path, capsys, args, message):
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n")
    rc, out, err = run_main(["fetch", "--ids", str(ids), "--out", str(tmp_path / "o"), *args], capsys)
    assert rc == D.EXIT_USAGE
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.csv"
    bad.write_text("song_id\n5\nfive\n")
    a_file = tmp_path / "file"
    a_file.write_text("")
    good = tmp_path / "ids.txt"
    good.write_text("5\n")
    for argv, message in [
        ([], r"the following arguments are required: cmd|required"),
        (["fetch", "--ids", str(tmp_path / "missing.txt")], r"missing.txt: cannot read the ids file"),
        (["fetch", "--ids", str(bad)], r"bad.csv, line 3: 'five' is not an integer track id"),
        (["fetch", "--ids", str(good), "--out", str(a_file)], r"file: previews folder is not a directory"),
    ]:
        rc, out, err = run_main(argv, capsys)
        assert rc == D.EXIT_USAGE, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert re.search(message, err), err
    monkeypatch.setenv(D.BASE_URL_ENV, "api.deezer.com")
    rc, out, err = run_main(["fetch", "--ids", str(good), "--out", str(tmp_path / "o")], capsys)
    assert rc == D.EXIT_USAGE and "CTXPAPER_DEEZER_URL 'api.deezer.com' is not an http(s) URL" in err


def test_cli_unreachable_exit_3(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{1000 + i}\n" for i in range(50)))
    rc, out, err = run_main(["fetch", "--ids", str(ids), "--out", str(tmp_path / "o"), "--no-progress",
                             "--base-url", f"http://127.0.0.1:{port}", "--backoff", "0.01"], capsys)
    assert rc == D.EXIT_UNREACHABLE
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"cannot reach http://127.0.0.1:{port}" in err and "CTXPAPER_DEEZER_URL=http://127.0.0.1:P" in err
    assert not (tmp_path / "o").exists()


def test_cli_defaults_from_environment_and_exit_1_on_errors(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(D.BASE_URL_ENV, server.url)
    monkeypatch.setenv(D.PREVIEWS_DIR_ENV, str(tmp_path / "p"))
    ids = tmp_path / "ids.csv"
    ids.write_text(f"song_id\n{OK}\n{NOT_MP3}\n{OK}\n{EMPTY}\n")
    rc, out, err = run_main(["fetch", "--ids", str(ids), "--no-progress", "--backoff", "0.01", "--limit", "2"],
                            capsys)
    assert rc == D.EXIT_SOME_ERRORS
    assert out.strip() == f"2 tracks: ok 1, no_data 0, no_preview 0, error 1 -> {tmp_path / 'p'}"
    assert (tmp_path / "p" / f"{OK}.mp3").read_bytes() == body_of(OK)


def test_cli_fetch(server, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{OK}\n{UNKNOWN}\n{EMPTY}\n")
    out = tmp_path / "previews"
    r = subprocess.run([sys.executable, "-m", "ctxpaper.deezer", "fetch", "--ids", str(ids), "--out", str(out),
                        "--base-url", server.url, "--no-progress", "--backoff", "0.01"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"3 tracks: ok 1, no_data 1, no_preview 1, error 0 -> {out}"
    m = D.read_manifest(out)
    assert dict(zip(m["id"], m["status"])) == {OK: "ok", UNKNOWN: "no_data", EMPTY: "no_preview"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_interrupted_mid_download_exits_128_plus_signal(server, tmp_path, signum):
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{OK}\n{TRICKLE_BODY}\n")
    out = tmp_path / "previews"
    proc = subprocess.Popen([sys.executable, "-m", "ctxpaper.deezer", "fetch", "--ids", str(ids), "--out", str(out),
                             "--base-url", server.url, "--no-progress", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not (out.exists() and leftovers(out) and (out / D.MANIFEST).exists()):
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "Traceback" not in err, err
    assert leftovers(out) == []
    assert [r["id"] for r in manifest_lines(out)] == [OK]


# --------------------------------------------------------------------------
# `python -m ctxpaper.deezer serve` (the offline rehearsal) and the console entry point


def test_serve_subcommand_answers_the_fetch_subcommand(tmp_path, capsys):
    """`deezer serve` on a free port of 127.0.0.1, then `deezer fetch` of one released id against it."""
    tid = int(data.load_labels().index[0])
    url_file = tmp_path / "url"
    rc = []
    argv = ["serve", "--port", "0", "--max-seconds", "60", "--max-requests", "3", "--cache", str(tmp_path / "c"),
            "--no-data-share", "0", "--no-preview-share", "0", "--short-share", "0", "--url-file", str(url_file)]
    t = threading.Thread(target=lambda: rc.append(D.main(argv)), daemon=True)
    t.start()
    end = time.monotonic() + 60
    while not url_file.exists() and t.is_alive() and time.monotonic() < end:
        time.sleep(0.05)
    url = url_file.read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    # Request 1: an id outside the released labels is "no data", as on Deezer.
    r = requests.get(f"{url}/track/1", timeout=10)
    assert r.status_code == 200 and r.json()["error"]["code"] == D.NO_DATA_CODE  # HTTP 200, as Deezer
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{tid}\n")
    out = tmp_path / "previews"
    # Requests 2 and 3: the track's JSON, then its preview; then the server stops by itself.
    fetched = D.main(["fetch", "--ids", str(ids), "--out", str(out), "--base-url", url, "--no-progress"])
    t.join(30)
    assert not t.is_alive() and rc == [0] and fetched == D.EXIT_OK
    m = D.read_manifest(out)
    assert list(m["id"]) == [tid] and list(m["status"]) == ["ok"]
    assert (out / f"{tid}.mp3").stat().st_size > 100_000  # 30 s at 128 kbit/s is about 480 kB
    printed = capsys.readouterr().out
    assert f"CTXPAPER_DEEZER_URL={url}" in printed and "served 3 requests: track 1, preview 1, no_data 1" in printed


def test_serve_bad_option_or_busy_port_is_one_line_exit_2(tmp_path, capsys):
    for argv, message in [(["serve", "--port", "abc"], r"serve: argument --port: invalid int value: 'abc'"),
                          (["serve", "--quota", "fast"], r"--quota must look like CALLS/SECONDS")]:
        rc, out, err = run_main(argv, capsys)
        assert rc == D.EXIT_USAGE and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert re.search(message, err), err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, out, err = run_main(["serve", "--port", str(port), "--max-seconds", "5",
                                 "--cache", str(tmp_path / "c")], capsys)
    assert rc == D.EXIT_USAGE and "Traceback" not in err and "Address already in use" in err, err


def test_console_entry_point_exits_with_mains_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ctxpaper-deezer", "fetch", "--ids", str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit) as e:
        D.cli()
    assert e.value.code == D.EXIT_USAGE
    assert "missing.txt: cannot read the ids file" in capsys.readouterr().err
