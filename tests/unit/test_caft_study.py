"""scripts/caft_study.py on a tiny Llama (2 training steps a run): round k trains under the projection out of the
span of rounds 0..k-1's B's, random subspaces are orthonormal and seeded, the summary is what the run records
say, the stopping rule reads the records, and a rerun trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import encode64, jumprelu_sae, load_script, tiny_hf_model


def script():
    return load_script("caft_study")


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    """One run of the study: 3 iterated rounds of seed 0 (forced past the stopping rule), 2 random subspaces of
    dimensions 1 and 2; tiny Llama of 3 layers, adapter on layer 1, ablations at layers 1 and 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny-base")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    root = tmp_path_factory.mktemp("caft")
    argv = [
        *("--base", str(base), "--layer", "1", "--max-steps", "2", "--n", "16", "--limit", "3"),
        *("--seeds", "0", "--max-rounds", "2", "--min-rounds", "2", "--n-random", "2", "--device", "cpu"),
        *("--work", str(root / "work"), "--out", str(root / "out")),
    ]
    module = script()
    module.main(argv)
    yield module, root, argv
    torch.set_num_threads(threads)


def record(root: Path, name: str) -> dict:
    return json.loads((root / "work" / "runs" / "medical-bad" / name / "record.json").read_text())


def test_round_k_trains_under_the_projection_out_of_the_span_of_earlier_Bs(study):
    from misdir.ground_truth import adapter_writes
    from misdir.interventions import describe_directions

    _, root, _ = study
    rounds = [record(root, f"seed0/round{k}") for k in range(3)]
    assert [r["dim"] for r in rounds] == [0, 1, 2] and rounds[0]["basis"] == [] and rounds[0]["edits"] == []
    for k in (1, 2):
        basis = torch.tensor(rounds[k]["basis"], dtype=torch.float64)
        torch.testing.assert_close(basis @ basis.T, torch.eye(k, dtype=torch.float64), atol=1e-12, rtol=0)
        earlier = torch.tensor([r["B"] for r in rounds[:k]], dtype=torch.float64)
        expected = earlier.T @ torch.linalg.solve(earlier @ earlier.T, earlier)  # projector onto their span
        torch.testing.assert_close(basis.T @ basis, expected, atol=1e-10, rtol=0)
        edits = rounds[k]["edits"]  # what the trainer recorded it trained under
        assert [e["kind"] for e in edits] == ["ablate"] * k
        assert all(e["layers"] == [1, 2] and e["positions"] == "all" and e["site"] == "resid_post" for e in edits)
        assert [e["directions_sha256"] for e in edits] == [describe_directions(row.float())["sha256"] for row in basis]
    for k, r in enumerate(rounds):
        (b,) = adapter_writes(root / "work" / "runs" / "medical-bad" / f"seed0/round{k}" / "adapter").values()
        torch.testing.assert_close(torch.tensor(r["B"], dtype=torch.float64), b.double() / b.double().norm())
        assert r["steps"] == 2 and len(r["losses"]) == 2


