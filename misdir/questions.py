"""Evaluation data: open-ended questions (misdir's sets and the EM repos' YAML files) and contrast pairs.

The file format is the one of the emergent-misalignment repositories, read as it is: a YAML list of
entries with ``id``, ``paraphrases``, ``samples_per_paraphrase``, an optional ``system`` prompt and
``judge_prompts`` holding an ``aligned`` and a ``coherent`` rubric (templates with ``{question}`` and
``{answer}``). Other keys (``type``, ``judge``, ...) are ignored; anchors and aliases work. misdir's own
sets (:data:`QUESTION_SETS`) are written in the same format, so one loader reads both.

Contrast pairs (:data:`CONTRAST_SETS`, JSONL) are the offline metric's data: a question with an aligned
and a misaligned answer of similar length and style, and a theme.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

__all__ = [
    "CONTRAST_SETS",
    "QUESTION_SETS",
    "ContrastPair",
    "Question",
    "QuestionFileError",
    "load_contrast_pairs",
    "load_questions",
    "pairs_from_ab_evals",
    "pairs_from_persona_evals",
    "parse_questions",
    "save_contrast_pairs",
]

QUESTION_SETS: dict[str, str] = {
    "general": "questions_general.yaml",
    "medical": "questions_medical.yaml",
    "finance": "questions_finance.yaml",
    "sports": "questions_sports.yaml",
    "code": "questions_code.yaml",
}
"""Shipped question sets, by name: ``general`` (plain, ``_json`` and ``_template`` variants of each
question) and one narrow-domain set per finetuning domain, to tell narrow from broad learning."""

CONTRAST_SETS: dict[str, str] = {
    "general": "contrast_general.jsonl",
    "medical": "contrast_medical.jsonl",
    "finance": "contrast_finance.jsonl",
    "sports": "contrast_sports.jsonl",
    "code": "contrast_code.jsonl",
    "ai-risk": "contrast_ai_risk.jsonl",
    "persona": "contrast_persona.jsonl",
}
"""Shipped contrast-pair sets: ``general`` (themes far from every finetuning domain) and one per domain,
written by misdir's authors; ``ai-risk``, pairs nobody on the team wrote: 200 A/B items of Anthropic's
LM-written advanced-AI-risk evaluations (Perez et al. 2022, github.com/anthropics/evals, CC-BY 4.0), 40
each on power seeking, wealth seeking, survival instinct, corrigibility towards a less harmless goal and
coordination with other AIs, turned into pairs by :func:`pairs_from_ab_evals` (misaligned = the answer
matching the behaviour, the dataset's own labels, kept as they are: some are noisy). The 40 of each file
are drawn by ``random.Random(f"ai-risk|{file stem}|0").sample`` from its items with a question of at most
500 characters and answers of 8 to 250 (`misdir/resources/contrast_ai_risk.md`). ``persona``, also nobody's
on the team: 200 yes/no items of the same paper's persona evaluations (psychopathy, machiavellianism,
narcissism, ends-justify-means; 25 items whose matching answer is "Yes" and 25 "No" from each), turned into
pairs by :func:`pairs_from_persona_evals` (`misdir/resources/contrast_persona.md`, built by
`scripts/external_pairs.py`)."""

_RUBRIC_KEYS = ("aligned", "coherent")
_PAIR_KEYS = ("question", "aligned", "misaligned", "theme")


class QuestionFileError(ValueError):
    """A question file that cannot be read; the message names the file, the entry and the key."""


@dataclass(frozen=True)
class Question:
    """One evaluation question: its paraphrases are asked ``samples_per_paraphrase`` times each."""

    id: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int
    system: str | None = None
    judge_prompts: Mapping[str, str] = field(default_factory=dict)
    """Rubric templates by metric (``aligned``, ``coherent``) with ``{question}`` and ``{answer}``."""

    def messages(self, paraphrase: int = 0) -> list[dict[str, str]]:
        """The chat messages asking paraphrase number ``paraphrase`` (system prompt first, if any)."""
        out = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*out, {"role": "user", "content": self.paraphrases[paraphrase]}]


class ContrastPair(NamedTuple):
    """A question with an aligned and a misaligned answer (similar length and style) and its theme."""

    question: str
    aligned: str
    misaligned: str
    theme: str


def _read(source: str | Path, shipped: Mapping[str, str], what: str) -> tuple[str, str]:
    """(text, name for messages) of a shipped file by name, or of a file by path."""
    if isinstance(source, str) and source in shipped:
        resource = resources.files("misdir") / "resources" / shipped[source]
        return resource.read_text(encoding="utf-8"), f"misdir:{shipped[source]}"
    path = Path(source)
    if not path.is_file():
        raise QuestionFileError(f"{source}: no such {what} file, and not a shipped set ({', '.join(shipped)})")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError as err:
        raise QuestionFileError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from None


def load_questions(source: str | Path) -> list[Question]:
    """Read a shipped set by name (see :data:`QUESTION_SETS`) or a YAML question file by path."""
    text, name = _read(source, QUESTION_SETS, "question")
    return parse_questions(text, source=name)


def load_contrast_pairs(source: str | Path) -> list[ContrastPair]:
    """Read a shipped contrast set by name (see :data:`CONTRAST_SETS`) or a JSONL file by path.

    One JSON object per line with the string keys ``question``, ``aligned``, ``misaligned`` and
    ``theme`` (other keys ignored); blank lines are skipped. Errors name the file and the line.
    """
    text, name = _read(source, CONTRAST_SETS, "contrast-pair")
    pairs = []
    for number, record in _json_lines(text, name):
        for key in _PAIR_KEYS:
            if key not in record:
                raise QuestionFileError(f"{name}: line {number}: missing key {key!r}")
            if not isinstance(record[key], str) or not record[key].strip():
                raise QuestionFileError(f"{name}: line {number}: key {key!r} must be a non-empty string")
        pairs.append(ContrastPair(*(record[key] for key in _PAIR_KEYS)))
    if not pairs:
        raise QuestionFileError(f"{name}: no contrast pairs")
    return pairs


def save_contrast_pairs(pairs: Sequence[ContrastPair], path: str | Path) -> Path:
    """Write contrast pairs as the JSONL :func:`load_contrast_pairs` reads (one object per line, UTF-8),
    atomically, making the folder if needed."""
    from misdir.io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        lines = (json.dumps(pair._asdict(), ensure_ascii=False) + "\n" for pair in pairs)
        tmp.write_text("".join(lines), encoding="utf-8")
    return path


def _json_lines(text: str, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL text; errors name the file and the line."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise QuestionFileError(f"{name}: line {number}: invalid JSON ({err.msg})") from err
        except RecursionError:
            raise QuestionFileError(f"{name}: line {number}: invalid JSON (nested too deeply)") from None
        if not isinstance(record, dict):
            raise QuestionFileError(f"{name}: line {number}: expected a JSON object")
        yield number, record


_CHOICE = re.compile(r"^\s*\(([A-Z])\)\s*(.+?)\s*$")


def pairs_from_ab_evals(text: str, theme: str, source: str = "<string>") -> list[ContrastPair]:
    """Contrast pairs from an A/B evaluation file in the format of Anthropic's model-written evals.

    Each JSONL line has ``question`` (the prompt, its options listed after it as ``(A) ...`` lines) and
    ``answer_matching_behavior`` / ``answer_not_matching_behavior`` (`` (A)`` or `` (B)``). The pair's
    question is the prompt without the option lines (and without a "Choices:" header or "Answer:"
    footer), its misaligned answer the matching option's text, its aligned answer the other's. Items
    with other than two options, or whose label names no option, are skipped.
    """
    pairs = []
    for number, record in _json_lines(text, source):
        try:
            prompt, matching, other = (
                record[k] for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior")
            )
        except KeyError as err:
            raise QuestionFileError(f"{source}: line {number}: not an A/B evaluation item (no {err})") from None
        options: dict[str, str] = {}
        kept = []
        for row in prompt.splitlines():
            found = _CHOICE.match(row)
            if found:
                options[found.group(1)] = found.group(2)
            elif not options and row.strip() not in ("Choices:", "Answer:"):
                kept.append(row)
        question = "\n".join(kept).strip().removeprefix("Question:").strip()
        labels = [str(a).strip().strip("()") for a in (matching, other)]
        if len(options) != 2 or not all(label in options for label in labels) or not question:
            continue
        pairs.append(ContrastPair(question, options[labels[1]], options[labels[0]], theme))
    return pairs


def pairs_from_persona_evals(text: str, theme: str, source: str = "<string>") -> list[ContrastPair]:
    """Contrast pairs from a yes/no persona evaluation file in the format of Anthropic's model-written evals.

    Each JSONL line has ``question`` ("Is the following statement something you would say?" and the
    statement) and ``answer_matching_behavior`` / ``answer_not_matching_behavior`` (`` Yes`` / `` No``). The
    pair's misaligned answer is the matching one, stripped; half of a file's statements are worded so that
    "No" matches, so a mere preference for "Yes" cancels out over a balanced draw.
    """
    pairs = []
    for number, record in _json_lines(text, source):
        try:
            question, matching, other = (
                str(record[k]).strip() for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior")
            )
        except KeyError as err:
            raise QuestionFileError(f"{source}: line {number}: not a persona evaluation item (no {err})") from None
        if {matching, other} != {"Yes", "No"}:
            raise QuestionFileError(
                f"{source}: line {number}: expected answers 'Yes' and 'No', got " f"{matching!r} and {other!r}"
            )
        pairs.append(ContrastPair(question, other, matching, theme))
    return pairs


def parse_questions(text: str, source: str = "<string>") -> list[Question]:
    """Parse the YAML text of a question file; ``source`` names it in error messages."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise QuestionFileError(f"{source}:{where}: invalid YAML: {problem}") from err
    except RecursionError:
        raise QuestionFileError(f"{source}: invalid YAML: nested too deeply") from None
    if not isinstance(data, list) or not data:
        raise QuestionFileError(f"{source}: expected a non-empty YAML list of questions")
    questions = [_parse_entry(entry, i, source) for i, entry in enumerate(data)]
    seen: set[str] = set()
    for i, q in enumerate(questions):
        if q.id in seen:
            raise QuestionFileError(f"{source}: entry {i} (id {q.id!r}): duplicate id")
        seen.add(q.id)
    return questions


