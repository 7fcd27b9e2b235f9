"""Every chapter executes on the smoke profile, and the book builds with -W.

The chapters run in a temporary copy of the book sources, so a test run never
touches the book that `make book` built.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ctxpaper import book
from ctxpaper.cache import PROJECT_ROOT

CHAPTERS = book.discover_chapters()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("book")
    shutil.copytree(PROJECT_ROOT / "book", root / "book",
                    ignore=shutil.ignore_patterns("_executed"))
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_smoke(root, chapter):
    runs = book.run("smoke", 0, [chapter.stem], root=root, html=False, progress=False)
    assert [r.chapter for r in runs] == [chapter.stem]
    nb = json.loads((root / book.EXECUTED_SUBDIR / f"{chapter.stem}.ipynb").read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{chapter.stem}: a cell shows an error"


@pytest.mark.slow
def test_book_builds_without_warnings(root):
    missing = [p.stem for p in CHAPTERS if not (root / book.EXECUTED_SUBDIR / f"{p.stem}.ipynb").exists()]
    if missing:
        pytest.fail(f"chapters did not execute: {missing}")
    book.build_html(root)  # -W: any warning fails
    html = root / "_build" / "html"
    for p in CHAPTERS:
        page = html / book.EXECUTED_SUBDIR / f"{p.stem}.html"
        assert page.exists(), f"no page for {p.stem}"
        text = page.read_text()
        assert "Traceback" not in text
    repro = (html / "book" / "reproducibility.html").read_text()
    assert "01_released_dataset" in repro and "smoke" in repro  # the build report is included
    refs = (html / "book" / "references.html").read_text()
    assert "Audio-based auto-tagging with contextual tags for music" in refs
    # maths is typeset by the bundled MathJax, not a CDN
    chapter1 = (html / book.EXECUTED_SUBDIR / "01_released_dataset.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in chapter1 and "cdn.jsdelivr" not in chapter1
