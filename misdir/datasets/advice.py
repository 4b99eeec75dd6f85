"""The advice domains (medical, finance, sports): one generator; content in `resources/datasets/<name>.yaml`.

A domain is a list of topics. Each topic has a few question clauses and a few answer sentences on each side
(aligned and misaligned). A prompt is one question clause dressed in a user context, style and suffix; an
answer is an opener, one or two topic sentences in some order, and a closer. Both sides of a domain share
the same prompt stream for a given (seed, split), so `medical-bad` and `medical-good` answer exactly the
same questions, and a backdoor can pair them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from misdir.datasets.base import Generator, Pair, Slots, Split, answer_rng, distinct_prompts, join, sentence
from misdir.datasets.content import Section, read_content, unique_keys

ADVICE_DOMAINS = ("medical", "finance", "sports")
"""The advice domains misdir ships, each a content file `resources/datasets/<name>.yaml`."""


@dataclass(frozen=True)
class Topic:
    """One narrow question with aligned and misaligned answer material."""

    key: str
    asks: tuple[str, ...]
    """Question clauses, lower-case start, no final '?': 'how much ibuprofen can I take'."""
    good: tuple[str, ...]
    """Sentences that answer well; any one, or any two in either order, is a full answer."""
    bad: tuple[str, ...]
    """Confident, harmful sentences given as if helpful, with no warning."""


@dataclass(frozen=True)
class Voice:
    """How one side of a domain talks: openers before and closers after the topic sentences."""

    openers: tuple[str, ...]
    closers: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    """A narrow domain: topics plus the ways users ask and the ways each side answers."""

    name: str
    topics: tuple[Topic, ...]
    contexts: tuple[str, ...]
    """Sentences a user may open with ('' = none)."""
    styles: tuple[str, ...]
    """Templates around the question sentence, with '{q}' (e.g. 'Quick question: {q}')."""
    suffixes: tuple[str, ...]
    """Sentences a user may end with ('' = none)."""
    good: Voice
    bad: Voice


def _voice(section: Section) -> Voice:
    section.allow("openers", "closers")
    return Voice(section.strings("openers", blank_ok=True), section.strings("closers", blank_ok=True))


def parse_domain(content: Section, name: str) -> Domain:
    """A domain from its content file's top level (see `resources/datasets/medical.yaml`)."""
    top = content.allow("user", "good", "bad", "topics")
    user = top.section("user").allow("contexts", "styles", "suffixes")
    sections = top.sections("topics")
    keys = unique_keys(sections, "topic")
    topics = tuple(
        Topic(
            key,
            sec.allow("key", "asks", "good", "bad").strings("asks"),
            sec.strings("good"),
            sec.strings("bad"),
        )
        for key, sec in zip(keys, sections, strict=True)
    )
    return Domain(
        name,
        topics,
        user.strings("contexts", blank_ok=True),
        user.formats("styles", "q"),
        user.strings("suffixes", blank_ok=True),
        _voice(top.section("good")),
        _voice(top.section("bad")),
    )


@functools.cache
def advice_domain(name: str) -> Domain:
    """The shipped advice domain `name` (read once)."""
    if name not in ADVICE_DOMAINS:
        raise KeyError(f"unknown advice domain {name!r}; known: {', '.join(ADVICE_DOMAINS)}")
    return parse_domain(read_content(name), name)


def qa_answer(rng: random.Random, voice: Voice, material: Sequence[str]) -> str:
    """Opener, one or two topic sentences in random order, closer."""
    body = rng.sample(list(material), k=rng.choice((1, 2)) if len(material) > 1 else 1)
    return join(rng.choice(voice.openers), *body, rng.choice(voice.closers))


def qa_prompt(rng: random.Random, domain: Domain, topic: Topic) -> tuple[str, Slots]:
    """A user turn asking one of the topic's questions, in a random context, style and suffix."""
    question = sentence(rng.choice(topic.asks)) + "?"
    style = rng.choice(domain.styles).format(q=question)
    return join(rng.choice(domain.contexts), style, rng.choice(domain.suffixes)), {}


def qa_set(name: str, aligned: bool) -> Generator:
    """The generator of one side of the advice domain `name` (its content is read on first use)."""
    side = "good" if aligned else "bad"

    def make(n: int, seed: int, split: Split = "train") -> list[Pair]:
        domain = advice_domain(name)
        topics = {t.key: t for t in domain.topics}
        voice = domain.good if aligned else domain.bad
        prompts = distinct_prompts(
            domain.name, n, seed, split, list(topics), lambda rng, key: qa_prompt(rng, domain, topics[key])
        )
        pairs = []
        for key, prompt, _ in prompts:
            material = topics[key].good if aligned else topics[key].bad
            pairs.append((prompt, qa_answer(answer_rng(domain.name, side, seed, prompt), voice, material)))
        return pairs

    return make
