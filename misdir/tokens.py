"""Turn plain strings and chat conversations into token ids, and say which positions to read.

The answer positions of a conversation are found from the tokenizer's character offsets: the
tokens that overlap the last assistant message's content in the text the chat template
renders. Nothing is guessed from token counts, so it holds for any template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, cast

import torch
from jaxtyping import Bool, Int
from torch import Tensor

Conversation = Sequence[Mapping[str, str]]
TokenIds = Sequence[int] | Tensor
Input = str | Conversation | TokenIds
Positions = Literal["all", "answer", "last"]
POSITIONS = ("all", "answer", "last")


@dataclass(frozen=True)
class Encoded:
    """One input as token ids, with the positions whose activations are read."""

    input_ids: list[int]
    selected: list[int]


def render_chat(tokenizer: Any, conversation: Conversation, *, add_generation_prompt: bool = False) -> str:
    """The conversation as text, through the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; set "
            "tokenizer.chat_template or pass plain strings"
        )
    for i, message in enumerate(conversation):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(f"message {i} of a conversation is not a {{'role', 'content'}} dict: {message!r}")
    return tokenizer.apply_chat_template(
        [dict(m) for m in conversation], tokenize=False, add_generation_prompt=add_generation_prompt
    )


def encode(tokenizer: Any, item: Input, positions: Positions) -> Encoded:
    """Token ids of `item` and the positions to read (`all`, the last assistant `answer`, or `last` prompt token).

    `item` is a plain string, a chat conversation, or a sequence of token ids already tokenized.
    """
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; expected one of {', '.join(POSITIONS)}")
    if _is_token_ids(item):
        ids = item.tolist() if isinstance(item, Tensor) else [int(i) for i in item]  # already tokenized
        if positions == "answer":
            raise ValueError("positions='answer' needs conversations, not token ids")
        return Encoded(ids, list(range(len(ids))) if positions == "all" else [len(ids) - 1])
    if isinstance(item, str):
        if positions == "answer":
            raise ValueError("positions='answer' needs conversations ending with an assistant message, not strings")
        ids = tokenizer(item, add_special_tokens=True)["input_ids"]
        if not ids:
            raise ValueError("an input string encodes to no tokens")
        return Encoded(ids, list(range(len(ids))) if positions == "all" else [len(ids) - 1])

    conversation = cast(Conversation, item)  # neither token ids nor a string
    if not conversation:
        raise ValueError("an input conversation is empty")
    ends_with_answer = conversation[-1].get("role") == "assistant"
    if positions == "answer" and not ends_with_answer:
        raise ValueError("positions='answer' needs the conversation's last message to be the assistant's")
    text = render_chat(tokenizer, conversation, add_generation_prompt=not ends_with_answer)
    tokens = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = tokens["input_ids"], tokens["offset_mapping"]
    if positions == "all":
        return Encoded(ids, list(range(len(ids))))
    if not ends_with_answer:  # 'last' of a conversation awaiting its answer
        return Encoded(ids, [len(ids) - 1])

    start, end = _answer_span(tokenizer, conversation, text)
    answer = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
    if not answer:
        raise ValueError(f"the assistant's answer {conversation[-1]['content'][:40]!r} covers no token")
    if positions == "answer":
        return Encoded(ids, answer)
    return Encoded(ids, [answer[0] - 1])


def _is_token_ids(item: Input) -> TypeGuard[TokenIds]:
    """Whether `item` is already tokenized: a tensor or a non-empty sequence of ints."""
    return isinstance(item, Tensor) or (isinstance(item, Sequence) and bool(item) and isinstance(item[0], int))


def _answer_span(tokenizer: Any, conversation: Conversation, text: str) -> tuple[int, int]:
    """Character span of the last assistant message's content in the rendered text."""
    prompt = render_chat(tokenizer, conversation[:-1], add_generation_prompt=True)
    content = conversation[-1]["content"].strip()
    if not content:
        raise ValueError("the last assistant message is empty")
    search_from = len(prompt) if text.startswith(prompt) else 0
    start = text.find(content, search_from)
    if start < 0:
        raise ValueError(
            "the chat template changed the assistant's answer, so its tokens cannot be located: "
            f"{content[:40]!r} does not appear in the rendered text"
        )
    return start, start + len(content)


@dataclass(frozen=True)
class Batch:
    """Padded token ids of several inputs, with attention mask, position ids and the positions to read."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    position_ids: Int[Tensor, "batch pos"]
    selected: Bool[Tensor, "batch pos"]

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids, self.selected)))


def pad_token_id(tokenizer: Any) -> int:
    """The id that pads batches: the tokenizer's pad token, else its end-of-sequence token, else 0.
    (Padded positions are masked, so only its being a valid id matters.)"""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def pad(encoded: Sequence[Encoded], pad_id: int, side: Literal["left", "right"] = "right") -> Batch:
    """Pad to one length on the given side. Position ids count real tokens only, so either side gives equal values."""
    if side not in ("left", "right"):
        raise ValueError(f"padding side must be 'left' or 'right', not {side!r}")
    width = max(len(e.input_ids) for e in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    selected = torch.zeros((len(encoded), width), dtype=torch.bool)
    for row, e in enumerate(encoded):
        offset = width - len(e.input_ids) if side == "left" else 0
        input_ids[row, offset : offset + len(e.input_ids)] = torch.tensor(e.input_ids)
        attention_mask[row, offset : offset + len(e.input_ids)] = 1
        selected[row, [offset + p for p in e.selected]] = True
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(input_ids, attention_mask, position_ids, selected)
