"""The chapter runner (ctxpaper.book): validation, atomic execution, failure reporting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxpaper import book

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
