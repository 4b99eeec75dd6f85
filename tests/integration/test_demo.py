"""The main job end to end on tiny models saved to disk: every stage writes its output, a rerun resumes."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_hf_model

from misdir.demo import run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_a_rerun_recomputes_nothing(tokenizer, tmp_path, monkeypatch):
    specs = {}
    for name, seed in (("base", 0), ("em-a", 1), ("em-b", 2), ("control", 3)):
        path = tmp_path / "models" / name
        tiny_hf_model("llama", len(tokenizer), seed=seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        specs[name] = str(path)
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
        (m, d) for m in ("em-a", "em-b", "control") for d in ("em-a", "em-b", "random 0", "random 1")
    }
    assert len(summary["steering"]) == 3  # the mean EM direction and two random ones, one scale
    table = (out / "summary.md").read_text()
    assert table.startswith("| model | general margin")
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

    from misdir.demo import _table
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
    table = _table(evaluation, cosines, 0.08, 1, AblationSweep({}, []), SteeringGrid({}, {}, []), sae)
    assert "on both answers of the first 12 general items: 1;" in table
    assert "- latent 836: +0.50  (controls -0.10)" in table
