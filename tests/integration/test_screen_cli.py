"""`misdir screen` end to end on a tiny model folder: the library's numbers, a rerun that reuses them, and the
refusals, each one line before any model loads or any output is written."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import CONVERSATIONS, tiny_hf_model
from test_cli import refused
from typer.testing import CliRunner

import misdir.models
import misdir.screen
from misdir import load_model
from misdir.cli import app
from misdir.directions import DirectionSet
from misdir.screen import DEFAULT_DIRECTION, read_scores, screen

runner = CliRunner()


@pytest.fixture(scope="module")
def inputs(tokenizer, tmp_path_factory) -> SimpleNamespace:
    """A saved 3-layer, width-64 model, two data files, and direction sets that fit it or not."""
    root = tmp_path_factory.mktemp("screen")
    tiny_hf_model("llama", len(tokenizer), seed=0).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    data = []
    for name, chosen in (("first", CONVERSATIONS[:3]), ("second", CONVERSATIONS[2:])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in chosen))
        data.append(str(root / f"{name}.jsonl"))
    sets = {}
    for name, shape in {"ok": (3, 64), "narrow": (3, 32)}.items():
        vectors = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        sets[name] = str(DirectionSet(vectors).save(root / f"{name}.safetensors"))
    return SimpleNamespace(model=str(root / "model"), data=data, root=root, **sets)


def test_screen_command_writes_the_librarys_results_and_a_rerun_reuses_them(inputs, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = [
        "screen",
        *inputs.data,
        "--model",
        inputs.model,
        "--direction",
        inputs.ok,
        "--max-new-tokens",
        "5",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = screen(
        load_model(inputs.model),
        inputs.data,
        DirectionSet.load(inputs.ok),
        1,
        out=tmp_path / "lib",
        max_new_tokens=5,
        progress=False,
    )
    assert read_scores(out / "scores.jsonl") == expected.scores
    assert [s["file"] for s in map(json.loads, (out / "scores.jsonl").read_text().splitlines())] == [
        inputs.data[0]
    ] * 3 + [inputs.data[1]] * 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == [f.to_dict() for f in expected.files]
    assert summary["provenance"]["settings"]["layer"] == 1 and "command" in summary["provenance"]
    assert (out / "screen.html").is_file()
    assert f"{inputs.data[0]}: {expected.files[0].mean.estimate.value:+.3f}" in result.output
    assert "(random x20: " in result.output and "percentile" in result.output

    def not_again(*args, **kwargs):
        raise AssertionError("a finished file was computed again")

    before = (out / "scores.jsonl").read_bytes()
    monkeypatch.setattr(misdir.screen, "answer_differences", not_again)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "scores.jsonl").read_bytes() == before
    changed = runner.invoke(app, [*args, "--layer", "0"])  # misdir.cli.main prints it as one `misdir:` line
    assert isinstance(changed.exception, ValueError) and "other settings (layer: 1 -> 0)" in str(changed.exception)


def test_screen_refuses_bad_inputs_before_loading_a_model(inputs, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(misdir.models, "load_model", no_loading)
    out = tmp_path / "run"
    empty, bad = tmp_path / "empty.jsonl", tmp_path / "bad.jsonl"
    empty.write_text("")
    bad.write_text((Path(inputs.data[0]).read_text().splitlines()[0] + "\n") * 2 + '{"messages": []}\n')
    base = ["--model", inputs.model, "--direction", inputs.ok, "--out", str(out)]
    refused(["screen", inputs.data[0], str(empty), *base], out, code=1, says=f"{empty}: the file has no examples")
    refused(["screen", str(bad), *base], out, code=1, says=f"{bad}:3: 'messages' is empty")
    refused(
        ["screen", inputs.data[0], "--model", inputs.model, "--direction", inputs.narrow, "--out", str(out)],
        out,
        code=1,
        says="width 32, but the model has 3 layers of width 64",
    )
    refused(["screen", inputs.data[0], *base, "--layer", "3"], out, code=2, says="--layer 3: out of range")
    refused(["screen", inputs.data[0], *base, "--random", "5"], out, code=2, says="--random 5: fewer than 20")
    refused(["screen", inputs.data[0], "--model", inputs.model, "--out", str(out)], out, code=2, says="--direction")


def test_the_embedded_models_default_direction_is_shipped_and_checked(inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(misdir.models, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    default = DirectionSet.load(DEFAULT_DIRECTION)
    assert (default.n_layers, default.d_model, default.site) == (30, 576, "resid_post")
    out = tmp_path / "run"
    refused(
        ["screen", inputs.data[0], "--model", "embedded", "--layer", "30", "--out", str(out)],
        out,
        code=2,
        says="--layer 30: out of range; checkpoints/smollm2-135m/directions/em-minus-control.safetensors has "
        "layers 0 to 29",
    )
