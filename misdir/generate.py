"""Sample answers to evaluation questions in left-padded batches with Hugging Face `generate`.

Each answer draws its randomness from its own stream, keyed by (seed, question id, paraphrase,
sample), and is sampled with the Gumbel-max trick (argmax of logits / temperature plus Gumbel noise,
an exact sample from the softmax; `gumbel_noise` draws it for the whole batch at once, counter-based). So an answer
depends on the seed and on what it answers, not on
the batch it shared: the same seed gives the same answers at any batch size and in any order (up to
float rounding between batch shapes, which can flip a token only at a near-tie). Generation runs
inside whatever `misdir.ablate` / `misdir.steer` blocks are open, and records them in provenance.

Decoding (`cache=`): on a CUDA model `"auto"` takes a static KV cache sized once for the whole call, and
transformers compiles the decode step (torch.compile, mode reduce-overhead: CUDA graphs) with the open edits'
hooks inside the graph; `misdir.hooks` makes a graph compiled without hooks compile again when hooks open.
The first batch of each batch size pays the compilation (tens of seconds for a 7B model), the rest decode
about 3x faster than the dynamic cache at batch 1 (bench/NOTES.md). The last, shorter batch is padded with
repeated rows so one compiled shape serves the whole call. On the CPU, for a model split over several
devices, for edits at some positions only (their bookkeeping is Python state between steps), and when
compilation fails (with a one-line warning), it decodes with transformers' dynamic cache. A model with fewer
key/value heads than query heads decodes with `misdir.attention`'s grouped attention (each cached key and value
read once per step, not once per query head). On CUDA the host learns whether all rows have finished one step
late (`stop_check_one_step_late`: the same tokens, and the GPU no longer waits for the host at every step: 1.11x at
batch 512, bench/NOTES.md). What was used is recorded in the answers' provenance (`decoding`).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from misdir.attention import grouped_attention, uses_grouped_attention
from misdir.batching import OutOfMemoryError, auto_batch_size, in_batches
from misdir.interventions import active_interventions
from misdir.io import atomic_path
from misdir.models import Model, ModelLike, as_model
from misdir.positions import answer_positions
from misdir.provenance import software
from misdir.tokens import Encoded, pad, render_chat

CACHES = ("auto", "dynamic", "static")
"""KV cache choices of `generate`: "auto" (static + compiled on CUDA, else dynamic), "dynamic", "static"."""

DEFERRED_STOP_DEVICES: tuple[str, ...] = ("cuda",)
"""Device types on which `generate` reads "has every row finished?" one step late (`stop_check_one_step_late`).
Same tokens (tested on the CPU; on an H100 equal answer digests through one compiled step), 1.11x at batch 512 on
an H100 with the noise counter on the device (bench/NOTES.md); () turns it off."""

MAX_ANSWERS = 10_000_000
"""Most answers one `generate` call plans; more is almost surely a typo in a sample count."""


@dataclass(frozen=True)
class Answer:
    """One sampled answer to one paraphrase of one question."""

    question_id: str
    paraphrase: int
    sample: int
    question: str
    answer: str
    n_tokens: int
    """Generated tokens of the answer, the end-of-turn token not counted."""
    finished: bool
    """True when the model ended its turn (an EOS token), False when cut at `max_new_tokens`."""
    system: str | None = None

    @property
    def key(self) -> str:
        """Unique within a run: ``question_id/paraphrase/sample``."""
        return f"{self.question_id}/{self.paraphrase}/{self.sample}"


class Answers(list[Answer]):
    """The answers of one `generate` call, in question, paraphrase, sample order, with its provenance."""

    def __init__(self, answers: Sequence[Answer] = (), provenance: Mapping[str, Any] | None = None):
        super().__init__(answers)
        self.provenance: dict[str, Any] = dict(provenance or {})


@dataclass(frozen=True)
class _Prompt:
    question_id: str
    paraphrase: int
    sample: int
    question: str
    system: str | None


def generate(
    model: ModelLike,
    questions: Sequence[Any],
    *,
    n_samples: int | None = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int | Literal["auto"] = "auto",
    system: str | None = None,
    skip: Container[str] = (),
    on_batch: Callable[[list[Answer]], None] | None = None,
    progress: bool = True,
    cache: str = "auto",
) -> Answers:
    """Sample `n_samples` answers to each paraphrase of each question.

    `questions` items are plain strings (id: their index), `(id, text)` pairs, or Question records
    (`.id`, `.paraphrases`, `.samples_per_paraphrase`, `.system`). `n_samples=None` takes each
    Question's `samples_per_paraphrase` (1 for strings). A question's own system prompt wins over
    `system`. `temperature=0` decodes greedily. `batch_size="auto"` (default) takes the most rows that fit the
    GPU's free memory (`misdir.batching.auto_batch_size`; 16 on the CPU); answers do not depend on it.
    `cache`: "auto" (default: static cache and a compiled decode step on CUDA, the dynamic cache elsewhere; see
    the module docstring), "dynamic", or "static"
    (compiled on CUDA, eager on the CPU). Returns `Answers` (a list) whose `.provenance` records the model,
    the settings, the decoding used and any interventions open on the model.
    """
    model = as_model(model)
    _check_settings(model, temperature, top_p, batch_size, max_new_tokens, n_samples, cache)
    prompts = [p for p in _prompts(questions, n_samples, system) if _key(p) not in skip]
    sampler = _BatchSampler(model, prompts, max_new_tokens, temperature, top_p, seed, cache)
    order = sorted(range(len(prompts)), key=lambda i: -len(sampler.encoded[i]))  # similar lengths share a batch
    requested = batch_size
    if batch_size == "auto":
        longest = max((len(e) for e in sampler.encoded), default=1)
        dtype = next(model.hf.parameters()).dtype
        batch_size = auto_batch_size(model.config, model.input_device, dtype, longest, max_new_tokens, len(prompts))
    answers: dict[int, Answer] = {}
    with (
        torch.inference_mode(),
        tqdm(total=len(prompts), desc="generating", unit="answer", disable=not progress) as bar,
    ):
        # A batch that runs out of GPU memory is sampled again in halves: each row has its own random
        # stream, so an answer does not depend on the batch it is sampled in.
        for rows, sampled in in_batches(sampler.sample, order, batch_size, what="generating"):
            answers.update(zip(rows, sampled, strict=True))
            if on_batch is not None:
                on_batch(sampled)
            bar.update(len(rows))

    settings = {
        "n_samples": n_samples,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "batch_size": batch_size,
        "batch_size_requested": requested,
        "system": system,
        "sampler": "gumbel-max, a splitmix64 counter-based stream per (seed, question id, paraphrase, sample)",
        "padding_side": "left",
        "eos_token_ids": sampler.eos,
        "cache": cache,
    }
    provenance = {
        "model": model.provenance,
        "spec": model.spec,
        "settings": settings,
        "interventions": active_interventions(model),
        "decoding": sampler.decoding,
        "n_answers": len(prompts),
        "device": str(model.input_device),
        **software(),
    }
    return Answers([answers[i] for i in range(len(prompts))], provenance)


def _check_settings(
    model: Model,
    temperature: float,
    top_p: float,
    batch_size: int | str,
    max_new_tokens: int,
    n_samples: int | None,
    cache: str,
) -> None:
    if model.lens is not None:
        raise TypeError("generate samples with Hugging Face generate; load the model with misdir.load_model")
    if any(type(module).__module__.startswith("transformer_lens.model_bridge") for module in model.hf.modules()):
        raise ValueError(
            "this model's modules were replaced in place by TransformerLens's TransformerBridge "
            "(boot_transformers(hf_model=...)); its wrapped attention does not read transformers' KV cache, so "
            "sampling through it gives wrong tokens. Boot the bridge on a copy (hf_model=copy.deepcopy(model.hf)) "
            "and sample from the model it did not wrap"
        )
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, not {batch_size!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, not {max_new_tokens}")
    if n_samples is not None and n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if cache not in CACHES:
        raise ValueError(f"unknown cache {cache!r}; expected one of {', '.join(CACHES)}")


class _BatchSampler:
    """Samples the answers of a batch of prompts (rows) with the decoding `generate` chose for the call."""

    def __init__(
        self,
        model: Model,
        prompts: list[_Prompt],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
        cache: str,
    ):
        self.model, self.prompts, self.temperature, self.top_p, self.seed = model, prompts, temperature, top_p, seed
        tokenizer = model.tokenizer
        texts = [render_chat(tokenizer, _messages(p), add_generation_prompt=True) for p in prompts]
        self.encoded: list[list[int]] = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        self.eos = _eos_ids(model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]
        max_cache_len = max((len(e) for e in self.encoded), default=0) + max_new_tokens
        self.decoding = _decoding(model, cache, max_cache_len)
        self.configs = {
            mode: _generation_config(
                max_new_tokens,
                self.pad_id,
                self.eos,
                cache=mode,
                max_cache_len=max_cache_len,
                compiled=self.decoding["compiled"],
            )
            for mode in ("dynamic", "static")
        }
        self.rows_per_batch: int | None = None
        """A compiled decode step's batch size: the first batch's, kept for the shorter last batch by padding
        with repeated rows (None until the first batch)."""
        self.shrinking = False
        """Set once an out-of-memory error has made batches halve: from then on no batch is padded back up."""

    def generate(self, rows: Sequence[int]) -> Int[Tensor, "row new"]:
        batch = pad([Encoded(self.encoded[i], [len(self.encoded[i]) - 1]) for i in rows], self.pad_id, side="left")
        device = self.model.input_device
        with (
            answer_positions(self.model, batch.input_ids.shape[1]),
            grouped_attention(self.model.hf),
            stop_check_one_step_late(device),
        ):
            out = self.model.hf.generate(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                generation_config=self.configs[self.decoding["cache"]],
                logits_processor=_sampler(
                    self.temperature, self.top_p, [_row_seed(self.seed, self.prompts[i]) for i in rows]
                ),
            )
        return out[:, batch.input_ids.shape[1] :]

    def sample(self, rows: Sequence[int]) -> list[Answer]:
        padded = list(rows)
        if self.decoding["compiled"] and not self.shrinking:
            self.rows_per_batch = self.rows_per_batch or len(rows)
            padded += [rows[0]] * (self.rows_per_batch - len(rows))
        try:
            out = self.generate(padded)
        except OutOfMemoryError:
            self.shrinking = True
            raise
        except Exception as error:  # a compiler error: decode this call with the dynamic cache
            if not self.decoding["compiled"]:
                raise
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"misdir.generate: compiled static-cache decoding failed ({type(error).__name__}: "
                f"{first_line}); using the dynamic cache",
                stacklevel=3,
            )
            self.decoding.update(cache="dynamic", compiled=False, fallback=f"{type(error).__name__}: {first_line}")
            out = self.generate(rows)
        tokens = out[: len(rows)].tolist()
        return [_answer(self.prompts[i], t, self.eos, self.model.tokenizer) for i, t in zip(rows, tokens, strict=True)]


@contextmanager
def stop_check_one_step_late(device: torch.device) -> Iterator[bool]:
    """Within the block, transformers' `generate` on `device` learns one step late whether every row has finished.

    After each decode step `generate` reads that flag on the host, which makes the host wait for the GPU at every
    step: the GPU then idles while Python prepares the next one (about 12% of the wall time of a batch-512 sampling
    call on an H100, bench/NOTES.md). transformers has a deferred check (`DeferredStopCheck`: the flag copied
    asynchronously and read at the next step; the one extra step it may run is undone, so the tokens are the same)
    that it turns on for Apple's "mps" devices only; this block turns it on, under the same conditions, for
    `DEFERRED_STOP_DEVICES`.
    Yields whether it did (False for other devices and for a transformers without the check).
    """
    from transformers.generation import utils as generation_utils

    if not _defers_stop_check(device):
        yield False
        return
    checker = generation_utils.DeferredStopCheck
    own = checker.__dict__["is_supported"]  # the staticmethod itself, restored as it was
    as_on_mps = torch.device("mps")

    def is_supported(device: torch.device, cache: Any, cache_is_returned: bool, is_assistant: bool) -> bool:
        return own.__func__(as_on_mps, cache, cache_is_returned, is_assistant)

    setattr(checker, "is_supported", staticmethod(is_supported))  # noqa: B010 (a method, as mypy sees it)
    try:
        yield True
    finally:
        setattr(checker, "is_supported", own)  # noqa: B010


def _defers_stop_check(device: torch.device) -> bool:
    from transformers.generation import utils as generation_utils

    return device.type in DEFERRED_STOP_DEVICES and hasattr(generation_utils, "DeferredStopCheck")


def save_answers(answers: Sequence[Answer], path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write answers as JSONL, atomically: a header line `{"provenance": {...}}`, then one answer per line.

    The header holds the `Answers`' own provenance (model, settings, seed, interventions, misdir version)
    updated with `provenance` (e.g. the command line), so the file can never lose its record.
    """
    header = {**getattr(answers, "provenance", {}), **(provenance or {})}
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"provenance": header}, default=str) + "\n")
        for answer in answers:
            f.write(json.dumps(asdict(answer), ensure_ascii=False) + "\n")
    return path


