"""Which token positions an edit touches: every token, every token but the first, or answer tokens only.

The first token of a sequence carries a massive activation (the attention sink): on the embedded model its
residual norm is hundreds of times a typical token's, and projecting a direction out of it at every layer
damages the model far more than the direction's content explains. `ablate` and `steer` therefore take
`positions`:
- `"all"`: every position, prompt and answer, the first token included (what `orthogonalize` does);
- `"skip-first"`: every position but each sequence's first real token (padding is skipped over);
- `"answer"`: only the tokens of the assistant's answer. misdir's contrast scoring and `misdir.generate`
  mark where answers start; around a forward pass of your own, say it with `answer_positions`.

Positions are absolute columns of the attention mask, so left padding, right padding and KV-cached decoding
(one new column per step) all work. The decoder's forward pass is watched by a pre-hook that records its
attention mask and the length of the cache before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from weakref import WeakKeyDictionary

import torch
from jaxtyping import Bool, Int
from torch import Tensor, nn

from misdir.models import Model

Positions = Literal["all", "skip-first", "answer"]
POSITIONS: tuple[Positions, ...] = ("all", "skip-first", "answer")

_ANSWER_START: WeakKeyDictionary[nn.Module, Tensor] = WeakKeyDictionary()
"""Per decoder, the absolute column where each row's answer starts, while `answer_positions` is open."""


def check_positions(positions: str) -> str:
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; expected one of {', '.join(POSITIONS)}")
    return positions


@contextmanager
def answer_positions(model: Model, starts: Int[Tensor, "batch"] | int) -> Iterator[None]:
    """Mark, for forward passes of `model` inside the block, the column where each row's answer begins
    (an int: the same for every row, e.g. the padded prompt length when generating)."""
    decoder = model.decoder
    previous = _ANSWER_START.get(decoder)
    # Moved to the model once here, not at every forward pass: a copy from the host would wait for the GPU.
    _ANSWER_START[decoder] = torch.as_tensor(starts).reshape(-1).to(model.input_device)
    try:
        yield
    finally:
        if previous is None:
            del _ANSWER_START[decoder]
        else:
            _ANSWER_START[decoder] = previous


class TokenTracker:
    """Records, for each forward pass of a decoder, its attention mask and the columns its tokens occupy,
    so hooks inside it can tell which positions to edit."""

    def __init__(self, decoder: nn.Module, positions: str):
        self.decoder, self.positions = decoder, check_positions(positions)
        self.mask: Tensor | None = None
        self.past = 0

    def record(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        # A 2-D padding mask tells the columns; a 4-D or prepared mask made by the caller does not: then the
        # sequence is taken to start at column 0 (no left padding).
        self.mask = mask if isinstance(mask, Tensor) and mask.ndim == 2 else None
        # The cache's length, before this pass appends to it, is needed only where no mask tells the columns (never
        # in `generate`): reading it waits for the GPU.
        cache: Any = kwargs.get("cache", kwargs.get("past_key_values"))  # `cache` in newer transformers (5.25)
        readable = self.mask is None and hasattr(cache, "get_seq_length")
        self.past = int(cache.get_seq_length()) if readable else 0

    def edited(self, x: Tensor) -> Bool[Tensor, "batch pos"] | None:
        """Which positions of `x` [batch, pos, d_model] to edit; None: all of them."""
        if self.positions == "all":
            return None
        batch, length = x.shape[:2]
        total = self.mask.shape[1] if self.mask is not None else self.past + length
        columns = torch.arange(total - length, total, device=x.device)
        if self.positions == "skip-first":
            if self.mask is None:
                first = torch.zeros(batch, dtype=torch.long, device=x.device)
            else:
                first = (self.mask != 0).long().argmax(dim=1).to(x.device)
            return columns[None, :] != first[:, None]
        starts = _ANSWER_START.get(self.decoder)
        if starts is None:
            raise ValueError(
                "positions='answer' needs to know where answers start: misdir's contrast scoring and "
                "misdir.generate mark them; around a forward pass of your own use "
                "misdir.positions.answer_positions(model, starts)"
            )
        return columns[None, :] >= starts.to(x.device).expand(batch)[:, None]

    @contextmanager
    def watching(self) -> Iterator[None]:
        if self.positions == "all":  # nothing to record
            yield
            return
        handle = self.decoder.register_forward_pre_hook(self.record, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()


def where_edited(x: Tensor, new: Tensor, edited: Bool[Tensor, "batch pos"] | None) -> Tensor:
    """`new` at the edited positions, `x` elsewhere (`edited` None: everywhere)."""
    return new if edited is None else torch.where(edited[..., None], new, x)