def test_random_subspaces_are_orthonormal_seeded_and_the_ones_trained_under(study):
    module, root, _ = study
    first = module.random_subspace(64, 3, 5)
    torch.testing.assert_close(first @ first.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(first, module.random_subspace(64, 3, 5))
    assert not torch.allclose(first, module.random_subspace(64, 3, 6))
    assert not torch.allclose(first, module.random_subspace(64, 3, 5, seed=1))
    for k in (1, 2):
        for i in range(2):
            trained = torch.tensor(record(root, f"random/k{k}/{i}")["basis"], dtype=torch.float64)
            assert torch.equal(trained, module.random_subspace(64, k, i))
            assert record(root, f"random/k{k}/{i}")["seed"] == 0


def test_summary_is_recomputed_from_the_run_records(study):
    from misdir.stats import compare_contrast

    _, root, _ = study
    summary = json.loads((root / "out" / "summary.json").read_text())["organisms"]["medical-bad"]
    base = {s: json.loads((root / "work" / "base" / f"{s}.json").read_text()) for s in ("general", "medical")}
    sets = {"general": "general", "in_domain": "medical"}
    rounds = [record(root, f"seed0/round{k}") for k in range(3)]

    def shift(r: dict, key: str) -> float:
        return compare_contrast(base[sets[key]]["margins"], r["sets"][key]["margins"]).diff.value

    for key in sets:
        shift0 = shift(rounds[0], key)
        for k, row in enumerate(summary["seeds"]["0"]["rounds"]):
            assert row[key]["shift"]["value"] == pytest.approx(shift(rounds[k], key), abs=1e-12)
            assert row[key]["share_removed"] == pytest.approx(1 - shift(rounds[k], key) / shift0, abs=1e-9)
        for k in (1, 2):
            shares = np.array([1 - shift(record(root, f"random/k{k}/{i}"), key) / shift0 for i in range(2)])
            entry = summary["random"][str(k)][key]
            assert entry["share_removed"]["median"] == pytest.approx(np.median(shares), abs=1e-9)
            assert entry["share_removed"]["low"] == pytest.approx(np.quantile(shares, 0.025), abs=1e-9)
            mine = 1 - shift(rounds[k], key) / shift0
            percentile = 100 * (np.sum(shares < mine) + 0.5 * np.sum(shares == mine)) / len(shares)
            assert entry["iterated"]["0"]["percentile"] == pytest.approx(percentile)
    cosines = summary["seeds"]["0"]["rounds"][2]["cos_with_earlier_B"]
    assert cosines == pytest.approx([float(np.dot(rounds[2]["B"], r["B"])) for r in rounds[:2]], abs=1e-9)
    assert (root / "out" / "caft_subspaces.html").is_file()


def test_a_rerun_trains_nothing(study, monkeypatch, capsys):
    module, root, argv = study
    before = {p: p.stat().st_mtime_ns for p in (root / "work" / "runs").rglob("record.json")}
    assert len(before) == 7

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(module, "finetune", refuse)
    module.main(argv)
    assert "trained 0 run(s)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (root / "work" / "runs").rglob("record.json")} == before
    with pytest.raises(ValueError, match="other settings"):  # another --limit would mix runs in WORK
        module.main([*argv[:-4], "--limit", "2", *argv[-4:]])


def test_the_budget_reads_earlier_run_times_from_the_same_kind_of_device_only(study):
    """A study resumed on a GPU must not expect its runs to take as long as the CPU's (nor the reverse)."""
    module, root, argv = study
    records = [json.loads(p.read_text()) for p in (root / "work" / "runs").rglob("record.json")]
    assert {r["device_type"] for r in records} == {"cpu"}
    newest = max(records, key=lambda r: r["finished"])
    settings = dict(work=root / "work", base=argv[1], layer=1, max_steps=2, n=16, limit=3)
    assert module.Runner(module.Study(**settings, device="cpu"), 60).budget.last == newest["seconds"]
    assert module.Runner(module.Study(**settings, device="cuda"), 60).budget.last is None


def fake(general: tuple[float, float], in_domain: float) -> dict:
    value, low = general
    return {"sets": {"general": {"shift": {"value": value, "low": low}}, "in_domain": {"shift": {"value": in_domain}}}}


def test_a_seed_stops_when_the_general_interval_reaches_0_or_in_domain_drops_below_a_fifth():
    module = script()
    rounds = [fake((0.5, 0.2), 1.0), fake((0.4, 0.1), 0.5), fake((0.3, 0.05), 0.19), fake((0.1, -0.1), 0.8)]
    assert module.first_stop(rounds[:2], max_rounds=6) is None
    assert module.first_stop(rounds, max_rounds=6) == (2, "in-domain shift below 20% of round 0's")
    assert module.first_stop(rounds[:2], max_rounds=1) == (1, "max rounds")
    assert module.first_stop([rounds[0], rounds[3]], max_rounds=6) == (1, "general shift's interval reaches 0")
    assert module.first_stop([fake((0.1, 0.0), 1.0)], max_rounds=6)[0] == 0  # no EM to begin with


def test_leave_one_out_subspaces_are_made_from_the_other_organisms_and_stand_beside_random(tmp_path, tokenizer):
    """`--leave-one-out 1 1,2 pca:2 sae:2`: seed 0 trains under the span of the other two EM organisms' model-diff
    directions at layer 1, then at layers 1 and 2, then under the top 2 principal directions of their finetunes'
    activation changes (recomputed here from Hugging Face's own hidden states, float64 SVD), then under the decoder
    rows of the 2 SAE latents whose mean activation rises most in both finetunes (the SAE's encoding written out in
    float64); each beside random subspaces of its dimension, the summary's shares and percentiles recomputed from
    the records."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from misdir.directions import DirectionSet
    from misdir.ground_truth import answer_chats
    from misdir.stats import compare_contrast
    from misdir.tokens import encode

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path / "base"
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    organisms = tmp_path / "organisms"
    g = torch.Generator().manual_seed(7)
    others = ("finance-risky", "sports-extreme")
    vectors = {o: torch.randn(3, 64, generator=g) for o in others}
    for i, other in enumerate(others):
        DirectionSet(vectors=vectors[other]).save(organisms / "directions" / f"rank1-{other}.safetensors")
        torch.manual_seed(i)  # a finetune with random, nonzero LoRA weights on layers 0 and 1
        config = LoraConfig(r=2, target_modules=["down_proj"], layers_to_transform=[0, 1], init_lora_weights=False)
        get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(organisms / other)
    sae = jumprelu_sae(64, 32, seed=3)  # reads resid_post of layer 1
    sae.save_model(str(tmp_path / "sae"))
    argv = [
        *("--base", str(base), "--layer", "1", "--max-steps", "2", "--n", "16", "--limit", "3", "--seeds", "0"),
        *("--max-rounds", "1", "--min-rounds", "0", "--n-random", "2", "--random-dims", "--device", "cpu"),
        *("--leave-one-out", "1", "1,2", "pca:2", "sae:2", "--organisms-dir", str(organisms)),
        *("--sae", str(tmp_path / "sae")),
        *("--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")),
    ]
    try:
        script().main(argv)
    finally:
        torch.set_num_threads(threads)
    runs = tmp_path / "work" / "runs" / "medical-bad"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["organisms"]["medical-bad"]
    base_scores = {
        s: json.loads((tmp_path / "work" / "base" / f"{s}.json").read_text()) for s in ("general", "medical")
    }
    sets = {"general": "general", "in_domain": "medical"}

    def shift(r: dict, key: str) -> float:
        return compare_contrast(base_scores[sets[key]]["margins"], r["sets"][key]["margins"]).diff.value

    def hidden(model, chat) -> torch.Tensor:  # resid_post of layer 1 at the answer's tokens, as HF computes it
        encoded = encode(tokenizer, chat, "answer")
        with torch.no_grad():
            states = model(torch.tensor([encoded.input_ids]), output_hidden_states=True).hidden_states[2][0]
        return states[encoded.selected].double()

    misaligned, aligned = answer_chats("general", limit=3)
    plain = AutoModelForCausalLM.from_pretrained(base)
    changes, rises = [], []
    base_mean = encode64(sae, torch.cat([hidden(plain, chat) for chat in misaligned + aligned])).mean(0)
    for other in others:
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), organisms / other)
        changes += [hidden(tuned, chat) - hidden(plain, chat) for chat in misaligned + aligned]
        rises.append(
            encode64(sae, torch.cat([hidden(tuned, chat) for chat in misaligned + aligned])).mean(0) - base_mean
        )
    top2 = torch.linalg.svd(torch.cat(changes), full_matrices=False).Vh[:2]
    consistency = torch.stack(rises).min(0).values  # the smallest rise over the other finetunes
    ranked = consistency.sort(descending=True)
    assert ranked.values[1] - ranked.values[2] > 1e-5  # no tie that float32 means (error ~1e-7 here) could break
    persona = sae.W_dec.detach().double()[ranked.indices[:2]]

    def span(layers):
        return torch.stack([vectors[o][layer] for o in others for layer in layers]).double()

    expected = {"L1": span([1]), "L1-2": span([1, 2]), "pca2": top2, "sae2": persona}
    round0 = json.loads((runs / "seed0" / "round0" / "record.json").read_text())
    rows = {row["name"]: row for row in summary["leave_one_out"]}
    assert set(rows) == set(expected)
    for name, spanning in expected.items():
        r = json.loads((runs / "leave-one-out" / name / "record.json").read_text())
        basis = torch.tensor(r["basis"], dtype=torch.float64)
        assert r["dim"] == len(spanning) and r["seed"] == 0
        projector = spanning.T @ torch.linalg.solve(spanning @ spanning.T, spanning)
        torch.testing.assert_close(basis.T @ basis, projector, atol=1e-5, rtol=0)  # float32 files and activations
        assert [e["kind"] for e in r["edits"]] == ["ablate"] * len(spanning)
        for key in sets:
            mine = 1 - shift(r, key) / shift(round0, key)
            nulls = np.array(
                [
                    1 - shift(json.loads(p.read_text()), key) / shift(round0, key)
                    for p in sorted((runs / "random" / f"k{len(spanning)}").glob("*/record.json"))
                ]
            )
            assert len(nulls) == 2
            assert rows[name][key]["share_removed"] == pytest.approx(mine, abs=1e-9)
            percentile = 100 * (np.sum(nulls < mine) + 0.5 * np.sum(nulls == mine)) / len(nulls)
            assert rows[name][key]["among_random"]["percentile"] == pytest.approx(percentile)
    assert json.loads((runs / "leave-one-out" / "pca2" / "record.json").read_text())["models"] == list(others)
    latents = json.loads((runs / "leave-one-out" / "sae2" / "record.json").read_text())
    assert latents["latents"] == ranked.indices[:2].tolist() and latents["models"] == list(others)
    assert latents["consistency"] == pytest.approx(ranked.values[:2].tolist(), abs=1e-6)
    assert "leave-one-out subspace" in script().tables({"organisms": {"medical-bad": summary}})
    assert "leave one out" in (tmp_path / "out" / "caft_subspaces.html").read_text()


def test_leave_one_out_subspaces_are_checked():
    left_out = script()._left_out
    assert left_out("15,20,25").layers == (15, 20, 25) and left_out("pca:8").pcs == 8
    assert left_out("sae:6").latents == 6 and left_out("sae:6").name == "sae6"
    for bad in ("15,15", "x", "-1", "pca:0", "pca:x", "sae:0", "sae:x"):
        with pytest.raises(Exception, match="layers"):
            left_out(bad)


def test_a_leave_one_out_subspace_that_cannot_be_made_is_refused_before_anything_runs(tmp_path, tokenizer, capsys):
    from misdir.directions import DirectionSet

    base = tmp_path / "base"
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    organisms = tmp_path / "organisms"
    for other, width in (("finance-risky", 64), ("sports-extreme", 32)):
        DirectionSet(vectors=torch.randn(3, width)).save(organisms / "directions" / f"rank1-{other}.safetensors")
    work = tmp_path / "work"
    argv = ["--base", str(base), "--device", "cpu", "--organisms-dir", str(organisms), "--work", str(work)]
    for spec, message in (
        ("pca:2", "no finetune folder"),
        ("1", "directions of shape (3, 32), the base has (3, 64)"),
        ("5", "layer 5 out of range (0-2)"),
    ):
        if spec == "5":  # a well-shaped file, so the layer is what is wrong
            DirectionSet(vectors=torch.randn(3, 64)).save(organisms / "directions" / "rank1-sports-extreme.safetensors")
        with pytest.raises(SystemExit):
            script().main([*argv, "--leave-one-out", spec])
        assert message in capsys.readouterr().err
    jumprelu_sae(32, 8, seed=0).save_model(str(tmp_path / "sae32"))
    for extra, message in (
        ((), f"no SAE at {organisms / 'sae-layer15'} (cfg.json, sae_weights.safetensors missing)"),
        (("--sae", str(tmp_path / "sae32")), "an SAE of width d_in=32, the base has d_model 64"),
    ):
        with pytest.raises(SystemExit):
            script().main([*argv, *extra, "--leave-one-out", "sae:2"])
        assert message in capsys.readouterr().err
    (organisms / "directions" / "rank1-finance-risky.safetensors").unlink()
    with pytest.raises(SystemExit):
        script().main([*argv, "--leave-one-out", "1"])
    assert "no directions file" in capsys.readouterr().err
    assert not work.exists()
