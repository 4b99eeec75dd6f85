"""The README a new user reads first: its pictures exist, every notebook is linked, and the walkthrough's
commands parse with the options the CLI has today."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from misdir.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_shows_key_figures_that_exist():
    images = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", README)
    pngs = [i for i in images if i.endswith(".png")]
    for image in images:
        assert (ROOT / image).is_file(), image
    assert len(set(pngs)) >= 3
    for kind in ("cosine", "ablation", "steering", "ground_truth"):
        assert any(kind in p for p in pngs), kind


def test_the_readme_links_every_notebook():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"](notebooks/{notebook.name})" in README, notebook.name


def walkthrough_commands() -> list[list[str]]:
    section = README.split("## From install to ablating your own finetune", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("misdir ")]


@pytest.mark.parametrize("args", walkthrough_commands(), ids=lambda a: " ".join(a[:2]))
def test_each_walkthrough_command_parses(args):
    """Each command and option exists and each value has the right type (parsed as the CLI would, not run)."""
    command = typer.main.get_command(app)
    rest = list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        command = command.get_command(command.make_context("misdir", [name, "--help"], resilient_parsing=True), name)
        assert command is not None, args
    command.make_context(args[0], rest)


def test_the_walkthrough_covers_the_chain():
    names = [" ".join(a[:1]) for a in walkthrough_commands()]
    for step in ("data", "finetune", "evaluate", "directions", "similarity", "ablate", "control"):
        assert step in names, step
    shipped = [arg for args in walkthrough_commands() for arg in args if arg.startswith("checkpoints/")]
    assert shipped and all((ROOT / arg).exists() for arg in shipped), shipped
    outputs = [args[args.index("--out") + 1] for args in walkthrough_commands() if "--out" in args]
    assert all(out.startswith("results/") for out in outputs), outputs  # git-ignored: the walkthrough leaves git clean
