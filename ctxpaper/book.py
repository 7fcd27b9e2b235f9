"""Execute the chapters with papermill and build the Jupyter Book.

``python -m ctxpaper.book --profile quick [chapters…]`` is what ``make book``
runs. For each chapter ``notebooks/NN_name.py`` (the jupytext percent file a
reader edits) it

1. converts the file to a notebook with jupytext (the paired ``.ipynb`` is
   never written: it stays a stripped twin in git);
2. executes it with papermill, injecting ``profile`` and ``seed``, the data
   source (``--data-source simulated|released``) into the chapters whose
   ``parameters`` cell declares ``data_source`` (04–07), and any
   ``-p name value`` given, into a temporary file beside the output folder;
3. renames that file to ``book/_executed/NN_name.ipynb`` only when every cell
   ran — a failing cell stops the run, naming the chapter and the cell, and
   leaves no half-written executed notebook;
4. records the chapter's data source, wall time and peak memory in the build report
   (``book/_executed/build_report.{json,md}``) that the reproducibility page
   includes, and gathers the headline tables chapters recorded with
   :func:`ctxpaper.glance.record` into ``book/_executed/glance.md``, which the
   intro includes;

then runs ``jupyter-book build . -W -n --keep-going`` (warnings are errors).

A released run writes to the same ``book/_executed/`` as a simulated one: the
build report's ``data source`` column says which run each executed chapter
comes from, and the runner says so when a chapter replaces one of the other
source. The kernels talk to the runner over CurveZMQ-encrypted sockets, so the
kernel's "running over TCP without encryption" warning never reaches the
console: the output holds progress and results only.

Exit status of ``python -m ctxpaper.book`` (``ctxpaper-book``): 0 done, 1 a
chapter or the HTML build failed, 2 a bad argument (nothing was run), 130
interrupted by Ctrl-C (finished chapters are kept and reported).

Paper sections: all (this builds the book). Notebooks: every chapter.
"""

from __future__ import annotations

import argparse
import ast
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

import jupytext
import papermill
import psutil
import zmq
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

from . import PROJECT_ROOT, data, glance
from .fsio import atomic_open, atomic_path, write_json
from .profiles import DEFAULT_PROFILE, PROFILES, validate_params
from .runs import SOURCES

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
EXECUTED_SUBDIR = Path("book") / "_executed"
CHAPTER_RE = re.compile(r"^(\d\d)_[a-z0-9_]+\.py$")
KERNEL_NAME = "python3"
RESULTS_SUBDIR = "results"
#: The chapter parameter that ``--data-source`` sets (chapters that declare it).
DATA_SOURCE_PARAM = "data_source"
DEFAULT_DATA_SOURCE = SOURCES[0]
#: Exit statuses of the command line (README, "Errors and exit codes").
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

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
    #: The ``data_source`` the chapter ran with; ``None`` when it takes none.
    data_source: str | None
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
    if DATA_SOURCE_PARAM in params:
        raise ValueError(f"set the data source with --data-source, not -p {DATA_SOURCE_PARAM}")
    return params


def chapter_parameters(py_path: Path) -> set[str]:
    """Names a chapter's ``parameters`` cell assigns (what papermill may set).

    Raises
    ------
    ValueError
        The cell is not valid Python (the message names the chapter).
    """
    for cell in jupytext.read(py_path).cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            try:
                tree = ast.parse(cell.source)
            except SyntaxError as exc:
                raise ValueError(f"{py_path.name}: the parameters cell is not valid Python "
                                 f"(line {exc.lineno} of the cell: {exc.msg})") from None
            return {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)}
    return set()


def takes_data_source(chapters: list[Path], data_source: str) -> dict[Path, bool]:
    """Which chapters ``data_source`` is injected into, validated before any work.

    Raises
    ------
    ValueError
        An unknown source, or a source other than the default for chapters
        none of which declares ``data_source`` in its parameters cell.
    """
    if data_source not in SOURCES:
        raise ValueError(f"unknown data source {data_source!r}: choose one of {', '.join(SOURCES)}")
    takes = {py: DATA_SOURCE_PARAM in chapter_parameters(py) for py in chapters}
    if data_source != DEFAULT_DATA_SOURCE and not any(takes.values()):
        names = ", ".join(py.stem for py in chapters)
        raise ValueError(f"--data-source {data_source}: none of the selected chapters ({names}) has a "
                         f"{DATA_SOURCE_PARAM} parameter")
    return takes


# ----------------------------------------------------------------------------
# execution
# ----------------------------------------------------------------------------

class _PeakMemory:
    """Peak resident memory of this process's children (the kernel), sampled."""

    def __init__(self, interval: float = 0.25):
        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
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
    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        # The book shows papermill's injected cell (the values this run used);
        # the defaults cell stays in the source, hidden from the page.
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    return nb


