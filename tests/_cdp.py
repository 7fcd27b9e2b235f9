"""A minimal Chrome DevTools Protocol client on the standard library.

Used by ``tests/test_browser.py`` to drive a headless Chromium over the
protocol's websocket. The virtual environment has no websocket client, and
the check needs only a sliver of RFC 6455 (client side, text frames, no
extensions), so it lives here rather than as a new dependency.

Not part of the ``ctxpaper`` package: nothing the book needs to run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

#: Flags that let Chromium run headless as root in a container, with no
#: traffic of its own (updates, sync, field trials) leaving the machine.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--window-size=1280,900",
)


class CDPError(RuntimeError):
    """The browser answered a command with an error, or the connection broke."""


class WebSocket:
    """Client side of RFC 6455: handshake, masked text frames, ping/pong, close."""

    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme != "ws":
            raise ValueError(f"only ws:// URLs are supported, got {url!r}")
        self.sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        # No Origin header: Chromium only checks origins for clients that send one.
        request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CDPError(f"websocket handshake with {url}: connection closed")
            head += chunk
        head, self._buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise CDPError(f"websocket handshake with {url} refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        expected = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise CDPError(f"websocket handshake with {url}: bad Sec-WebSocket-Accept")

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buf)))
            if not chunk:
                raise CDPError("websocket closed by the browser")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])  # FIN + opcode
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])  # client frames are always masked
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode("utf-8"))

    def recv_text(self) -> str:
        """The next complete text message (fragments joined; pings answered)."""
        message = b""
        while True:
            b0, b1 = self._read_exact(2)
            fin, opcode = b0 & 0x80, b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read_exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read_exact(8))
            mask = self._read_exact(4) if b1 & 0x80 else None
            payload = self._read_exact(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:  # pong
                continue
            if opcode == 0x8:
                raise CDPError("websocket closed by the browser")
            message += payload  # text (0x1) or continuation (0x0)
            if fin:
                return message.decode("utf-8")

    def close(self) -> None:
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


class Browser:
    """A headless Chromium process and one page (a flattened CDP session).

    Use as a context manager; the process and its profile folder are removed
    on exit.
    """

    def __init__(self, executable: str, timeout: float = 60.0):
        self.timeout = timeout
        self._tmp = Path(tempfile.mkdtemp(prefix="ctxpaper-chromium-"))
        self.profile = self._tmp / "profile"
        self.log_path = self._tmp / "chromium.log"  # a file, not a pipe nobody drains
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._log,
        )
        self.ws: WebSocket | None = None
        self._next_id = 0
        self.events: deque[dict[str, Any]] = deque()
        try:
            self.ws = WebSocket(self._browser_ws_url(), timeout=timeout)
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send("Target.attachToTarget",
                                     {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime"):
                self.page(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def _browser_ws_url(self) -> str:
        # With --remote-debugging-port=0 Chromium picks a free port and writes
        # "<port>\n<browser ws path>" into DevToolsActivePort once it listens.
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.log_path.read_text(errors="replace")[-2000:]
                raise CDPError(f"chromium exited with {self.proc.returncode} before listening:\n{err}")
            try:
                port, path = port_file.read_text().split()[:2]
                return f"ws://127.0.0.1:{port}{path}"
            except (FileNotFoundError, ValueError):
                time.sleep(0.1)
        raise CDPError(f"chromium did not write {port_file} within {self.timeout:.0f} s")

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are queued."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send_text(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv_text())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def page(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A command to the page's session."""
        return self.send(method, params, session=self.session)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for (and consume) the first queued or arriving event ``method``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for ev in list(self.events):
                if ev["method"] == method:
                    self.events.remove(ev)
                    return ev
            if time.monotonic() > deadline:
                raise CDPError(f"no {method} event within {timeout or self.timeout:.0f} s")
            self.events.append(json.loads(self.ws.recv_text()))

    def navigate(self, url: str) -> dict[str, Any]:
        """Load ``url`` and wait for its load event.

        Returns
        -------
        dict
            ``status``: the main document's HTTP status (None when no response
            arrived); ``error``: the browser's error text or None;
            ``responses``: (url, status) of every response; ``failed``:
            (url, reason) of every request that got no response.
        """
        self.events.clear()
        res = self.page("Page.navigate", {"url": url})
        if res.get("errorText"):
            return {"status": None, "error": res["errorText"], "responses": [], "failed": []}
        self.wait_event("Page.loadEventFired")
        status, responses, urls, failed = None, [], {}, []
        for ev in self.take_events("Network.requestWillBeSent", "Network.responseReceived",
                                   "Network.loadingFailed"):
            p = ev["params"]
            if ev["method"] == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
            elif ev["method"] == "Network.responseReceived":
                responses.append((p["response"]["url"], p["response"]["status"]))
                if p.get("type") == "Document" and p["response"]["url"].split("#")[0] == url.split("#")[0]:
                    status = p["response"]["status"]
            else:
                failed.append((urls.get(p["requestId"], p["requestId"]), p.get("errorText", "")))
        return {"status": status, "error": None, "responses": responses, "failed": failed}

    def take_events(self, *methods: str) -> list[dict[str, Any]]:
        """Remove and return the queued events of the given methods, in arrival order."""
        taken = [ev for ev in self.events if ev["method"] in methods]
        self.events = deque(ev for ev in self.events if ev["method"] not in methods)
        return taken

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited); return its JSON value."""
        res = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                              "awaitPromise": True})
        if "exceptionDetails" in res:
            raise CDPError(f"javascript raised: {res['exceptionDetails'].get('exception', res['exceptionDetails'])}")
        return res["result"].get("value")

    def screenshot(self, dest: Path, width: int = 1280, max_height: int = 5000) -> Path:
        """Save a PNG of the page (full length, cut at ``max_height`` CSS pixels)."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        height = max(600, min(height, max_height))
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        try:
            data = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        finally:
            self.page("Emulation.clearDeviceMetricsOverride")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(base64.b64decode(data))
        tmp.replace(dest)
        return dest

    def close(self) -> None:
        """Ask the browser to quit (kill it after 10 s) and remove its profile."""
        if self.ws is not None:
            try:
                self.send("Browser.close")
            except (CDPError, OSError):
                pass
            self.ws.close()
            self.ws = None
        elif self.proc.poll() is None:
            self.proc.terminate()  # never connected: nothing else would stop it
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
