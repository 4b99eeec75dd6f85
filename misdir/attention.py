"""Grouped-query attention for decoding: each key/value head is read once for all the query heads it serves.

transformers' "sdpa" attention expands the KV cache from the model's key/value heads to its query heads
(`repeat_kv`) inside a compiled decode step, and attends over the expanded copy: for Qwen2.5-7B (28 query heads,
4 key/value heads) it writes 7 copies of the cache and reads them back at every layer and step. At batch 512 that
expansion and the attention over it took 62% of the GPU's time in misdir's sampling (bench/NOTES.md). With one
query position, the query heads of a group can instead be laid out as the rows of one head, so one attention call
reads each cached key and value once (transformers does so itself in eager decoding, not in a compiled step).

`grouped_attention(model)` opens that layout for decoding steps; every other call (prefill, one query head per
key/value head, dropout, position biases) goes to transformers' own SDPA attention unchanged. The arithmetic is
the same softmax over the same keys (only the kernel's accumulation order differs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

if TYPE_CHECKING:
    from misdir.models.model import HFModel

NAME = "misdir_grouped_sdpa"
"""The name under which the attention is registered with transformers' AttentionInterface."""


def grouped_sdpa(
    module: nn.Module,
    query: Float[Tensor, "batch heads q head_dim"],
    key: Float[Tensor, "batch kv_heads kv head_dim"],
    value: Float[Tensor, "batch kv_heads kv head_dim"],
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Float[Tensor, "batch q heads head_dim"], None]:
    """transformers' attention signature: grouped for one query position, its SDPA attention otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_len, _ = query.shape
    plain = (
        q_len != 1
        or groups == 1
        or dropout
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
        or kwargs.get("output_attentions")
    )
    if plain or (attention_mask is not None and attention_mask.shape[1] != 1):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # query head h reads key/value head h // groups (repeat_kv's order): heads of a group become rows
    rows = query.reshape(batch, heads // groups, groups, query.shape[-1])
    out = torch.nn.functional.scaled_dot_product_attention(rows, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(batch, 1, heads, value.shape[-1]), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, grouped_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def uses_grouped_attention(hf: nn.Module) -> bool:
    """Whether `grouped_attention` would change `hf`: it attends with SDPA and has fewer key/value heads than
    query heads."""
    config = getattr(hf, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    kv_heads = getattr(config, "num_key_value_heads", None)
    return kv_heads is not None and kv_heads < config.num_attention_heads


@contextmanager
def grouped_attention(hf: HFModel) -> Iterator[bool]:
    """Within the block, `hf` decodes with `grouped_sdpa`; yields whether it does (see `uses_grouped_attention`)."""
    if not uses_grouped_attention(hf) or hf.config._attn_implementation == NAME:
        yield uses_grouped_attention(hf)
        return
    _register()
    hf.set_attn_implementation(NAME)
    try:
        yield True
    finally:
        hf.set_attn_implementation("sdpa")
