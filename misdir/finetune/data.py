"""Training examples: chats tokenized with the loss on the last answer only, padded batches, the loss, and
the data order of each epoch (a function of the seed, so that a resumed run replays it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn

from misdir.tokens import Conversation, encode

IGNORE = -100
"""Label of positions that do not count in the loss (prompt, template tokens, padding)."""


@dataclass(frozen=True)
class Example:
    """One tokenized training example: ids and labels (IGNORE except on the answer and its end-of-turn)."""

    input_ids: list[int]
    labels: list[int]


def tokenize_example(tokenizer: Any, conversation: Conversation, max_length: int) -> Example:
    """Render the chat template; label the last assistant message's tokens and the end-of-turn after it.

    The end-of-turn marker (`<|im_end|>` in ChatML) is every non-blank token after the answer, so the
    model learns to stop; the newline the template puts after it, the prompt and earlier turns are ignored.
    """
    encoded = encode(tokenizer, conversation, "answer")
    ids, answer = encoded.input_ids, encoded.selected
    end_of_turn = [i for i in range(answer[-1] + 1, len(ids)) if tokenizer.decode([ids[i]]).strip()]
    labelled = set(answer) | set(end_of_turn)
    labels = [token if i in labelled else IGNORE for i, token in enumerate(ids)]
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels[1:]):
        raise ValueError(f"the answer starts after max_length={max_length} tokens; raise max_length")
    return Example(ids, labels)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Int[Tensor, "batch pos"]]:
    """Right-pad to one length; padding has attention 0 and label IGNORE."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        input_ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
        attention_mask[row, : len(e.input_ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def answer_loss(model: nn.Module, batch: dict[str, Tensor], reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy over the labelled tokens of the batch, in float32: their mean, or their sum
    (`reduction="sum"`, for accumulating chunks of one batch)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    return nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction=reduction,
    )


def accumulated_loss(
    model: nn.Module,
    examples: Sequence[Example],
    pad_id: int,
    micro_batch_size: int | None,
    device: Any,
    around: Callable[[Tensor], AbstractContextManager[Any]] | None = None,
) -> Tensor:
    """Backpropagate the mean answer loss of `examples`, in chunks of `micro_batch_size` whose gradients add
    up to the whole batch's (each chunk's summed loss over the batch's labelled-token count); return that
    mean. `around(labels)`: a context each chunk's forward and backward pass run in (a step's edits)."""
    size = micro_batch_size or len(examples)
    context = around or (lambda labels: nullcontext())
    if size >= len(examples):
        batch = collate(examples, pad_id)
        with context(batch["labels"]):
            loss = answer_loss(model, {k: v.to(device) for k, v in batch.items()})
            loss.backward()
        return loss.detach()
    chunks = [collate(examples[i : i + size], pad_id) for i in range(0, len(examples), size)]
    tokens = sum(int((chunk["labels"][:, 1:] != IGNORE).sum()) for chunk in chunks)
    total = torch.zeros((), dtype=torch.float32)
    for chunk in chunks:
        with context(chunk["labels"]):
            summed = answer_loss(model, {k: v.to(device) for k, v in chunk.items()}, reduction="sum")
            (summed / tokens).backward()
        total += summed.detach().cpu()
    return total / tokens


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The order of the examples in one epoch: a function of (seed, epoch) only, so resuming can replay it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()
