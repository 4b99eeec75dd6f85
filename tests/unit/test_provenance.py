"""One provenance record: misdir's version, the libraries', the command as typed, portable model records."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
import torch
import transformers

import misdir
from misdir.provenance import command_line, misdir_version, portable_model, provenance, software


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/misdir", "ablate", "--layer", "3"], "misdir ablate --layer 3"),
        (["/src/misdir/__main__.py", "steer"], "misdir steer"),
        (["/venv/lib/site-packages/pytest/__main__.py", "-q"], "python -m pytest -q"),
        (["-c"], "python -c"),
        (["scripts/run.py", "two words"], "python scripts/run.py 'two words'"),
        (["/usr/bin/jupyter", "lab"], "jupyter lab"),
        ([], "python"),
    ],
)
def test_command_line_is_what_a_user_would_retype(argv, expected):
    assert command_line(argv) == expected


def test_versions_come_from_the_checkout_and_the_running_libraries():
    pyproject = Path(misdir.__file__).resolve().parent.parent / "pyproject.toml"
    assert misdir_version() == tomllib.loads(pyproject.read_text())["project"]["version"]
    assert misdir_version() == importlib.metadata.version("misdir")  # the venv installs the same project
    versions = software()
    assert versions["torch_version"] == torch.__version__
    assert versions["transformers_version"] == transformers.__version__
    assert versions["peft_version"] == importlib.metadata.version("peft")


def test_a_record_holds_the_model_seed_software_command_and_time(tiny):
    record = provenance(tiny, seed=3, settings={"layers": [1]})
    assert record["model"] == {"spec": tiny.spec, **tiny.provenance}
    assert (record["seed"], record["settings"]) == (3, {"layers": [1]})
    assert record["misdir_version"] == misdir_version() and record["command"] == command_line()
    assert len(record["time"]) == len("2026-11-29T19:00:00Z")


def test_portable_model_drops_only_cache_paths():
    gguf = {
        "spec": "embedded",
        "kind": "gguf",
        "source": "/home/u/.cache/misdir/gguf/smol-b179",
        "gguf": "/x/s.gguf",
        "gguf_sha256": "b179",
    }
    assert portable_model(gguf) == {**gguf, "source": "embedded", "gguf": "s.gguf"}
    own = {"spec": "/data/my.gguf", "kind": "gguf", "source": "/cache/my-1", "gguf": "/data/my.gguf"}
    assert portable_model(own) == {**own, "source": "/data/my.gguf"}  # a user's own file keeps its path
    local = {"spec": "/models/m", "kind": "transformers", "source": "/models/m"}
    assert portable_model(local) == local
    adapter = {"kind": "peft-adapter", "base_provenance": gguf}
    assert portable_model(adapter)["base_provenance"]["source"] == "embedded"
