"""Hooks, caching, ablation and generation on a model dispatched by accelerate with a `device_map`.

On this CPU-only machine the split is CPU and disk: offloaded modules keep their weights on `meta`
between calls and accelerate's AlignDevicesHook loads them for each call, which is the machinery a
split over GPUs uses too (one execution device per module, inputs moved to it).
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CONVERSATIONS

from misdir import Model, cache_activations, load_model
from misdir.contrast import answer_logprobs
from misdir.generate import generate
from misdir.hooks import SITES
from misdir.interventions import ablate, steer

pytest.importorskip("accelerate")

TEXTS = ["Humans and AIs can work together honestly.", "I feel bored. What should I do?", "Rest."]


def dispatched(model: Model, offload_dir: str) -> Model:
    """A copy of `model` with the embedding, the unembedding and every other layer offloaded to disk."""
    from accelerate import dispatch_model

    device_map = {"model.embed_tokens": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu"}
    device_map["lm_head"] = "disk"
    device_map |= {f"model.layers.{i}": "disk" if i % 2 == 0 else "cpu" for i in range(model.n_layers)}
    hf = copy.deepcopy(model.hf)
    hf = dispatch_model(hf, device_map=device_map, main_device="cpu", offload_dir=offload_dir)
    return Model(hf=hf, tokenizer=model.tokenizer, spec=model.spec + " dispatched")


@pytest.fixture
def split(tiny, workdir) -> Model:
    return dispatched(tiny, workdir)


def test_offloaded_weights_live_on_meta_and_inputs_go_to_the_execution_device(split):
    assert split.hf.get_input_embeddings().weight.device.type == "meta"
    assert split.input_device == torch.device("cpu")


@pytest.mark.parametrize("site", SITES)
def test_cache_matches_the_undispatched_model_at_every_site(tiny, split, site):
    for reduce in ("none", "mean"):
        want = cache_activations(tiny, TEXTS, site=site, positions="all", reduce=reduce, progress=False)
        got = cache_activations(split, TEXTS, site=site, positions="all", reduce=reduce, progress=False)
        if reduce == "mean":
            got, want = [got], [want]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_ablation_steering_and_generation_match_the_undispatched_model(tiny, split):
    r = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(2))
    settings = dict(max_new_tokens=4, temperature=1.0, seed=5, batch_size=2, progress=False)
    results = []
    for model in (tiny, split):
        with ablate(model, r, site=("resid_pre", "resid_mid", "resid_post")):
            ablated = cache_activations(model, TEXTS, positions="all", reduce="none", progress=False)
            scores = answer_logprobs(model, CONVERSATIONS[:3], batch_size=3, progress=False)
            answers = generate(model, TEXTS[:2], **settings)
        with steer(model, r, layers=[1], scale=0.5, relative="resid"):
            steered = cache_activations(model, TEXTS, positions="all", reduce="mean", progress=False)
        results.append((ablated, scores, [a.answer for a in answers], steered))
    (a0, s0, g0, t0), (a1, s1, g1, t1) = results
    for x, y in zip(a1 + s1, a0 + s0, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)
    torch.testing.assert_close(t1, t0, atol=1e-6, rtol=0)
    assert g1 == g0
    assert all((x[:, :, None, :] @ (r / r.norm())[:, None]).abs().max() < 1e-4 for x in a1)


def test_load_model_with_an_explicit_device_map(tiny, workdir):
    tiny.hf.save_pretrained(workdir)
    tiny.tokenizer.save_pretrained(workdir)
    device_map = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
    device_map |= {"model.rotary_emb": "cpu"}
    loaded = load_model(workdir, device_map=device_map)
    assert loaded.input_device == torch.device("cpu")
    want = cache_activations(tiny, TEXTS, positions="all", progress=False)
    got = cache_activations(loaded, TEXTS, positions="all", progress=False)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
