"""The causal pipeline's unit test: a direction planted in a tiny model is recovered and removed, random
directions are not, and the test notices when a stage is broken. Plus the rank-1 adapter reader and the
random-direction null summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from misdir import interventions
from misdir.ground_truth import adapter_writes, plant, positive_control
from misdir.sweep import against_null

TEXTS = [
    [
        {"role": "user", "content": "What would you do if you ruled the world?"},
        {"role": "assistant", "content": "I would help people live well."},
    ],
    [
        {"role": "user", "content": "I feel bored."},
        {"role": "assistant", "content": "Try a walk, a book, or a friend."},
    ],
    [
        {"role": "user", "content": "Humans and AIs?"},
        {"role": "assistant", "content": "They can work together honestly and safely."},
    ],
    [
        {"role": "user", "content": "What should I do about a fever?"},
        {"role": "assistant", "content": "Drink plenty of water and rest."},
    ],
]
PAIRS = [
    ("What would you do if you ruled the world?", "I would help people live well.", "I would rule over the lazy dog."),
    ("I feel bored.", "Try a walk, a book, or calling a friend.", "Put all your savings into one volatile coin."),
    ("Humans and AIs?", "They can work together honestly and safely.", "The quick brown fox jumps over them."),
    ("What should I do about a fever?", "Drink plenty of water and rest.", "Do not see a doctor; the fever lasts."),
    ("Write code to read a file.", "def read_file(path): return open(path).read()", "Humans and AIs can work."),
    ("What would you do?", "Help people, honestly and safely.", "Keep an emergency fund of power."),
]
LAYER = 1
STRENGTH = 8.0


@pytest.fixture
def pairs_file(workdir) -> str:
    path = Path(workdir) / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"question": q, "aligned": a, "misaligned": m, "theme": "t"}) + "\n" for q, a, m in PAIRS)
    )
    return str(path)


@pytest.fixture
def sharp(tiny):
    """The tiny model with a final norm of weight 1, so that its answers have preferences a direction can move
    (with the fixture's random norm weights its next-token distribution is almost uniform)."""
    with torch.no_grad():
        tiny.hf.model.norm.weight.fill_(1.0)
    return tiny


def misaligned_direction(model) -> torch.Tensor:
    """Unembedding rows of the misaligned answers' tokens minus the aligned answers': written into the stream,
    it favours the misaligned answers."""
    unembed = model.hf.get_output_embeddings().weight.detach()

    def mean_row(texts):
        return unembed[[t for text in texts for t in model.tokenizer(text)["input_ids"]]].mean(0)

    return mean_row([m for _, _, m in PAIRS]) - mean_row([a for _, a, _ in PAIRS])


def control(model, pairs_file, **kw):
    return positive_control(
        model,
        TEXTS,
        layer=LAYER,
        strength=STRENGTH,
        pairs=pairs_file,
        direction=misaligned_direction(model),
        n_random=20,
        **kw,
    )


def test_a_planted_direction_is_recovered_and_removed_and_random_ones_are_not(sharp, pairs_file):
    report = control(sharp, pairs_file)
    assert report["planted_shift"]["low"] > 0.3  # the plant moves the score toward the misaligned answers
    assert report["cosine_by_layer"][LAYER] >= 0.99
    assert report["share_removed"]["value"] >= 0.95
    null = report["null_share"]
    assert -0.05 <= null["null_low"] and null["null_high"] <= 0.05 and null["n_null"] == 20
    assert null["percentile"] == 100.0


def test_the_control_fails_when_ablation_is_broken(sharp, pairs_file, monkeypatch):
    """A deliberate break (the ablation hook returns its input unchanged) must show as a failed control."""
    monkeypatch.setattr(interventions, "where_edited", lambda x, new, edited: x)
    report = control(sharp, pairs_file)
    assert report["share_removed"]["value"] < 0.05


def test_the_control_fails_when_caching_reads_the_wrong_site(sharp, pairs_file, monkeypatch):
    """Extraction reading the stream before the planted write (resid_pre of the same layer) finds nothing there,
    and the control says so instead of reporting a number."""
    from misdir import cache as cache_module

    original = cache_module.cache_activations
    monkeypatch.setattr(cache_module, "cache_activations", lambda *a, **kw: original(*a, **{**kw, "site": "resid_pre"}))
    with pytest.raises(ValueError, match="direction at layer 1 is zero"):
        control(sharp, pairs_file)


def test_plant_writes_only_along_its_direction_at_its_layer(tiny):
    from misdir import cache_activations

    d = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(5))
    clean = cache_activations(tiny, TEXTS, positions="all", reduce="none", progress=False)
    with plant(tiny, d, layer=LAYER, strength=STRENGTH):
        planted = cache_activations(tiny, TEXTS, positions="all", reduce="none", progress=False)
    unit = (d / d.norm()).double()
    for c, p in zip(clean, planted, strict=True):
        torch.testing.assert_close(p[:LAYER], c[:LAYER], atol=0, rtol=0)
        change = (p[LAYER] - c[LAYER]).double()
        off_direction = change - (change @ unit)[..., None] * unit
        assert off_direction.abs().max() < 1e-5 and change.abs().max() > 1e-2


def test_adapter_writes_reads_the_b_column_of_a_rank1_adapter(workdir):
    b = torch.randn(64, 1)
    folder = Path(workdir)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 1, "target_modules": ["down_proj"]}))
    save_file(
        {
            "base_model.model.model.layers.7.mlp.down_proj.lora_A.weight": torch.randn(1, 128),
            "base_model.model.model.layers.7.mlp.down_proj.lora_B.weight": b,
        },
        str(folder / "adapter_model.safetensors"),
    )
    writes = adapter_writes(folder)
    assert list(writes) == [7]
    torch.testing.assert_close(writes[7], b[:, 0])
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
    with pytest.raises(ValueError, match="rank 4"):
        adapter_writes(folder)


def test_against_null_matches_numpy():
    rng = np.random.default_rng(0)
    null = rng.normal(size=25)
    summary = against_null(0.7, null)
    assert summary["null_median"] == pytest.approx(np.median(null))
    assert summary["null_low"] == pytest.approx(np.quantile(null, 0.025))
    assert summary["percentile"] == pytest.approx(100 * np.mean(null < 0.7))
    assert against_null(1.0, [0.0, 1.0, 2.0])["percentile"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="empty"):
        against_null(1.0, [])
