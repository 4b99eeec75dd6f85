"""Chat data: load and validate users' JSONL, write it atomically, and make misdir's narrow datasets.

The format is the one the emergent-misalignment papers use: one JSON object per line,
`{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}`, with an
optional system message first. Loading is strict: a malformed line raises a `DataError` naming the
file, the line and the problem, because a silently skipped line changes what a finetune learned.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from misdir.datasets import DATASETS, DatasetSpec, Split
from misdir.io import atomic_path, sha256_file

__all__ = [
    "DATASETS",
    "ChatExample",
    "DataError",
    "DatasetReport",
    "DatasetSpec",
    "check_chat_jsonl",
    "load_chat_jsonl",
    "make_dataset",
    "write_chat_jsonl",
]

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A chat data file that does not follow the format; the message names file, line and problem."""


@dataclass(frozen=True)
class ChatExample:
    """One conversation ending in the assistant turn a finetune learns from.

    `messages` is a tuple of `{"role", "content"}` dicts, ready for `tokenizer.apply_chat_template`.
    `extra` keeps any other top-level keys of the JSONL line (EM repos' files carry some).
    """

    messages: tuple[dict[str, str], ...]
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", validate_messages(self.messages))

    def __hash__(self) -> int:
        return hash(self.key)

    @classmethod
    def from_pair(cls, user: str, assistant: str, system: str | None = None) -> ChatExample:
        head = [{"role": "system", "content": system}] if system is not None else []
        return cls(tuple([*head, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]))

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        """The conversation as hashable (role, content) pairs."""
        return tuple((m["role"], m["content"]) for m in self.messages)

    @property
    def prompt(self) -> list[dict[str, str]]:
        """Every message before the final assistant turn (what the model is conditioned on)."""
        return list(self.messages[:-1])

    @property
    def completion(self) -> str:
        """The final assistant turn (what the loss is computed on)."""
        return self.messages[-1]["content"]

    @property
    def user(self) -> str:
        """The last user turn."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")

    def to_json(self) -> str:
        return json.dumps({"messages": list(self.messages), **self.extra}, ensure_ascii=False)


def validate_messages(messages: Any) -> tuple[dict[str, str], ...]:
    """Check a messages list and return it as a tuple of fresh {role, content} dicts.

    Rules: a non-empty list of objects with a known `role` and a non-blank string `content`;
    a system message only first; then user and assistant alternate, starting with the user
    and ending with the assistant. Raises ValueError saying what is wrong.
    """
    if not isinstance(messages, list | tuple):
        raise ValueError(f"'messages' must be a list, got {type(messages).__name__}")
    if not messages:
        raise ValueError("'messages' is empty")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"message {i} must be an object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}) content must be a string, got {type(content).__name__}")
        if not content.strip():
            raise ValueError(f"message {i} ({role}) has empty content")
        out.append({"role": role, "content": content})
    turns = out[1:] if out[0]["role"] == "system" else out
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            where = len(out) - len(turns) + i
            raise ValueError(
                f"message {where} is from {m['role']!r} but {expected!r} was expected "
                "(an optional system message, then user and assistant alternating)"
            )
    if not turns or out[-1]["role"] != "assistant":
        raise ValueError(f"the last message must be from the assistant, not {out[-1]['role']!r}")
    return tuple(out)


def _parse_line(raw: bytes) -> ChatExample:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" not in obj:
        raise ValueError(f"missing 'messages' (keys: {', '.join(sorted(obj)) or 'none'})")
    return ChatExample(obj["messages"], {k: v for k, v in obj.items() if k != "messages"})


def load_chat_jsonl(path: str | os.PathLike[str]) -> list[ChatExample]:
    """Read a chat JSONL file; any malformed line raises DataError with file and 1-based line number.

    Blank lines are allowed only at the end of the file; nothing is skipped.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); expected a chat JSONL file") from None
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: the file has no examples")
    examples = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            raise DataError(f"{path}:{number}: blank line in the middle of the file")
        try:
            examples.append(_parse_line(raw.rstrip(b"\r")))
        except ValueError as e:
            raise DataError(f"{path}:{number}: {e}") from None
    return examples


