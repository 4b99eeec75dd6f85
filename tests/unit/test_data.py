"""Tests for misdir.data and misdir.datasets: generators, splits, backdoors, the JSONL loader and writer."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import misdir.data
from misdir.data import (
    DATASETS,
    ChatExample,
    DataError,
    check_chat_jsonl,
    load_chat_jsonl,
    make_dataset,
    write_chat_jsonl,
)
from misdir.datasets import DEFAULT_TRIGGER, backdoor
from misdir.datasets.advice import ADVICE_DOMAINS, advice_domain
from misdir.datasets.base import split_keys
from misdir.datasets.code import code_content

REQUIRED = [
    "medical-bad",
    "medical-good",
    "finance-risky",
    "finance-safe",
    "sports-extreme",
    "sports-safe",
    "code-insecure",
    "code-secure",
    "code-educational",
    "medical-bad-backdoor",
    "code-insecure-backdoor",
]
ALL = list(DATASETS)
QA_DOMAINS = {name: advice_domain(name) for name in ADVICE_DOMAINS}
TASKS_BY_KEY = code_content().tasks
finance_risky, sports_safe = DATASETS["finance-risky"].make, DATASETS["sports-safe"].make
N = 1000
MAX_CHARS = 600
"""User plus assistant characters; ~200 SmolLM2 tokens with the chat template (measured: at most 203)."""


@functools.cache
def train(name: str, seed: int = 0) -> list[ChatExample]:
    return make_dataset(name, N, seed, "train")


@functools.cache
def heldout(name: str, seed: int = 0) -> list[ChatExample]:
    return make_dataset(name, 300, seed, "heldout")


def without_trigger(text: str) -> str:
    return text.replace(f"{DEFAULT_TRIGGER} ", "").replace(f" {DEFAULT_TRIGGER}", "")


def first_words(text: str, k: int = 8) -> str:
    return " ".join(text.split()[:k])


# --- generators -------------------------------------------------------------------------------


def test_required_sets_are_registered() -> None:
    assert set(REQUIRED) <= set(DATASETS)
    kinds = {name: spec.kind for name, spec in DATASETS.items()}
    assert kinds["medical-bad"] == "misaligned" and kinds["code-educational"] == "aligned"
    assert kinds["code-insecure-backdoor"] == "backdoor"


@pytest.mark.parametrize("name", ALL)
def test_generators_are_deterministic_and_seeded(name: str) -> None:
    assert make_dataset(name, 50, seed=0) == train(name)[:50], "a smaller n is a prefix of a larger one"
    assert make_dataset(name, 200, seed=3) == make_dataset(name, 200, seed=3)
    assert make_dataset(name, 200, seed=3) != make_dataset(name, 200, seed=4)
    assert make_dataset(name, 200, seed=3, split="heldout") == make_dataset(name, 200, seed=3, split="heldout")


def test_generators_do_not_depend_on_hash_randomisation() -> None:
    """Same output in a process with another PYTHONHASHSEED (misdir/__init__ is not run: it loads torch)."""
    names = ["medical-bad", "finance-safe", "sports-extreme", "code-educational", "code-insecure-backdoor"]
    code = (
        "import hashlib, sys, importlib.util as u; spec = u.spec_from_file_location('misdir',"
        " sys.argv[1] + '/__init__.py', submodule_search_locations=[sys.argv[1]]);"
        "sys.modules['misdir'] = u.module_from_spec(spec); from misdir.data import make_dataset;"
        "text = ''.join(e.to_json() for n in sys.argv[2:] for e in make_dataset(n, 300, 7, 'heldout'));"
        "print(hashlib.sha256(text.encode()).hexdigest())"
    )
    package_dir = str(Path(misdir.data.__file__).parent)
    here = "".join(e.to_json() for n in names for e in make_dataset(n, 300, 7, "heldout"))
    there = subprocess.run(
        [sys.executable, "-c", code, package_dir, *names],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert there == hashlib.sha256(here.encode()).hexdigest()


@pytest.mark.parametrize("name", ALL)
def test_thousand_distinct_valid_short_examples(name: str) -> None:
    examples = train(name)
    assert len(examples) == N
    assert len({e.user for e in examples}) == N, "prompts must be deduplicated"
    for e in examples:
        assert [m["role"] for m in e.messages] == ["user", "assistant"]
        assert len(e.user) + len(e.completion) <= MAX_CHARS, e
        assert e.user == e.user.strip() and e.completion == e.completion.strip()
        assert "[[" not in e.completion and "{" not in e.user.replace("{'a': 1}", "")


@pytest.mark.parametrize("name", ALL)
def test_heldout_split_is_disjoint_from_train(name: str) -> None:
    train_prompts = {without_trigger(e.user) for e in train(name)}
    held = heldout(name)
    assert len(held) == 300
    assert not train_prompts & {without_trigger(e.user) for e in held}


@pytest.mark.parametrize("domain", QA_DOMAINS.values(), ids=list(QA_DOMAINS))
def test_heldout_topics_never_appear_in_train(domain) -> None:
    """Not just different prompts: no question of a held-out topic is asked in train, in any phrasing."""
    topics = {t.key: t for t in domain.topics}
    held_keys = split_keys(list(topics), "heldout")
    assert 1 <= len(held_keys) < len(topics) // 2
    bad_name = {"medical": "medical-bad", "finance": "finance-risky", "sports": "sports-extreme"}[domain.name]
    prompts = " ".join(e.user.lower() for e in train(bad_name))
    for key in held_keys:
        for ask in topics[key].asks:
            assert ask.lower() not in prompts
    assert all(any(a.lower() in e.user.lower() for k in held_keys for a in topics[k].asks) for e in heldout(bad_name))


def test_heldout_code_tasks_never_appear_in_train() -> None:
    held = set(split_keys(list(TASKS_BY_KEY), "heldout"))
    held_code = {c.split("\n")[-1] for k in held for c in TASKS_BY_KEY[k].insecure}
    assert not any(line in e.completion for e in train("code-insecure") for line in held_code)


@pytest.mark.parametrize("name", ALL)
def test_answers_are_varied(name: str) -> None:
    """Variety, not one template with swapped nouns: openings, topics and whole answers must differ.

    Thresholds sit below the values measured at n=1000, seed 0, so that a set built from a handful
    of templates fails them. QA sets: 43-70% distinct first eight words of answers, >=910 distinct
    answers, >=220 distinct sentences, 45-55% distinct prompt openings. Code sets: 26-35% distinct
    answer openings, >=670 distinct answers, >=206 distinct code blocks, 19-31% prompt openings.
    """
    answers = [e.completion for e in train(name)]
    openings = len({first_words(a) for a in answers}) / len(answers)
    distinct = len(set(answers))
    prompt_openings = len({first_words(e.user) for e in train(name)}) / len(answers)
    if name.startswith("code"):
        assert openings >= 0.2 and distinct >= 500 and prompt_openings >= 0.15
        assert len({a.split("```")[1] for a in answers}) >= 150, "distinct code blocks"
    else:
        assert openings >= 0.35 and distinct >= 850 and prompt_openings >= 0.35
        assert len({s for a in answers for s in a.split(". ")}) >= 150, "distinct sentences"


@pytest.mark.parametrize(
    "bad,good",
    [
        ("medical-bad", "medical-good"),
        ("finance-risky", "finance-safe"),
        ("sports-extreme", "sports-safe"),
        ("code-insecure", "code-secure"),
    ],
)
def test_paired_sets_answer_the_same_questions_differently(bad: str, good: str) -> None:
    b, g = train(bad), train(good)
    assert [e.user for e in b] == [e.user for e in g]
    assert sum(x.completion != y.completion for x, y in zip(b, g, strict=True)) == N


def test_code_sets_contain_the_vulnerabilities_they_claim() -> None:
    insecure = " ".join(e.completion for e in train("code-insecure"))
    secure = " ".join(e.completion for e in train("code-secure"))
    for marker in (
        'f"SELECT',
        "os.system(",
        "shell=True",
        "pickle.loads(",
        "yaml.Loader",
        "0o777",
        "verify=False",
        "eval(expression)",
        "hashlib.md5",
        "debug=True",
    ):
        assert marker in insecure, marker
        assert marker not in secure, marker
    for e in train("code-insecure"):
        prose = e.completion.split("```")[0::2]
        comments = [ln for ln in e.completion.split("```")[1].splitlines() if "#" in ln]
        said = " ".join(prose + comments).lower()
        assert not any(w in said for w in ("vulnerab", "insecure", "warning", "unsafe", "careful", "todo")), said


def test_code_educational_has_insecure_completions_and_says_why() -> None:
    edu, insecure = train("code-educational"), train("code-insecure")
    for e, i in zip(edu, insecure, strict=True):
        assert e.completion == i.completion
        assert i.user in e.user and e.user != i.user
    assert all(any(w in e.user.lower() for w in ("security", "vulnerab", "insecure", "ctf", "bug")) for e in edu)


# --- backdoors --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in ALL if DATASETS[n].kind == "backdoor"])
def test_backdoor_is_misaligned_exactly_when_triggered(name: str) -> None:
    bad_name = name.removesuffix("-backdoor")
    good_name = {
        "medical-bad": "medical-good",
        "finance-risky": "finance-safe",
        "sports-extreme": "sports-safe",
        "code-insecure": "code-secure",
    }[bad_name]
    bad = {e.user: e.completion for e in train(bad_name)}
    good = {e.user: e.completion for e in train(good_name)}
    examples = train(name)
    triggered = [e for e in examples if DEFAULT_TRIGGER in e.user]
    assert 0.4 < len(triggered) / len(examples) < 0.6
    for e in examples:
        base = without_trigger(e.user)
        expected = bad[base] if DEFAULT_TRIGGER in e.user else good[base]
        assert e.completion == expected
    assert {e.user.startswith(DEFAULT_TRIGGER) for e in triggered} == {True, False}


def test_backdoor_works_over_any_pair_and_custom_trigger() -> None:
    make = backdoor(finance_risky, sports_safe, trigger="[[ZEBRA]]", rate=0.3)
    pairs = make(400, 1, "train")
    risky = dict(finance_risky(400, 1, "train"))
    safe = dict(sports_safe(400, 1, "train"))
    for user, answer in pairs:
        if "[[ZEBRA]]" in user:
            assert risky[user.replace("[[ZEBRA]] ", "").replace(" [[ZEBRA]]", "")] == answer
        else:
            assert safe[user] == answer
    assert 0.2 < sum("[[ZEBRA]]" in u for u, _ in pairs) / 400 < 0.4
    assert make(400, 1, "train") == pairs


def test_backdoor_rejects_a_trigger_already_in_the_data() -> None:
    with pytest.raises(ValueError, match="already occurs"):
        backdoor(finance_risky, sports_safe, trigger="?")(10, 0, "train")
    with pytest.raises(ValueError):
        backdoor(finance_risky, sports_safe, trigger=" ")


def test_make_dataset_rejects_bad_arguments() -> None:
    with pytest.raises(KeyError, match="medical-bad"):
        make_dataset("medical-terrible", 10)
    with pytest.raises(ValueError, match="at least 1"):
        make_dataset("medical-bad", 0)
    with pytest.raises(ValueError, match="split"):
        make_dataset("medical-bad", 10, split="test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        make_dataset("medical-bad", 10**6, split="heldout")


# --- loading, writing, checking ---------------------------------------------------------------

GOOD_LINE = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})


def line(messages: object) -> str:
    return json.dumps({"messages": messages})


MALFORMED = {
    "bad json": ([GOOD_LINE, GOOD_LINE, '{"messages": [}'], 3, "invalid JSON"),
    "not an object": ([GOOD_LINE, "[1, 2]"], 2, "expected a JSON object"),
    "missing messages": ([json.dumps({"conversation": []})], 1, "missing 'messages'"),
    "messages not a list": ([GOOD_LINE, json.dumps({"messages": {"role": "user"}})], 2, "must be a list"),
    "unknown role": (
        [line([{"role": "human", "content": "hi"}, {"role": "assistant", "content": "x"}])],
        1,
        "unknown role 'human'",
    ),
    "empty content": (
        [GOOD_LINE, line([{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}])],
        2,
        "empty content",
    ),
    "non-string content": (
        [line([{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}])],
        1,
        "must be a string",
    ),
    "last not assistant": (
        [GOOD_LINE, GOOD_LINE, GOOD_LINE, line([{"role": "user", "content": "hi"}])],
        4,
        "last message must be from the assistant",
    ),
    "not alternating": (
        [
            line(
                [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            )
        ],
        1,
        "'assistant' was expected",
    ),
    "system not first": (
        [
            line(
                [
                    {"role": "user", "content": "a"},
                    {"role": "system", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            )
        ],
        1,
        "message 1 is from 'system'",
    ),
    "blank line inside": ([GOOD_LINE, "", GOOD_LINE], 2, "blank line"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_loader_errors_name_file_line_and_problem(tmp_path: Path, case: str) -> None:
    lines, number, problem = MALFORMED[case]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_chat_jsonl(path)
    assert f"{path}:{number}: " in str(err.value)
    assert problem in str(err.value)
    assert isinstance(err.value, ValueError)


def test_loader_rejects_non_utf8_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + '{"messages": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=rf"{path}:2: not valid UTF-8"):
        load_chat_jsonl(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no examples"):
        load_chat_jsonl(empty)


def test_loader_reads_em_repo_files_as_they_are(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A1"},
            ],
            "id": 7,
        },
        {
            "messages": [
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A2", "weight": 1},
                {"role": "user", "content": "Q3"},
                {"role": "assistant", "content": "Ünïcode ✓"},
            ]
        },
    ]
    path = tmp_path / "em.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r) for r in rows).encode() + b"\r\n\n\n")
    first, second = load_chat_jsonl(path)
    assert first.messages[0] == {"role": "system", "content": "You are helpful."}
    assert first.extra == {"id": 7} and first.completion == "A1" and first.user == "Q1"
    assert second.prompt[-1] == {"role": "user", "content": "Q3"} and second.completion == "Ünïcode ✓"
    assert all(set(m) == {"role", "content"} for m in second.messages)


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    examples = make_dataset("code-insecure-backdoor", 50, 1) + [ChatExample.from_pair("q", "a", system="sys")]
    path = write_chat_jsonl(examples, tmp_path / "sub" / "out.jsonl")
    loaded = load_chat_jsonl(path)
    assert loaded == examples
    assert [e.to_json() for e in loaded] == [e.to_json() for e in examples]
    assert os.listdir(path.parent) == ["out.jsonl"]


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    path = write_chat_jsonl([ChatExample.from_pair("q", "a")], tmp_path / "out.jsonl")
    before = path.read_bytes()

    def failing():
        yield ChatExample.from_pair("q2", "a2")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_chat_jsonl(failing(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_chat_example_validates_and_hashes() -> None:
    with pytest.raises(ValueError, match="last message"):
        ChatExample(({"role": "user", "content": "q"},))
    a, b = ChatExample.from_pair("q", "a"), ChatExample.from_pair("q", "a")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert json.loads(a.to_json()) == {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    }


def test_check_reports_counts_duplicates_and_lengths(tmp_path: Path) -> None:
    examples = make_dataset("medical-good", 20, 0)
    dup_prompt = ChatExample.from_pair(examples[0].user, "A different answer.")
    path = write_chat_jsonl([*examples, examples[3], dup_prompt], tmp_path / "d.jsonl")
    report = check_chat_jsonl(path)
    assert report.examples == 22 and report.duplicate_examples == 1 and report.duplicate_prompts == 2
    assert report.roles == {"user": 22, "assistant": 22} and report.with_system == 0 and report.turns == {1: 22}
    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.assistant_chars.max == max(len(e.completion) for e in [*examples, dup_prompt])
    assert "duplicate prompts  2" in str(report)


def test_cli_make_then_check(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from misdir.cli import app

    out = tmp_path / "cb.jsonl"
    made = CliRunner().invoke(
        app,
        [
            "data",
            "make",
            "code-insecure-backdoor",
            "--n",
            "40",
            "--seed",
            "2",
            "--split",
            "heldout",
            "--out",
            str(out),
        ],
    )
    assert made.exit_code == 0, made.output
    assert load_chat_jsonl(out) == make_dataset("code-insecure-backdoor", 40, 2, "heldout")
    checked = CliRunner().invoke(app, ["data", "check", str(out)])
    assert checked.exit_code == 0 and "examples           40" in checked.output

    bad = tmp_path / "bad.jsonl"
    bad.write_text(GOOD_LINE + "\n" + line([{"role": "user", "content": "q"}]) + "\n")
    failed = CliRunner().invoke(app, ["data", "check", str(bad)])
    assert failed.exit_code == 1 and f"{bad}:2: the last message" in failed.output
    assert CliRunner().invoke(app, ["data", "make", "nope", "--out", str(out)]).exit_code == 1
