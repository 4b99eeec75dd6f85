"""cache_activations against the model's own hidden states and independent float64 computations."""

from __future__ import annotations

import pytest
import torch
from conftest import CONVERSATIONS
from safetensors.torch import load_file

from misdir import cache_activations
from misdir.tokens import render_chat

STRINGS = ["The quick brown fox.", "Humans and AIs can work together.", "Rest.", "def f(x):\n    return x"]


def hidden_states(model, ids: list[int]) -> tuple[torch.Tensor, ...]:
    """The Hugging Face model's own hidden states for one unpadded input."""
    with torch.no_grad():
        out = model.hf(torch.tensor([ids]), output_hidden_states=True)
    return tuple(h[0] for h in out.hidden_states)


def answer_positions(tokenizer, conversation) -> tuple[list[int], list[int]]:
    """Independently of misdir: the prompt's tokens, then the answer's own tokens, must prefix the full text."""
    prompt = tokenizer(render_chat(tokenizer, conversation[:-1], add_generation_prompt=True), add_special_tokens=False)
    content = tokenizer(conversation[-1]["content"], add_special_tokens=False)["input_ids"]
    full = tokenizer(render_chat(tokenizer, conversation), add_special_tokens=False)["input_ids"]
    start = len(prompt["input_ids"])
    assert full[start : start + len(content)] == content
    return full, list(range(start, start + len(content)))


def test_resid_post_and_pre_equal_hidden_states(tiny):
    n = tiny.n_layers
    for text in STRINGS:
        ids = tiny.tokenizer(text)["input_ids"]
        hs = hidden_states(tiny, ids)
        post = cache_activations(tiny, [text], positions="all", reduce="none", site="resid_post", progress=False)[0]
        pre = cache_activations(tiny, [text], positions="all", reduce="none", site="resid_pre", progress=False)[0]
        assert post.shape == (n, len(ids), tiny.d_model)
        for layer in range(n):
            torch.testing.assert_close(pre[layer], hs[layer], atol=1e-5, rtol=0)
            if layer < n - 1:  # the last hidden state has the final norm applied
                torch.testing.assert_close(post[layer], hs[layer + 1], atol=1e-5, rtol=0)


def test_sites_add_up_and_attn_out_is_o_proj(tiny):
    text = STRINGS[1]
    got = {
        site: cache_activations(tiny, [text], positions="all", reduce="none", site=site, progress=False)[0]
        for site in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
    }
    o_proj: list[torch.Tensor] = []
    handles = [
        layer.self_attn.o_proj.register_forward_hook(lambda m, a, out: o_proj.append(out[0].detach()))
        for layer in tiny.layers
    ]
    try:
        with torch.no_grad():
            tiny.hf(torch.tensor([tiny.tokenizer(text)["input_ids"]]))
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(got["resid_mid"], got["resid_pre"] + got["attn_out"], atol=1e-6, rtol=0)
    torch.testing.assert_close(got["resid_post"], got["resid_mid"] + got["mlp_out"], atol=1e-6, rtol=0)
    torch.testing.assert_close(got["attn_out"], torch.stack(o_proj), atol=1e-6, rtol=0)


@pytest.mark.parametrize("site", ["resid_post", "resid_mid", "mlp_out"])
def test_batched_equals_one_by_one_and_padding_sides_agree(tiny, site):
    one = [
        cache_activations(tiny, [c], positions="answer", reduce="none", site=site, progress=False)[0]
        for c in CONVERSATIONS
    ]
    for side in ("left", "right"):
        batched = cache_activations(
            tiny,
            CONVERSATIONS,
            positions="answer",
            reduce="none",
            site=site,
            batch_size=3,
            padding_side=side,
            progress=False,
        )
        for a, b in zip(one, batched, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_answer_positions_match_an_independent_tokenization(tiny):
    for conversation in CONVERSATIONS:
        full, answer = answer_positions(tiny.tokenizer, conversation)
        hs = hidden_states(tiny, full)
        got = cache_activations(tiny, [conversation], layers=[0], positions="answer", reduce="none", progress=False)[0]
        torch.testing.assert_close(got[0], hs[1][answer], atol=1e-5, rtol=0)
        last = cache_activations(tiny, [conversation], layers=[0], positions="last", reduce="none", progress=False)[0]
        torch.testing.assert_close(last[0], hs[1][[answer[0] - 1]], atol=1e-5, rtol=0)


def test_mean_equals_float64_mean(tiny):
    layers = [0, tiny.n_layers - 2]
    got = cache_activations(tiny, CONVERSATIONS, layers=layers, reduce="mean", batch_size=2, progress=False)
    rows = []
    for conversation in CONVERSATIONS:
        full, answer = answer_positions(tiny.tokenizer, conversation)
        hs = hidden_states(tiny, full)
        rows.append(torch.stack([hs[layer + 1][answer] for layer in layers]).double())
    expected = torch.cat(rows, dim=1).mean(dim=1)
    assert got.dtype == torch.float32 and got.shape == (2, tiny.d_model)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=0)


