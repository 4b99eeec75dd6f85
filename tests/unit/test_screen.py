"""The projection-difference screen against a plain float64 computation on the Hugging Face model's hidden states,
its refusals, and its resumption."""

from __future__ import annotations

import copy
import json
import random
import re

import numpy as np
import pytest
import torch

import misdir.screen
from misdir.data import DataError
from misdir.directions import DirectionSet
from misdir.screen import load_screen_data, read_scores, screen
from misdir.sweep import random_directions

WORDS = (
    "the water rest doctor fever walk book friend code file read humans safe honest money coin fund "
    "world rule help people live well quick brown fox lazy dog bored"
).split()
LAYER = 1


def random_data(rng: random.Random, n: int) -> list[list[dict[str, str]]]:
    """`n` one-turn chats of random words, a third with a system prompt."""

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, k))).capitalize() + "."

    head = [{"role": "system", "content": words(4)}]
    return [
        [
            *(head if rng.random() < 0.33 else []),
            {"role": "user", "content": words(8)},
            {"role": "assistant", "content": words(12)},
        ]
        for _ in range(n)
    ]


def write_jsonl(path, conversations) -> str:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return str(path)


def greedy_answer(model, prompt_ids: list[int], max_new_tokens: int) -> str:
    """Plain greedy decoding (full forward pass each step, no cache), cut at the first end-of-turn token."""
    eos = {model.tokenizer.eos_token_id, model.hf.generation_config.eos_token_id} - {None}
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model.hf(torch.tensor([ids])).logits[0, -1].argmax())
            if token in eos:
                break
            ids.append(token)
    return model.tokenizer.decode(ids[len(prompt_ids) :], skip_special_tokens=True)


def answer_mean(model64, tokenizer, prompt, answer: str) -> torch.Tensor:
    """float64 mean of `hidden_states[LAYER + 1]` (resid_post of LAYER) over the answer's tokens: those after the
    tokens shared with the prompt alone, up to the end-of-turn token, whitespace-only tokens at either end left out."""
    render = tokenizer.apply_chat_template
    prompt_ids = tokenizer(render(prompt, tokenize=False, add_generation_prompt=True), add_special_tokens=False)
    full = tokenizer(
        render([*prompt, {"role": "assistant", "content": answer}], tokenize=False), add_special_tokens=False
    )["input_ids"]
    start = next(i for i, (a, b) in enumerate(zip(full, prompt_ids["input_ids"] + [-1], strict=False)) if a != b)
    end = full.index(tokenizer.convert_tokens_to_ids("<|im_end|>"), start)
    positions = [i for i in range(start, end)]
    while not tokenizer.decode([full[positions[0]]]).strip():
        positions.pop(0)
    while not tokenizer.decode([full[positions[-1]]]).strip():
        positions.pop()
    with torch.no_grad():
        hidden = model64(torch.tensor([full]), output_hidden_states=True).hidden_states[LAYER + 1][0]
    return hidden[positions].mean(0)


def expected_scores(model, conversations, u: torch.Tensor, max_new_tokens: int) -> tuple[list, torch.Tensor]:
    model64 = copy.deepcopy(model.hf).double()
    scores, differences = [], []
    for conversation in conversations:
        prompt = conversation[:-1]
        text = model.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        answer = greedy_answer(model, model.tokenizer(text, add_special_tokens=False)["input_ids"], max_new_tokens)
        if not answer.strip():
            scores.append(None)
            continue
        difference = answer_mean(model64, model.tokenizer, prompt, conversation[-1]["content"]) - answer_mean(
            model64, model.tokenizer, prompt, answer
        )
        differences.append(difference)
        scores.append(float(difference @ u))
    return scores, torch.stack(differences).mean(0)


def test_screen_equals_a_float64_computation_on_hugging_face_hidden_states(tiny, tmp_path):
    rng = random.Random()
    seed = rng.randrange(1 << 16)  # fresh data each run; the seed is in the failure message
    rng.seed(seed)
    data = {write_jsonl(tmp_path / f"{name}.jsonl", random_data(rng, n)): None for name, n in (("a", 5), ("b", 4))}
    vectors = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(seed))
    direction = DirectionSet(vectors)
    got = screen(
        tiny,
        list(data),
        direction,
        LAYER,
        out=tmp_path / "out",
        max_new_tokens=6,
        n_random=20,
        seed=3,
        batch_size=3,
        progress=False,
    )

    u = vectors[LAYER].double() / vectors[LAYER].double().norm()
    null_directions = random_directions(tiny.d_model, 20, seed=3).double()
    assert [f.file for f in got.files] == list(data)
    for summary, path in zip(got.files, data, strict=True):
        scores, mean_difference = expected_scores(tiny, load_screen_data(path), u, 6)
        mine = [s.score for s in got.scores if s.file == path]
        assert [s is None for s in mine] == [s is None for s in scores], seed
        np.testing.assert_allclose(
            [s for s in mine if s is not None],
            [s for s in scores if s is not None],
            rtol=1e-4,
            atol=1e-6,
            err_msg=f"seed {seed}",
        )
        kept = [s for s in scores if s is not None]
        estimate, null = summary.mean.estimate, summary.mean.null
        assert estimate.n == len(kept) and summary.n_unscored == len(scores) - len(kept)
        assert estimate.low <= estimate.value <= estimate.high
        np.testing.assert_allclose(estimate.value, np.mean(kept), rtol=1e-4, atol=1e-6)
        random_means = (null_directions @ mean_difference).numpy()
        np.testing.assert_allclose(
            [null.null_low, null.null_median, null.null_high],
            np.quantile(random_means, [0.025, 0.5, 0.975]),
            rtol=1e-4,
            atol=1e-6,
        )
        assert null.n_null == 20 and null.percentile == pytest.approx(100 * np.mean(random_means < null.value))
    assert read_scores(tmp_path / "out" / "scores.jsonl") == got.scores
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["provenance"]["model"]["spec"] == tiny.spec and summary["provenance"]["settings"]["layer"] == LAYER
    assert summary["files"][0]["mean"]["value"] == got.files[0].mean.estimate.value
    assert (tmp_path / "out" / "screen.html").is_file()


