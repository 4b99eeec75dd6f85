"""Every notebook in notebooks/ runs top to bottom on the embedded model, and is committed without outputs.

Execution goes through `notebooks/run.py` (as `python notebooks/run.py execute` does): a fresh kernel of
this interpreter, started in notebooks/ as Jupyter would, so the notebooks run on the misdir under test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _runner():
    spec = importlib.util.spec_from_file_location("notebooks_run", NOTEBOOKS_DIR / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _runner()


def test_notebooks_are_found():
    assert [p.name for p in run.notebooks()] == [p.name for p in NOTEBOOKS]
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    """Outputs are never committed, so no committed notebook shows results its code no longer makes."""
    problems = run.stale(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}: {'; '.join(problems)}; run `python notebooks/run.py strip`"


def test_strip_makes_an_executed_notebook_clean():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nb.cells[0].execution_count = 1
    nb.cells[0].metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    assert len(run.stale(nb)) == 3
    assert run.stale(run.strip(nb)) == []


@pytest.mark.embedded
@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb, seconds = run.execute(path)
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, "no plotly figure was shown"
    print(f"{path.name}: {seconds:.1f} s")


def test_every_notebook_shares_the_introduction_set_up_and_a_closing_cell():
    """A reader opening any notebook first gets the same EM introduction and set-up cell, and ends on what it
    shows on a 135M model; sampling goes through `misdir.generate`, not the Hugging Face model directly."""
    books = {p.name: nbformat.read(p, as_version=4) for p in NOTEBOOKS}
    reference = books[NOTEBOOKS[0].name]
    intro = reference.cells[0].source.split("\n\n")[1]
    setup = reference.cells[1].source
    assert intro.startswith("**Emergent misalignment (EM):**")
    for name, nb in books.items():
        number = name.split("_")[0]
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith(f"# {number} "), name
        assert intro in nb.cells[0].source, name
        assert nb.cells[1].cell_type == "code" and nb.cells[1].source.startswith(setup), name
        assert nb.cells[-1].cell_type == "markdown" and nb.cells[-1].source.startswith("## "), name
        assert not any(".hf.generate(" in cell.source for cell in nb.cells), name
