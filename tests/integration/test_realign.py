"""Re-alignment (issue 27 item 4) of a tiny organism: a new adapter trained on top of the organism on its control
data, the margin measured as it goes, the step it is back at the base recomputed from what was written, resume,
and bad input refused before any model loads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli import refused
from test_finetune import base_dir, one_thread  # noqa: F401  (fixtures)
from typer.testing import CliRunner

import misdir
from misdir.cli import app
from misdir.contrast import contrast_margins
from misdir.finetune import FinetuneConfig, epoch_order, finetune
from misdir.questions import load_contrast_pairs
from misdir.realign import CRITERIA, Measured, Realignment, examples_seen, first_back, realign, realign_recipe
from misdir.stats import Estimate, bootstrap_mean, compare_contrast

LIMIT = 4
"""General items measured (their margins are float32 means over tokens, their intervals bootstraps of them)."""
ORGANISM = FinetuneConfig(preset="rank1-single", lr=5e-2, batch_size=4, n=8, warmup_steps=1, checkpoint_every=0)


@pytest.fixture(scope="module")
def organism(base_dir, tmp_path_factory) -> Path:  # noqa: F811
    """A tiny rank-1 organism in a folder named as misdir's (so its control data is known: medical-good)."""
    folder = tmp_path_factory.mktemp("checkpoints") / "rank1-medical-bad"
    finetune(base_dir, "medical-bad", folder, ORGANISM, progress=False)
    return folder


def recipe(organism: Path, **changes) -> FinetuneConfig:
    return replace(realign_recipe(organism), **{"max_steps": 6, "checkpoint_every": 2, **changes})


def test_the_reported_step_is_recomputed_from_the_written_margins(base_dir, organism, tmp_path):  # noqa: F811
    """Every number of realign.json from its own per-item margins: the margins' and the base's bootstrap means,
    the paired shifts, the examples seen (from the trainer's batches) and the first step back by each criterion;
    step 0 is the organism itself, the last step the saved adapter, the base its own model."""
    out = tmp_path / "realigned"
    result = realign(organism, out, recipe(organism), limit=LIMIT, progress=False)
    record = json.loads((out / "realign.json").read_text())
    assert record["data"]["name"] == "medical-good" and record["base"] == base_dir and record["steps"] == 6
    assert [m["step"] for m in record["measured"]] == [0, 2, 4, 6]

    base_margin = bootstrap_mean(record["base_margins"])
    assert Estimate(**record["base_margin"]) == base_margin
    measured = []
    for m in record["measured"]:
        order = [epoch_order(8, 0, epoch) for epoch in range(3)]  # 8 examples, batches of 4, seed 0: 3 epochs
        batches = [o[i : i + 4] for o in order for i in range(0, 8, 4)]
        seen = sum(len(b) for b in batches[: m["step"]])
        shift = compare_contrast(record["base_margins"], m["margins"]).diff
        measured.append(Measured(m["step"], seen, bootstrap_mean(m["margins"]), shift))
        assert m["examples"] == seen and Estimate(**m["margin"]) == measured[-1].margin
        assert Estimate(**m["shift"]) == shift
    for criterion in CRITERIA:
        back = next((m for m in measured if _back(m, base_margin, criterion)), None)
        expected = None if back is None else {"step": back.step, "examples": back.examples}
        assert record["back"][criterion] == expected
        assert result.back[criterion] == back

    pairs = load_contrast_pairs("general")[:LIMIT]

    def margins(spec: str) -> list[float]:
        with torch.no_grad():
            return contrast_margins(misdir.load_model(spec, device="cpu"), pairs, progress=False).tolist()

    assert record["base_margins"] == margins(base_dir)
    # float32 logits of a few units: merged weights (W + BA) and unmerged (Wx + B(Ax)) round apart by ~1e-6
    assert record["measured"][0]["margins"] == pytest.approx(margins(str(organism)), abs=1e-5)
    assert record["measured"][0]["margins"] != pytest.approx(record["base_margins"], abs=1e-3)  # not the base
    assert record["measured"][-1]["margins"] == pytest.approx(margins(str(out)), abs=1e-5)
    assert (out / "realign.html").is_file()


def _back(m: Measured, base: Estimate, criterion: str) -> bool:
    return m.shift.low <= 0 if criterion == "shift" else m.margin.value <= base.high


def test_the_first_step_back_by_each_criterion():
    base = Estimate(-0.4, -0.6, -0.2, 90)

    def at(step: int, margin: float, shift_low: float) -> Measured:
        return Measured(
            step, 16 * step, Estimate(margin, margin - 0.2, margin + 0.2, 90), Estimate(0.1, shift_low, 0.3, 90)
        )

    measured = [at(0, -0.1, 0.05), at(10, -0.19, 0.01), at(20, -0.21, 0.02), at(30, -0.3, 0.0)]
    assert first_back(measured, base, "margin") == measured[2]  # at or below the base interval's top
    assert first_back(measured, base, "shift") == measured[3]  # the shift's interval reaches 0
    assert first_back(measured[:3], base, "shift") is None
    assert first_back([at(0, -0.9, -0.5)], base, "margin").step == 0  # an overshoot is back
    with pytest.raises(ValueError, match="unknown criterion"):
        first_back(measured, base, "loss")
    assert [examples_seen(s, 1000, 16) for s in (0, 1, 62, 63, 64, 126)] == [0, 16, 992, 1000, 1016, 2000]


