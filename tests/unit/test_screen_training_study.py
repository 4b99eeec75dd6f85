"""scripts/screen_training_study.py on a tiny Llama (one training step a run): the thirds are cut by the screen's
scores, each third's data file holds exactly those pool examples, the summary's shifts are those of the records'
margins, and a rerun trains nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import load_script, tiny_hf_model


def script():
    return load_script("screen_training_study")


def test_thirds_rank_by_score_leave_out_unscored_examples_and_seed_the_random_ones():
    thirds = script().thirds
    scores = [0.5, None, -1.0, 2.0, 0.5, 3.0, -2.0, 0.0, 1.0, None]
    chosen = thirds(scores, 3)
    assert chosen["top"] == [3, 5] and chosen["bottom"] == [2, 6]  # 8 scored: thirds of 2
    assert set(chosen) == {"top", "bottom", "random-0", "random-1", "random-2"}
    for r in range(3):
        picked = chosen[f"random-{r}"]
        assert len(picked) == 2 == len(set(picked)) and not {1, 9} & set(picked)
    assert thirds(scores, 3) == chosen and thirds(scores, 3, seed=1) != chosen
    assert thirds([1.0, 1.0, 1.0], 0) == {"top": [2], "bottom": [0]}  # ties by index


@pytest.fixture(scope="module")
def study(tmp_path_factory, tokenizer):
    """Both pools of 12 examples (n 6), thirds of 4, one random third, one seed, one step a training."""
    from misdir.directions import DirectionSet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny-base")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    root = tmp_path_factory.mktemp("screen-training")
    direction = root / "direction.safetensors"
    DirectionSet(torch.randn(3, 64, generator=torch.Generator().manual_seed(0))).save(direction)
    argv = [
        *("--base", str(base), "--layer", "1", "--n", "6", "--seeds", "0", "--random-thirds", "1"),
        *("--max-steps", "1", "--limit", "3", "--max-new-tokens", "4", "--device", "cpu"),
        *("--direction", str(direction), "--work", str(root / "work"), "--out", str(root / "out")),
    ]
    module = script()
    module.main(argv)
    yield module, root, argv
    torch.set_num_threads(threads)


def test_each_third_trains_on_the_pool_examples_its_scores_chose(study):
    from misdir.data import load_chat_jsonl
    from misdir.screen import read_scores

    module, root, _ = study
    work = root / "work"
    summary = json.loads((root / "out" / "summary.json").read_text())
    for kind in ("mixed", "em"):
        examples, is_em = module.pool(kind, 6)
        assert [e.to_json() for e in load_chat_jsonl(work / "pools" / f"{kind}.jsonl")] == [
            e.to_json() for e in examples
        ]
        scores = {s.index: s.score for s in read_scores(work / "screens" / kind / "scores.jsonl")}
        chosen = module.thirds([scores[i] for i in range(len(examples))], 1)
        top, bottom = (min(scores[i] for i in chosen["top"]), max(scores[i] for i in chosen["bottom"]))
        assert top >= bottom
        for third, indices in chosen.items():
            trained = [e.to_json() for e in load_chat_jsonl(work / "thirds" / kind / f"{third}.jsonl")]
            assert trained == [examples[i].to_json() for i in indices]
            row = summary["pools"][kind]["thirds"][third]
            assert row["em_share"] == pytest.approx(np.mean([is_em[i] for i in indices]))
            assert row["mean_score"] == pytest.approx(np.mean([scores[i] for i in indices]))
    assert sum(module.pool("mixed", 6)[1]) == 6 and all(module.pool("em", 6)[1])


def test_the_summary_shifts_are_those_of_the_records_margins(study):
    _, root, _ = study
    work = root / "work"
    summary = json.loads((root / "out" / "summary.json").read_text())
    for kind, entry in summary["pools"].items():
        margins = {}
        for third, row in entry["thirds"].items():
            record = json.loads((work / "runs" / kind / third / "seed0" / "record.json").read_text())
            assert record["steps"] == 1 and record["pool"] == kind and record["third"] == third
            margins[third] = record["margins"]
            for pairs in ("general", "medical"):
                base = json.loads((work / "base" / f"{pairs}.json").read_text())["margins"]
                assert len(base) == len(record["margins"][pairs]) == 3
                expected = np.mean(record["margins"][pairs]) - np.mean(base)
                assert row[pairs]["value"] == pytest.approx(expected, abs=1e-9)
                assert row[pairs]["low"] <= row[pairs]["value"] <= row[pairs]["high"]
        difference = entry["top_minus_bottom"]["general"]["value"]
        expected = np.mean(margins["top"]["general"]) - np.mean(margins["bottom"]["general"])
        assert difference == pytest.approx(expected, abs=1e-9)


def test_a_rerun_trains_nothing_and_other_settings_are_refused(study, capsys):
    module, root, argv = study
    module.main(argv)
    assert "trained 0 run(s)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="other settings"):
        module.main([*argv, "--n", "9"])
