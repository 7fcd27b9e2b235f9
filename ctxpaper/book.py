"""Execute the chapters with papermill and build the Jupyter Book.

``python -m ctxpaper.book --profile quick [chapters…]`` is what ``make book``
runs. For each chapter ``notebooks/NN_name.py`` (the jupytext percent file a
reader edits) it

1. converts the file to a notebook with jupytext (the paired ``.ipynb`` is
   never written: it stays a stripped twin in git);
2. executes it with papermill, injecting ``profile`` and ``seed`` (and any
   ``-p name value`` given), into a temporary file beside the output folder;
3. renames that file to ``book/_executed/NN_name.ipynb`` only when every cell
   ran — a failing cell stops the run, naming the chapter and the cell, and
   leaves no half-written executed notebook;
4. records the chapter's wall time and peak memory in the build report
   (``book/_executed/build_report.{json,md}``) that the reproducibility page
   includes, and gathers the headline tables chapters recorded with
   :func:`ctxpaper.glance.record` into ``book/_executed/glance.md``, which the
   intro includes;

then runs ``jupyter-book build . -W -n --keep-going`` (warnings are errors).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import glance
from . import PROJECT_ROOT
from .fsio import atomic_open, atomic_path, write_json
from .profiles import DEFAULT_PROFILE, PROFILES, validate_params

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
EXECUTED_SUBDIR = Path("book") / "_executed"
CHAPTER_RE = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")
KERNEL_NAME = "python3"
RESULTS_SUBDIR = "results"

#: Packages whose versions the reproducibility page lists.
REPORTED_PACKAGES = (
    "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "seaborn", "librosa",
    "soundfile", "keras", "torch", "papermill", "jupytext", "jupyter-book", "sphinx",
)


class ChapterFailed(RuntimeError):
    """A chapter's notebook raised in one of its cells."""

    def __init__(self, chapter: str, cell: int | None, ename: str, evalue: str):
        self.chapter, self.cell, self.ename, self.evalue = chapter, cell, ename, evalue
        where = f"cell {cell}" if cell is not None else "before any cell ran"
        super().__init__(f"chapter {chapter} failed in {where}: {ename}: {evalue}")


@dataclass
class ChapterRun:
    """Timing and memory of one executed chapter."""

    chapter: str
    profile: str
    seed: int
    seconds: float
    peak_rss_mb: float
    finished: str


# ----------------------------------------------------------------------------
# chapters
# ----------------------------------------------------------------------------

def discover_chapters(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The chapter sources ``NN_name.py``, in chapter order."""
    return sorted(p for p in Path(notebooks_dir).glob("*.py") if CHAPTER_RE.match(p.name))


def select_chapters(available: list[Path], requested: list[str]) -> list[Path]:
    """Resolve chapter names given on the command line (``1``, ``01``, ``01_name``).

    Raises
    ------
    ValueError
        A requested chapter matches none (the message lists what exists).
    """
    if not requested:
        return list(available)
    chosen = []
    for req in requested:
        key = req.removesuffix(".py").removesuffix(".ipynb")
        if key.isdigit():
            key = f"{int(key):02d}"
        hits = [p for p in available if p.stem == key or p.stem.startswith(key + "_")]
        if len(hits) != 1:
            names = ", ".join(p.stem for p in available) or "none"
            raise ValueError(f"unknown chapter {req!r}; chapters: {names}")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def parse_extra_params(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``-p name value`` pairs; values are read as JSON when they parse, else kept as text."""
    params: dict[str, Any] = {}
    for name, raw in pairs or []:
        if not name.isidentifier():
            raise ValueError(f"parameter name {name!r} is not a Python identifier")
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


# ----------------------------------------------------------------------------
# execution
# ----------------------------------------------------------------------------

class _PeakMemory:
    """Peak resident memory of this process's children (the kernel), sampled."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for child in self._proc.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def __enter__(self) -> "_PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_chapter(py_path: Path):
    """Read a jupytext percent file into a notebook with the project's kernelspec."""
    import jupytext

    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        # The book shows papermill's injected cell (the values this run used);
        # the defaults cell stays in the source, hidden from the page.
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    return nb


def execute_chapter(
    py_path: Path,
    out_dir: Path,
    parameters: dict[str, Any],
    progress: bool = True,
) -> ChapterRun:
    """Execute one chapter into ``out_dir/<stem>.ipynb``, atomically.

    Raises
    ------
    ChapterFailed
        A cell raised; the executed notebook is not written.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = load_chapter(py_path)
    chapter = py_path.stem
    out = Path(out_dir) / f"{chapter}.ipynb"
    start = time.perf_counter()
    # The kernel inherits this: the library's progress bars (extraction,
    # training) stay off the book's pages; this runner's own bar is enabled
    # explicitly below.
    saved_env = {k: os.environ.get(k) for k in ("TQDM_DISABLE", glance.ENV)}
    os.environ["TQDM_DISABLE"] = "1"
    # Chapters record their headline tables there (the intro's summary).
    os.environ[glance.ENV] = str(Path(out_dir) / RESULTS_SUBDIR)
    try:
        # papermill autosaves while it runs: point it at a temporary file so
        # that only a fully executed notebook ever reaches ``out``.
        with atomic_path(out) as tmp, _PeakMemory() as mem:
            papermill.execute_notebook(
                nb,
                str(tmp),
                parameters=parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(PROJECT_ROOT),
                progress_bar={"desc": chapter, "leave": False, "disable": False} if progress else False,
                request_save_on_cell_execute=False,
            )
    except PapermillExecutionError as exc:
        raise ChapterFailed(chapter, exc.cell_index, exc.ename, exc.evalue) from None
    except Exception as exc:  # kernel died, bad parameters cell, …
        raise ChapterFailed(chapter, None, type(exc).__name__, str(exc)) from exc
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return ChapterRun(
        chapter=chapter,
        profile=str(parameters.get("profile")),
        seed=int(parameters.get("seed", 0)),
        seconds=round(time.perf_counter() - start, 1),
        peak_rss_mb=round(mem.peak / 2**20, 1),
        finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# ----------------------------------------------------------------------------
# build report (the reproducibility page includes it)
# ----------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in REPORTED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def update_report(out_dir: Path, runs: list[ChapterRun]) -> dict[str, Any]:
    """Merge this run's chapters into the build report and rewrite it atomically.

    Chapters not executed in this run keep their previous entries, each with
    the profile and seed it ran with.
    """
    from . import data

    path = Path(out_dir) / "build_report.json"
    report: dict[str, Any] = {"chapters": {}}
    if path.exists():
        try:
            report = json.loads(path.read_text())
        except json.JSONDecodeError:
            report = {"chapters": {}}
    for r in runs:
        report["chapters"][r.chapter] = asdict(r)
    report["chapters"] = dict(sorted(report["chapters"].items()))
    report["environment"] = {
        **_versions(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    report["data"] = [
        {"file": name, "sha256": entry.sha256, "rows": entry.rows}
        for name, entry in data.REGISTRY.items()
    ]
    write_json(path, report)
    with atomic_open(Path(out_dir) / "build_report.md", "w", encoding="utf-8") as fh:
        fh.write(render_report_markdown(report))
    with atomic_open(Path(out_dir) / "glance.md", "w", encoding="utf-8") as fh:
        fh.write(glance.render(Path(out_dir) / RESULTS_SUBDIR))
    return report


def render_report_markdown(report: dict[str, Any]) -> str:
    """The build report as MyST markdown tables."""
    lines = [
        "### Chapters of the last build", "",
        "| chapter | profile | seed | wall time (s) | peak memory (MiB) | finished (UTC) |",
        "|---|---|---|---:|---:|---|",
    ]
    total = 0.0
    for r in report["chapters"].values():
        total += r["seconds"]
        lines.append(f"| {r['chapter']} | {r['profile']} | {r['seed']} | {r['seconds']:.1f} "
                     f"| {r['peak_rss_mb']:.0f} | {r['finished']} |")
    lines += ["", f"Total execution time: {total:.0f} s.", "",
              "### Environment", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["environment"].items()]
    lines += ["", "### Released data files (verified by sha256 before use)", "",
              "| file | rows | sha256 |", "|---|---:|---|"]
    lines += [f"| `{d['file']}` | {d['rows']:,} | `{d['sha256']}` |" for d in report["data"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------

def build_html(root: Path = PROJECT_ROOT) -> None:
    """``jupyter-book build ROOT -W -n --keep-going``; raises on any warning."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "-W", "-n", "--keep-going"]
    print("+", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=root)
    if res.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {res.returncode}); see the warnings above")


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------

