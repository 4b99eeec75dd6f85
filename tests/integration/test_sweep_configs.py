"""misdir's organisms analysis as a configuration of the sweep engine, against the same edits made directly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_hf_model


@pytest.mark.slow
def test_the_organisms_analysis_sweeps_equal_direct_edits_and_resume(tokenizer, tmp_path, monkeypatch):
    from misdir.directions import DirectionSet
    from misdir.evaluate import evaluate_contrast
    from misdir.experiments import ablation_effect, steering_sweep
    from misdir.models import load_model
    from misdir.organisms import ORGANISMS, analyze_organisms, own_control, plot_analysis

    checkpoints = tmp_path / "organisms"
    for seed, name in enumerate(["base", *(o.name for o in ORGANISMS)]):
        tiny_hf_model("llama", len(tokenizer), seed=seed).save_pretrained(checkpoints / name)
        tokenizer.save_pretrained(checkpoints / name)
    base_spec = str(checkpoints / "base")
    kwargs = dict(base=base_spec, device="cpu", limit=2, n_random=2, scales=(0.5,), progress=False)
    analysis = analyze_organisms(checkpoints, tmp_path / "out", **kwargs)

    em = [o.name for o in ORGANISMS if o.role == "em"]
    layer = analysis["provenance"]["layer"]
    named = [f"{s} direction" for s in em] + [
        f"{s} minus control" for s in em if own_control(s, [o.name for o in ORGANISMS])
    ]
    assert len(named) == 2 * len(em)  # every EM organism has a control of its domain
    rows = {(r["model"], r["direction"]): r for r in analysis["ablation"]["rows"]}
    assert set(rows) == {(m, d) for m in em for d in [*named, "random 0", "random 1"]}

    base = load_model(base_spec, device="cpu", dtype="float32")
    plain = evaluate_contrast(base, "general", limit=2, progress=False)
    finetune = load_model(str(checkpoints / "finance-risky"), device="cpu", dtype="float32")
    units = {n: DirectionSet.load(tmp_path / "out" / "directions" / f"{n}.safetensors").unit()[layer] for n in em}
    direct = ablation_effect(
        finetune,
        units["medical-bad"],
        name="x",
        base=plain,
        limit=2,
        finetune=evaluate_contrast(finetune, "general", limit=2, progress=False),
    )
    row = rows[("finance-risky", "medical-bad direction")]
    assert row["margin"]["value"] == pytest.approx(direct.result.margin.value, abs=1e-9)
    assert row["share_removed"]["value"] == pytest.approx(direct.share_removed.value, rel=1e-9)
    assert row["null_share_removed"]["n_null"] == 2

    mean_em = torch.stack([units[n] for n in em]).mean(0)
    (steered,) = steering_sweep(base, mean_em, layer=layer, scales=[0.5], base=plain, limit=2)
    (row,) = [r for r in analysis["steering"]["rows"] if r["direction"] == "mean EM direction"]
    assert (row["layer"], row["scale"]) == (layer, 0.5)
    assert row["shift"]["value"] == pytest.approx(steered.shift, abs=1e-9)
    assert row["null_shift"]["n_null"] == 2

    import misdir.sweep

    calls = []
    original = misdir.sweep.evaluate_contrast
    monkeypatch.setattr(misdir.sweep, "evaluate_contrast", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = analyze_organisms(checkpoints, tmp_path / "out", **kwargs)
    assert not calls and again["ablation"]["rows"] == analysis["ablation"]["rows"]  # the sweeps resumed
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["steering"] == again["steering"]

    written = {p.name for p in plot_analysis(again, tmp_path / "figures", directions=tmp_path / "out" / "directions")}
    assert {"organisms_ablation_general.html", "organisms_steering_general.html"} <= written