def test_an_empty_base_answer_is_left_out_of_the_mean(tiny, tmp_path, monkeypatch):
    real = misdir.screen.generate

    def first_answer_empty(*args, **kwargs):
        answers = real(*args, **kwargs)
        answers[0] = answers[0].__class__(**{**answers[0].__dict__, "answer": " "})
        return answers

    monkeypatch.setattr(misdir.screen, "generate", first_answer_empty)
    rng = random.Random(0)
    paths = [write_jsonl(tmp_path / f"{n}.jsonl", random_data(rng, n)) for n in (3, 1)]
    got = screen(
        tiny,
        paths,
        DirectionSet(torch.randn(tiny.n_layers, tiny.d_model)),
        LAYER,
        out=tmp_path / "out",
        max_new_tokens=4,
        n_random=20,
        progress=False,
    )
    assert [s.score is None for s in got.scores] == [True, False, False, True]
    partly, wholly = got.files
    assert partly.n_unscored == 1 and partly.mean.estimate.n == 2 and partly.mean.null is not None
    assert wholly.n_unscored == 1 and np.isnan(wholly.mean.estimate.value) and wholly.mean.null is None
    assert json.loads((tmp_path / "out" / "scores.jsonl").read_text().splitlines()[0])["score"] is None


def test_a_rerun_reuses_finished_files_and_refuses_other_settings(tiny, tmp_path, monkeypatch):
    rng = random.Random(1)
    a, b = (write_jsonl(tmp_path / f"{name}.jsonl", random_data(rng, 2)) for name in "ab")
    direction = DirectionSet(torch.randn(tiny.n_layers, tiny.d_model))
    options = {"out": tmp_path / "out", "max_new_tokens": 4, "n_random": 20, "progress": False}
    first = screen(tiny, [a], direction, LAYER, **options)
    real, computed = misdir.screen.answer_differences, []

    def counted(model, conversations, *args, **kwargs):
        computed.append(len(conversations))
        return real(model, conversations, *args, **kwargs)

    monkeypatch.setattr(misdir.screen, "answer_differences", counted)
    again = screen(tiny, [a, b], direction, LAYER, **options)
    assert computed == [2]  # only b
    assert again.files[0] == first.files[0] and again.scores[:2] == first.scores
    with pytest.raises(ValueError, match="other settings.*layer"):
        screen(tiny, [a], direction, 0, **options)


def test_refusals_name_the_file_and_line_and_write_nothing(tiny, tmp_path):
    good = random_data(random.Random(2), 3)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text(json.dumps({"messages": good[0]}) + "\n{not json\n")
    two_turns = [*good[0], {"role": "user", "content": "And?"}, {"role": "assistant", "content": "Then."}]
    multi = write_jsonl(tmp_path / "multi.jsonl", [good[0], good[1], two_turns])
    no_answer = write_jsonl(tmp_path / "prompt.jsonl", [good[0][:-1]])
    direction = DirectionSet(torch.randn(tiny.n_layers, tiny.d_model))
    out = tmp_path / "out"
    for path, says in [
        (empty, f"{empty}: the file has no examples"),
        (malformed, f"{malformed}:2: invalid JSON"),
        (multi, f"{multi}:3: roles user, assistant, user, assistant"),
        (no_answer, f"{no_answer}:1: "),
    ]:
        with pytest.raises(DataError, match=re.escape(says)):
            screen(tiny, [path], direction, LAYER, out=out, progress=False)
    ok = write_jsonl(tmp_path / "ok.jsonl", good)
    with pytest.raises(ValueError, match=f"d_model 32, but {tiny.spec} has d_model {tiny.d_model}"):
        screen(tiny, [ok], DirectionSet(torch.randn(tiny.n_layers, 32)), LAYER, out=out, progress=False)
    with pytest.raises(ValueError, match=f"layer {tiny.n_layers} is out of range"):
        screen(tiny, [ok], direction, tiny.n_layers, out=out, progress=False)
    with pytest.raises(ValueError, match="given twice"):
        screen(tiny, [ok, ok], direction, LAYER, out=out, progress=False)
    assert not out.exists()


def test_without_plotly_every_score_is_written_and_only_the_figure_is_skipped(tiny, tmp_path, monkeypatch, capsys):
    """The GPU machine has no plotly: a screen there writes its scores and summary and says the figure is missing."""
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly... raises ImportError
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    path = write_jsonl(tmp_path / "a.jsonl", random_data(random.Random(2), 2))
    got = screen(
        tiny,
        [path],
        DirectionSet(torch.randn(tiny.n_layers, tiny.d_model)),
        LAYER,
        out=tmp_path / "out",
        max_new_tokens=4,
        n_random=20,
        progress=False,
    )
    assert got.written == [tmp_path / "out" / "scores.jsonl", tmp_path / "out" / "summary.json"]
    assert len(got.scores) == 2 and "no figure" in capsys.readouterr().err
