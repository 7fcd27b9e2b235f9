"""Shared fixtures: a temporary copy of the book, executed on the smoke profile.

Executing the chapters is the expensive part of the suite, so it happens once
per session; the notebook tests, the HTML build test and the browser check all
look at the same build. The copy lives in a temporary folder, so a test run
never touches the book that `make book` built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _book import copy_book_sources

from ctxpaper import book


@pytest.fixture(scope="session")
def book_root(tmp_path_factory) -> Path:
    """Sources of the book (no executed notebooks yet) in a temporary folder."""
    return copy_book_sources(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def built_book(book_root) -> Path:
    """The HTML folder of the book built from every chapter executed on smoke.

    Chapters already executed by ``test_notebooks`` are not executed again.
    """
    executed = book_root / book.EXECUTED_SUBDIR
    todo = [p.stem for p in book.discover_chapters(book_root / "notebooks")
            if not (executed / f"{p.stem}.ipynb").exists()]
    if todo:
        book.run("smoke", 0, todo, root=book_root, html=False, progress=False)
    book.build_html(book_root)
    return book_root / "_build" / "html"
