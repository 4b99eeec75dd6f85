"""What made a result: misdir's version, the libraries', the command line, the model, the seed and the time.

Every result file of misdir carries one `provenance(...)` record (or its parts, `software()` and
`command_line()`), so the same keys mean the same thing everywhere. Model records drop the paths of
misdir's own weight cache (`portable_model`): a saved adapter names its base as the user named it
(`"embedded"`, a hub id), not as a folder under one machine's cache.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import sys
import time
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


@cache
def misdir_version() -> str:
    """misdir's version: the checkout's pyproject.toml when misdir runs from one (PYTHONPATH, editable), else
    the installed distribution's, else "unknown"."""
    if _PYPROJECT.is_file():
        try:
            project = tomllib.loads(_PYPROJECT.read_text()).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            project = {}
        if project.get("name") == "misdir" and project.get("version"):
            return str(project["version"])
    try:
        return importlib.metadata.version("misdir")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running, as a user would retype it: `misdir ...` for the CLI (its console script or
    `python -m misdir`), `python -m pkg ...` for another module, `python script.py ...` for a script,
    `python -c ...` for inline code (whose text Python does not keep in sys.argv)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "python"
    program, rest = Path(argv[0]), argv[1:]
    if program.name == "misdir" or program.parts[-2:] == ("misdir", "__main__.py"):
        words = ["misdir", *rest]
    elif program.name == "__main__.py":
        words = ["python", "-m", program.parent.name, *rest]
    elif argv[0] in ("-c", "-m") or program.suffix == ".py":
        words = ["python", argv[0], *rest]
    else:
        words = [program.name, *rest]
    return shlex.join(words)


def software() -> dict[str, str]:
    """The versions of misdir and the libraries its numbers depend on."""
    versions = {"misdir_version": misdir_version()}
    for name in ("torch", "transformers", "peft"):
        try:
            versions[f"{name}_version"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if "torch" in sys.modules:  # the running build (e.g. 2.11.0+cu130), which metadata may not say
        versions["torch_version"] = sys.modules["torch"].__version__
    return versions


def portable_model(provenance: dict[str, Any]) -> dict[str, Any]:
    """A model's provenance without paths into misdir's weight cache: a GGUF model's `source` (its converted
    copy under `misdir.models.cache_dir()`) becomes its spec, and the embedded model's GGUF file is named by
    its file name (its sha256 identifies it); everything else as given."""
    out = dict(provenance)
    if out.get("kind") == "gguf":
        out["source"] = out.get("spec")
        if out.get("spec") == "embedded" and out.get("gguf"):
            out["gguf"] = Path(str(out["gguf"])).name
    base = out.get("base_provenance")
    if isinstance(base, dict):
        out["base_provenance"] = portable_model(base)
    return out


def provenance(model: Any = None, *, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The record of what made a result: the model (spec and portable provenance, if given), the seed, the
    software, the command line and the UTC time, plus `extra` fields."""
    record: dict[str, Any] = {}
    if model is not None:
        record["model"] = {"spec": model.spec, **portable_model(model.provenance)}
    if seed is not None:
        record["seed"] = seed
    record |= software()
    record["command"] = command_line()
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record | extra
