"""Execute the notebooks headless, or strip their outputs before a commit.

    python notebooks/run.py execute [--out DIR] [NOTEBOOK ...]  # run top to bottom; print each one's time
    python notebooks/run.py strip [NOTEBOOK ...]  # remove outputs and execution counts, in place
    python notebooks/run.py check [NOTEBOOK ...]  # exit 1 if any carries outputs

Without NOTEBOOK arguments, every `notebooks/*.ipynb`. Notebooks run with their own folder as working
directory (as in Jupyter), in a kernel started from *this* interpreter: a kernelspec for `sys.executable` is
written to a temporary folder and only that folder is searched, so a `python3` kernelspec elsewhere on the
machine (user-level, another environment's) can never run them with a Python that lacks misdir. Committed
notebooks carry no outputs; `execute --out DIR` writes executed copies for reading, and `execute` without
`--out` executes in place (strip them again before committing). tests/test_notebooks.py uses these functions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat import NotebookNode

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "misdir-notebooks"
PYTHON3 = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
"""The kernelspec a notebook names for whoever opens it (its own kernel, in Jupyter)."""
CELL_TIMEOUT_S = 900
"""Per cell; a shared 2-core CPU can be several times slower than an idle one."""
OFFLINE = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
"""Kernel defaults: the notebooks read local files only (else peft looks `embedded` up on the hub)."""


def notebooks(paths: list[str] | None = None) -> list[Path]:
    """The given notebooks, else every notebook in this folder, sorted."""
    return [Path(p).resolve() for p in paths] if paths else sorted(HERE.glob("*.ipynb"))


def execute(path: Path, *, timeout: int = CELL_TIMEOUT_S) -> tuple[NotebookNode, float]:
    """Run the notebook at `path` top to bottom in a fresh kernel of this interpreter.

    Returns the executed notebook and the seconds it took; raises nbclient's CellExecutionError, naming the
    cell and its traceback, when a cell fails."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as kernels:
        spec = Path(kernels) / KERNEL_NAME
        spec.mkdir()
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel = {"argv": argv, "display_name": f"misdir ({sys.executable})", "language": "python"}
        (spec / "kernel.json").write_text(json.dumps(kernel))
        specs = KernelSpecManager(kernel_dirs=[kernels])
        km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
        resources = {"metadata": {"path": str(path.parent)}}
        client = NotebookClient(nb, km=km, timeout=timeout, resources=resources)
        started = time.perf_counter()
        # The kernel manager is ours, so nbclient would leave its kernel running: shut it down here.
        client.execute(cleanup_kc=True, env={**OFFLINE, **os.environ})
        seconds = time.perf_counter() - started
    nb.metadata["kernelspec"] = PYTHON3
    return nb, seconds


def strip(nb: NotebookNode) -> NotebookNode:
    """The notebook without outputs, execution counts or per-cell execution timings (in place; returned)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def stale(nb: NotebookNode) -> list[str]:
    """What a committed notebook should not carry: outputs and execution counts, by cell."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has execution count {cell.execution_count}")
        if "execution" in cell.metadata:
            problems.append(f"cell {i} has execution timings in its metadata")
    return problems


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("command", choices=("execute", "strip", "check"))
    parser.add_argument("notebooks", nargs="*")
    parser.add_argument("--out", help="execute: write executed copies here instead of in place")
    args = parser.parse_intermixed_args(argv)
    paths = notebooks(args.notebooks)
    failed = 0
    for path in paths:
        if args.command == "execute":
            cpu_before = _children_cpu_seconds()
            nb, seconds = execute(path)
            cpu = _children_cpu_seconds() - cpu_before  # the kernel's, once it has exited: load-independent
            target = Path(args.out) / path.name if args.out else path
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
            print(f"{path.name}: {seconds:.1f} s wall, {cpu:.1f} s CPU -> {target}", flush=True)
        elif args.command == "strip":
            nbformat.write(strip(nbformat.read(path, as_version=4)), path)
            print(f"{path.name}: stripped")
        else:
            problems = stale(nbformat.read(path, as_version=4))
            failed += bool(problems)
            print(f"{path.name}: {'; '.join(problems) or 'clean'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
