"""Run work in batches that shrink when the GPU runs out of memory, so a long run loses nothing.

`in_batches(fn, items, batch_size)` calls `fn` on consecutive chunks of `items` and yields each chunk with
its result. When `fn` raises `torch.OutOfMemoryError`, the CUDA cache is emptied, the batch size halved
(and kept for the rest of the run), a warning logged, and the same items are tried again; only a single
item that does not fit is an error. `fn` must have no lasting effect when it raises (commit the result
where the generator yields it), so a retried chunk is never counted twice.

`auto_batch_size` is sampling's `batch_size="auto"`: on a GPU the most rows whose KV cache, prefill activations
and sampling buffers (`sampling_row_bytes`) fit `AUTO_MEMORY_SHARE` of the free memory; on the CPU `CPU_BATCH`.
An estimate that proves too large costs one halving, never a wrong answer (`misdir.generate`'s answers do not
depend on the batch they share).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def in_batches(
    fn: Callable[[Sequence[T]], R], items: Sequence[T], batch_size: int, *, what: str = "batch"
) -> Iterator[tuple[Sequence[T], R]]:
    """Yield `(chunk, fn(chunk))` over `items` in order, halving the batch size on out-of-memory errors."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    start, size = 0, batch_size
    while start < len(items):
        chunk = items[start : start + size]
        try:
            result = fn(chunk)
        except OutOfMemoryError as error:
            if len(chunk) == 1:
                error.add_note(f"misdir: {what} ran out of memory with a single item; nothing smaller to try")
                raise
            failed = True
        else:
            failed = False
        if failed:  # outside the except block, so the traceback's tensors are already freed
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, len(chunk) // 2)
            log.warning("%s: out of memory with %d items; retrying at batch size %d", what, len(chunk), size)
            continue
        yield chunk, result
        start += len(chunk)


AUTO_MEMORY_SHARE = 0.8
"""Share of the GPU's free memory an automatic sampling batch plans to fill (the rest: allocator slack, compiled
graphs' pools, the model's own transient buffers)."""

CPU_BATCH = 16
"""Sampling's automatic batch on the CPU, where memory is not the limit and larger batches gain little."""


def kv_cache_bytes(config: Any, length: int, dtype: torch.dtype) -> int:
    """Bytes of one row's KV cache over `length` tokens: keys and values of every layer, `num_key_value_heads` x
    `head_dim` each, in `dtype`."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return 2 * int(config.num_hidden_layers) * kv_heads * head_dim * length * (torch.finfo(dtype).bits // 8)


def sampling_row_bytes(config: Any, prompt_length: int, max_new_tokens: int, dtype: torch.dtype) -> int:
    """Bytes one sampled row holds at its peak, from the model's config: its KV cache over the prompt and every new
    token (`kv_cache_bytes`); the prefill's transient activations over the prompt (4 residual-width and 3 MLP-width
    vectors a token, in `dtype`); and a decode step's float32 logits, noise and scaled logits over the vocabulary."""
    prefill = prompt_length * (4 * int(config.hidden_size) + 3 * int(config.intermediate_size))
    sampling = 3 * int(config.vocab_size) * 4
    return (
        kv_cache_bytes(config, prompt_length + max_new_tokens, dtype)
        + prefill * (torch.finfo(dtype).bits // 8)
        + sampling
    )


def auto_batch_size(
    config: Any,
    device: torch.device,
    dtype: torch.dtype,
    prompt_length: int,
    max_new_tokens: int,
    n_rows: int,
    *,
    free_bytes: int | None = None,
) -> int:
    """The most rows (at least 1, at most `n_rows`) whose `sampling_row_bytes` fit `AUTO_MEMORY_SHARE` of the free
    memory of `device` (`free_bytes` when given, else CUDA's report); `CPU_BATCH` rows off the GPU."""
    if device.type != "cuda" and free_bytes is None:
        return max(1, min(CPU_BATCH, n_rows))
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    rows = int(AUTO_MEMORY_SHARE * free_bytes) // sampling_row_bytes(config, prompt_length, max_new_tokens, dtype)
    return max(1, min(rows, n_rows))
