"""The built book as a reader meets it, opened in headless Chromium.

The book built on the smoke profile (the session fixture ``built_book``) is
served on 127.0.0.1 and every page of its navigation (``_toc.yml``) is loaded
in Debian's headless Chromium, driven over the DevTools protocol
(``tests/_cdp.py``). For each page: it loads with HTTP 200; every image has
decoded pixels; the offline MathJax has typeset every formula and no raw
``$…$`` / ``\\(…\\)`` is left in the text; citations link to entries of
references.html; every same-site link resolves to an existing file and
anchor; no executed cell shows a traceback; no script raises.

Screenshots of the intro and of the first chapter are written to
``$CTXPAPER_ARTEFACTS`` when set (CI uploads that folder), else to
``_build/screenshots/`` beside the built HTML.

The browser is ``$CTXPAPER_CHROMIUM`` if set, else ``/usr/bin/chromium``
(Debian's ``chromium`` package, installed by CI); without it the tests skip,
saying so.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from _cdp import Browser

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    for cand in (os.environ.get("CTXPAPER_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    pytestmark = [pytestmark, pytest.mark.skip(
        reason="headless Chromium not found (set CTXPAPER_CHROMIUM or `apt-get install chromium`)")]

#: Collected in the page after MathJax has finished and every image settled.
PAGE_PROBE = r"""
(async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }
  await Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  // Text a reader sees as prose: code and typeset maths are not prose.
  const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const prose = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement.closest(skip)) prose.push(n.nodeValue);
  }
  const math = [...document.querySelectorAll('.math')];
  return {
    title: document.title,
    prose: prose.join(' '),
    text: document.body.innerText,
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, width: i.naturalWidth})),
    mathjax_version: mj ? (mj.version || null) : null,
    mathjax_src: [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s)),
    math_count: math.length,
    math_untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    mjx_count: document.querySelectorAll('mjx-container').length,
    mjx_errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent),
    hrefs: [...document.querySelectorAll('a[href]')].map(a => a.href),
    resources: [...document.querySelectorAll('link[href]')].map(l => l.href)
        .concat([...document.querySelectorAll('script[src], img[src]')].map(e => e.src)),
    citations: [...document.querySelectorAll('a[href*="references.html#"]')]
        .map(a => ({href: a.href, text: a.textContent.trim()})),
    error_outputs: [...document.querySelectorAll('.output.traceback, .output.error')]
        .map(e => e.textContent.slice(0, 300)),
    sidebar: [...document.querySelectorAll('.bd-sidebar a.reference.internal, nav.bd-links a')].map(a => a.href),
  };
})()
"""

#: Script errors of the toolchain, not of the book: sphinx-thebe 0.3.1 adds its
#: inline config (``const THEBE_JS_URL = …``) once per ``env-before-read-docs``
#: event, which fires twice in a jupyter-book build, so the second copy throws.
#: Harmless (the first copy defined the constants; thebe is off). Any other
#: script error fails the check.
KNOWN_SCRIPT_ERRORS = (
    re.compile(r"^SyntaxError: Identifier 'THEBE_JS_URL' has already been declared"),
)

#: Formula delimiters that survive only when MathJax did not typeset them.
RAW_MATH = re.compile(
    r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|\\(?:frac|sum|mathbf|mathrm|hat|log|in)\b"
    r"|\$[^$\s](?:[^$\n]*?[^$\s\\])?\$"
)


# ----------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------

def toc_pages(book_root: Path) -> list[str]:
    """Every page of the book's navigation, as paths of HTML files (root first)."""
    toc = yaml.safe_load((book_root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts") or []:
        walk(part.get("chapters"))
    return [f"{Path(f).with_suffix('')}.html" for f in files]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output for failures
        pass


@pytest.fixture(scope="module")
def site(built_book):
    """``(base_url, html_dir)`` of the built book served on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(built_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", Path(built_book)
    server.shutdown()
    server.server_close()
    thread.join()


def artefacts_dir(built_book: Path) -> Path:
    """Where screenshots go: ``$CTXPAPER_ARTEFACTS``, else ``_build/screenshots``."""
    env = os.environ.get("CTXPAPER_ARTEFACTS")
    return Path(env) if env else Path(built_book).parent / "screenshots"


@pytest.fixture(scope="module")
def visits(site):
    """Every navigation page loaded in the browser: ``{page: (load info, probe)}``.

    Also saves the screenshots (intro and first chapter) and returns their paths
    under the key ``"_screenshots"``.
    """
    base, html = site
    pages = toc_pages(html.parents[1])
    out: dict = {}
    shots = {}
    with Browser(CHROMIUM) as browser:
        for i, page in enumerate(pages):
            load = browser.navigate(base + page)
            probe = browser.evaluate(PAGE_PROBE) if load["status"] == 200 else None
            load["exceptions"] = [
                ev["params"]["exceptionDetails"].get("exception", {}).get("description")
                or ev["params"]["exceptionDetails"].get("text")
                for ev in browser.take_events("Runtime.exceptionThrown")
            ]
            out[page] = (load, probe)
            if i in (0, 1) and probe is not None:  # the intro and the first chapter
                name = "intro" if i == 0 else Path(page).stem
                shots[page] = browser.screenshot(artefacts_dir(html) / f"{name}.png")
    out["_screenshots"] = shots
    return out


def _pages(visits):
    return {k: v for k, v in visits.items() if k != "_screenshots"}


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k == "id" or (k == "name" and tag == "a"):
                self.ids.add(v)


@functools.lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    parser = _Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _resolve(url: str, base: str, html: Path) -> tuple[Path, str] | None:
    """``(file, fragment)`` of a same-site URL, or None for another site."""
    if not url.startswith(base):
        return None
    parts = urlsplit(url)
    rel = unquote(parts.path).lstrip("/")
    target = html / rel
    if rel == "" or rel.endswith("/"):
        target = target / "index.html"
    return target, unquote(parts.fragment)


# ----------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------

def test_every_navigation_page_loads(visits, site):
    base, html = site
    pages = _pages(visits)
    # the navigation lists the chapters: the toc was not read wrong
    assert any("_executed" in p for p in pages), f"no chapter page in {sorted(pages)}"
    problems = []
    for page, (load, probe) in pages.items():
        if load["status"] != 200:
            problems.append(f"{page}: HTTP {load['status']} {load['error'] or ''}")
            continue
        bad = [f"{u} → {s}" for u, s in load["responses"] if u.startswith(base) and s >= 400]
        bad += [f"{u} → {why}" for u, why in load["failed"] if u.startswith(base)]
        if bad:
            problems.append(f"{page}: resources failed: {bad}")
        raised = [e for e in load["exceptions"] if not any(k.match(e or "") for k in KNOWN_SCRIPT_ERRORS)]
        if raised:
            problems.append(f"{page}: javascript raised: {raised}")
    # every page of the toc is reachable from the sidebar of the first page
    _, intro = pages[next(iter(pages))]
    sidebar = {_resolve(u, base, html)[0] for u in intro["sidebar"] if u.startswith(base)}
    missing = [p for p in pages if html / p not in sidebar and p != next(iter(pages))]
    if missing:
        problems.append(f"not in the sidebar navigation: {missing}")
    assert not problems, "\n".join(problems)


def test_every_image_has_pixels(visits):
    problems, n = [], 0
    for page, (_, probe) in _pages(visits).items():
        for img in probe["images"] if probe else []:
            n += 1
            if img["width"] <= 0:
                problems.append(f"{page}: image did not load: {img['src']}")
    assert n > 0, "no <img> on any page: the figures are missing altogether"
    assert not problems, "\n".join(problems)


def test_maths_is_typeset_by_the_offline_mathjax(visits, site):
    base, html = site
    problems, with_maths = [], []
    for page, (_, probe) in _pages(visits).items():
        if probe is None:
            continue
        for m in RAW_MATH.finditer(probe["prose"]):
            ctx = _squash(probe["prose"][max(0, m.start() - 40):m.end() + 40])
            problems.append(f"{page}: raw maths left in the text: …{ctx}…")
        if probe["math_count"] == 0:
            continue
        with_maths.append(page)
        if probe["mathjax_version"] is None:
            problems.append(f"{page}: {probe['math_count']} formulas but MathJax did not load "
                            f"(scripts: {probe['mathjax_src']})")
        external = [s for s in probe["mathjax_src"] if not s.startswith(base)]
        if external or not probe["mathjax_src"]:
            problems.append(f"{page}: MathJax not served by the book itself: {probe['mathjax_src']}")
        if probe["math_untypeset"]:
            problems.append(f"{page}: formulas not typeset: {probe['math_untypeset'][:5]}")
        if probe["mjx_errors"]:
            problems.append(f"{page}: MathJax errors: {probe['mjx_errors'][:5]}")
        if probe["mjx_count"] < probe["math_count"]:
            problems.append(f"{page}: {probe['mjx_count']} typeset of {probe['math_count']} formulas")
    # The book states equations (the loss weights, the metrics): a check that
    # found no maths anywhere would prove nothing.
    assert with_maths, "no page has maths: MathJax was not exercised"
    assert not problems, "\n".join(problems)


def test_citations_resolve_to_the_bibliography(visits, site):
    base, html = site
    refs = html / "book" / "references.html"
    assert refs.exists(), "book/references.html was not built"
    problems, n = [], 0
    for page, (_, probe) in _pages(visits).items():
        if probe is None:
            continue
        if "??" in probe["prose"]:
            i = probe["prose"].index("??")
            problems.append(f"{page}: unresolved reference '…{_squash(probe['prose'][max(0, i - 60):i + 60])}…'")
        for cit in probe["citations"]:
            n += 1
            target, frag = _resolve(cit["href"], base, html)
            if target != refs or frag not in _anchors(refs):
                problems.append(f"{page}: citation {cit['text']!r} → {cit['href']} has no entry")
            if not re.search(r"\b(19|20)\d\d[a-z]?\b", cit["text"]):
                problems.append(f"{page}: citation shows {cit['text']!r}, not author and year")
    # the intro cites the paper: no citation at all means the role was not rendered
    assert n > 0, "no citation links on any page"
    entries = len(re.findall(r'class="citation"', refs.read_text(encoding="utf-8")))
    assert entries > 0, "references.html holds no bibliography entries"
    assert not problems, "\n".join(problems)


def test_no_internal_link_is_broken(visits, site):
    base, html = site
    problems, checked = [], 0
    for page, (_, probe) in _pages(visits).items():
        if probe is None:
            continue
        for url in set(probe["hrefs"]) | set(probe["resources"]):
            resolved = _resolve(url, base, html)
            if resolved is None:
                continue
            checked += 1
            target, frag = resolved
            if not target.is_file():
                problems.append(f"{page}: {url} → no file {target.relative_to(html)}")
            elif frag and target.suffix == ".html" and frag not in _anchors(target):
                problems.append(f"{page}: {url} → no anchor #{frag} in {target.relative_to(html)}")
    assert checked > 0
    assert not problems, "\n".join(sorted(set(problems)))


def test_no_executed_cell_shows_a_traceback(visits):
    problems = []
    for page, (_, probe) in _pages(visits).items():
        if probe is None:
            continue
        for out in probe["error_outputs"]:
            problems.append(f"{page}: error output: {out[:200]}")
        if "Traceback (most recent call last)" in probe["text"]:
            i = probe["text"].index("Traceback (most recent call last)")
            problems.append(f"{page}: traceback in the page: {probe['text'][max(0, i - 100):i + 200]}")
    assert not problems, "\n".join(problems)


def test_screenshots_are_kept(visits):
    from PIL import Image

    shots = visits["_screenshots"]
    assert len(shots) == 2, f"expected screenshots of the intro and one chapter, got {shots}"
    for page, path in shots.items():
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width == 1280, (page, img.format, img.size)
            lo_hi = img.convert("L").getextrema()
            # a blank (one-colour) capture means nothing was rendered
            assert lo_hi[1] - lo_hi[0] > 100, f"{path} is blank ({lo_hi})"
