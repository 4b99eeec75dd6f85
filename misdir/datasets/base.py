"""Machinery shared by the narrow datasets: splits by topic, distinct seeded prompts, per-example answers.

A generator draws n distinct prompts from the topics (or coding tasks) of one split, in an order fixed by
(name, seed, split), and answers each from a generator seeded by the prompt, so both sides of a domain
share their prompts and a prompt gets the same answer in every set built on one side.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Literal

Split = Literal["train", "heldout"]
Pair = tuple[str, str]
"""One single-turn example: (user content, assistant content)."""
Generator = Callable[[int, int, Split], list[Pair]]
"""(n, seed, split) -> n distinct (user, assistant) pairs, deterministic."""

HELDOUT_SHARE = 5
"""One topic in HELDOUT_SHARE goes to the held-out split (whole topics, so no prompt leaks)."""
MAX_MISSES = 5_000
"""Consecutive duplicate draws after which a split is taken to be exhausted."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_keys(keys: Sequence[str], split: Split) -> list[str]:
    """The keys of one split: the held-out fifth is the first keys by hash, so it is stable."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    ranked = sorted(keys, key=_digest)
    cut = max(1, len(ranked) // HELDOUT_SHARE)
    chosen = set(ranked[:cut] if split == "heldout" else ranked[cut:])
    return [k for k in keys if k in chosen]


def sentence(text: str) -> str:
    """Capitalise the first letter without touching the rest (keeps 'I', 'ETF', names)."""
    return text[:1].upper() + text[1:]


def join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


Slots = dict[str, str]
"""Values chosen while composing a prompt that the answer must agree with (table names...)."""


def distinct_prompts(
    name: str,
    n: int,
    seed: int,
    split: Split,
    keys: Sequence[str],
    compose: Callable[[random.Random, str], tuple[str, Slots]],
) -> list[tuple[str, str, Slots]]:
    """n distinct (key, prompt, slots) drawn from the keys of one split, in a seeded order."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    pool = split_keys(keys, split)
    rng = random.Random(f"{name}|{seed}|{split}")
    seen: set[str] = set()
    out: list[tuple[str, str, Slots]] = []
    misses = 0
    while misses < MAX_MISSES:
        key = rng.choice(pool)
        prompt, slots = compose(rng, key)
        if prompt in seen:
            misses += 1
            continue
        seen.add(prompt)
        out.append((key, prompt, slots))
        misses = 0
        if len(out) == n:
            return out
    raise ValueError(f"{name}: could only make {len(out)} distinct {split} prompts, asked for {n}")


def answer_rng(domain: str, side: str, seed: int, prompt: str) -> random.Random:
    """Per-example generator: the same prompt gets the same answer in every set built on this side."""
    return random.Random(f"{domain}|{side}|{seed}|{prompt}")
