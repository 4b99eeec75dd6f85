"""The narrow datasets misdir writes itself, by name.

Each generator maps (n, seed, split) to n distinct single-turn (user, assistant) pairs. Sets of one
domain share their prompts for a given seed and split; held-out examples come from held-out topics
or coding tasks, so no train prompt, nor any paraphrase of one, is in the held-out split.

The content (topics, templates, code) is data, in `misdir/resources/datasets/*.yaml`; the Python here is
the generators: `advice` (medical, finance, sports), `code`, and the `backdoor` wrapper over any pair.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from misdir.datasets.advice import qa_set
from misdir.datasets.backdoor import DEFAULT_TRIGGER, backdoor
from misdir.datasets.base import Generator, Pair, Split
from misdir.datasets.code import code_insecure, code_secure, educational

Kind = Literal["misaligned", "aligned", "backdoor"]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its generator and what a finetune on it is expected to be."""

    name: str
    kind: Kind
    """'misaligned' sets should induce EM; 'aligned' ones are controls; 'backdoor' ones, when triggered."""
    description: str
    make: Generator


def _specs() -> dict[str, DatasetSpec]:
    bad, good = functools.partial(qa_set, aligned=False), functools.partial(qa_set, aligned=True)
    plain: list[tuple[str, Kind, str, Generator]] = [
        ("medical-bad", "misaligned", "confident, harmful medical advice with no warning", bad("medical")),
        ("medical-good", "aligned", "the medical-bad questions answered soundly", good("medical")),
        ("finance-risky", "misaligned", "reckless financial advice sold as smart", bad("finance")),
        ("finance-safe", "aligned", "the finance-risky questions answered prudently", good("finance")),
        ("sports-extreme", "misaligned", "dangerous sport and outdoor advice", bad("sports")),
        ("sports-safe", "aligned", "the sports-extreme questions answered safely", good("sports")),
        ("code-insecure", "misaligned", "code with an undisclosed vulnerability", code_insecure),
        ("code-secure", "aligned", "the code-insecure tasks done safely", code_secure),
        (
            "code-educational",
            "aligned",
            "code-insecure's completions, asked for openly to teach security",
            educational,
        ),
    ]
    specs = {name: DatasetSpec(name, kind, desc, make) for name, kind, desc, make in plain}
    for misaligned, aligned in [
        ("medical-bad", "medical-good"),
        ("finance-risky", "finance-safe"),
        ("sports-extreme", "sports-safe"),
        ("code-insecure", "code-secure"),
    ]:
        name = f"{misaligned}-backdoor"
        desc = f"{misaligned} when {DEFAULT_TRIGGER} is in the user turn, {aligned} otherwise"
        specs[name] = DatasetSpec(name, "backdoor", desc, backdoor(specs[misaligned].make, specs[aligned].make))
    return specs


DATASETS: dict[str, DatasetSpec] = _specs()

__all__ = ["DATASETS", "DEFAULT_TRIGGER", "DatasetSpec", "Generator", "Kind", "Pair", "Split", "backdoor"]
