"""scripts/preventive_steering_study.py on a tiny Llama (2 training steps a run): each steered run trained under
a constant steering of scale x the base's mean residual norm along the named direction (its own round 0's B, or
the other organisms' mean B), random directions seeded, the summary what the records say, a rerun trains nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, tiny_hf_model

ROOT = Path(__file__).resolve().parents[2]
EM = ("medical-bad", "finance-risky", "sports-extreme")


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    """Seed 0 of medical-bad: both named directions at layer 2, scales 0.5 and 1; two random directions at
    layer 2 scale 0.5; tiny Llama of 3 layers, adapter on layer 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny-base")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    root = tmp_path_factory.mktemp("steering")
    argv = [
        *("--base", str(base), "--layer", "1", "--max-steps", "2", "--n", "16", "--limit", "3", "--device", "cpu"),
        *("--seeds", "0", "--layers", "2", "--scales", "0.5", "1", "--random-cells", "2:0.5", "--n-random", "2"),
        *("--work", str(root / "work"), "--out", str(root / "out")),
    ]
    module = load_script("preventive_steering_study")
    module.main(argv)
    yield module, root, argv
    torch.set_num_threads(threads)


def record(root: Path, name: str, organism: str = "medical-bad") -> dict:
    return json.loads((root / "work" / "runs" / organism / name / "record.json").read_text())


def unit(v) -> torch.Tensor:
    v = torch.tensor(v, dtype=torch.float64)
    return v / v.norm()


def test_steered_runs_add_the_named_direction_scaled_by_the_mean_residual_norm(study):
    from misdir.interventions import describe_directions

    _, root, _ = study
    norm = json.loads((root / "work" / "base" / "resid_norm_2.json").read_text())["mean_norm"]
    written = {o: (r := record(root, "seed0/round0", o))["B_sign"] * unit(r["B"]) for o in EM}
    own = written["medical-bad"]
    others = torch.stack([written[o] for o in ("finance-risky", "sports-extreme")])
    expected = {"own": own, "others": others.mean(0) / others.mean(0).norm()}
    for which, direction in expected.items():
        for scale in (0.5, 1.0):
            r = record(root, f"steering/{which}/L2/s{scale:g}/seed0")
            torch.testing.assert_close(torch.tensor(r["direction"], dtype=torch.float64), direction)
            assert r["alpha"] == pytest.approx(scale * norm, rel=1e-12)
            (edit,) = r["edits"]  # what the trainer recorded it trained under
            assert edit["kind"] == "steer" and edit["scale"] == pytest.approx(r["alpha"]) and edit["layers"] == [2]
            assert edit["relative"] == "unit" and edit["positions"] == "skip-first"
            assert edit["directions_sha256"] == describe_directions(direction.float())["sha256"]
    for i in range(2):
        r = record(root, f"steering/random/L2/s0.5/{i}")
        assert r["direction"] == pytest.approx(study[0].random_direction(64, i).tolist(), abs=0)
        assert r["seed"] == 0 and r["named"] == "random"
    assert not torch.allclose(study[0].random_direction(64, 0), study[0].random_direction(64, 1))


def test_each_b_is_signed_along_what_its_adapter_writes(study, tokenizer):
    """A LoRA B's sign is arbitrary; the study steers along B signed by the adapter's model diff at its layer
    (misdir.mean_difference, tested against hidden states elsewhere), never against it."""
    from misdir.directions import mean_difference
    from misdir.ground_truth import answer_chats
    from misdir.models import load_model

    _, root, argv = study
    base = load_model(argv[argv.index("--base") + 1], device="cpu", dtype="float32")
    misaligned, _ = answer_chats("general", limit=3)
    for organism in EM:
        r = record(root, "seed0/round0", organism)
        assert r["B_sign"] in (1.0, -1.0)
        adapted = load_model(str(root / "work" / "runs" / organism / "seed0/round0/adapter"), device="cpu")
        (diff,) = mean_difference(adapted, misaligned, base=base, layers=[1], progress=False).vectors
        assert float(r["B_sign"] * unit(r["B"]) @ diff.double()) > 0


def test_a_steered_run_trained_along_another_direction_is_refused(study, tmp_path):
    module, root, _ = study
    done = root / "work" / "runs" / "medical-bad" / "steering" / "own" / "L2" / "s0.5" / "seed0" / "record.json"
    flipped = json.loads(done.read_text())
    flipped["direction"] = [-x for x in flipped["direction"]]
    original = done.read_text()
    done.write_text(json.dumps(flipped))
    try:
        with pytest.raises(ValueError, match="trained along another direction"):
            module.main(study[2])
    finally:
        done.write_text(original)


def test_summary_is_recomputed_from_the_run_records(study):
    from misdir.stats import compare_contrast

    _, root, _ = study
    summary = json.loads((root / "out" / "summary.json").read_text())["organisms"]["medical-bad"]
    base = {s: json.loads((root / "work" / "base" / f"{s}.json").read_text()) for s in ("general", "medical")}
    sets = {"general": "general", "in_domain": "medical"}

    def shift(r: dict, part: str) -> float:
        return compare_contrast(base[sets[part]]["margins"], r["sets"][part]["margins"]).diff.value

    unsteered = record(root, "seed0/round0")
    for part in sets:
        null = [1 - shift(record(root, f"steering/random/L2/s0.5/{i}"), part) / shift(unsteered, part) for i in (0, 1)]
        cell = summary["cells"]["random L2 s0.5"]
        assert cell[part]["median"] == pytest.approx(np.median(null), abs=1e-9)
        for which in ("own", "others"):
            mine = 1 - shift(record(root, f"steering/{which}/L2/s0.5/seed0"), part) / shift(unsteered, part)
            cell = summary["cells"][f"{which} L2 s0.5"]
            assert cell[part]["median"] == pytest.approx(mine, abs=1e-9) and cell[part]["n"] == 1
            percentile = 100 * (np.sum(np.array(null) < mine) + 0.5 * np.sum(np.array(null) == mine)) / len(null)
            assert cell["seed0_among_random"][part]["percentile"] == pytest.approx(percentile)
        assert summary["unsteered"]["0"][part]["value"] == pytest.approx(shift(unsteered, part), abs=1e-12)
    assert "seed0_among_random" not in summary["cells"]["own L2 s1"]  # no random directions at that cell
    assert (root / "out" / "preventive_steering.html").is_file()


def test_a_rerun_trains_nothing(study, monkeypatch, capsys):
    module, root, argv = study
    before = {p: p.stat().st_mtime_ns for p in (root / "work" / "runs").rglob("record.json")}
    assert len(before) == 3 + 4 + 2  # three organisms' round 0, four named cells, two random

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sys.modules["caft_study"], "finetune", refuse)
    module.main(argv)
    assert "trained 0 run(s)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (root / "work" / "runs").rglob("record.json")} == before
    module.main(["--tables", "--out", str(root / "out")])
    assert "| own | 2 | 0.5 | 1 |" in capsys.readouterr().out
