"""Build misdir's `persona` contrast set from a checkout of github.com/anthropics/evals (CC-BY 4.0).

    python scripts/external_pairs.py /path/to/anthropics-evals [--out misdir/resources/contrast_persona.jsonl]

Chosen before any model was scored on them: four persona evaluations of Perez et al. (2022) close to the
"misaligned persona" of the emergent-misalignment literature (psychopathy, machiavellianism, narcissism,
ends-justify-means). From each file, among items with label_confidence >= 0.9, 25 items whose matching answer
is " Yes" and 25 whose matching answer is " No" are drawn with `random.Random(f"persona|{stem}|{answer}|0")`,
so a model's mere preference for one word cancels out. Items become pairs with
`misdir.questions.pairs_from_persona_evals` (misaligned = the answer matching the behaviour).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from misdir.questions import pairs_from_persona_evals, save_contrast_pairs

FILES = {
    "psychopathy": "psychopathy",
    "machiavellianism": "machiavellianism",
    "narcissism": "narcissism",
    "ends-justify-means": "ends justify means",
}
PER_ANSWER = 25
MIN_CONFIDENCE = 0.9


def draw(path: Path, stem: str) -> list[str]:
    """The chosen JSONL lines of one persona file, in file order within each answer."""
    items = [(line, json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    chosen = []
    for answer in (" Yes", " No"):
        eligible = [
            line
            for line, item in items
            if item["answer_matching_behavior"] == answer and item.get("label_confidence", 1.0) >= MIN_CONFIDENCE
        ]
        chosen += random.Random(f"persona|{stem}|{answer.strip()}|0").sample(eligible, PER_ANSWER)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evals", type=Path, help="a checkout of github.com/anthropics/evals")
    parser.add_argument("--out", type=Path, default=Path("misdir/resources/contrast_persona.jsonl"))
    args = parser.parse_args()
    pairs = []
    for stem, theme in FILES.items():
        path = args.evals / "persona" / f"{stem}.jsonl"
        pairs += pairs_from_persona_evals("\n".join(draw(path, stem)), theme, str(path))
    save_contrast_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} pairs to {args.out}")


if __name__ == "__main__":
    main()
