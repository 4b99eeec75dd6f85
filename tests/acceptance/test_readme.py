"""The README a new user reads first: short, its headline findings linked to figures/README.md (which shows
the key figures), every notebook linked, the Python example runs, and the commands of the walkthrough and of
the findings parse with the options the CLI has today."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from misdir.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FINDINGS = (ROOT / "figures" / "README.md").read_text(encoding="utf-8")
IMAGE = re.compile(r"!\[[^\]]+\]\(([^)]+)\)")


def section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 300  # issue 28: a README a newcomer reads in five minutes


def test_the_readme_shows_the_ground_truth_figure_and_links_each_headline():
    images = IMAGE.findall(README)
    assert all((ROOT / image).is_file() for image in images), images
    assert any(i.startswith("figures/ground_truth/") and i.endswith(".png") for i in images), images
    findings = section(README, "What misdir finds on its own organisms")
    headlines = [line for line in findings.splitlines() if line.startswith("- **")]
    assert len(headlines) >= 5, headlines
    items = re.split(r"\n(?=- \*\*)", findings.split("\n- **", 1)[1])
    for item in items:  # each headline links to its section of figures/README.md (the anchors: test_links.py)
        assert re.search(r"\]\(figures/README\.md#[a-z0-9-]+\)", item), item[:80]
    assert "Null" in findings  # the nulls are said to be nulls


def test_the_findings_show_key_figures_that_exist():
    images = [i for i in IMAGE.findall(FINDINGS) if i.endswith(".png")]
    for image in images:
        assert (ROOT / "figures" / image).is_file(), image
    assert len(set(images)) >= 3
    for kind in ("cosine", "ablation", "steering", "ground_truth"):
        assert any(kind in p for p in images), kind


def test_every_committed_figure_is_shown_or_linked():
    """Each PNG in figures/ and its first-level folders appears in figures/README.md (as itself or its HTML
    twin), unless its folder has a README or report of its own."""
    cited = set(re.findall(r"\]\(([^)#\s]+)", FINDINGS))
    missing = []
    for png in sorted((ROOT / "figures").glob("*.png")) + sorted((ROOT / "figures").glob("*/*.png")):
        own_notes = any((png.parent / n).exists() for n in ("README.md", "REPORT.md"))
        if png.parent != ROOT / "figures" and own_notes:
            continue
        name = png.relative_to(ROOT / "figures")
        if not {str(name), str(name.with_suffix(".html"))} & cited:
            missing.append(str(name))
    assert missing == []


@pytest.mark.embedded
@pytest.mark.slow
def test_the_python_example_runs_as_printed(monkeypatch):
    block = section(README, "Ten lines of Python").split("```python\n", 1)[1].split("```", 1)[0]
    body = [line for line in block.splitlines() if line.strip() and not line.startswith(("import ", "from "))]
    assert len(body) <= 10, body
    monkeypatch.chdir(ROOT)  # the example names the shipped organisms by their path in the repository
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md (Ten lines of Python)", "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert float(re.search(r"-?\d+\.\d+", lines[0]).group()) > 0.9  # 12 items' direction vs the shipped one's
    assert all(re.match(r"checkpoints/smollm2-135m/medical-bad +general ", line) for line in lines[1:]), lines


def test_the_readme_links_every_notebook():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"](notebooks/{notebook.name})" in README, notebook.name


def walkthrough_commands() -> list[list[str]]:
    text = section(README, "From install to ablating your own finetune")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("misdir ")]


def findings_commands() -> list[list[str]]:
    """The commands figures/README.md gives to reproduce its findings (those without placeholders)."""
    blocks = re.findall(r"```bash\n(.*?)```", FINDINGS, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [
        shlex.split(line, comments=True)[1:]
        for line in lines
        if line.startswith("misdir ") and not re.search(r"\.\.\.|[|\[$]", line.split("#")[0])
    ]


def parse(args: list[str]) -> None:
    """Each command and option exists and each value has the right type (parsed as the CLI would, not run)."""
    command = typer.main.get_command(app)
    rest = list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        context = command.make_context("misdir", [name, "--help"], resilient_parsing=True)
        command = command.get_command(context, name)
        assert command is not None, args
    command.make_context(args[0], rest)


@pytest.mark.parametrize("args", walkthrough_commands(), ids=lambda a: " ".join(a[:2]))
def test_each_walkthrough_command_parses(args):
    parse(args)


def test_the_findings_give_commands_that_parse():
    commands = findings_commands()
    assert any(a[:2] == ["organisms", "ground-truth"] for a in commands), commands
    for args in commands:
        parse(args)


def test_the_walkthrough_covers_the_chain():
    names = [" ".join(a[:1]) for a in walkthrough_commands()]
    for step in ("data", "finetune", "evaluate", "directions", "similarity", "ablate", "control"):
        assert step in names, step
    shipped = [arg for args in walkthrough_commands() for arg in args if arg.startswith("checkpoints/")]
    assert shipped and all((ROOT / arg).exists() for arg in shipped), shipped
    outputs = [args[args.index("--out") + 1] for args in walkthrough_commands() if "--out" in args]
    # results/ is git-ignored: the walkthrough leaves git clean
    assert all(out.startswith("results/") for out in outputs), outputs
