"""Property-based tests (hypothesis) of the loaders and of the math, the math against float64 references.

Example counts are kept small: the suite runs on two shared CPU cores.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import CONVERSATIONS
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from misdir import Model
from misdir.cache import cache_activations
from misdir.data import ChatExample, DataError, load_chat_jsonl, write_chat_jsonl
from misdir.directions import DirectionSet
from misdir.interventions import ablate
from misdir.io import RecordLog
from misdir.questions import QuestionFileError, parse_questions
from misdir.similarity import cosine_by_layer, cosine_matrix
from misdir.stats import bootstrap_mean

REUSED_TMP = [HealthCheck.function_scoped_fixture]  # tmp_path is shared by the examples; each rewrites it
FEW = settings(max_examples=40, deadline=None, suppress_health_check=REUSED_TMP)
VERY_FEW = settings(max_examples=12, deadline=None, suppress_health_check=REUSED_TMP)

# ------------------------------------------------------------------------------------------------------------
# Loaders

content = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")


@st.composite
def conversations(draw: Any) -> list[dict[str, str]]:
    """A valid conversation: an optional system message, then user and assistant alternating, ending with the
    assistant."""
    turns = draw(st.integers(1, 3))
    head = [{"role": "system", "content": draw(content)}] if draw(st.booleans()) else []
    body = [{"role": role, "content": draw(content)} for _ in range(turns) for role in ("user", "assistant")]
    return head + body


extras = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k != "messages"),
    st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()),
    max_size=3,
)


@FEW
@given(st.lists(st.tuples(conversations(), extras), min_size=1, max_size=6), st.booleans())
def test_load_chat_jsonl_round_trips_valid_conversations(tmp_path: Path, items: Any, crlf: bool) -> None:
    path = tmp_path / "round.jsonl"
    examples = [ChatExample(tuple(messages), extra) for messages, extra in items]
    write_chat_jsonl(examples, path)
    loaded = load_chat_jsonl(path)
    assert [e.messages for e in loaded] == [e.messages for e in examples]
    assert [dict(e.extra) for e in loaded] == [extra for _, extra in items]
    # The same lines written by another tool: CRLF line ends and a BOM are read alike.
    lines = [json.dumps({"messages": m, **x}, ensure_ascii=bool(crlf)) for m, x in items]
    raw = ("\r\n" if crlf else "\n").join(lines).encode()
    path.write_bytes(b"\xef\xbb\xbf" + raw if crlf else raw)
    assert [e.messages for e in load_chat_jsonl(path)] == [e.messages for e in examples]


@FEW
@given(st.binary(max_size=300))
@example(b"[" * 100_000)
@example(b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\ud800"}]}')
@example(b"\xff\xfe{}")
@example(b"\n\n\n")
def test_garbage_bytes_give_a_data_error_naming_the_file_never_another_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(data)
    try:
        load_chat_jsonl(path)
    except DataError as error:
        assert str(error).startswith(str(path))
    # otherwise, the bytes happened to be a valid file


@FEW
@given(st.lists(st.tuples(conversations(), extras), min_size=1, max_size=3), st.data())
def test_a_damaged_valid_file_fails_naming_a_line(tmp_path: Path, items: Any, data: st.DataObject) -> None:
    path = tmp_path / "damaged.jsonl"
    write_chat_jsonl([ChatExample(tuple(m), x) for m, x in items], path)
    raw = bytearray(path.read_bytes())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    path.write_bytes(bytes(raw[:cut]))
    try:
        load_chat_jsonl(path)
    except DataError as error:
        assert str(error).startswith(str(path))


@FEW
@given(st.text(max_size=200))
@example("[" * 20_000)
@example("- &a {id: *a}")
@example("- !!binary 'not base64!'")
@example("- !!python/object/apply:os.system ['true']")
def test_random_question_text_parses_or_gives_a_question_file_error(text: str) -> None:
    try:
        questions = parse_questions(text, source="random.yaml")
    except QuestionFileError as error:
        assert str(error).startswith("random.yaml")
    else:
        assert questions and all(q.paraphrases and q.samples_per_paraphrase >= 1 for q in questions)


@FEW
@given(st.binary(max_size=200))
@example(b"[" * 100_000 + b"\n")
@example(b'{"key": "a"}\n{"key": "a"}\n')
def test_record_log_reads_garbage_as_an_error_naming_the_line_or_cuts_a_torn_tail(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(data)
    try:
        log = RecordLog(path)
    except ValueError as error:
        assert str(error).startswith(f"{path} line ") or str(error).startswith(f"{path}:")
    else:
        assert path.read_bytes() == data[: data.rfind(b"\n") + 1]  # only a torn last line is ever cut
        log.append({"key": "new-record-\x00"})
        assert RecordLog(path).get("new-record-\x00") == {"key": "new-record-\x00"}


# ------------------------------------------------------------------------------------------------------------
# Math, against float64 references

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def vectors(layers: int, width: int) -> st.SearchStrategy[torch.Tensor]:
    return st.lists(finite, min_size=layers * width, max_size=layers * width).map(
        lambda values: torch.tensor(values, dtype=torch.float64).reshape(layers, width)
    )


def nonzero(v: torch.Tensor) -> bool:
    return bool((v.norm(dim=-1) > 1e-3).all())


@FEW
@given(vectors(3, 8), vectors(3, 8), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_cosine_is_symmetric_bounded_and_scale_invariant(a: torch.Tensor, b: torch.Tensor, s: float, t: float) -> None:
    assume(nonzero(a) and nonzero(b))
    cos = cosine_by_layer(a, b)
    reference = np.array(
        [np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a.numpy(), b.numpy(), strict=True)]
    )
    np.testing.assert_allclose(cos.numpy(), reference, atol=1e-12)
    assert torch.equal(cos, cosine_by_layer(b, a))
    assert (cos.abs() <= 1 + 1e-12).all()
    torch.testing.assert_close(cosine_by_layer(s * a, t * b), cos, atol=1e-12, rtol=0)
    torch.testing.assert_close(cosine_by_layer(-a, b), -cos, atol=1e-12, rtol=0)
    torch.testing.assert_close(cosine_by_layer(a, a), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(cosine_matrix(a, b).diagonal(), cos, atol=1e-12, rtol=0)


@VERY_FEW
@given(vectors(3, 64), st.floats(0.1, 100.0))
def test_ablation_leaves_no_component_is_idempotent_and_matches_float64(
    tiny_llama: Model, direction: torch.Tensor, scale: float
) -> None:
    assume(nonzero(direction))
    inputs = CONVERSATIONS[:2]

    def read(model: Model) -> list[torch.Tensor]:
        return cache_activations(model, inputs, site="resid_pre", positions="all", reduce="none", progress=False)

    plain = read(tiny_llama)
    with ablate(tiny_llama, scale * direction.float(), site="resid_pre"):
        once = read(tiny_llama)
        with ablate(tiny_llama, direction.float(), site="resid_pre"):
            twice = read(tiny_llama)
    unit = direction / direction.norm(dim=-1, keepdim=True)
    # Layer 0's resid_pre is the embedding, ablated directly: compare with the float64 projection of it.
    for x, got, again in zip(plain, once, twice, strict=True):
        x0 = x[0].double()
        reference = x0 - (x0 @ unit[0]).unsqueeze(-1) * unit[0]
        torch.testing.assert_close(got[0].double(), reference, atol=1e-5, rtol=1e-5)
        for layer in range(3):  # at every layer: no component left along that layer's direction
            size = got[layer].double().norm(dim=-1).clamp_min(1.0)
            assert ((got[layer].double() @ unit[layer]).abs() <= 1e-5 * size).all()
        torch.testing.assert_close(again, got, atol=1e-5, rtol=1e-5)


@FEW
@given(finite, st.integers(1, 30), st.integers(0, 2**32 - 1))
@example(0.1, 3, 0)
@example(1e-300, 7, 0)
def test_bootstrap_interval_of_constant_data_is_the_constant(value: float, n: int, seed: int) -> None:
    estimate = bootstrap_mean([value] * n, n_resamples=200, seed=seed)
    ulps = 4 * math.ulp(value)
    assert estimate.low - ulps <= estimate.value <= estimate.high + ulps
    assert estimate.value == pytest.approx(value, rel=1e-12, abs=1e-300)
    assert estimate.high - estimate.low <= ulps


def test_bootstrap_interval_contains_the_point_estimate_of_constant_data_exactly() -> None:
    estimate = bootstrap_mean([79.52936538491042] * 16, n_resamples=200, seed=0)
    assert estimate.low <= estimate.value <= estimate.high


@FEW
@given(st.lists(finite, min_size=1, max_size=40), st.integers(0, 2**32 - 1))
def test_bootstrap_mean_is_the_mean_and_its_interval_lies_within_the_data(values: list[float], seed: int) -> None:
    estimate = bootstrap_mean(values, n_resamples=200, seed=seed)
    assert estimate.value == pytest.approx(math.fsum(values) / len(values), rel=1e-9, abs=1e-9)
    assert min(values) - 1e-9 <= estimate.low <= estimate.high <= max(values) + 1e-9
    assert estimate.n == len(values)


@FEW
@given(vectors(2, 5), st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))
def test_direction_set_save_load_round_trips_exactly(
    tmp_path: Path, vectors_: torch.Tensor, meta: dict[str, Any]
) -> None:
    saved = DirectionSet(vectors_.float(), site="resid_mid", meta=meta)
    loaded = DirectionSet.load(saved.save(tmp_path / "d.safetensors"))
    assert torch.equal(loaded.vectors, saved.vectors) and loaded.site == "resid_mid" and loaded.meta == meta


@pytest.fixture(scope="module")
def tiny_llama() -> Model:
    from conftest import make_tokenizer, tiny_hf_model

    tokenizer = make_tokenizer()
    return Model(hf=tiny_hf_model("llama", len(tokenizer)), tokenizer=tokenizer, spec="tiny-llama")
