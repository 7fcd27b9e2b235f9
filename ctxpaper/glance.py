"""Results at a glance: the headline numbers of the last build, for the intro page.

A chapter calls :func:`record` with a small table of its headline results
(ours beside the paper's) and where they come from. When the chapter is
executed by the book runner (:mod:`ctxpaper.book`), the runner points
``CTXPAPER_RESULTS_DIR`` at the build's output folder and the table is
written there as JSON; after the run, :func:`render` gathers every recorded
table into one Markdown page that the intro includes. Executed any other way
(plain papermill, Jupyter), :func:`record` only returns the table: nothing is
written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .fsio import atomic_open, read_json

ENV = "CTXPAPER_RESULTS_DIR"


def record(key: str, table: pd.DataFrame, title: str, source: str, chapter: str) -> pd.DataFrame:
    """Record a headline table for the intro's summary; returns ``table``.

    Parameters
    ----------
    key : str
        File-name-safe identifier, unique in the book (e.g. ``"table1"``).
    table : DataFrame
        Small table, numbers rounded as they should be shown.
    title : str
        What the table shows.
    source : str
        Where its numbers come from, e.g. "ours: simulated run (profile quick,
        seed 0); paper: Table 1".
    chapter : str
        The chapter's document name (e.g. ``"05_cnn_baseline"``), for the link.
    """
    if not key.replace("_", "").isalnum():
        raise ValueError(f"key must be letters, digits and underscores, got {key!r}")
    out_dir = os.environ.get(ENV)
    if out_dir:
        payload = {"key": key, "title": title, "source": source, "chapter": chapter,
                   "table": json.loads(table.to_json(orient="split", double_precision=4))}
        with atomic_open(Path(out_dir) / f"{key}.json", "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
    return table


def _markdown_table(split: dict) -> str:
    cols = [" / ".join(map(str, c)) if isinstance(c, list) else str(c) for c in split["columns"]]
    index = [" / ".join(map(str, i)) if isinstance(i, list) else str(i) for i in split["index"]]
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in zip(index, split["data"]):
        cells = ["" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results_dir: str | os.PathLike[str], order: list[str] | None = None) -> str:
    """The recorded tables as MyST Markdown (links relative to ``book/``).

    Tables are ordered by chapter, then by ``order`` of keys if given.
    """
    files = sorted(Path(results_dir).glob("*.json")) if Path(results_dir).is_dir() else []
    items = [read_json(f, "recorded results table") for f in files]
    if not items:
        return ("No chapter has recorded results yet: run `make book` to execute the "
                "chapters.\n")
    rank = {k: i for i, k in enumerate(order or [])}
    items.sort(key=lambda it: (it["chapter"], rank.get(it["key"], len(rank)), it["key"]))
    parts = []
    for it in items:
        parts.append(f"**{it['title']}** — from {{doc}}`{it['chapter']} <_executed/{it['chapter']}>`. "
                     f"Source: {it['source']}.\n\n{_markdown_table(it['table'])}\n")
    return "\n".join(parts)
