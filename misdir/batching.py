"""Run work in batches that shrink when the GPU runs out of memory, so a long run loses nothing.

`in_batches(fn, items, batch_size)` calls `fn` on consecutive chunks of `items` and yields each chunk with
its result. When `fn` raises `torch.OutOfMemoryError`, the CUDA cache is emptied, the batch size halved
(and kept for the rest of the run), a warning logged, and the same items are tried again; only a single
item that does not fit is an error. `fn` must have no lasting effect when it raises (commit the result
where the generator yields it), so a retried chunk is never counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

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