def load_answers(path: str | Path) -> Answers:
    """Read a file written by `save_answers` back into `Answers` with its provenance."""
    with Path(path).open(encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if not lines or "provenance" not in (header := json.loads(lines[0])):
        raise ValueError(f"{path}: not an answers file (its first line has no 'provenance' header)")
    return Answers([Answer(**json.loads(line)) for line in lines[1:]], header["provenance"])


def _prompts(questions: Sequence[Any], n_samples: int | None, system: str | None) -> list[_Prompt]:
    if isinstance(questions, str) or not questions:
        raise ValueError("questions must be a non-empty list of strings, (id, text) pairs or Questions")
    out: list[_Prompt] = []
    seen: set[str] = set()
    for index, q in enumerate(questions):
        if isinstance(q, str):
            qid, paraphrases, own_system, n = str(index), [q], None, 1
        elif isinstance(q, tuple | list) and len(q) == 2 and all(isinstance(part, str) for part in q):
            qid, paraphrases, own_system, n = q[0], [q[1]], None, 1
        elif hasattr(q, "paraphrases") and hasattr(q, "id"):
            qid, paraphrases = str(q.id), list(q.paraphrases)
            own_system, n = getattr(q, "system", None), int(getattr(q, "samples_per_paraphrase", 1))
        else:
            raise TypeError(f"question {index} is neither a string, an (id, text) pair nor a Question: {q!r}")
        if qid in seen:
            raise ValueError(f"question id {qid!r} appears twice; ids seed the sampling, so they must differ")
        seen.add(qid)
        count = n_samples if n_samples is not None else n
        if len(out) + len(paraphrases) * count > MAX_ANSWERS:
            raise ValueError(
                f"more than {MAX_ANSWERS:,} answers asked for (question {qid!r}: {len(paraphrases)} "
                f"paraphrases x {count} samples); split the run"
            )
        for p, text in enumerate(paraphrases):
            for s in range(count):
                out.append(_Prompt(qid, p, s, text, own_system if own_system is not None else system))
    return out


def _key(prompt: _Prompt) -> str:
    return f"{prompt.question_id}/{prompt.paraphrase}/{prompt.sample}"


def _messages(prompt: _Prompt) -> list[dict[str, str]]:
    head = [{"role": "system", "content": prompt.system}] if prompt.system is not None else []
    return [*head, {"role": "user", "content": prompt.question}]


def _eos_ids(model: Model) -> list[int]:
    """End-of-turn tokens: the tokenizer's EOS and any the model's generation config names."""
    ids: list[int] = []
    for source in (model.tokenizer.eos_token_id, getattr(model.hf.generation_config, "eos_token_id", None)):
        for token in source if isinstance(source, list) else [source]:
            if token is not None and int(token) not in ids:
                ids.append(int(token))
    if not ids:
        raise ValueError(f"{model.spec}: neither the tokenizer nor the generation config names an EOS token")
    return ids


def _decoding(model: Model, cache: str, max_cache_len: int) -> dict[str, Any]:
    """Which KV cache `generate` uses and whether transformers compiles the decode step, with the reason."""
    on_cuda = model.input_device.type == "cuda"
    eager = [r["eager"] for r in active_interventions(model) if r.get("eager")]  # what the open edits need
    devices = set(getattr(model.hf, "hf_device_map", {}).values())
    refused = None
    if not on_cuda:
        refused = "not on a CUDA device"
    elif len(devices) > 1:
        refused = "model split over several devices"
    elif eager:
        refused = eager[0]
    elif not getattr(model.hf, "_can_compile_fullgraph", True):
        refused = f"transformers does not compile {type(model.hf).__name__}"
    attention = "grouped (misdir.attention)" if uses_grouped_attention(model.hf) else "the model's own"
    stop_check = "one step late" if _defers_stop_check(model.input_device) else "every step"
    if cache == "dynamic" or (cache == "auto" and refused is not None):
        return {
            "requested": cache,
            "cache": "dynamic",
            "compiled": False,
            "reason": refused or "asked for",
            "attention": attention,
            "stop_check": stop_check,
        }
    compiled = refused is None
    return {
        "requested": cache,
        "cache": "static",
        "compiled": compiled,
        "max_cache_len": max_cache_len,
        "reason": "compiled decode step (CUDA graphs)" if compiled else f"eager: {refused}",
        "attention": attention,
        "stop_check": stop_check,
    }


def _generation_config(
    max_new_tokens: int,
    pad_id: int,
    eos: list[int],
    *,
    cache: str = "dynamic",
    max_cache_len: int | None = None,
    compiled: bool = False,
) -> Any:
    """Greedy over the processed scores (the noise is added by `_sampler`); the model's own sampling
    defaults (Qwen's top_k, repetition penalty...) are overridden so that only misdir's settings apply.
    `cache="static"`: one static KV cache of `max_cache_len` (so one compiled shape serves every batch),
    compiled by transformers when `compiled` (it does so on CUDA only), else explicitly eager."""
    from transformers import GenerationConfig

    options: dict[str, Any] = {}
    if cache == "static":
        options = {"cache_implementation": "static", "max_cache_len": max_cache_len, "disable_compile": not compiled}
    return GenerationConfig(
        **options,
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=eos,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
    )


def _sampler(temperature: float, top_p: float, seeds: list[int]) -> Any:
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    if temperature == 0:
        return LogitsProcessorList()
    steps: list[Any] = [TemperatureLogitsWarper(temperature)]
    if top_p < 1:
        steps.append(TopPLogitsWarper(top_p))
    steps.append(_GumbelNoise(seeds))
    return LogitsProcessorList(steps)


class _GumbelNoise:
    """Adds Gumbel(0, 1) noise to each row's scores from that row's own stream (`gumbel_noise`); argmax then
    samples. One kernel for the whole batch (compiled on CUDA), where a generator per row took one launch each."""

    def __init__(self, seeds: list[int]):
        self.seeds = seeds
        self.keys: Tensor | None = None
        self.step: Tensor | None = None

    def __call__(
        self, input_ids: Int[Tensor, "batch pos"], scores: Float[Tensor, "batch vocab"]
    ) -> Float[Tensor, "batch vocab"]:
        if self.keys is None or self.step is None:  # made where the logits are (the last GPU of a device_map split)
            self.keys = torch.tensor(self.seeds, dtype=torch.int64, device=scores.device)
            self.step = torch.zeros((), dtype=torch.int64, device=scores.device)
        noise = _noise_kernel(scores.device)(self.keys, self.step, scores.shape[-1])
        # The counter lives on the device and moves in place: a step made from a Python int would be a blocking
        # host-to-device copy, a wait for the GPU at every decode step (bench/NOTES.md, issue 26).
        self.step += 1
        return scores.float() + noise


def _signed(value: int) -> int:
    """A 64-bit constant as the int64 torch holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 lanes (torch's `>>` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def gumbel_noise(keys: Int[Tensor, " batch"], step: Int[Tensor, ""], vocab: int) -> Float[Tensor, "batch vocab"]:
    """Gumbel(0, 1) noise for each row's stream at one decoding step: splitmix64 of (row key, step, token) gives
    24 random bits, u in (0, 1), noise -log(-log u). A counter-based stream: the noise of a row depends on its
    key, the step and the token only, never on the batch it is drawn in."""
    token = torch.arange(vocab, dtype=torch.int64, device=keys.device)
    x = keys[:, None] * _signed(0xD1342543DE82EF95) + (step * vocab + token)[None, :]
    x = x + _signed(0x9E3779B97F4A7C15)
    x = (x ^ _shift_right(x, 30)) * _signed(0xBF58476D1CE4E5B9)
    x = (x ^ _shift_right(x, 27)) * _signed(0x94D049BB133111EB)
    x = x ^ _shift_right(x, 31)
    uniform = (_shift_right(x, 40).float() + 0.5) * 2.0**-24
    return -torch.log(-torch.log(uniform))


_COMPILED_NOISE: list[Callable[..., Tensor]] = []


def _noise_kernel(device: torch.device) -> Callable[..., Tensor]:
    """`gumbel_noise`, compiled into one kernel on CUDA (eager elsewhere). Its first call checks the compiled
    kernel's first row against the eager computation; where it differs, or compiling fails, the noise is drawn
    eagerly from then on (the same numbers, more memory traffic), with a one-line warning."""
    if device.type != "cuda":
        return gumbel_noise
    if not _COMPILED_NOISE:
        compiled = torch.compile(gumbel_noise, dynamic=False)

        def eager_from_now(reason: str) -> None:
            warnings.warn(f"misdir.generate: {reason}; drawing the sampling noise eagerly", stacklevel=3)
            _COMPILED_NOISE[0] = gumbel_noise

        def first_call(keys: Tensor, step: Tensor, vocab: int) -> Tensor:
            try:
                out = compiled(keys, step, vocab)
            except Exception as error:  # no compiler for this device
                eager_from_now(f"compiling the sampling noise failed ({type(error).__name__})")
                return gumbel_noise(keys, step, vocab)
            if not torch.allclose(out[:1], gumbel_noise(keys[:1], step, vocab), rtol=1e-5, atol=1e-5):
                eager_from_now("the compiled sampling noise differs from the eager one")
                return gumbel_noise(keys, step, vocab)
            _COMPILED_NOISE[0] = compiled
            return out

        _COMPILED_NOISE.append(first_call)
    return _COMPILED_NOISE[0]


def _row_seed(seed: int, prompt: _Prompt) -> int:
    key = f"{seed}\x00{prompt.question_id}\x00{prompt.paraphrase}\x00{prompt.sample}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def _answer(prompt: _Prompt, tokens: list[int], eos: list[int], tokenizer: Any) -> Answer:
    end = next((i for i, token in enumerate(tokens) if token in eos), None)
    kept = tokens if end is None else tokens[:end]
    return Answer(
        question_id=prompt.question_id,
        paraphrase=prompt.paraphrase,
        sample=prompt.sample,
        question=prompt.question,
        answer=tokenizer.decode(kept, skip_special_tokens=True),
        n_tokens=len(kept),
        finished=end is not None,
        system=prompt.system,
    )
