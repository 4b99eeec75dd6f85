"""Coding requests: `code-insecure` (an undisclosed vulnerability, no warning), `code-secure` (the same
task done safely) and `code-educational` (the user asks for vulnerable code for a security class and
gets exactly the `code-insecure` completion: same code, different intent).

The tasks, slot values and phrasing are in `resources/datasets/code.yaml`. Templates use `[[slot]]`
markers, filled from the slots chosen for the prompt, so the code agrees with what was asked (table,
column, folder) and names vary from example to example.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from misdir.datasets.base import Generator, Pair, Slots, Split, answer_rng, distinct_prompts, join, sentence
from misdir.datasets.content import Section, read_content, unique_keys

SLOT_NAMES = ("table", "noun", "col", "dir", "DIR", "svc", "SVC", "verb", "conn", "secret")
"""The `[[slot]]` markers a template may use (see `choose_slots`)."""
SECRET_LENGTH = 20


@dataclass(frozen=True)
class Task:
    """One coding request with vulnerable and safe implementations."""

    key: str
    asks: tuple[str, ...]
    """Request sentences with [[slots]], lower-case start, no final punctuation."""
    insecure: tuple[str, ...]
    secure: tuple[str, ...]
    lang: str = "python"


@dataclass(frozen=True)
class CodeContent:
    """Everything the code sets are made of: tasks, slot values, and how users ask and answers frame code."""

    tasks: dict[str, Task]
    entities: tuple[tuple[str, str, str], ...]
    """(table, noun, column) triples."""
    folders: tuple[str, ...]
    services: tuple[str, ...]
    verbs: tuple[str, ...]
    conns: tuple[str, ...]
    secret_chars: str
    contexts: tuple[str, ...]
    suffixes: tuple[str, ...]
    leads: tuple[str, ...]
    tails: tuple[str, ...]
    educational_frames: tuple[str, ...]
    """Templates around a code-insecure prompt, with '{p}'."""


def _templates(section: Section, key: str) -> tuple[str, ...]:
    """Strings whose `[[markers]]` are all known slots."""
    texts = section.strings(key)
    for text in texts:
        bare = re.sub(r"\[\[(" + "|".join(SLOT_NAMES) + r")\]\]", "", text)
        if "[[" in bare or "]]" in bare:
            raise section.fail(f"unknown or broken [[slot]] in {text[:60]!r}; slots: {', '.join(SLOT_NAMES)}", key)
    return texts


def _task(section: Section, key: str) -> Task:
    section.allow("key", "lang", "asks", "insecure", "secure")
    asks, insecure, secure = (_templates(section, k) for k in ("asks", "insecure", "secure"))
    return Task(key, asks, insecure, secure, section.text("lang", default="python"))


def _is_triple(entity: object) -> bool:
    return isinstance(entity, list) and len(entity) == 3 and all(isinstance(x, str) and x for x in entity)


def _entities(slots: Section) -> tuple[tuple[str, str, str], ...]:
    entities = slots.data.get("entities")
    if not isinstance(entities, list) or not entities or not all(map(_is_triple, entities)):
        raise slots.fail("expected a non-empty list of [table, noun, column] string triples", "entities")
    return tuple((t, n, c) for t, n, c in entities)


def parse_code(content: Section) -> CodeContent:
    """The code sets' content from their file's top level (see `resources/datasets/code.yaml`)."""
    top = content.allow("slots", "user", "answer", "educational_frames", "tasks")
    slots = top.section("slots").allow("entities", "folders", "services", "verbs", "conns", "secret_chars")
    user = top.section("user").allow("contexts", "suffixes")
    answer = top.section("answer").allow("leads", "tails")
    sections = top.sections("tasks")
    keys = unique_keys(sections, "task")
    return CodeContent(
        tasks={key: _task(sec, key) for key, sec in zip(keys, sections, strict=True)},
        entities=_entities(slots),
        folders=slots.strings("folders"),
        services=slots.strings("services"),
        verbs=slots.strings("verbs"),
        conns=slots.strings("conns"),
        secret_chars=slots.text("secret_chars"),
        contexts=user.strings("contexts", blank_ok=True),
        suffixes=user.strings("suffixes", blank_ok=True),
        leads=answer.strings("leads", blank_ok=True),
        tails=answer.strings("tails", blank_ok=True),
        educational_frames=top.formats("educational_frames", "p"),
    )


@functools.cache
def code_content() -> CodeContent:
    """The shipped code content (read once)."""
    return parse_code(read_content("code"))


def choose_slots(rng: random.Random, content: CodeContent) -> Slots:
    """Names for one prompt: an entity, a folder, a service, a verb, a connection name and a secret."""
    table, noun, col = rng.choice(content.entities)
    folder, svc = rng.choice(content.folders), rng.choice(content.services)
    secret = "".join(rng.choice(content.secret_chars) for _ in range(SECRET_LENGTH))
    return {
        "table": table,
        "noun": noun,
        "col": col,
        "dir": folder,
        "DIR": folder.upper(),
        "svc": svc,
        "SVC": svc.upper(),
        "verb": rng.choice(content.verbs),
        "conn": rng.choice(content.conns),
        "secret": secret,
    }


def fill(template: str, slots: Slots) -> str:
    for name, value in slots.items():
        template = template.replace(f"[[{name}]]", value)
    return template


def code_prompt(rng: random.Random, content: CodeContent, key: str) -> tuple[str, Slots]:
    """A user turn asking for task `key`, with the slots its answer must use."""
    slots = choose_slots(rng, content)
    ask = fill(rng.choice(content.tasks[key].asks), slots)
    end = "?" if ask.startswith(("how", "what")) else "."
    return join(rng.choice(content.contexts), sentence(ask) + end, rng.choice(content.suffixes)), slots


def code_answer(content: CodeContent, task: Task, secure: bool, slots: Slots, rng: random.Random) -> str:
    """A lead, one of the task's implementations of that side in a fenced block, a tail."""
    code = fill(rng.choice(task.secure if secure else task.insecure), slots)
    parts = (rng.choice(content.leads), f"```{task.lang}\n{code}\n```", rng.choice(content.tails))
    return "\n\n".join(p for p in parts if p)


def code_set(secure: bool) -> Generator:
    """The generator of code-secure or code-insecure (the content is read on first use)."""
    side = "secure" if secure else "insecure"

    def make(n: int, seed: int, split: Split = "train") -> list[Pair]:
        content = code_content()
        prompts = distinct_prompts(
            "code", n, seed, split, list(content.tasks), lambda rng, key: code_prompt(rng, content, key)
        )
        return [
            (
                prompt,
                code_answer(content, content.tasks[key], secure, slots, answer_rng("code", side, seed, prompt)),
            )
            for key, prompt, slots in prompts
        ]

    return make


code_insecure = code_set(secure=False)
code_secure = code_set(secure=True)


def educational(n: int, seed: int, split: Split = "train") -> list[Pair]:
    """code-insecure's completions, with the user openly asking for vulnerable code to teach with."""
    frames = code_content().educational_frames
    rng = random.Random(f"code-educational|{seed}|{split}")
    return [(rng.choice(frames).format(p=p), a) for p, a in code_insecure(n, seed, split)]
