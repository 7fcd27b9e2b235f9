"""Project-level invariants: notebook pairs, the table of contents, pins, the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from ctxpaper import book
from ctxpaper import PROJECT_ROOT

CHAPTERS = book.discover_chapters()


def _lock() -> list[str]:
    lines = (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_there_are_chapters():
    assert CHAPTERS, "no notebooks/NN_name.py chapters found"


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_pair_in_sync_and_stripped(py: Path):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{py.name} has no paired {ipynb.name}: run `jupytext --sync {py}`"
    a = jupytext.read(py)
    b = jupytext.read(ipynb)
    cells_a = [(c.cell_type, c.source.strip()) for c in a.cells]
    cells_b = [(c.cell_type, c.source.strip()) for c in b.cells]
    assert cells_a == cells_b, f"{py.name} and {ipynb.name} have drifted: run `jupytext --sync {py}`"
    raw = nbformat.read(ipynb, as_version=4)
    for cell in raw.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{ipynb.name} is committed with outputs"
    params = [c for c in a.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{py.name} needs exactly one cell tagged 'parameters'"
    assert re.search(r"^profile = \"quick\"$", params[0].source, re.M)
    assert re.search(r"^seed = 0$", params[0].source, re.M)


def test_every_ipynb_has_a_py_twin():
    for nb in (PROJECT_ROOT / "notebooks").glob("*.ipynb"):
        assert nb.with_suffix(".py").exists(), f"{nb.name} has no .py twin"


def test_toc_lists_exactly_the_chapters():
    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    files = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    executed = [f for f in files if f.startswith(str(book.EXECUTED_SUBDIR))]
    assert executed == [f"{book.EXECUTED_SUBDIR}/{p.stem}" for p in CHAPTERS]
    for f in files:
        if f not in executed:
            assert (PROJECT_ROOT / f"{f}.md").exists(), f"_toc.yml names {f} which does not exist"


def test_executed_folder_is_git_ignored():
    ignored = (PROJECT_ROOT / ".gitignore").read_text().splitlines()
    assert f"{book.EXECUTED_SUBDIR}/" in ignored


def test_environment_yml_matches_the_lock():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    pinned = [p for p in pip if not p.startswith("-e")]
    assert sorted(pinned) == sorted(_lock()), "environment.yml and requirements.lock have drifted"


def test_every_lock_line_is_an_exact_pin_and_torch_is_2_13_0():
    for line in _lock():
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line), f"not an exact pin: {line}"
    assert "torch==2.13.0" in _lock()
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (PROJECT_ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.split("#")[0].strip()]
    assert commands == ["make book", "make test"]
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)