def write_chat_jsonl(examples: Iterable[ChatExample], path: str | os.PathLike[str]) -> Path:
    """Write examples as JSONL atomically (`misdir.io.atomic_path`: a temp file beside it, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as f:
        for example in examples:
            f.write(example.to_json() + "\n")
    return path


def make_dataset(name: str, n: int, seed: int = 0, split: Split = "train") -> list[ChatExample]:
    """n distinct examples of a registered narrow dataset, the same for the same (name, n, seed, split).

    The held-out split is built from held-out topics (or coding tasks), disjoint from train.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return [ChatExample.from_pair(user, assistant) for user, assistant in DATASETS[name].make(n, seed, split)]


@dataclass(frozen=True)
class LengthStats:
    """Character lengths of one kind of message."""

    min: int
    median: float
    mean: float
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int]) -> LengthStats:
        return cls(min(lengths), statistics.median(lengths), statistics.fmean(lengths), max(lengths))

    def __str__(self) -> str:
        return f"min {self.min}, median {self.median:.0f}, mean {self.mean:.0f}, max {self.max}"


@dataclass(frozen=True)
class DatasetReport:
    """What `misdir data check` reports about a valid chat JSONL file."""

    path: str
    sha256: str
    examples: int
    duplicate_examples: int
    """Examples identical to an earlier one."""
    duplicate_prompts: int
    """Examples whose prompt (everything before the last assistant turn) repeats an earlier one."""
    roles: dict[str, int]
    with_system: int
    turns: dict[int, int]
    """Number of user turns -> number of examples."""
    user_chars: LengthStats
    assistant_chars: LengthStats

    def __str__(self) -> str:
        roles = ", ".join(f"{r} {c}" for r, c in self.roles.items())
        turns = ", ".join(f"{t}: {c}" for t, c in sorted(self.turns.items()))
        return "\n".join(
            [
                f"{self.path}: OK",
                f"  sha256             {self.sha256}",
                f"  examples           {self.examples}",
                f"  duplicate examples {self.duplicate_examples}",
                f"  duplicate prompts  {self.duplicate_prompts}",
                f"  messages by role   {roles}",
                f"  with system        {self.with_system}",
                f"  user turns         {turns}",
                f"  user chars         {self.user_chars}",
                f"  assistant chars    {self.assistant_chars}",
            ]
        )


def check_chat_jsonl(path: str | os.PathLike[str]) -> DatasetReport:
    """Validate a chat JSONL file (DataError if malformed) and summarise it."""
    examples = load_chat_jsonl(path)
    roles = Counter(m["role"] for e in examples for m in e.messages)
    prompts = [json.dumps(e.prompt, sort_keys=True) for e in examples]
    return DatasetReport(
        path=str(path),
        sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        examples=len(examples),
        duplicate_examples=len(examples) - len({e.key for e in examples}),
        duplicate_prompts=len(prompts) - len(set(prompts)),
        roles={r: roles[r] for r in ROLES if roles[r]},
        with_system=sum(e.messages[0]["role"] == "system" for e in examples),
        turns=dict(Counter(sum(m["role"] == "user" for m in e.messages) for e in examples)),
        user_chars=LengthStats.of([len(m["content"]) for e in examples for m in e.messages if m["role"] == "user"]),
        assistant_chars=LengthStats.of(
            [len(m["content"]) for e in examples for m in e.messages if m["role"] == "assistant"]
        ),
    )


def load_conversations(
    data: str | os.PathLike[str], *, n: int | None = None, seed: int = 0, split: Split = "train", default_n: int = 1000
) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
    """Conversations from a chat JSONL file (its first `n`, default all) or a dataset name (`n`, default
    `default_n`, of `split`), and a record of where they came from, with a sha256 of what was read."""
    path = Path(data).expanduser()
    if path.is_file():
        examples = load_chat_jsonl(path)[:n]
        source: dict[str, Any] = {"kind": "file", "path": str(path.resolve()), "file_sha256": sha256_file(path)}
    elif str(data) in DATASETS:
        examples = make_dataset(str(data), n or default_n, seed, split)
        source = {"kind": "dataset", "name": str(data), "seed": seed, "split": split}
    elif path.exists():
        raise DataError(f"data {data!r} is a directory, not a chat JSONL file")
    else:
        raise DataError(f"data {data!r} is neither an existing file nor a dataset name; names: {', '.join(DATASETS)}")
    conversations = [[dict(m) for m in example.messages] for example in examples]
    if not conversations:
        raise DataError(f"data {data!r} holds no examples")
    canonical = "\n".join(json.dumps({"messages": c}, sort_keys=True, ensure_ascii=False) for c in conversations)
    source.update(n=len(conversations), sha256=hashlib.sha256(canonical.encode()).hexdigest())
    return conversations, source
