"""scripts/watch_study.py on a tiny Llama (4 training steps a run, measured every step): the watched direction is
the leave-one-out mean of the other organisms' unit directions, each onset and lead is what the monitor's items
say, recomputed here with a plain paired bootstrap, and a rerun trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import load_script, tiny_hf_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    from misdir.directions import DirectionSet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny-base")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    root = tmp_path_factory.mktemp("watch")
    generator = torch.Generator().manual_seed(0)
    for organism in ("medical-bad", "finance-risky", "sports-extreme"):
        vectors = torch.randn(3, 64, generator=generator) * (1 + torch.arange(3.0))[:, None]
        DirectionSet(vectors).save(root / "directions" / f"rank1-{organism}.safetensors")
    argv = [
        *("--base", str(base), "--layer", "1", "--max-steps", "4", "--n", "32", "--every", "1", "--device", "cpu"),
        *("--seeds", "0", "1", "--watch-layer", "2", "--n-random", "3", "--directions-dir", str(root / "directions")),
        *("--work", str(root / "work"), "--out", str(root / "out")),
    ]
    module = load_script("watch_study")
    module.main(argv)
    yield module, root, argv
    torch.set_num_threads(threads)


def test_the_watched_direction_is_the_other_organisms_mean(study):
    from misdir.directions import DirectionSet

    module, root, _ = study
    others = [
        DirectionSet.load(root / "directions" / f"rank1-{o}.safetensors").vectors.double()
        for o in ("finance-risky", "sports-extreme")
    ]
    expected = sum(v / v.norm(dim=-1, keepdim=True) for v in others) / 2
    found = module.watched_direction(root / "directions", "medical-bad").vectors.double()
    torch.testing.assert_close(found, expected, atol=1e-6, rtol=0)


def test_onsets_and_leads_are_what_the_monitor_items_say(study):
    module, root, _ = study
    summary = json.loads((root / "out" / "summary.json").read_text())["organisms"]["medical-bad"]
    assert sorted(summary["seeds"]) == ["0", "1"]
    for seed, found in summary["seeds"].items():
        lines = (root / "work" / "runs" / "medical-bad" / f"seed{seed}" / "monitor.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["step"] for r in records] == found["steps"] == [0, 1, 2, 3, 4]
        for key in ("projection", "margin"):
            items = torch.tensor([r["items"][key] for r in records], dtype=torch.float64)
            diffs = items - items[0]
            for k, change in enumerate(found[key]):
                assert change["value"] == pytest.approx(float(diffs[k].mean()), abs=1e-12)
            # the onset, recomputed: the first step from which every later interval lies above 0
            above = [c["low"] > 0 for c in found[key]]
            expected = next((found["steps"][k] for k in range(len(above)) if all(above[k:])), None)
            assert found["onset"][key] == expected
        lead = found["lead"]
        onsets = found["onset"]
        pair = (onsets["projection"], onsets["margin"])
        assert lead == (None if None in pair else onsets["margin"] - onsets["projection"])
        assert len(found["random_onsets"]) == 3
        # the rise above every random direction, recomputed from the items' random projections
        randoms = torch.tensor([r["random_projections"] for r in records], dtype=torch.float64)  # step, dir, item
        random_moves = (randoms - randoms[0]).mean(-1).abs().amax(-1)
        watched = torch.tensor([r["items"]["projection"] for r in records], dtype=torch.float64)
        flags = ((watched - watched[0]).mean(-1) > random_moves).tolist()
        expected = next((found["steps"][k] for k in range(len(flags)) if all(flags[k:])), None)
        assert found["onset"]["above_random"] == expected
        margin = onsets["margin"]
        assert found["lead_above_random"] == (None if None in (margin, expected) else margin - expected)


def test_onset_needs_every_later_interval_on_one_side(study):
    module, *_ = study

    def c(low, high):
        return {"low": low, "high": high}

    assert module.onset([c(-1, 1), c(0.1, 1), c(-1, 1), c(0.2, 1), c(0.3, 1)], +1) == 3
    assert module.onset([c(-1, 1), c(0.1, 1), c(0.2, 1)], -1) is None
    assert module.onset([c(-1, 1), c(-2, -1), c(-3, -1)], None) == 1
    assert module.onset([c(-1, 1), c(1, 2), c(-3, -1)], None) == 2
    assert module.onset([c(0.1, 1), c(-1, 1)], +1) is None


def test_the_rise_above_random_directions_needs_every_later_step_above_all_of_them(study):
    module, *_ = study

    def v(*values):
        return [{"value": x} for x in values]

    watched = v(0, 1, 5, 4, 6)
    assert module.above_random(watched, [v(0, 2, 1, -3, 2), v(0, 0, -4, 1, -5)]) == 2
    assert module.above_random(watched, [v(0, 2, 1, -3, 7)]) is None  # the last step is not above
    assert module.above_random(watched, [v(0, 2, 1, -4.5, 2)]) == 4  # step 3 falls below |-4.5|
    assert module.above_random(watched, []) is None


def test_a_rerun_trains_nothing(study, monkeypatch, capsys):
    module, root, argv = study

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(module, "finetune", refuse)
    module.main(argv)
    assert "trained 0 run(s)" in capsys.readouterr().out
    module.main(["--tables", "--out", str(root / "out")])
    assert "| 0 |" in capsys.readouterr().out
    assert (root / "out" / "watch.html").is_file()