def _kernel_config() -> Config:
    """What keeps the kernel's own log off the runner's console.

    * ipykernel warns on stderr, once per kernel, that it "is running over TCP
      without encryption" unless the manager provisions CurveZMQ keys;
      ``transport_encryption="auto"`` does so for kernelspecs that declare curve
      support (ipykernel's, which ``make install`` registers), given a libzmq
      built with curve (pyzmq's wheels are).
    * nbclient's default "graceful" shutdown interrupts a busy kernel and then
      closes its sockets while it still replies (Ctrl-C during a cell): the
      kernel logs a ZMQError traceback. A chapter's kernel has nothing left to
      save once its cells are done, so it is stopped at once.
    """
    cfg = Config({"NotebookClient": {"shutdown_kernel": "immediate"}})
    if zmq.has("curve"):
        cfg.KernelManager.transport_encryption = "auto"
    return cfg


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
                config=_kernel_config(),
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
        data_source=parameters.get(DATA_SOURCE_PARAM),
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
    the profile, seed and data source it ran with.
    """
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
        "| chapter | profile | seed | data source | wall time (s) | peak memory (MiB) | finished (UTC) |",
        "|---|---|---|---|---:|---:|---|",
    ]
    total = 0.0
    for r in report["chapters"].values():
        total += r["seconds"]
        # Reports written before the column existed have no data source.
        lines.append(f"| {r['chapter']} | {r['profile']} | {r['seed']} | {r.get('data_source') or '—'} "
                     f"| {r['seconds']:.1f} "
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
    data_source: str = DEFAULT_DATA_SOURCE,
) -> list[ChapterRun]:
    """Execute chapters and (optionally) build the book. Validates before any work.

    Parameters
    ----------
    profile, seed
        Injected into every chapter.
    chapters
        Names as on the command line (``1``, ``01``, ``01_name``); default all.
    extra
        Further parameters injected into every chapter (``-p NAME VALUE``).
    root
        The book's folder (``notebooks/`` in, ``book/_executed/`` out).
    html, progress
        Build the HTML afterwards; show the per-cell progress bar.
    data_source
        One of :data:`ctxpaper.runs.SOURCES`, injected as ``data_source`` into
        the chapters whose parameters cell declares it.

    Raises
    ------
    ValueError
        A bad parameter (nothing was run).
    ChapterFailed
        A chapter raised; the chapters before it are kept and reported.
    """
    validate_params(profile, seed)
    selected = select_chapters(discover_chapters(Path(root) / "notebooks"), chapters or [])
    takes = takes_data_source(selected, data_source)
    out_dir = Path(root) / EXECUTED_SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous_sources(out_dir)
    params = {"profile": profile, "seed": seed, **(extra or {})}
    runs: list[ChapterRun] = []
    try:
        for i, py in enumerate(selected, 1):
            chapter_params = {**params, DATA_SOURCE_PARAM: data_source} if takes[py] else params
            shown = f", data_source={data_source}" if takes[py] else ""
            print(f"[{i}/{len(selected)}] {py.stem} (profile={profile}, seed={seed}{shown})", flush=True)
            old = previous.get(py.stem)
            if takes[py] and old not in (None, data_source):
                print(f"    replaces the executed {py.stem} of a {old} run (the build report records "
                      "each chapter's data source)", flush=True)
            runs.append(execute_chapter(py, out_dir, chapter_params, progress=progress))
            print(f"    done in {runs[-1].seconds:.1f} s, peak {runs[-1].peak_rss_mb:.0f} MiB", flush=True)
    finally:
        if runs:
            update_report(out_dir, runs)
    print(_timing_table(runs))
    if html:
        build_html(Path(root))
        print(f"The book is at {Path(root) / '_build' / 'html' / 'index.html'}")
    return runs


def _previous_sources(out_dir: Path) -> dict[str, str | None]:
    """Each executed chapter's data source in the last build report ({} if none is readable)."""
    try:
        chapters = json.loads((out_dir / "build_report.json").read_text())["chapters"]
        return {name: r.get("data_source") for name, r in chapters.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _timing_table(runs: list[ChapterRun]) -> str:
    width = max([len(r.chapter) for r in runs] + [7])
    rows = [f"{'chapter':<{width}}  {'seconds':>8}  {'peak MiB':>8}"]
    rows += [f"{r.chapter:<{width}}  {r.seconds:>8.1f}  {r.peak_rss_mb:>8.0f}" for r in runs]
    rows.append(f"{'total':<{width}}  {sum(r.seconds for r in runs):>8.1f}")
    return "\n".join(rows)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of the usage, exit 2 (in main)
        raise _UsageError(f"{self.prog}: error: {message} (see --help)")


def main(argv: list[str] | None = None, prog: str = "python -m ctxpaper.book") -> int:
    """Command line; see the module docstring. Returns the exit status."""
    parser = _Parser(
        prog=prog,
        description="Execute the chapter notebooks with papermill and build the Jupyter Book.",
    )
    parser.add_argument("chapters", nargs="*", help="chapters to execute (e.g. 01 05); default: all")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--seed", default="0", help="non-negative integer seed")
    parser.add_argument("--data-source", default=DEFAULT_DATA_SOURCE,
                        help=f"one of {', '.join(SOURCES)}: the data chapters 04-07 run on "
                             f"(default {DEFAULT_DATA_SOURCE})")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="extra notebook parameter (JSON value or text), repeatable")
    parser.add_argument("--no-html", action="store_true", help="execute only; skip jupyter-book")
    parser.add_argument("--html-only", action="store_true", help="build the HTML from the last execution")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT, help=argparse.SUPPRESS)
    try:
        args = parser.parse_args(argv)
        try:
            seed = int(args.seed)
        except ValueError:
            parser.error(f"--seed must be a non-negative integer, got {args.seed!r}")
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.html_only:
            build_html(args.root)
            return EXIT_OK
        run(args.profile, seed, args.chapters, parse_extra_params(args.parameter),
            root=args.root, html=not args.no_html, data_source=args.data_source)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ChapterFailed, RuntimeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; the chapters that finished are kept in "
              f"{args.root / EXECUTED_SUBDIR} and its build report", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def cli() -> None:
    """Console entry point ``ctxpaper-book``: exit with :func:`main`'s status."""
    sys.exit(main(sys.argv[1:], prog=os.path.basename(sys.argv[0]) or "ctxpaper-book"))


if __name__ == "__main__":
    sys.exit(main())
