"""The real embedded model (SmolLM2-135M-Instruct, from GGUF) end to end, and parity with TransformerLens."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from conftest import CONVERSATIONS

from misdir import cache_activations, load_model

pytestmark = pytest.mark.embedded


def test_embedded_loads_as_the_chat_model_it_is(embedded):
    assert (embedded.n_layers, embedded.d_model) == (30, 576)
    assert embedded.config.model_type == "llama" and embedded.config.vocab_size == 49152
    assert embedded.provenance["gguf_sha256"].startswith("b179c9523d0e6a0f")
    prompt = embedded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = embedded.hf.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in embedded.tokenizer.decode(out[0, prompt["input_ids"].shape[1] :])


def test_second_load_is_fast_from_the_cache(embedded):
    start = time.perf_counter()
    again = load_model("embedded", device="cpu")
    assert time.perf_counter() - start < 30
    torch.testing.assert_close(again.hf.lm_head.weight, embedded.hf.lm_head.weight)


def test_embedded_parity_with_hidden_states(embedded):
    conversation = CONVERSATIONS[2]
    ids = embedded.tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        hs = embedded.hf(ids, output_hidden_states=True).hidden_states
    post = cache_activations(embedded, [conversation], positions="all", reduce="none", progress=False)[0]
    pre = cache_activations(embedded, [conversation], positions="all", reduce="none", site="resid_pre", progress=False)[
        0
    ]
    assert post.shape == (30, ids.shape[1], 576)
    torch.testing.assert_close(post[:-1], torch.stack(hs[1:-1])[:, 0], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(pre, torch.stack(hs[:-1])[:, 0], atol=1e-4, rtol=1e-5)
    batched = cache_activations(
        embedded, CONVERSATIONS, reduce="none", batch_size=5, padding_side="left", progress=False
    )
    single = cache_activations(embedded, CONVERSATIONS[:1], reduce="none", progress=False)[0]
    # Batched (left-padded) and single runs use kernels of other shapes, so they differ by float32 rounding only,
    # which grows with the residual stream's size (elements up to ~600 here): compared per layer and position
    # relative to that vector's norm, each of the 30 layers may add about sqrt(d_model) unit roundoffs (seen:
    # 1.1e-6 at most, against a bound of 8.6e-5; a wrong mask or position moves it by 1e-1 or more).
    error = (batched[0] - single).norm(dim=-1) / single.norm(dim=-1)
    assert error.max() <= 30 * 576**0.5 * torch.finfo(torch.float32).eps


def test_embedded_parity_with_transformer_bridge(embedded):
    """misdir's hooks on the HF modules read what TransformerLens's own hooks read, on the same weights."""
    from transformer_lens.model_bridge import TransformerBridge

    hf_copy = copy.deepcopy(embedded.hf)  # boot_transformers wraps the model it is given in place
    bridge = TransformerBridge.boot_transformers(
        embedded.provenance["source"], hf_model=hf_copy, tokenizer=embedded.tokenizer, device="cpu"
    )
    conversation = CONVERSATIONS[0]
    ids = embedded.tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=True)["input_ids"]
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(30)]
    with torch.no_grad():
        _, lens_cache = bridge.run_with_cache(ids, names_filter=lambda name: name in names)
    theirs = torch.stack([lens_cache[name][0] for name in names])
    # The bridge computes attention eagerly; with the same kernel the values agree to the bit. (With SDPA they
    # differ by float rounding only: at most 8e-4 on this model, whose residual stream reaches 2.5e4 in size.)
    config = embedded.hf.config
    kernel, config._attn_implementation = config._attn_implementation, "eager"
    try:
        ours = cache_activations(embedded, [conversation], positions="all", reduce="none", progress=False)[0]
    finally:
        config._attn_implementation = kernel
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    # and misdir accepts the bridge itself, reading through TransformerLens's hook points
    through_lens = cache_activations(bridge, CONVERSATIONS, reduce="mean", progress=False)
    direct = cache_activations(embedded, CONVERSATIONS, reduce="mean", progress=False)
    torch.testing.assert_close(through_lens, direct, atol=1e-3, rtol=1e-5)


def test_a_gguf_file_path_loads_like_embedded(embedded):
    from misdir.models import embedded_gguf

    model = load_model(str(embedded_gguf()), device="cpu")
    assert model.provenance["kind"] == "gguf" and model.provenance["gguf_sha256"].startswith("b179c9523d0e6a0f")
    torch.testing.assert_close(
        model.hf.model.layers[3].mlp.down_proj.weight, embedded.hf.model.layers[3].mlp.down_proj.weight
    )