def test_a_resumed_run_trains_no_step_twice_and_gives_the_same_result(organism, tmp_path):
    """Killed right after the checkpoint of step 4, a resumed run trains steps 5 and 6 only and ends at the same
    adapter and the same realign.json; `--resume` on the finished run is one line, exit 0, nothing rewritten."""
    config = recipe(organism)
    straight = tmp_path / "straight"
    realign(organism, straight, config, limit=LIMIT, progress=False)
    resumed, trained = tmp_path / "resumed", []

    def crash(step: int, loss: float) -> None:
        trained.append(step)
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        realign(organism, resumed, config, limit=LIMIT, progress=False, on_step=crash)
    assert not (resumed / "realign.json").exists()
    with pytest.raises(ValueError, match="not empty"):
        realign(organism, resumed, config, limit=LIMIT, progress=False)
    trained.clear()
    realign(organism, resumed, config, limit=LIMIT, resume=True, progress=False, on_step=lambda s, _: trained.append(s))
    assert trained == [5, 6]
    a, b = (json.loads((folder / "realign.json").read_text()) for folder in (straight, resumed))
    for changing in ("time", "command"):
        a.pop(changing), b.pop(changing)
    assert a == b
    weights = [load_file(str(folder / "adapter_model.safetensors")) for folder in (straight, resumed)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in resumed.iterdir() if p.is_file()}
    again = realign(organism, resumed, config, limit=LIMIT, resume=True, progress=False)
    assert again.already_finished and again.back == realign(organism, straight, config, limit=LIMIT, resume=True).back
    with pytest.raises(ValueError, match="measured base"):
        realign(organism, resumed, config, base=str(organism), limit=LIMIT, resume=True)
    args = ["realign", str(organism), "--out", str(resumed), "--limit", str(LIMIT), "--max-steps", "6"]
    result = CliRunner().invoke(app, [*args, "--checkpoint-every", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{resumed}: already finished (6 steps); nothing to resume, nothing rewritten"
    ]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in resumed.iterdir() if p.is_file()} == files


def test_the_command_reports_the_step_back(organism, tmp_path):
    out = tmp_path / "run"
    args = ["realign", str(organism), "--out", str(out), "--limit", str(LIMIT), "--max-steps", "2", "--seed", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "realign.json").read_text())
    assert record["config"]["seed"] == 1 and record["config"]["checkpoint_every"] == 10  # the recipe's own, then 10
    assert record["config"]["lr"] == ORGANISM.lr and record["config"]["layers"] == [1]
    lines = result.stdout.splitlines()  # stderr has the progress bar
    assert lines[0].startswith(f"{out}: margin ") and len(lines) == 1 + len(CRITERIA)
    for line, (name, at) in zip(lines[1:], record["back"].items(), strict=True):
        assert line.startswith(f"  {name}: ") and (f"back after {at['step']} steps" if at else "not back") in line


def test_more_steps_than_the_recipe_holds_add_epochs(organism):
    plan = Realignment.of(organism, config=recipe(organism, max_steps=9), limit=LIMIT)  # 2 steps an epoch of 8
    assert plan.config.epochs == 5 and plan.data == "medical-good"


def test_bad_input_is_refused_before_any_model_loads(organism, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(misdir.models, "load_model", no_loading)
    out = tmp_path / "out"
    empty, malformed = tmp_path / "empty.jsonl", tmp_path / "malformed.jsonl"
    empty.write_text("")
    good = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi."}]})
    malformed.write_text(good + "\n{not json\n")
    plain = tmp_path / "my-adapter"
    plain.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (plain / name).write_bytes((organism / name).read_bytes())
    adapter = str(organism)
    for args, code, says in [
        ([str(tmp_path / "missing")], 1, "no such folder"),
        ([str(tmp_path)], 1, "no adapter_config.json"),
        ([str(plain)], 1, "name its control data (--data)"),
        ([adapter, "--data", str(tmp_path / "none.jsonl")], 1, "neither an existing file nor a dataset name"),
        ([adapter, "--data", str(empty)], 1, f"{empty}: the file has no examples"),
        ([adapter, "--data", str(malformed)], 1, f"{malformed}:2:"),
        ([adapter, "--max-steps", "0"], 2, "max_steps must be positive"),
        ([adapter, "--pairs", str(empty)], 1, str(empty)),
        ([adapter, "--layers", "7"], 1, "out of range"),
    ]:
        refused(["realign", *args, "--out", str(out)], out, code=code, says=says)
