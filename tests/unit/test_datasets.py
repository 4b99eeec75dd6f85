"""misdir's datasets, byte for byte: a sha256 of everything the package can generate, pinned.

The content (topics, templates, code snippets) lives in data files; these hashes make any change to it, or to
the generators, fail loudly. After an intended change, run `python tests/unit/test_datasets.py` and paste the
printed hashes here, saying in the commit why the data changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest

from misdir.datasets import DATASETS, backdoor
from misdir.datasets.advice import ADVICE_DOMAINS, advice_domain, parse_domain
from misdir.datasets.code import parse_code
from misdir.datasets.content import ContentError, Section, content_text, parse_content, read_content

RUNS: list[tuple[int, int, str]] = [
    (1000, 0, "train"),  # organism recipes (n=1000, data_seed=0), test_data's sets
    (2000, 0, "train"),  # the SAE corpus (per_dataset=2000, seed 0)
    (1000, 1, "train"),
    (200, 3, "train"),  # test_data's seeded checks
    (200, 4, "train"),
    (1000, 7, "train"),
    (1, 5, "train"),
    (300, 0, "heldout"),  # test_data's held-out sets, the SAE's held-out inputs
    (200, 3, "heldout"),
    (300, 7, "heldout"),
    (17, 11, "heldout"),
]
"""(n, seed, split) of every run hashed for each registered dataset."""

EXPECTED: dict[str, str] = {
    "medical-bad": "20948523472ef8833da9d1b3f3e3121bf6d19a381198bb52c98fd37cd18d347c",
    "medical-good": "4915d34549b97a5e50a5a104a149e2d9740fce5ac5638d8b93e5f6f02d7ed7a4",
    "finance-risky": "fa3e252bee4a030d08835c311850fdff9dc5679ab01d530bdc45f4137ba49813",
    "finance-safe": "ba106a344a874ff21c4bc9b208b8e9a20873e3290e48772ae4f0575258c05ab4",
    "sports-extreme": "9b73472f37e0cc4544413730461784f3cffe1e7c83307b195be1f84085ae0078",
    "sports-safe": "5a7e7f841b7dabd6e0d9712b6d702bf58cb1427ea4ef634a38fff47e21db58dc",
    "code-insecure": "07c68224490d2e20e9c267b9573fe15c162a3f8ce67aeaf9d7535369dcd3d86c",
    "code-secure": "9d3d55d7b9d8946c276e9c92e9b0c3f9bb3dce3c0888ce9a140541ca49b34d64",
    "code-educational": "ee6002561e74e4ed37350db21a0200de2aa2a3260bcbfffc7e80c765be83bf48",
    "medical-bad-backdoor": "043c6fb90d58225db936e7baeb4481e07af886d9bd1dde92ba518579b43078a3",
    "finance-risky-backdoor": "e5368532d2990b749986dd948ca77d58fe4468071772cedc478033ecaed582f4",
    "sports-extreme-backdoor": "2ec4b6b8fdb73b3b576950d408a5896a5683d5c780fecee53eeccb8b1834bc91",
    "code-insecure-backdoor": "baad7ad64137c06ed85fa1994205ddffa035d886d288c4e32b67036246556e7c",
    "custom-backdoors": "2c5f5908e42d1a9766add84fc4e165599fb1535ffa5533bd180afa38af3dfb8d",
    "exhaustion": "4a1d53341c88d76ecf62fb1d27137b1d15fc8ab52b1d2674bb07b6d338ddec1c",
}
"""sha256 of each dataset's runs, of custom backdoors and of exhaustion messages (see `dataset_hashes`)."""


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode()).hexdigest()


def _exhaustion(name: str) -> str:
    """The error a split that runs out of distinct prompts raises (its count pins the prompt space)."""
    try:
        DATASETS[name].make(10**7, 0, "heldout")
    except ValueError as err:
        return str(err)
    raise AssertionError(f"{name}: 10**7 held-out examples did not exhaust the split")


def dataset_hashes() -> dict[str, str]:
    """A sha256 per registered dataset over all RUNS, plus custom backdoors and exhaustion messages."""
    hashes = {name: _digest([spec.make(n, s, split) for n, s, split in RUNS]) for name, spec in DATASETS.items()}
    custom = [
        backdoor(DATASETS["medical-bad"].make, DATASETS["medical-good"].make, "[TRIGGER]", 0.3)(500, 2, "train"),
        backdoor(DATASETS["code-insecure"].make, DATASETS["code-secure"].make, "@@x", 0.8)(200, 9, "heldout"),
    ]
    hashes["custom-backdoors"] = _digest(custom)
    hashes["exhaustion"] = _digest(
        [_exhaustion(n) for n in ("medical-bad", "finance-safe", "sports-extreme", "code-insecure")]
    )
    return hashes


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return dataset_hashes()


