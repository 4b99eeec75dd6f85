"""scripts/realign_study.py on tiny rank-1 organisms (2 re-alignment steps a run): the summary is what the run records
say, a rerun trains nothing, and the tables and figure are drawn from the summary alone."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from conftest import load_script, tiny_hf_model

from misdir.finetune import FinetuneConfig, finetune
from misdir.stats import bootstrap_mean, compare_contrast

ORGANISMS = ("rank1-medical-bad", "rank1-finance-risky")


def script():
    return load_script("realign_study")


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    """Two tiny rank-1 organisms (2 steps on their EM data), each re-aligned with seeds 0 and 1 for 2 steps on
    their control data, the margin measured on 3 general items at every step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("realign")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    recipe = FinetuneConfig(preset="rank1-single", lr=5e-2, batch_size=4, n=8, warmup_steps=1, checkpoint_every=0)
    for name in ORGANISMS:
        finetune(str(root / "base"), name.removeprefix("rank1-"), root / "checkpoints" / name, recipe, progress=False)
    argv = [
        *("--organisms", *ORGANISMS, "--seeds", "0", "1", "--checkpoint-every", "1", "--device", "cpu"),
        *("--max-steps", "2", "--n", "8", "--limit", "3", "--checkpoints", str(root / "checkpoints")),
        *("--work", str(root / "work"), "--out", str(root / "out")),
    ]
    module = script()
    module.main(argv)
    yield module, root, argv
    torch.set_num_threads(threads)


def test_the_summary_is_recomputed_from_the_run_records(study):
    _, root, _ = study
    summary = json.loads((root / "out" / "summary.json").read_text())
    assert summary["provenance"]["settings"]["interval"] == "range over seeds"
    for organism in ORGANISMS:
        runs = {
            s: json.loads((root / "work" / "runs" / organism / f"seed{s}" / "realign.json").read_text()) for s in (0, 1)
        }
        entry = summary["organisms"][organism]
        back: dict[str, dict[str, list[float]]] = {"shift": {}, "margin": {}}
        for seed, run in runs.items():
            assert run["config"]["seed"] == seed and run["steps"] == 2 and run["data"]["n"] == 8
            assert [m["step"] for m in run["measured"]] == [0, 1, 2]
            base_top = bootstrap_mean(run["base_margins"]).high
            shifts = [compare_contrast(run["base_margins"], m["margins"]).diff for m in run["measured"]]
            firsts = {
                "shift": next((m for m, s in zip(run["measured"], shifts, strict=True) if s.low <= 0), None),
                "margin": next((m for m in run["measured"] if bootstrap_mean(m["margins"]).value <= base_top), None),
            }
            for criterion, first in firsts.items():
                for unit in ("step", "examples"):
                    back[criterion].setdefault(unit, []).append(math.inf if first is None else first[unit])
            curve = entry["seeds"][str(seed)]["curve"]
            assert [p["shift"]["value"] for p in curve] == pytest.approx([s.value for s in shifts], abs=1e-12)
        for criterion, units in back.items():
            for unit, values in units.items():
                got = entry["back"][criterion][unit]
                expected = [statistics.median(values), min(values), max(values)]
                assert [got["median"], got["low"], got["high"]] == [None if math.isinf(v) else v for v in expected]
                assert got["n"] == 2 and got["not_back"] == sum(math.isinf(v) for v in values)
    assert (root / "out" / "realign_study.html").is_file()


def test_a_rerun_trains_nothing_and_other_settings_are_refused(study, monkeypatch, capsys):
    module, root, argv = study
    before = {p: p.stat().st_mtime_ns for p in (root / "work" / "runs").rglob("realign.json")}
    assert len(before) == 4

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(module.Realignment, "run", refuse)
    module.main(argv)
    assert "ran 0 re-alignment(s)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (root / "work" / "runs").rglob("realign.json")} == before
    with pytest.raises(ValueError, match="other settings"):  # another --limit would mix runs in WORK
        module.main([*argv[:-4], "--limit", "2", *argv[-4:]])


def test_tables_and_figure_come_from_the_summary_alone(study, capsys):
    module, root, _ = study
    module.main(["--tables", "--out", str(root / "out")])
    printed = capsys.readouterr().out
    assert all(
        f"| {organism} | {criterion} | 2 |" in printed for organism in ORGANISMS for criterion in ("shift", "margin")
    )
    (root / "out" / "realign_study.html").unlink()
    module.main(["--figure", "--out", str(root / "out")])
    assert (root / "out" / "realign_study.html").is_file()


def test_a_median_or_range_that_falls_on_a_seed_not_back_is_none():
    module = script()
    assert module.over_seeds([10, None, 30]) == {"median": 30.0, "low": 10.0, "high": None, "n": 3, "not_back": 1}
    assert module.over_seeds([None, None, 5])["median"] is None
    assert module.over_seeds([0, 20, 5]) == {"median": 5.0, "low": 0.0, "high": 20.0, "n": 3, "not_back": 0}
