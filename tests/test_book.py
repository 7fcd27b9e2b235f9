"""The chapter runner (ctxpaper.book): validation, atomic execution, failure reporting,
the data source, the command line's exit codes and a quiet console."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ctxpaper import book
from ctxpaper.cache import PROJECT_ROOT

CELL_OK = '''# %% tags=["parameters"]
profile = "quick"
seed = 0

# %%
from ctxpaper.profiles import validate_params
P, seed = validate_params(profile, seed)
print("ran with", P.name, seed)
import os
print("TQDM_DISABLE =", os.environ.get("TQDM_DISABLE"))
'''

CELL_FAIL = CELL_OK + '''
# %%
x = 1

# %%
raise ZeroDivisionError("boom in the fourth cell")
'''


CELL_SOURCE = '''# %% tags=["parameters"]
profile = "quick"
seed = 0
data_source = "simulated"  # "simulated" | "released"
workers: int = 2

# %%
print("data source is", data_source)
'''

# The kernel writes its pid, then works long enough to be interrupted.
CELL_SLOW = CELL_OK + '''
# %%
import os, pathlib, time
pathlib.Path(os.environ["KERNEL_PID_FILE"]).write_text(str(os.getpid()))
time.sleep(60)
'''


def _project(tmp_path: Path, chapters: dict[str, str]) -> Path:
    (tmp_path / "notebooks").mkdir()
    for name, text in chapters.items():
        (tmp_path / "notebooks" / f"{name}.py").write_text(text)
    return tmp_path


def test_discover_and_select(tmp_path):
    root = _project(tmp_path, {"01_first": CELL_OK, "02_second": CELL_OK})
    (root / "notebooks" / "helper.py").write_text("x = 1\n")  # not a chapter
    found = book.discover_chapters(root / "notebooks")
    assert [p.stem for p in found] == ["01_first", "02_second"]
    assert [p.stem for p in book.select_chapters(found, ["2"])] == ["02_second"]
    assert [p.stem for p in book.select_chapters(found, ["01_first", "02", "1"])] == ["01_first", "02_second"]
    with pytest.raises(ValueError, match="unknown chapter '07'; chapters: 01_first, 02_second"):
        book.select_chapters(found, ["07"])


@pytest.mark.parametrize("profile, seed, message", [
    ("fast", 0, "unknown profile 'fast'"),
    ("quick", -1, "seed must be a non-negative integer, got -1"),
    ("smoke", 1.5, "seed must be a non-negative integer"),
])
def test_bad_parameters_fail_before_any_work(tmp_path, profile, seed, message):
    root = _project(tmp_path, {"01_first": CELL_OK})
    with pytest.raises(ValueError, match=message):
        book.run(profile, seed, root=root, html=False, progress=False)
    assert not (root / book.EXECUTED_SUBDIR).exists()


def test_cli_reports_bad_parameters(tmp_path, capsys):
    root = _project(tmp_path, {"01_first": CELL_OK})
    assert book.main(["--profile", "smoke", "--seed", "-3", "--root", str(root), "--no-html"]) == 2
    assert "seed must be a non-negative integer, got -3" in capsys.readouterr().err


def test_extra_parameters_are_parsed_as_json_or_text():
    assert book.parse_extra_params([["n", "3"], ["name", "abc"], ["xs", "[1, 2]"]]) == \
        {"n": 3, "name": "abc", "xs": [1, 2]}
    with pytest.raises(ValueError, match="not a Python identifier"):
        book.parse_extra_params([["bad-name", "1"]])


@pytest.mark.slow
def test_failing_cell_names_chapter_and_cell_and_leaves_nothing(tmp_path):
    root = _project(tmp_path, {"01_good": CELL_OK, "02_bad": CELL_FAIL})
    with pytest.raises(book.ChapterFailed) as exc:
        book.run("smoke", 4, root=root, html=False, progress=False)
    err = exc.value
    assert err.chapter == "02_bad" and err.ename == "ZeroDivisionError"
    assert "boom in the fourth cell" in str(err)
    # cells: [parameters, injected parameters, import, x = 1, raise] -> index of the raise
    nb = book.load_chapter(root / "notebooks" / "02_bad.py")
    raising = [i for i, c in enumerate(nb.cells) if "ZeroDivisionError" in c.source][0]
    assert err.cell == raising + 1  # papermill inserts the injected-parameters cell
    out = root / book.EXECUTED_SUBDIR
    assert sorted(p.name for p in out.iterdir()) == [
        "01_good.ipynb", "build_report.json", "build_report.md", "glance.md"]
    report = json.loads((out / "build_report.json").read_text())
    assert list(report["chapters"]) == ["01_good"]
    assert report["chapters"]["01_good"]["profile"] == "smoke"
    assert report["chapters"]["01_good"]["seed"] == 4


@pytest.mark.slow
def test_executed_notebook_has_injected_parameters_and_outputs(tmp_path):
    root = _project(tmp_path, {"01_good": CELL_OK})
    runs = book.run("smoke", 7, root=root, html=False, progress=False)
    assert runs[0].chapter == "01_good" and runs[0].seconds > 0 and runs[0].peak_rss_mb > 0
    nb = json.loads((root / book.EXECUTED_SUBDIR / "01_good.ipynb").read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'profile = "smoke"' in "".join(injected[0]["source"])
    printed = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for c in nb["cells"] for o in c.get("outputs", []))
    assert "ran with smoke 7" in printed
    assert "TQDM_DISABLE = 1" in printed  # library progress bars stay off the pages
    assert "TQDM_DISABLE" not in __import__("os").environ  # and the runner's env is restored
    md = (root / book.EXECUTED_SUBDIR / "build_report.md").read_text()
    assert "| 01_good | smoke | 7 |" in md and "`balanced_ground_truth_hot_vector.csv`" in md


def test_chapter_parameters_are_read_from_the_parameters_cell(tmp_path):
    root = _project(tmp_path, {"04_src": CELL_SOURCE, "01_plain": CELL_OK,
                               "02_broken": '# %% tags=["parameters"]\nprofile = \n'})
    nbs = root / "notebooks"
    assert book.chapter_parameters(nbs / "04_src.py") == {"profile", "seed", "data_source", "workers"}
    assert book.chapter_parameters(nbs / "01_plain.py") == {"profile", "seed"}
    with pytest.raises(ValueError, match=r"02_broken.py: the parameters cell is not valid Python \(line 1 of the cell: invalid syntax\)"):
        book.chapter_parameters(nbs / "02_broken.py")


def test_data_source_is_checked_before_any_work(tmp_path):
    root = _project(tmp_path, {"01_plain": CELL_OK, "04_src": CELL_SOURCE})
    with pytest.raises(ValueError, match=r"unknown data source 'deezer': choose one of simulated, released"):
        book.run("smoke", 0, root=root, html=False, progress=False, data_source="deezer")
    with pytest.raises(ValueError, match=r"--data-source released: none of the selected chapters "
                                         r"\(01_plain\) has a data_source parameter"):
        book.run("smoke", 0, ["01"], root=root, html=False, progress=False, data_source="released")
    with pytest.raises(ValueError, match="set the data source with --data-source"):
        book.parse_extra_params([["data_source", "released"]])
    assert not (root / book.EXECUTED_SUBDIR).exists()
    nbs = sorted((root / "notebooks").glob("*.py"))
    assert book.takes_data_source(nbs, "released") == {nbs[0]: False, nbs[1]: True}


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], r"unrecognized arguments: --bogus"),
    (["--seed", "x"], r"--seed must be a non-negative integer, got 'x'"),
    (["--data-source", "real"], r"unknown data source 'real'"),
    (["--profile", "fast"], r"unknown profile 'fast'"),
    (["07"], r"unknown chapter '07'"),
    (["-p", "data_source", "released"], r"set the data source with --data-source"),
])
def test_cli_bad_arguments_are_one_line_exit_2(tmp_path, capsys, argv, message):
    root = _project(tmp_path, {"01_plain": CELL_OK})
    assert book.main([*argv, "--root", str(root), "--no-html"]) == book.EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "usage:" not in err, err
    assert re.search(message, err), err
    assert not (root / book.EXECUTED_SUBDIR).exists()


def test_console_entry_point_exits_with_mains_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ctxpaper-book", "--data-source", "nope", "--root", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        book.cli()
    assert e.value.code == book.EXIT_USAGE
    assert capsys.readouterr().err.startswith("ctxpaper-book: error: unknown data source 'nope'")


def test_report_without_data_source_column_still_renders(tmp_path):
    old = {"chapter": "01_x", "profile": "quick", "seed": 0, "seconds": 1.0, "peak_rss_mb": 10.0,
           "finished": "2026-01-01T00:00:00+00:00"}  # written before the column existed
    md = book.render_report_markdown({"chapters": {"01_x": old}, "environment": {}, "data": []})
    assert "| 01_x | quick | 0 | — | 1.0 | 10 |" in md


@pytest.mark.slow
def test_data_source_goes_to_the_chapters_that_take_it_and_into_the_report(tmp_path, capsys):
    root = _project(tmp_path, {"01_plain": CELL_OK, "04_src": CELL_SOURCE})
    out = root / book.EXECUTED_SUBDIR
    book.run("smoke", 0, root=root, html=False, progress=False)
    capsys.readouterr()
    book.run("smoke", 0, ["04"], root=root, html=False, progress=False, data_source="released")
    printed = capsys.readouterr().out
    assert "04_src (profile=smoke, seed=0, data_source=released)" in printed
    assert "replaces the executed 04_src of a simulated run" in printed
    nb = json.loads((out / "04_src.ipynb").read_text())
    outputs = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert "data source is released" in outputs
    plain = json.loads((out / "01_plain.ipynb").read_text())
    injected = [c for c in plain["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "data_source" not in "".join(injected[0]["source"])  # a chapter without the parameter gets none
    report = json.loads((out / "build_report.json").read_text())["chapters"]
    assert report["01_plain"]["data_source"] is None and report["04_src"]["data_source"] == "released"
    md = (out / "build_report.md").read_text()
    assert "| data source |" in md and "| 01_plain | smoke | 0 | — |" in md and "| 04_src | smoke | 0 | released |" in md


def _runner(root: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **kw.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "ctxpaper.book", "--root", str(root), "--no-html", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.mark.slow
def test_console_holds_progress_and_results_only(tmp_path):
    """Chapter 01 on smoke: stderr is the progress bar and nothing else (no kernel TCP warning)."""
    (tmp_path / "notebooks").mkdir()
    chapter = book.discover_chapters()[0]
    (tmp_path / "notebooks" / chapter.name).write_text(chapter.read_text())
    proc = _runner(tmp_path, "--profile", "smoke", "01")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"[1/1] {chapter.stem} (profile=smoke, seed=0)" in out
    assert "without encryption" not in err and "WARNING" not in err, err
    # What remains is tqdm redrawing the chapter's bar (carriage returns), nothing else.
    pieces = [p.strip() for p in re.split(r"[\r\n]", err) if p.strip()]
    assert pieces and all(p.startswith(f"{chapter.stem}:") for p in pieces), err


@pytest.mark.slow
def test_ctrl_c_exits_130_without_traceback_and_stops_the_kernel(tmp_path):
    root = _project(tmp_path, {"01_good": CELL_OK, "02_slow": CELL_SLOW})
    pid_file = tmp_path / "kernel.pid"
    proc = _runner(root, "--profile", "smoke", env={"KERNEL_PID_FILE": str(pid_file)})
    try:
        end = time.monotonic() + 120
        while not pid_file.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        kernel = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == book.EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "interrupted; the chapters that finished are kept" in err, err
    executed = root / book.EXECUTED_SUBDIR
    assert sorted(p.name for p in executed.iterdir()) == [
        "01_good.ipynb", "build_report.json", "build_report.md", "glance.md"]  # no half-written 02
    assert list(json.loads((executed / "build_report.json").read_text())["chapters"]) == ["01_good"]
    end = time.monotonic() + 10
    while psutil.pid_exists(kernel) and psutil.Process(kernel).status() != psutil.STATUS_ZOMBIE \
            and time.monotonic() < end:
        time.sleep(0.1)
    assert not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE
