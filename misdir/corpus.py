"""An offline training corpus for SAEs on a small chat model, from three sources that need no network:

- **samples**: answers the model itself samples (temperature 1) to diverse prompts: every paraphrase of the
  shipped question sets, every contrast question, and the user turns of misdir's datasets (aligned and
  misaligned alike). On-distribution chat text; as free to use as the model's own licence allows.
- **datasets**: misdir's own conversations (every dataset, misaligned answers included), rendered as chats.
- **package docs**: docstrings of installed Python distributions, read with `ast` from their source files
  (nothing is imported), cut into passages; each distribution's name, version and licence is recorded.

`build_corpus` writes one JSONL file per source (`{"messages": [...]}` or `{"text": ...}` per line) and a
`corpus.json` record of sizes (texts and tokens), licences and timings; `load_corpus` reads the texts back as
misdir inputs (chats or plain strings) for `misdir.sae.train_sae`.

A larger corpus streams from a Hugging Face dataset (`stream_dataset`; `hf:` sources of
`misdir.sae.training_inputs`): a hub id, or a local folder or file of json/jsonl/parquet/csv/txt, read with
`datasets.load_dataset(..., streaming=True)` up to a budget of tokens, words or texts.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from misdir.generate import _eos_ids
from misdir.io import atomic_path, write_json_atomic
from misdir.models import ModelLike, as_model
from misdir.provenance import software
from misdir.tokens import Conversation, Encoded, pad, pad_token_id, render_chat

SOURCES = ("samples", "datasets", "package-docs")
Unit = Literal["tokens", "words", "texts"]
_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}
_STREAM_CHUNK = 256  # texts tokenized at once while counting a token budget


def corpus_prompts(*, per_dataset: int = 2000, seed: int = 0) -> list[str]:
    """User turns to sample answers to: each paraphrase of every shipped question set, each question of every
    contrast set, and the user turns of the first `per_dataset` training examples of every misdir dataset."""
    from misdir.data import DATASETS, make_dataset
    from misdir.questions import CONTRAST_SETS, QUESTION_SETS, load_contrast_pairs, load_questions

    prompts = [p for name in QUESTION_SETS for q in load_questions(name) for p in q.paraphrases]
    prompts += [pair.question for name in CONTRAST_SETS for pair in load_contrast_pairs(name)]
    for name in DATASETS:
        prompts += [
            next(m["content"] for m in e.messages if m["role"] == "user")
            for e in make_dataset(name, per_dataset, seed, "train")
        ]
    unique = sorted(set(prompts))
    random.Random(seed).shuffle(unique)
    return unique


def dataset_conversations(*, per_dataset: int = 2000, seed: int = 0) -> list[list[dict[str, str]]]:
    """The first `per_dataset` training conversations of every misdir dataset."""
    from misdir.data import DATASETS, make_dataset

    return [[dict(m) for m in e.messages] for name in DATASETS for e in make_dataset(name, per_dataset, seed, "train")]


def package_docs(
    packages: Sequence[str] | None = None, *, words: int = 64, min_words: int = 16
) -> tuple[list[str], list[dict[str, str]]]:
    """Docstring passages of installed distributions (all of them when `packages` is None), read from their
    `.py` files with `ast` (no import), cut into passages of `words` words, shorter leftovers under
    `min_words` dropped; and per distribution its name, version and licence as its metadata states."""
    dists = sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower())
    if packages is not None:
        wanted = {p.lower().replace("_", "-") for p in packages}
        dists = [d for d in dists if (d.metadata["Name"] or "").lower().replace("_", "-") in wanted]
    passages: list[str] = []
    records: list[dict[str, str]] = []
    seen: set[str] = set()
    for dist in dists:
        name = dist.metadata["Name"] or "?"
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        before = len(passages)
        for file in dist.files or ():
            if file.suffix != ".py":
                continue
            # typeshed's SimplePath: an installed distribution's files are pathlib paths
            passages.extend(_passages(Path(dist.locate_file(file)), words, min_words))  # type: ignore[arg-type]
        if len(passages) > before:
            licence = dist.metadata["License-Expression"] or (dist.metadata["License"] or "").split("\n")[0][:80]
            classifiers = [
                c.split(" :: ")[-1] for c in dist.metadata.get_all("Classifier") or () if c.startswith("License")
            ]
            records.append(
                {
                    "name": name,
                    "version": dist.version,
                    "license": licence or ", ".join(classifiers) or "unstated",
                    "passages": str(len(passages) - before),
                }
            )
    return passages, records


def _passages(path: Path, words: int, min_words: int) -> Iterator[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            tokens = (ast.get_docstring(node) or "").split()
            for start in range(0, len(tokens), words):
                chunk = tokens[start : start + words]
                if len(chunk) >= min_words:
                    yield " ".join(chunk)


@torch.inference_mode()
def sample_answers(
    model: ModelLike,
    prompts: Sequence[str],
    *,
    n_tokens: int,
    max_new_tokens: int = 256,
    batch_size: int = 1024,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
) -> tuple[list[list[dict[str, str]]], int]:
    """Chats of `prompts` (cycled, in order) with answers sampled at temperature 1 until the answers hold
    `n_tokens` tokens or `max_seconds` pass. Returns the chats and their answer-token count. Sampling is
    Hugging Face's own (one seeded stream per batch), which is much faster at large batches than
    `misdir.generate`'s per-answer streams; a corpus needs no per-answer reproducibility."""
    model = as_model(model)
    tokenizer = model.tokenizer
    pad_id = pad_token_id(tokenizer)
    eos = set(_eos_ids(model))
    chats: list[list[dict[str, str]]] = []
    total, started, start = 0, time.perf_counter(), 0
    while total < n_tokens and (max_seconds is None or time.perf_counter() - started < max_seconds):
        rows = [prompts[(start + i) % len(prompts)] for i in range(batch_size)]
        start += batch_size
        encoded = [
            tokenizer(
                render_chat(tokenizer, [{"role": "user", "content": p}], add_generation_prompt=True),
                add_special_tokens=False,
            )["input_ids"]
            for p in rows
        ]
        batch = pad([Encoded(e, [len(e) - 1]) for e in encoded], pad_id, side="left")
        torch.manual_seed(seed + start)
        out = model.hf.generate(
            input_ids=batch.input_ids.to(model.input_device),
            attention_mask=batch.attention_mask.to(model.input_device),
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
        )
        for prompt, tokens in zip(rows, out[:, batch.input_ids.shape[1] :].tolist(), strict=True):
            kept = tokens[: next((i for i, t in enumerate(tokens) if t in eos), len(tokens))]
            if kept:
                chats.append(
                    [
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": tokenizer.decode(kept, skip_special_tokens=True)},
                    ]
                )
                total += len(kept)
        if progress:
            print(
                f"misdir corpus: {total:,} of {n_tokens:,} answer tokens sampled "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    return chats, total


def count_tokens(model: ModelLike, inputs: Sequence[str | Conversation]) -> int:
    """Tokens of the inputs as the model reads them (chats with their template)."""
    model = as_model(model)
    tokenizer = model.tokenizer
    texts = [x if isinstance(x, str) else render_chat(tokenizer, x) for x in inputs]
    if not texts:
        return 0
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def build_corpus(
    model: ModelLike,
    out: str | Path,
    *,
    sample_tokens: int = 6_000_000,
    total_tokens: int = 10_000_000,
    per_dataset: int = 2000,
    packages: Sequence[str] | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 1024,
    max_sample_seconds: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the corpus to `out` (see the module docstring): `sample_tokens` of sampled answers, the datasets'
    conversations, then package docstrings up to `total_tokens` in all. A source already written is kept on
    a rerun. Returns (and writes as `corpus.json`) the record of what each source holds."""
    model = as_model(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": "misdir.corpus/1",
        "model": model.spec,
        "seed": seed,
        **software(),
        "sources": {},
    }
    if not (out / "samples.jsonl").is_file():
        started = time.perf_counter()
        chats, answer_tokens = sample_answers(
            model,
            corpus_prompts(per_dataset=per_dataset, seed=seed),
            n_tokens=sample_tokens,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed,
            max_seconds=max_sample_seconds,
            progress=progress,
        )
        _write_lines(out / "samples.jsonl", ({"messages": c} for c in chats))
        write_json_atomic(
            out / "samples.json",
            {
                "seconds": time.perf_counter() - started,
                "answer_tokens": answer_tokens,
                "asked_tokens": sample_tokens,
                "max_seconds": max_sample_seconds,
                "batch_size": batch_size,
                "max_new_tokens": max_new_tokens,
            },
        )
    record["sources"]["samples"] = {
        "what": f"answers of {model.spec} sampled at temperature 1 to the shipped "
        "questions, contrast questions and dataset user turns",
        "license": "the sampling model's own licence (the embedded SmolLM2: Apache-2.0)",
        **json.loads((out / "samples.json").read_text()),
    }
    if not (out / "datasets.jsonl").is_file():
        conversations = dataset_conversations(per_dataset=per_dataset, seed=seed)
        _write_lines(out / "datasets.jsonl", ({"messages": c} for c in conversations))
    record["sources"]["datasets"] = {
        "what": f"misdir's datasets, first {per_dataset} training conversations each",
        "license": "misdir's own (Apache-2.0)",
    }
    inputs = {s: load_corpus(out, [s]) for s in ("samples", "datasets")}
    tokens = {s: count_tokens(model, inputs[s]) for s in inputs}
    if not (out / "package-docs.jsonl").is_file():
        passages, dists = package_docs(packages)
        random.Random(seed).shuffle(passages)
        kept, count = [], sum(tokens.values())
        for passage in passages:
            if count >= total_tokens:
                break
            kept.append(passage)
            count += len(model.tokenizer(passage, add_special_tokens=False)["input_ids"])
        _write_lines(out / "package-docs.jsonl", ({"text": p} for p in kept))
        write_json_atomic(out / "package-docs.distributions.json", dists)
    dists = json.loads((out / "package-docs.distributions.json").read_text())
    record["sources"]["package-docs"] = {
        "what": "docstrings of installed Python distributions (ast, no import)",
        "license": "each distribution's own; see package-docs.distributions.json",
        "distributions": len(dists),
    }
    inputs["package-docs"] = load_corpus(out, ["package-docs"])
    tokens["package-docs"] = count_tokens(model, inputs["package-docs"])
    for source in SOURCES:
        record["sources"][source] |= {"texts": len(inputs[source]), "tokens": tokens[source]}
    record["tokens"] = sum(s["tokens"] for s in record["sources"].values())
    write_json_atomic(out / "corpus.json", record)
    return record


def load_corpus(folder: str | Path, sources: Sequence[str] = SOURCES) -> list[str | Conversation]:
    """The corpus's texts as misdir inputs: chats for samples and datasets, plain strings for package docs."""
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown corpus sources {unknown}; known: {', '.join(SOURCES)}")
    return [x for s in sources for x in _read_lines(Path(folder) / f"{s}.jsonl")]


def _read_lines(path: Path) -> list[str | Conversation]:
    items: list[str | Conversation] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append(row["messages"] if "messages" in row else row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                expected = '{"messages": [...]} or {"text": ...}'
                raise ValueError(f"{path}:{number}: expected {expected} ({error})") from error
    return items


def _write_lines(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def stream_dataset(
    path: str,
    budget: int,
    *,
    unit: Unit = "tokens",
    tokenizer: Any = None,
    column: str = "text",
    split: str = "train",
    name: str | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The first texts of a dataset's `column`, streamed, until they hold `budget` units (the last one whole).

    `path` is a local folder (its data files), a local json/jsonl/parquet/csv/txt file, or a Hugging Face hub
    dataset id (`name` its configuration); nothing is downloaded beyond what is read. `unit` is `tokens` of
    `tokenizer` (the text alone, no special tokens), whitespace-separated `words`, or `texts`. Returns the
    texts and a record of where they came from (a hub dataset's revision included)."""
    if budget < 1:
        raise ValueError(f"the budget must be a positive number of {unit}, got {budget}")
    if unit not in ("tokens", "words", "texts"):
        raise ValueError(f"unit must be tokens, words or texts, got {unit!r}")
    if unit == "tokens" and tokenizer is None:
        raise ValueError("a budget in tokens needs the model's tokenizer (or give it in words or texts)")
    stream, record = _open_stream(path, split=split, name=name)
    texts: list[str] = []
    total = 0
    for chunk in _text_chunks(stream, column, path):
        sizes = _sizes(chunk, unit, tokenizer)
        for text, size in zip(chunk, sizes, strict=True):
            texts.append(text)
            total += size
            if total >= budget:
                break
        if total >= budget:
            break
    record |= {"column": column, "split": split, "budget": budget, "unit": unit, "texts": len(texts), unit: total}
    return texts, record


def stream_source(spec: str, *, texts: int, tokenizer: Any = None) -> tuple[list[str], dict[str, Any]]:
    """`stream_dataset` from a source string (as `misdir sae train --data` takes it):
    `hf:PATH[,column=C][,split=S][,name=N][,tokens=T|words=W|texts=N]`; without a budget, the first `texts`
    texts."""
    path, *options = spec.removeprefix("hf:").split(",")
    settings: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("column", "split", "name", "tokens", "words", "texts") or key in settings:
            raise ValueError(
                f"{spec}: options are column=, split=, name= and one of tokens=, words=, texts= "
                f"(each once), got {option!r}"
            )
        settings[key] = value
    budgets = [u for u in ("tokens", "words", "texts") if u in settings]
    if len(budgets) > 1:
        raise ValueError(f"{spec}: give one budget, not {' and '.join(budgets)}")
    unit: Unit = budgets[0] if budgets else "texts"
    try:
        budget = int(settings.get(unit, texts))
    except ValueError:
        raise ValueError(f"{spec}: {unit}= takes a whole number, got {settings[unit]!r}") from None
    if not path:
        raise ValueError(f"{spec}: no dataset named after hf:")
    return stream_dataset(
        path,
        budget,
        unit=unit,
        tokenizer=tokenizer,
        column=settings.get("column", "text"),
        split=settings.get("split", "train"),
        name=settings.get("name"),
    )


def _open_stream(path: str, *, split: str, name: str | None) -> tuple[Any, dict[str, Any]]:
    """An iterable dataset of `path` (local folder, local file or hub id) and its provenance."""
    import datasets

    local = Path(path).expanduser()
    if local.is_file():
        builder = _BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise ValueError(
                f"{local}: no dataset reader for {local.suffix!r} files; " f"known: {', '.join(sorted(_BUILDERS))}"
            )
        stream = datasets.load_dataset(builder, data_files=str(local), split=split, streaming=True)
        return stream, {"kind": "hf-stream", "path": str(local), "format": builder}
    if local.is_dir():
        stream = datasets.load_dataset(str(local), name, split=split, streaming=True)
        return stream, {"kind": "hf-stream", "path": str(local)}
    revision = _hub_revision(path)
    stream = datasets.load_dataset(path, name, split=split, streaming=True, revision=revision)
    return stream, {"kind": "hf-stream", "hub": path, "name": name, "revision": revision}


def _hub_revision(repo_id: str) -> str:
    """The hub dataset's current commit, asked once without retries, so that offline (or for an id the hub
    does not know) the answer is one line at once instead of `datasets`' minute of retries."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().dataset_info(repo_id, timeout=10)
    except Exception as error:  # offline, unknown id, gated, no such host: all end the run the same way
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{repo_id!r} is no local file or folder, and the Hugging Face hub gave no dataset "
            f"for it ({type(error).__name__}: {reason})"
        ) from None
    return str(info.sha)


def _text_chunks(stream: Any, column: str, path: str) -> Iterator[list[str]]:
    chunk: list[str] = []
    for number, row in enumerate(stream, 1):
        if column not in row:
            raise ValueError(f"{path}: no column {column!r}; the dataset has {', '.join(map(repr, row))}")
        text = row[column]
        if not isinstance(text, str):
            raise ValueError(f"{path}: row {number}'s {column!r} is {type(text).__name__}, not text")
        if text.strip():
            chunk.append(text)
        if len(chunk) == _STREAM_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sizes(texts: list[str], unit: Unit, tokenizer: Any) -> list[int]:
    if unit == "texts":
        return [1] * len(texts)
    if unit == "words":
        return [len(t.split()) for t in texts]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
