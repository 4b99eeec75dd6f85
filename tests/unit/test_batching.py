"""Sampling's automatic batch: the KV cache a row keeps is what the model really caches, and the batch is the
most rows whose estimate fits the memory share."""

from __future__ import annotations

import pytest
import torch

from misdir.batching import AUTO_MEMORY_SHARE, CPU_BATCH, auto_batch_size, kv_cache_bytes, sampling_row_bytes


def test_kv_cache_bytes_equal_the_cache_a_forward_pass_keeps(tiny):
    """Keys and values of every layer, counted from the config, against the tensors transformers caches."""
    for length in (1, 7):
        ids = torch.randint(0, tiny.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            cache = tiny.hf(input_ids=ids, use_cache=True).past_key_values
        kept = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
        assert kv_cache_bytes(tiny.config, length, torch.float32) == kept
    assert kv_cache_bytes(tiny.config, 7, torch.bfloat16) * 2 == kv_cache_bytes(tiny.config, 7, torch.float32)


def test_the_automatic_batch_is_the_most_rows_that_fit_the_memory_share(tiny):
    row = sampling_row_bytes(tiny.config, 30, 20, torch.bfloat16)
    cuda = torch.device("cuda")
    for rows in (1, 3, 250):
        free = int((rows * row + row // 2) / AUTO_MEMORY_SHARE)
        chosen = auto_batch_size(tiny.config, cuda, torch.bfloat16, 30, 20, 10_000, free_bytes=free)
        assert chosen == rows
        assert chosen * row <= AUTO_MEMORY_SHARE * free < (chosen + 1) * row
    assert auto_batch_size(tiny.config, cuda, torch.bfloat16, 30, 20, 40, free_bytes=10**12) == 40  # all rows
    assert auto_batch_size(tiny.config, cuda, torch.bfloat16, 30, 20, 40, free_bytes=1) == 1  # never 0
    assert auto_batch_size(tiny.config, torch.device("cpu"), torch.float32, 30, 20, 100) == CPU_BATCH
    assert auto_batch_size(tiny.config, torch.device("cpu"), torch.float32, 30, 20, 5) == 5


def test_a_longer_answer_or_prompt_needs_more_memory_per_row(tiny):
    base = sampling_row_bytes(tiny.config, 30, 20, torch.bfloat16)
    assert sampling_row_bytes(tiny.config, 30, 21, torch.bfloat16) - base == kv_cache_bytes(
        tiny.config, 1, torch.bfloat16
    )
    assert sampling_row_bytes(tiny.config, 31, 20, torch.bfloat16) > sampling_row_bytes(
        tiny.config, 30, 21, torch.bfloat16
    )
    with pytest.raises(TypeError):
        sampling_row_bytes(tiny.config, 30, 20, torch.int64)  # a float dtype only
