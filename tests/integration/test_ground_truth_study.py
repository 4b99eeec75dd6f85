"""`ground_truth_study` end to end on tiny rank-1 organisms: its rows equal the same edits made directly, and
each EM organism is compared with the control of its own domain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_hf_model

ORGANISMS = ("rank1-medical-bad", "rank1-finance-risky", "rank1-medical-good", "rank1-finance-safe")


def rank1_adapter(base: Path, out: Path, seed: int) -> Path:
    """A rank-1 adapter on layer 1's down_proj with a non-zero B: it writes along B there."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = LoraConfig(r=1, lora_alpha=1, target_modules=["down_proj"], layers_to_transform=[1])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 1.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def organisms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_tokenizer

    root = tmp_path_factory.mktemp("rank1")
    tokenizer = make_tokenizer()
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    for seed, name in enumerate(ORGANISMS, start=1):
        rank1_adapter(root / "base", root / name, seed)
    return root


@pytest.mark.slow
def test_the_study_matches_direct_edits_and_compares_each_organism_with_its_own_control(organisms, tmp_path):
    from misdir.evaluate import evaluate_contrast
    from misdir.ground_truth import adapter_writes, ground_truth_study
    from misdir.interventions import ablate
    from misdir.models import load_model
    from misdir.organisms import own_control

    assert own_control("rank1-finance-risky", ORGANISMS) == "rank1-finance-safe"
    assert own_control("rank1-medical-bad", ORGANISMS) == "rank1-medical-good"
    assert own_control("rank1-code-insecure", ORGANISMS) is None
    study = ground_truth_study(
        organisms,
        tmp_path / "out",
        organisms=ORGANISMS,
        base=str(organisms / "base"),
        sets=("general",),
        n_random=2,
        scales=(),
        positions=(),
        limit=3,
        device="cpu",
        progress=False,
    )

    def margins(spec: str, edit=None) -> np.ndarray:
        model = load_model(spec, device="cpu", dtype="float32")
        if edit is None:
            return np.asarray(evaluate_contrast(model, "general", limit=3, progress=False).margins)
        with ablate(model, edit, layers=[1], site="resid_post"):
            return np.asarray(evaluate_contrast(model, "general", limit=3, progress=False).margins)

    finance = margins(str(organisms / "rank1-finance-risky"))
    safe = margins(str(organisms / "rank1-finance-safe"))
    rows = {(r["model"], r["pairs"]): r for r in study["specificity"]}
    assert set(rows) == {("rank1-medical-bad", "general"), ("rank1-finance-risky", "general")}
    assert rows["rank1-finance-risky", "general"]["control"] == "rank1-finance-safe"
    difference = rows["rank1-finance-risky", "general"]["difference"]["value"]
    assert difference == pytest.approx((finance - safe).mean(), abs=1e-9)

    base = margins(str(organisms / "base"))
    b = adapter_writes(organisms / "rank1-finance-risky")[1]
    ablated = margins(str(organisms / "rank1-finance-risky"), b)
    (row,) = [r for r in study["ablation"] if r["model"] == "rank1-finance-risky" and r["direction"] == "B"]
    expected = (finance.mean() - ablated.mean()) / (finance.mean() - base.mean())
    assert row["share_removed"]["value"] == pytest.approx(expected, rel=1e-6)
    assert row["null_share"]["n_null"] == 2
    written = json.loads((tmp_path / "out" / "ground_truth.json").read_text())
    assert written["specificity"] == study["specificity"]
