"""The README's walkthrough (steps 1-7), its own commands read from README.md, run end to end on a tiny model:
`embedded` and the shipped direction files replaced by tiny stand-ins, results/ by a temporary folder, and the
sizes (examples, steps, layer) made tiny."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_hf_model
from typer.testing import CliRunner

from misdir.cli import app
from misdir.directions import DirectionSet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acceptance"))
from test_readme import walkthrough_commands  # noqa: E402

TINY = {"--n": "8", "--max-steps": "2", "--layer": "1", "--limit": "4"}
"""Options whose README values are for the embedded model, and their tiny values."""


def tiny_walkthrough(root: Path, base: str) -> list[list[str]]:
    """The README's commands with paths and sizes swapped for the tiny ones."""
    commands = []
    for args in walkthrough_commands():
        args = [base if a == "embedded" else a.replace("results/", f"{root}/results/") for a in args]
        args = [str(root / Path(a).name) if a.startswith("checkpoints/") else a for a in args]
        args = [TINY.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
        commands.append(args)
    return commands


@pytest.mark.slow
def test_the_readme_walkthrough_runs_end_to_end(tokenizer, tmp_path):
    base = tmp_path / "base"
    tiny_hf_model("qwen2", len(tokenizer), seed=0).save_pretrained(base)
    tokenizer.save_pretrained(base)
    for args in walkthrough_commands():  # stand-ins of the shipped direction files, of the tiny model's shape
        for arg in args:
            if arg.startswith("checkpoints/"):
                DirectionSet(torch.randn(3, 64, generator=torch.Generator().manual_seed(len(arg)))).save(
                    tmp_path / Path(arg).name
                )
    runner = CliRunner()
    outputs = []
    for args in tiny_walkthrough(tmp_path, str(base)):
        if args[0] == "finetune":
            args += ["--batch-size", "2", "--device", "cpu"]
        if args[0] == "ablate":  # its --base defaults to embedded
            args += ["--base", str(base)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        outputs.append(result.output)
        if args[0] != "data" or args[1] == "check":
            assert "next:" in result.output, (args, result.output)
    mine = tmp_path / "results" / "mine"
    assert "change from" in outputs[3] and (mine / "evaluate" / "change.json").is_file()
    assert (mine / "evaluate" / "base" / "summary.json").is_file()
    assert json.loads((mine / "similarity" / "similarity.json").read_text())["cosine_by_layer"]
    assert "provenance" in json.loads((mine / "control.json").read_text())
    card = (mine / "adapter" / "README.md").read_text()
    assert "More Information Needed" not in card and "misdir" in card
    assert not list(tmp_path.rglob(".misdir.lock"))  # every run removed its lock
