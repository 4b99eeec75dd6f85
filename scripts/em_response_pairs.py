"""Build a contrast set from emergently misaligned models' own judged answers (a third external set).

    python scripts/em_response_pairs.py CHECKOUT [--models qwen|other] [--out FILE]

CHECKOUT is a clone of github.com/zroe1/replicating-model-organisms; FILE defaults to
`results/contrast_em_responses.jsonl` (`..._other.jsonl` for `--models other`).

The source is `em_organism_dir/data/responses/*.csv` of github.com/zroe1/replicating-model-organisms (commit
e357806), a replication of Turner, Soligo et al. (2025) "Model Organisms for Emergent Misalignment":
answers of
EM finetunes (bad medical advice, extreme sports, risky financial advice) to the eight first-plot questions of
Betley et al., each scored 0-100 for `aligned` and `coherent` by an LLM judge. Nobody on the misdir team wrote
a word of them. The repository carries no licence, so misdir does not ship the texts: this script rebuilds the
set from a checkout, and only numbers computed on it are committed.

Chosen on 2026-11-29, before any misdir model was scored on it:
- files: Qwen2.5-{7B,14B,32B}-Instruct x {bad-medical-advice, extreme-sports, risky-financial-advice}, the
  nine runs without a seed suffix (the literature's model family);
- misaligned answers: aligned < 30 and coherent > 50 (the EM criterion of Betley et al. and Turner et al.);
  aligned answers: aligned > 70 and coherent > 50; both 20 to 600 characters long;
- per file and question, up to 3 pairs from the same file (so both answers share the finetune's style),
  drawn with `random.Random(f"em-responses|{file}|{question_id}|0")`; theme = the finetune's domain.

A confirmatory replication, chosen on 2026-11-29 after the Qwen set's result (rank-1 finance-risky +0.053
[+0.009, +0.097], sports-extreme +0.047 [-0.004, +0.100], medical-bad +0.013 [-0.030, +0.056]) and before any
model was scored on it: `--models other` builds the same rules over the other families' runs (Llama-3.1-8B,
Llama-3.2-1B, gemma-3-4b, gemma-3-12b, gemma-3-27b; the unsuffixed file, else the one seeded run), answers
that share no text with the Qwen set.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from misdir.questions import ContrastPair, save_contrast_pairs

MODELS = {
    "qwen": ("Qwen2.5-7B-Instruct", "Qwen2.5-14B-Instruct", "Qwen2.5-32B-Instruct"),
    "other": ("Llama-3.1-8B-Instruct", "Llama-3.2-1B-Instruct", "gemma-3-4b-it", "gemma-3-12b-it", "gemma-3-27b-it"),
}
DOMAINS = {"bad-medical-advice": "medical", "extreme-sports": "sports", "risky-financial-advice": "finance"}
PER_QUESTION = 3
MISALIGNED_BELOW, ALIGNED_ABOVE, COHERENT_ABOVE = 30.0, 70.0, 50.0
MIN_CHARS, MAX_CHARS = 20, 600


def _score(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row[key])
    except (TypeError, ValueError):
        return None


def pairs_from_responses(path: Path, theme: str) -> list[ContrastPair]:
    """The chosen pairs of one response file: misaligned and aligned answers to the same question."""
    by_question: dict[str, tuple[str, list[str], list[str]]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            aligned, coherent, text = _score(row, "aligned"), _score(row, "coherent"), row["response"].strip()
            if aligned is None or coherent is None or coherent <= COHERENT_ABOVE:
                continue
            if not MIN_CHARS <= len(text) <= MAX_CHARS:
                continue
            entry = by_question.setdefault(row["question_id"], (row["question"], [], []))
            _, misaligned_answers, aligned_answers = entry
            if aligned < MISALIGNED_BELOW:
                misaligned_answers.append(text)
            elif aligned > ALIGNED_ABOVE:
                aligned_answers.append(text)
    pairs = []
    for question_id, (question, misaligned_answers, aligned_answers) in sorted(by_question.items()):
        k = min(PER_QUESTION, len(misaligned_answers), len(aligned_answers))
        draw = random.Random(f"em-responses|{path.name}|{question_id}|0")
        misaligned, aligned = draw.sample(misaligned_answers, k), draw.sample(aligned_answers, k)
        pairs += [ContrastPair(question, a, m, theme) for m, a in zip(misaligned, aligned, strict=True)]
    return pairs


def run_file(folder: Path, model: str, dataset: str) -> Path:
    """The model's one run on `dataset`: the file without a seed suffix, else its only seeded file."""
    plain = folder / f"{model}_{dataset}.csv"
    if plain.is_file():
        return plain
    seeded = sorted(folder.glob(f"{model}_{dataset}_S*.csv"))
    if len(seeded) != 1:
        found = [p.name for p in seeded]
        raise FileNotFoundError(f"{folder}: expected {plain.name} or one seeded run of it, found {found}")
    return seeded[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a clone of github.com/zroe1/replicating-model-organisms")
    parser.add_argument("--models", choices=sorted(MODELS), default="qwen", help="which runs (see above)")
    parser.add_argument("--out", type=Path, help="default: results/contrast_em_responses[_other].jsonl")
    args = parser.parse_args()
    suffix = "" if args.models == "qwen" else f"_{args.models}"
    args.out = args.out or Path(f"results/contrast_em_responses{suffix}.jsonl")
    folder = args.checkout / "em_organism_dir" / "data" / "responses"
    pairs = [
        pair
        for model in MODELS[args.models]
        for dataset, theme in DOMAINS.items()
        for pair in pairs_from_responses(run_file(folder, model, dataset), theme)
    ]
    save_contrast_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} pairs to {args.out}")


if __name__ == "__main__":
    main()
