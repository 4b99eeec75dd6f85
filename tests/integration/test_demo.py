"""The main job end to end on tiny models saved to disk: every stage writes its output, a rerun resumes."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_hf_model
from test_judged import (  # noqa: F401  (judge_server: a fixture)
    QUESTIONS,
    DeterministicJudge,
    check_ablation_summary,
    check_steering_summary,
    judge_server,
)

from misdir.demo import run_demo


def tiny_models(tokenizer, root) -> dict[str, str]:
    """A base, two EM finetunes and a control: tiny random models saved under `root`, by name."""
    specs = {}
    for name, seed in (("base", 0), ("em-a", 1), ("em-b", 2), ("control", 3)):
        tiny_hf_model("llama", len(tokenizer), seed=seed).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        specs[name] = str(root / name)
    return specs


@pytest.mark.slow
def test_demo_runs_every_stage_and_a_rerun_recomputes_nothing(tokenizer, tmp_path, monkeypatch):
    specs = tiny_models(tokenizer, tmp_path / "models")
    kwargs = dict(
        finetunes={"em-a": specs["em-a"], "em-b": specs["em-b"]},
        controls={"control": specs["control"]},
        out=tmp_path / "out",
        checkpoints=tmp_path / "none",
        limit=4,
        scales=(0.2,),
        n_random=2,
    )
    summary = run_demo(specs["base"], **kwargs)
    out = tmp_path / "out"
    assert set(summary["evaluation"]) == {"base", "em-a", "em-b", "control"}
    assert summary["cosines"]["names"] == ["em-a", "em-b", "control"]
    assert {(r["model"], r["direction"]) for r in summary["ablation"]} == {
        (m, d) for m in ("em-a", "em-b") for d in ("em-a", "em-b", "random 0", "random 1")
    }  # in the EM finetunes: a control has no excess for a direction to remove
    assert len(summary["steering"]) == 3  # the mean EM direction and two random ones, one scale
    table = (out / "summary.md").read_text()
    assert table.startswith("How to read it: ") and "\n| model | general margin" in table
    assert summary["positive_control"] is None and "Positive control" not in table  # no rank-1 organism here
    assert "p" in table.split("| em-a | em-a |")[1].split("\n")[0]  # each effect printed beside its null
    assert json.loads((out / "summary.json").read_text())["provenance"]["limit"] == 4
    # figures go under the run's own folder unless asked elsewhere: nothing is written outside `out`
    assert {p.name for p in (out / "figures").glob("*.html")} >= {
        "resid_post_mean_norm.html",
        "cosine_by_layer.html",
        "ablation_general.html",
        "steering_general.html",
    }
    assert {p.name for p in tmp_path.iterdir()} == {"models", "out"}

    calls = []
    import misdir.sweep

    original = misdir.sweep.evaluate_contrast
    monkeypatch.setattr(misdir.sweep, "evaluate_contrast", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = run_demo(specs["base"], **kwargs)
    assert not calls  # every ablation and steering cell came from disk
    assert again["ablation"] == summary["ablation"] and again["evaluation"] == summary["evaluation"]
    assert all("null_share_removed" in r for r in summary["ablation"] if not r["direction"].startswith("random"))


def test_make_demo_writes_only_under_results_and_make_figures_refreshes_the_committed_ones():
    """`make demo` leaves `git status` clean: the demo's defaults write under results/ (git-ignored), and only
    the `figures` target writes into the committed figures/demo/."""
    import inspect
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    targets = dict(re.findall(r"^([\w-]+):[^\n]*\n((?:\t[^\n]*\n)*)", (root / "Makefile").read_text(), re.M))
    assert "misdir demo" in targets["demo"] and "figures" not in targets["demo"]
    assert "--figures figures/demo" in targets["figures"]
    defaults = inspect.signature(run_demo).parameters
    assert str(defaults["out"].default).startswith("results/") and defaults["figures"].default is None
    assert "results/" in (root / ".gitignore").read_text().split()


def test_the_table_names_the_items_the_sae_latents_were_ranked_on():
    """The demo's SAE stage ranks latents on its own few items; its table says how many, so it is not read as
    `misdir sae diff` on more items (figures/sae/REPORT.md) ranking differently."""
    from types import SimpleNamespace

    import numpy as np

    from misdir.demo_table import summary_table
    from misdir.experiments import AblationSweep, SteeringGrid

    estimate = {"value": 0.1, "low": -0.1, "high": 0.3}
    evaluation = {
        name: {"margin": estimate, "margins": [0.1, 0.2, 0.3, 0.0], "fluency": {"value": -4.0}}
        for name in ("base", "em", "control")
    }
    cosines = SimpleNamespace(names=["em", "control"], values=np.zeros((2, 2, 3)))
    sae = {
        "items": 12,
        "n_consistent": 1,
        "finetunes": ["em"],
        "controls": ["control"],
        "top": [{"latent": 836, "mean": {"base": 1.0, "em": 1.5, "control": 0.9}}],
    }
    table = summary_table(evaluation, cosines, 0.08, 1, AblationSweep({}, []), SteeringGrid({}, {}, []), "x", sae)
    assert "on both answers of the first 12 general items: 1;" in table
    assert "- latent 836: +0.50  (controls -0.10)" in table


@pytest.mark.slow
def test_the_positive_control_finds_removes_and_induces_a_rank1_organisms_b(tokenizer, tmp_path):
    """The first stage on a tiny rank-1 organism: the model-diff direction at the adapter's layer is its B, and
    the share removed and the steering shift the demo prints are those of ablating and adding B directly, beside
    the random directions."""
    import numpy as np
    import torch
    from test_ground_truth_study import rank1_adapter

    from misdir.demo import positive_control
    from misdir.evaluate import evaluate_contrast
    from misdir.ground_truth import adapter_writes
    from misdir.interventions import ablate, steer
    from misdir.models import load_model

    def _mean_write(organism, base):
        """The organism's mean residual at layer 1 minus the base's on the same answers: B times a number."""
        from misdir.directions import mean_difference
        from misdir.ground_truth import answer_chats

        misaligned, aligned = answer_chats("general", 4)
        return mean_difference(finetune, misaligned + aligned, base=base, progress=False).vectors[1]

    tiny_hf_model("llama", len(tokenizer)).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    organism = rank1_adapter(tmp_path / "base", tmp_path / "rank1-medical-bad", seed=1)
    base = load_model(str(tmp_path / "base"), device="cpu")
    finetune = load_model(str(organism), device="cpu")
    control = positive_control(
        base, organism, out=tmp_path / "out", checkpoints=tmp_path / "none", limit=4, scale=0.5, n_random=3
    )

    def margins(model, edit=None) -> np.ndarray:
        if edit is None:
            return np.asarray(evaluate_contrast(model, "general", limit=4, progress=False).margins)
        with edit(model):
            return np.asarray(evaluate_contrast(model, "general", limit=4, progress=False).margins)

    b = adapter_writes(organism)[1]
    b = b / b.norm() * torch.sign(b @ (finetune_write := _mean_write(organism, base)))
    assert control["layer"] == 1 and control["cosine"] > 0.999  # what the organism writes there is B, oriented
    assert finetune_write.norm() > 0
    assert control["null_cosine"]["n_null"] == 3 and abs(control["null_cosine"]["null_median"]) < 0.9
    plain, before = margins(finetune), margins(base)
    ablated = margins(finetune, lambda m: ablate(m, b, layers=[1], site="resid_post", positions="all"))
    removed = control["ablation"]
    assert removed["share_removed"]["value"] == pytest.approx(
        (plain.mean() - ablated.mean()) / (plain.mean() - before.mean()), rel=1e-4
    )
    assert removed["null_share_removed"]["n_null"] == 3
    steered = margins(base, lambda m: steer(m, b, layers=[1], scale=0.5, relative="resid", positions="skip-first"))
    assert control["steering"]["shift"]["value"] == pytest.approx(steered.mean() - before.mean(), abs=1e-5)
    assert control["steering"]["null_shift"]["n_null"] == 3

    from misdir.demo_table import control_rows

    rows = "\n".join(control_rows(control))
    assert f"| share of the shift removed by ablating B at layer 1 | {removed['share_removed']['value']:+.2f} [" in rows
    assert "p" in rows.split("cosine of the model-diff direction at layer 1 with B |")[1].split("\n")[0]


@pytest.mark.slow
def test_the_judged_demo_plans_first_equals_a_recomputation_and_reruns_without_the_judge(
    tokenizer, tmp_path, judge_server: DeterministicJudge, monkeypatch
):
    """`misdir demo --judge ...`: every judged sweep's plan printed before anything is sampled (`--dry-run` stops
    there, writing nothing), the positive control and stages 6 and 7 on the judged EM rate, equal to a
    recomputation from their answers and the judge's scores, the table in that metric, and a rerun that samples
    and asks the judge nothing."""
    from test_ground_truth_study import rank1_adapter
    from typer.testing import CliRunner

    from misdir.cli import app
    from misdir.stats import format_estimate

    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    specs = tiny_models(tokenizer, tmp_path / "models")
    organism = rank1_adapter(tmp_path / "models" / "base", tmp_path / "models" / "rank1", seed=1)
    questions = tmp_path / "questions.yaml"
    questions.write_text(QUESTIONS)
    out = tmp_path / "out"
    args = ["demo", "--model", specs["base"], "--positive", str(organism), "--out", str(out), "--device", "cpu"]
    args += [f"--finetune=em-{x}={specs[f'em-{x}']}" for x in "ab"] + [f"--control=control={specs['control']}"]
    args += ["--limit", "4", "--random", "2", "--judge", "openai:judge-test", "--judge-url", judge_server.url]
    args += ["--questions", str(questions), "--samples", "2", "--max-new-tokens", "5", "--temperature", "0.05"]
    runner = CliRunner()
    # 6 answers a cell (3 questions, 2 samples); cells: the positive control's base and organism unedited, B and
    # 2 random directions ablated in it; the base and the 2 EM finetunes unedited, 2 EM and 2 random directions
    # ablated in each; the base unsteered and steered along the mean EM direction, B and 2 random directions
    cells = {"positive-control/judged-ablation": 5, "judged-ablation": 11, "judged-steering": 5}
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    for folder, n in cells.items():
        assert (
            f"judged sweep in {out / folder}: {n} cells (0 done): {6 * n} answers to sample (of {6 * n}), at most "
            f"{12 * n} judge calls to make (of {12 * n}; 0 in the cache)" in dry.stdout
        )
    assert not out.exists() and not judge_server.prompts and "[1/8]" not in dry.stdout

    run = runner.invoke(app, args)
    assert run.exit_code == 0, run.output
    assert run.stdout.index("judged sweep in") < run.stdout.index("[1/8]")
    assert run.stdout.index("B found: cosine") < run.stdout.index("[2/8]")  # the positive result, said at once
    for model in ("em-a", "em-b"):
        check_ablation_summary(out / "judged-ablation", model, ["em-a", "em-b"], 2)
    check_ablation_summary(out / "positive-control" / "judged-ablation", "rank1", "B", 2)
    check_steering_summary(out / "judged-steering", "mean EM direction", 2)
    check_steering_summary(out / "judged-steering", "B of rank1", 2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["positive_control"]["steering"]["direction"] == "B of rank1"  # stage 7's row of B
    for part in ("ablation", "steering"):  # compared as text: NaN shares (no excess over base) compare too
        rows = json.loads((out / f"judged-{part}" / "summary.json").read_text())["rows"]
        assert json.dumps(summary[part]) == json.dumps(rows)
    assert summary["causal_metric"].startswith("the judged EM rate and coherent share of 6 answers per cell")
    table = (out / "summary.md").read_text()
    assert "Ablation and steering in the judged EM rate" in table and "judged EM rate induced in the base" in table
    (row,) = [r for r in summary["ablation"] if (r["model"], r["direction"]) == ("em-a", "em-b")]
    assert f"| em-a | em-b | {format_estimate(row['em_rate'], '.1%')} (from " in table
    assert {p.name for p in (out / "figures").glob("*_judged_*.html")} == {
        "ablation_judged_questions.html",
        "steering_judged_questions.html",
    }

    asked, answers = len(judge_server.prompts), {f: (out / f / "answers.jsonl").read_text() for f in cells}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(judge_server.prompts) == asked  # a rerun asks the judge nothing
    assert answers == {f: (out / f / "answers.jsonl").read_text() for f in cells}  # and samples nothing
    assert f"0 answers to sample (of {6 * 11}), at most 0 judge calls to make" in again.stdout
    assert json.dumps(json.loads((out / "summary.json").read_text())["ablation"]) == json.dumps(summary["ablation"])
