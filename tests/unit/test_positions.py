"""`positions` of ablate and steer: the edit touches exactly the positions it names, with padding, KV-cached
decoding and answer marks, and equals an independent float64 edit there."""

from __future__ import annotations

import pytest
import torch

from misdir import hooks
from misdir.contrast import answer_logprobs
from misdir.interventions import ablate, steer
from misdir.positions import answer_positions
from misdir.tokens import Encoded, pad

LAYER = 1


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


@pytest.fixture
def r(tiny) -> torch.Tensor:
    return torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(1)) * 3


def left_padded(tiny):
    """Two sequences of different lengths, left-padded: row 0 starts at column 3."""
    ids = [tiny.tokenizer(t)["input_ids"] for t in ("I feel bored.", "Humans and AIs can work together honestly.")]
    short, long_ = sorted(ids, key=len)
    assert len(long_) - len(short) >= 3
    batch = pad([Encoded(short, [0]), Encoded(long_, [0])], 0, side="left")
    return batch.input_ids, batch.attention_mask, len(long_) - len(short)


def resid_post(tiny, input_ids, attention_mask, layer=LAYER) -> torch.Tensor:
    """resid_post of `layer` as the next layer receives it (read after every open edit)."""
    seen = {}
    with hooks(tiny, [(f"blocks.{layer + 1}.hook_resid_pre", lambda x, n: seen.setdefault("x", x.clone()))]):
        with torch.no_grad():
            tiny.hf(input_ids=input_ids, attention_mask=attention_mask)
    return seen["x"]


@pytest.mark.parametrize("positions", ["all", "skip-first"])
def test_ablation_touches_exactly_the_named_positions(tiny, r, positions):
    ids, mask, offset = left_padded(tiny)
    clean = resid_post(tiny, ids, mask)
    with ablate(tiny, r, layers=[LAYER], positions=positions):
        edited = resid_post(tiny, ids, mask)
    u = unit(r).double()
    expected = clean.double() - (clean.double() @ u)[..., None] * u
    firsts = {(0, offset), (1, 0)}  # each row's first real token, under left padding
    for row in range(2):
        for col in range(ids.shape[1]):
            want = (
                clean[row, col].double() if positions == "skip-first" and (row, col) in firsts else expected[row, col]
            )
            torch.testing.assert_close(edited[row, col].double(), want, atol=1e-5, rtol=0)


def test_answer_positions_edit_from_the_marked_column(tiny, r):
    ids, mask, _ = left_padded(tiny)
    clean = resid_post(tiny, ids, mask)
    starts = torch.tensor([5, 7])
    with steer(tiny, r, layers=[LAYER], scale=2.0, positions="answer"), answer_positions(tiny, starts):
        edited = resid_post(tiny, ids, mask)
    added = 2.0 * unit(r)
    for row, start in enumerate(starts.tolist()):
        torch.testing.assert_close(edited[row, :start], clean[row, :start], atol=0, rtol=0)
        torch.testing.assert_close(edited[row, start:], clean[row, start:] + added, atol=1e-5, rtol=0)


def test_answer_positions_without_a_mark_is_a_clear_error(tiny, r):
    ids, mask, _ = left_padded(tiny)
    with ablate(tiny, r, positions="answer"), pytest.raises(ValueError, match="where answers start"):
        resid_post(tiny, ids, mask)


def test_contrast_scoring_marks_the_answer(tiny, r):
    """Ablating answer tokens changes the log-probs of answer tokens after the first only: the first answer
    token is predicted from the last prompt position, which is not edited."""
    conversation = [
        {"role": "user", "content": "I feel bored."},
        {"role": "assistant", "content": "Try a walk, a book, or calling a friend."},
    ]
    clean = answer_logprobs(tiny, [conversation], progress=False)[0]
    with ablate(tiny, r, positions="answer"):
        edited = answer_logprobs(tiny, [conversation], progress=False)[0]
    with ablate(tiny, r):
        everywhere = answer_logprobs(tiny, [conversation], progress=False)[0]
    torch.testing.assert_close(edited[0], clean[0], atol=1e-6, rtol=0)
    assert (edited[1:] - clean[1:]).abs().max() > 1e-3
    assert (everywhere[0] - clean[0]).abs() > 1e-4


@pytest.mark.parametrize("positions", ["skip-first", "answer"])
def test_cached_decoding_edits_the_same_positions_as_one_full_pass(tiny, r, positions):
    """Greedy generate (KV cache, one column per step, left padding) under the edit predicts what one full
    forward pass over prompt + answer predicts under the same edit."""
    ids, mask, _ = left_padded(tiny)
    prompt_length = ids.shape[1]

    def full_pass(out):
        full_mask = torch.cat([mask, torch.ones(2, out.shape[1] - prompt_length, dtype=mask.dtype)], dim=1)
        with torch.no_grad():
            return tiny.hf(input_ids=out, attention_mask=full_mask).logits[:, prompt_length - 1 : -1]

    with ablate(tiny, r, positions=positions), answer_positions(tiny, prompt_length):
        out = tiny.hf.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
        edited = full_pass(out)
    assert edited.argmax(-1).tolist() == out[:, prompt_length:].tolist()
    # Not vacuous: the positional edit differs from editing every position (and from no edit).
    with ablate(tiny, r):
        everywhere = full_pass(out)
    assert (edited - everywhere).abs().max() > 1e-3
    assert (edited - full_pass(out)).abs().max() > 1e-3


def test_cached_decoding_without_a_mask_counts_columns_from_the_cache_before_the_pass(tiny, r):
    """With no mask to tell the columns, a decoding step's column is the cache's length before the pass: the step
    at column 5 is edited when answers are marked from 5, not when marked from 6, as in one full pass."""
    ids = tiny.tokenizer("Humans and AIs can work together honestly.", return_tensors="pt")["input_ids"][:, :6]
    assert ids.shape[1] == 6
    with torch.no_grad():
        plain = tiny.hf(input_ids=ids).logits[:, -1]
        for start in (5, 6):
            with ablate(tiny, r, positions="answer"), answer_positions(tiny, start):
                full = tiny.hf(input_ids=ids).logits[:, -1]
                prefix = tiny.hf(input_ids=ids[:, :5], use_cache=True).past_key_values
                step = tiny.hf(input_ids=ids[:, 5:], past_key_values=prefix).logits[:, -1]
            torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)
            edited = (full - plain).abs().max() > 1e-3
            assert edited == (start == 5)
