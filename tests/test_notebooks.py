"""Every chapter executes on the smoke profile, and the book builds with -W."""

from __future__ import annotations

import json

import pytest

from ctxpaper import book

CHAPTERS = book.discover_chapters()


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_on_smoke(book_root, chapter):
    runs = book.run("smoke", 0, [chapter.stem], root=book_root, html=False, progress=False)
    assert [r.chapter for r in runs] == [chapter.stem]
    nb = json.loads((book_root / book.EXECUTED_SUBDIR / f"{chapter.stem}.ipynb").read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{chapter.stem}: a cell shows an error"


@pytest.mark.slow
def test_book_builds_without_warnings(built_book):
    for p in CHAPTERS:
        page = built_book / book.EXECUTED_SUBDIR / f"{p.stem}.html"
        assert page.exists(), f"no page for {p.stem}"
        assert "Traceback" not in page.read_text()
    repro = (built_book / "book" / "reproducibility.html").read_text()
    assert "01_released_dataset" in repro and "smoke" in repro  # the build report is included
    refs = (built_book / "book" / "references.html").read_text()
    assert "Audio-based auto-tagging with contextual tags for music" in refs
    # the intro's summary gathers what the chapters recorded, linked to them
    intro = (built_book / "book" / "intro.html").read_text()
    for title, chapter in (("The dataset: the paper", "01_released_dataset"),
                           ("Table 1, macro average", "05_cnn_baseline"),
                           ("Table 2, macro averages per loss", "06_weighted_cross_entropy")):
        assert title in intro and f"_executed/{chapter}.html" in intro
    # maths is typeset by the bundled MathJax, not a CDN
    chapter1 = (built_book / book.EXECUTED_SUBDIR / "01_released_dataset.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in chapter1 and "cdn.jsdelivr" not in chapter1