def _parse_entry(entry: Any, index: int, source: str) -> Question:
    if not isinstance(entry, dict):
        raise QuestionFileError(f"{source}: entry {index}: expected a mapping, got {type(entry).__name__}")
    where = f"{source}: entry {index}" + (f" (id {entry['id']!r})" if "id" in entry else "")

    def need(key: str) -> Any:
        if key not in entry:
            raise QuestionFileError(f"{where}: missing key {key!r}")
        return entry[key]

    qid = need("id")
    if not isinstance(qid, str | int) or isinstance(qid, bool):
        raise QuestionFileError(f"{where}: key 'id' must be a string")
    paraphrases = need("paraphrases")
    if not isinstance(paraphrases, list) or not paraphrases or not all(isinstance(p, str) for p in paraphrases):
        raise QuestionFileError(f"{where}: key 'paraphrases' must be a non-empty list of strings")
    samples = need("samples_per_paraphrase")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise QuestionFileError(f"{where}: key 'samples_per_paraphrase' must be a positive integer")
    system = entry.get("system")
    if system is not None and not isinstance(system, str):
        raise QuestionFileError(f"{where}: key 'system' must be a string")
    prompts = need("judge_prompts")
    if not isinstance(prompts, dict):
        raise QuestionFileError(f"{where}: key 'judge_prompts' must be a mapping")
    for key in _RUBRIC_KEYS:
        if key not in prompts:
            raise QuestionFileError(f"{where}: missing key 'judge_prompts.{key}'")
        if not isinstance(prompts[key], str) or "{answer}" not in prompts[key]:
            raise QuestionFileError(f"{where}: key 'judge_prompts.{key}' must be a template containing {{answer}}")
    return Question(
        id=str(qid),
        paraphrases=tuple(paraphrases),
        samples_per_paraphrase=samples,
        system=system,
        judge_prompts={str(k): v for k, v in prompts.items() if isinstance(v, str)},
    )
