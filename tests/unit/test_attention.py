"""misdir.attention: grouped decoding attention equals the model's own attention, computed in float64."""

from __future__ import annotations

import copy

import pytest
import torch

from misdir.attention import NAME, grouped_attention, uses_grouped_attention


def _decode_logits(hf, ids, mask, steps: int):
    """Greedy static-cache decoding: the generated tokens and each step's logits (float32, CPU: eager)."""
    out = hf.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=steps,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        cache_implementation="static",
        output_logits=True,
        return_dict_in_generate=True,
    )
    return out.sequences, torch.stack(out.logits, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_grouped_decoding_equals_float64_eager_attention(tiny, seed):
    hf = tiny.hf
    assert uses_grouped_attention(hf)  # 4 query heads over 2 key/value heads
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, hf.config.vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded row: the mask must reach the grouped rows
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, **kwargs):
        calls.append((query.shape[1], key.shape[1], query.shape[2]))
        return sdpa(query, key, value, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        with grouped_attention(hf) as grouped:
            assert grouped and hf.config._attn_implementation == NAME
            sequences, logits = _decode_logits(hf, ids, mask, steps=5)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
    assert hf.config._attn_implementation == "sdpa"
    # decoding steps attend with the query heads of a group as rows of their key/value head (2 heads, 2 rows)
    assert (2, 2, 2) in calls and all(q == k for q, k, _ in calls)

    reference = copy.deepcopy(hf).double()
    reference.set_attn_implementation("eager")
    expected = []
    for row, padding in zip(sequences, (mask == 0).sum(1).tolist(), strict=True):  # each row without its padding
        with torch.no_grad():
            expected.append(reference(input_ids=row[None, padding:]).logits[0, ids.shape[1] - padding - 1 : -1])
    expected = torch.stack(expected)
    # float32 through 3 layers of width 64 lands near 1e-6 of the logits' scale; 1e-4 leaves room, a wrong
    # head order or mask moves them by O(1)
    scale = expected.abs().max()
    assert (logits.double() - expected).abs().max() <= 1e-4 * scale


def test_models_without_grouped_heads_are_left_alone(tokenizer):
    from conftest import tiny_hf_model

    hf = tiny_hf_model("llama", len(tokenizer))
    hf.config.num_key_value_heads = hf.config.num_attention_heads
    assert not uses_grouped_attention(hf)
    with grouped_attention(hf) as grouped:
        assert not grouped and hf.config._attn_implementation == "sdpa"
