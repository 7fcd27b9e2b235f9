"""The book's sources copied into a temporary root, for tests that execute chapters."""

from __future__ import annotations

import shutil
from pathlib import Path

from ctxpaper import PROJECT_ROOT


def copy_book_sources(root: Path) -> Path:
    """Copy the book pages, the chapters' ``.py`` files and the config into ``root``; returns it."""
    shutil.copytree(PROJECT_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("_executed"))
    shutil.copytree(PROJECT_ROOT / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    return root
