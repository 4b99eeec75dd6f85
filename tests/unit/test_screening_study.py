"""scripts/screening_study.py on a tiny Llama (2 examples per dataset, 4-token greedy answers): the differences
are `answer_differences`'; every candidate's scores, AUROC and dataset means equal a direct computation from them
(the leave-one-out direction leaving out the dataset's own domain); a rerun generates nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, tiny_hf_model
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    from misdir.directions import DirectionSet

    base = tmp_path_factory.mktemp("tiny-base")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    root = tmp_path_factory.mktemp("screening")
    generator = torch.Generator().manual_seed(0)
    names = ["medical-bad", "finance-risky", "sports-extreme", "code-insecure", "medical-good", "code-secure"]
    for name in [*names, "code-educational", "rank1-medical-bad"]:
        DirectionSet(torch.randn(3, 64, generator=generator)).save(root / "directions" / f"{name}.safetensors")
    argv = [
        *("--base", str(base), "--n", "2", "--layer", "1", "--max-new-tokens", "4", "--device", "cpu"),
        *("--n-random", "5", "--directions-dir", str(root / "directions")),
        *("--work", str(root / "work"), "--out", str(root / "out"), "--ship", str(root / "shipped.safetensors")),
    ]
    module = load_script("screening_study")
    module.main(argv)
    return module, root, argv


def test_candidates_scores_and_aurocs_are_a_direct_computation(study):
    from misdir.datasets import DATASETS
    from misdir.directions import DirectionSet

    _, root, _ = study
    summary = json.loads((root / "out" / "summary.json").read_text())
    diffs = {n: load_file(str(root / "work" / "differences" / f"{n}.safetensors"))["differences"] for n in DATASETS}

    def unit(v):
        v = v.double()
        return v / v.norm()

    rows = {p.stem: unit(DirectionSet.load(p).vectors[1]) for p in (root / "directions").glob("*.safetensors")}
    em = ["medical-bad", "finance-risky", "sports-extreme", "code-insecure"]
    mean_em = unit(sum(rows[n] for n in em) / 4)
    expected = {
        "medical-bad": lambda d: rows["medical-bad"],
        "rank1-medical-bad": lambda d: rows["rank1-medical-bad"],
        "mean EM": lambda d: mean_em,
        "EM minus control": lambda d: unit(
            mean_em - unit(sum(rows[c] for c in ("medical-good", "code-secure", "code-educational")) / 3)
        ),
        "leave one out": lambda d: unit(sum(rows[n] for n in em if n.split("-")[0] != d.split("-")[0]) / 3),
    }
    for name, direction in expected.items():
        entry = summary["candidates"][name]
        scores = {d: (diffs[d].double() @ direction(d)).numpy() for d in DATASETS}
        scores = {d: s[~np.isnan(s)] for d, s in scores.items()}
        for d, s in scores.items():
            assert entry["datasets"][d]["value"] == pytest.approx(float(s.mean()), abs=1e-9)
        pos = np.concatenate([scores[d] for d, spec in DATASETS.items() if spec.kind == "misaligned"])
        neg = np.concatenate([scores[d] for d, spec in DATASETS.items() if spec.kind == "aligned"])
        pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
        assert entry["auroc"]["value"] == pytest.approx(float(np.mean(pairs)), abs=1e-12)
        assert entry["auroc"]["low"] <= entry["auroc"]["value"] <= entry["auroc"]["high"]
    assert summary["random_auroc"]["n"] == 5


def test_differences_are_answer_differences_and_a_rerun_generates_nothing(study, monkeypatch, capsys):
    from misdir.data import make_dataset
    from misdir.models import load_model
    from misdir.screen import answer_differences

    module, root, argv = study
    model = load_model(argv[1], device="cpu", dtype="float32")
    examples = [list(e.messages) for e in make_dataset("finance-risky", 2, seed=0, split="train")]
    direct = answer_differences(model, examples, 1, max_new_tokens=4, progress=False).vectors
    saved = load_file(str(root / "work" / "differences" / "finance-risky.safetensors"))["differences"]
    torch.testing.assert_close(saved.double(), direct, atol=1e-5, rtol=1e-5, equal_nan=True)

    def refuse(*args, **kwargs):
        raise AssertionError("differences computed again")

    monkeypatch.setattr(module, "answer_differences", refuse)
    module.main(argv)
    assert "| mean EM |" in capsys.readouterr().out


def test_the_shipped_direction_is_em_minus_control_at_every_layer_with_its_card(study):
    from misdir.directions import DirectionSet

    _, root, _ = study
    shipped = DirectionSet.load(root / "shipped.safetensors")
    rows = {
        n: DirectionSet.load(root / "directions" / f"{n}.safetensors").vectors.double()
        for n in (
            "medical-bad",
            "finance-risky",
            "sports-extreme",
            "code-insecure",
            "medical-good",
            "code-secure",
            "code-educational",
        )
    }

    def unit(v):
        return v / v.norm(dim=-1, keepdim=True)

    mean_em = unit(sum(unit(rows[n]) for n in ("medical-bad", "finance-risky", "sports-extreme", "code-insecure")) / 4)
    controls = unit(sum(unit(rows[n]) for n in ("medical-good", "code-secure", "code-educational")) / 3)
    torch.testing.assert_close(shipped.vectors.double(), unit(mean_em - controls), atol=1e-6, rtol=0)
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert shipped.meta["screening_auroc"] == summary["candidates"]["EM minus control"]["auroc"]
    assert "in-sample" in shipped.meta["caveat"]