def test_mean_over_repeated_data_is_unchanged(tiny):
    """Many batches (10x the data, the same tokens) give the same mean as a few."""
    few = cache_activations(tiny, CONVERSATIONS, reduce="mean", progress=False)
    many = cache_activations(tiny, CONVERSATIONS * 10, reduce="mean", progress=False)
    torch.testing.assert_close(few, many, atol=1e-5, rtol=0)


def test_shards_on_disk_hold_the_same_values(tiny, workdir):
    layers = [0, 2]
    in_memory = cache_activations(tiny, CONVERSATIONS, layers=layers, reduce="none", progress=False)
    out = cache_activations(
        tiny,
        CONVERSATIONS,
        layers=layers,
        reduce="none",
        out=workdir,
        batch_size=2,
        padding_side="left",
        progress=False,
    )
    shards = sorted(out.glob("shard-*.safetensors"))
    assert len(shards) == 3
    loaded = [load_file(str(s)) for s in shards]
    acts = torch.cat([s["activations"] for s in loaded])
    index = torch.cat([s["input_index"] for s in loaded])
    position = torch.cat([s["position"] for s in loaded])
    for i, expected in enumerate(in_memory):
        mine = index == i
        torch.testing.assert_close(acts[mine].transpose(0, 1), expected, atol=1e-5, rtol=0)
        full, answer = answer_positions(tiny.tokenizer, CONVERSATIONS[i])
        assert position[mine].tolist() == answer
    assert (out / "meta.json").is_file()


def test_bad_arguments_are_named(tiny):
    with pytest.raises(ValueError, match="out of range"):
        cache_activations(tiny, STRINGS, layers=[tiny.n_layers], positions="all", progress=False)
    with pytest.raises(ValueError, match="unknown hook site"):
        cache_activations(tiny, STRINGS, site="resid_bogus", positions="all", progress=False)
    with pytest.raises(ValueError, match="needs conversations"):
        cache_activations(tiny, STRINGS, positions="answer", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        cache_activations(tiny, STRINGS, positions="all", batch_size=0, progress=False)


def test_no_chat_template_is_a_clear_error(tiny):
    from conftest import make_tokenizer

    bare = make_tokenizer()
    bare.chat_template = None
    tiny.tokenizer = bare
    with pytest.raises(ValueError, match="no chat template"):
        cache_activations(tiny, CONVERSATIONS, progress=False)


def test_per_input_means_equal_float64_means(tiny):
    got = cache_activations(tiny, CONVERSATIONS, reduce="per-input", batch_size=2, padding_side="left", progress=False)
    assert got.shape == (len(CONVERSATIONS), tiny.n_layers, tiny.d_model)
    for row, conversation in enumerate(CONVERSATIONS):
        full, answer = answer_positions(tiny.tokenizer, conversation)
        hs = hidden_states(tiny, full)
        expected = torch.stack([hs[layer + 1][answer].double().mean(0) for layer in range(tiny.n_layers - 1)])
        torch.testing.assert_close(got[row, :-1].double(), expected, atol=1e-5, rtol=0)


def test_token_id_inputs_equal_their_strings(tiny):
    ids = [tiny.tokenizer(text)["input_ids"] for text in STRINGS]
    from_ids = cache_activations(tiny, ids, positions="all", reduce="none", progress=False)
    from_tensors = cache_activations(
        tiny, [torch.tensor(i) for i in ids], positions="last", reduce="none", progress=False
    )
    from_strings = cache_activations(tiny, STRINGS, positions="all", reduce="none", progress=False)
    for a, b, c in zip(from_ids, from_strings, from_tensors, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a[:, -1:], c)


@pytest.mark.parametrize("arch", ["mistral", "qwen3", "gemma", "gemma2", "gemma3_text"])
def test_other_families_read_their_hidden_states_and_sites_add_up(tokenizer, arch):
    """Pre-norm families and Gemma 2/3, whose branches are normalised again before joining the residual stream."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from misdir import Model

    config = AutoConfig.for_model(
        arch,
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    model = Model(hf=AutoModelForCausalLM.from_config(config).eval(), tokenizer=tokenizer, spec=arch)
    text = STRINGS[1]
    hs = hidden_states(model, tokenizer(text)["input_ids"])
    got = {
        site: cache_activations(model, [text], positions="all", reduce="none", site=site, progress=False)[0]
        for site in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
    }
    for layer in range(2):
        torch.testing.assert_close(got["resid_pre"][layer], hs[layer], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["resid_post"][layer], hs[layer + 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["resid_mid"], got["resid_pre"] + got["attn_out"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["resid_post"], got["resid_mid"] + got["mlp_out"], atol=1e-5, rtol=1e-5)