def run(
    profile: str = DEFAULT_PROFILE,
    seed: int = 0,
    chapters: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    root: Path = PROJECT_ROOT,
    html: bool = True,
    progress: bool = True,
) -> list[ChapterRun]:
    """Execute chapters and (optionally) build the book. Validates before any work."""
    validate_params(profile, seed)
    selected = select_chapters(discover_chapters(Path(root) / "notebooks"), chapters or [])
    out_dir = Path(root) / EXECUTED_SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, "seed": seed, **(extra or {})}
    runs: list[ChapterRun] = []
    try:
        for i, py in enumerate(selected, 1):
            print(f"[{i}/{len(selected)}] {py.stem} (profile={profile}, seed={seed})", flush=True)
            runs.append(execute_chapter(py, out_dir, params, progress=progress))
            print(f"    done in {runs[-1].seconds:.1f} s, peak {runs[-1].peak_rss_mb:.0f} MiB", flush=True)
    finally:
        if runs:
            update_report(out_dir, runs)
    print(_timing_table(runs))
    if html:
        build_html(Path(root))
        print(f"The book is at {Path(root) / '_build' / 'html' / 'index.html'}")
    return runs


def _timing_table(runs: list[ChapterRun]) -> str:
    width = max([len(r.chapter) for r in runs] + [7])
    rows = [f"{'chapter':<{width}}  {'seconds':>8}  {'peak MiB':>8}"]
    rows += [f"{r.chapter:<{width}}  {r.seconds:>8.1f}  {r.peak_rss_mb:>8.0f}" for r in runs]
    rows.append(f"{'total':<{width}}  {sum(r.seconds for r in runs):>8.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctxpaper.book",
        description="Execute the chapter notebooks with papermill and build the Jupyter Book.",
    )
    parser.add_argument("chapters", nargs="*", help="chapters to execute (e.g. 01 05); default: all")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--seed", default="0", help="non-negative integer seed")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="extra notebook parameter (JSON value or text), repeatable")
    parser.add_argument("--no-html", action="store_true", help="execute only; skip jupyter-book")
    parser.add_argument("--html-only", action="store_true", help="build the HTML from the last execution")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        seed = int(args.seed)
    except ValueError:
        parser.error(f"--seed must be a non-negative integer, got {args.seed!r}")
    try:
        if args.html_only:
            build_html(args.root)
            return 0
        run(args.profile, seed, args.chapters, parse_extra_params(args.parameter),
            root=args.root, html=not args.no_html)
    except (ValueError, ChapterFailed, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