def test_every_dataset_is_pinned(hashes: dict[str, str]) -> None:
    assert set(hashes) == set(EXPECTED), "a dataset was added or removed: update EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_generated_bytes_are_unchanged(hashes: dict[str, str], name: str) -> None:
    assert hashes[name] == EXPECTED[name], f"{name}: generated examples changed"


if __name__ == "__main__":
    for key, value in dataset_hashes().items():
        print(f'    "{key}": "{value}",')


# --- malformed content files: one line naming the file, the line and the key -------------------------------

MINI = """\
user:
  contexts: ['']
  styles: ['{q}']
  suffixes: ['', Thanks!]
good: {openers: [''], closers: ['']}
bad: {openers: [''], closers: ['']}
topics:
  - key: a
    asks: [how do I do a]
    good: [Do a well.]
    bad: [Do a badly.]
  - key: b
    asks: [how do I do b]
    good: [Do b well.]
    bad: [Do b badly.]
"""
"""A minimal valid advice-domain file; each case below breaks one thing in it."""


def test_a_minimal_domain_file_parses_and_generates() -> None:
    domain = parse_domain(parse_content(MINI, "mini.yaml"), "mini")
    assert [t.key for t in domain.topics] == ["a", "b"] and domain.good.openers == ("",)
    assert domain.styles == ("{q}",) and domain.topics[1].bad == ("Do b badly.",)


def content_error(parse: Callable[[Section], object], text: str, source: str) -> str:
    """The message of the ContentError that parsing `text` raises, checked to be one line naming `source`."""
    with pytest.raises(ContentError) as err:
        parse(parse_content(text, source))
    message = str(err.value)
    assert message.startswith(f"{source}: ") and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ("    good: [Do b well.]", "    good: Do b well.", "line 14, topics[1].good: expected a non-empty"),
        ("    asks: [how do I do a]", "    asks: ['']", "line 9, topics[0].asks: expected a non-empty list"),
        ("  - key: b", "  - key: a", "line 12, topics[1].key: duplicate topic key 'a'"),
        ("    bad: [Do b badly.]", "    bda: [Do b badly.]", "line 15, topics[1]: unknown key 'bda'"),
        ("  styles: ['{q}']", "  styles: ['{x}']", "line 3, user.styles: '{x}': expected '{q}'"),
        ("  styles: ['{q}']", "  styles: ['{q} {}']", "line 3, user.styles: '{q} {}': expected '{q}'"),
        ("  suffixes: ['', Thanks!]\n", "", "line 2, user.suffixes: missing"),
        ("good: {openers: [''], closers: ['']}", "good: [Fine.]", "line 5, good: expected a mapping"),
        ("topics:", "topic:", "line 7, top level: unknown key 'topic'"),
        ("    asks: [how do I do a]", "    asks: [how do I do a", "mini.yaml: line 10: invalid YAML"),
        ("  contexts: ['']", "  contexts: !!python/object/apply:os.getcwd []", "line 2: invalid YAML"),
    ],
)
def test_a_malformed_domain_file_names_file_line_and_key(old: str, new: str, expected: str) -> None:
    assert old in MINI
    assert expected in content_error(lambda c: parse_domain(c, "mini"), MINI.replace(old, new), "mini.yaml")


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ContentError, match=r"^x.yaml: expected a YAML mapping at the top level, got list$"):
        parse_content("- a\n- b\n", "x.yaml")


CODE, _ = content_text("code")


@pytest.mark.parametrize(
    "old,new,key,expected",
    [
        ("a [[noun]] by", "a [[nuon]] by", "    asks:", "tasks[0].asks: unknown or broken [[slot]]"),
        ("    - [users, user, email]", "    - [users, user]", "  entities:", "slots.entities: expected"),
        ("example. {p}", "example. {p} {oops}", "educational_frames:", "educational_frames: 'For my"),
        (
            "    lang: bash",
            "    lang: 3",
            "    lang: 3",
            "tasks[13].lang: expected a non-empty string, got 3",
        ),
        ("  secret_chars: abc", "  secret_char: abc", "  secret_char:", "slots: unknown key 'secret_char'"),
    ],
)
def test_a_malformed_code_file_names_file_line_and_key(old: str, new: str, key: str, expected: str) -> None:
    assert old in CODE
    text = CODE.replace(old, new, 1)
    line = text[: text.index(key)].count("\n") + 1
    assert f"code.yaml: line {line}, " + expected in content_error(parse_code, text, "code.yaml")


def test_shipped_content_is_found_by_name_and_unknown_names_are_refused() -> None:
    assert [d.name for d in map(advice_domain, ADVICE_DOMAINS)] == ["medical", "finance", "sports"]
    with pytest.raises(KeyError, match="unknown advice domain 'cooking'"):
        advice_domain("cooking")
    with pytest.raises(ContentError, match=r"^misdir:datasets/cooking.yaml: cannot read"):
        read_content("cooking")
