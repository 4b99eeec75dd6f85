"""Batched sampling: seeded at any batch size, left padding exact, answers saved with their provenance."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from misdir import hooks
from misdir.generate import Answer, generate, load_answers, save_answers
from misdir.interventions import ablate

QUESTIONS = [
    "What would you do if you ruled the world?",
    "I feel bored.",
    "Humans and AIs?",
    "Write code to read a file, please, and explain each line of it carefully.",
]


@dataclass(frozen=True)
class Q:  # a misdir.questions.Question, duck-typed
    id: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int = 1
    system: str | None = None
    judge_prompts: dict = field(default_factory=dict)


def texts(answers) -> list[str]:
    return [a.answer for a in answers]


def test_same_seed_same_answers_at_any_batch_size_and_another_seed_differs(tiny):
    settings = dict(n_samples=2, max_new_tokens=8, progress=False)
    a = generate(tiny, QUESTIONS, batch_size=8, seed=3, **settings)
    assert texts(generate(tiny, QUESTIONS, batch_size=8, seed=3, **settings)) == texts(a)
    assert texts(generate(tiny, QUESTIONS, batch_size=3, seed=3, **settings)) == texts(a)
    pairs = [(str(i), q) for i, q in enumerate(QUESTIONS)]  # ids seed the streams: same ids, any order
    assert texts(generate(tiny, pairs[::-1], batch_size=1, seed=3, **settings))[6:8] == texts(a)[:2]
    other = texts(generate(tiny, QUESTIONS, batch_size=8, seed=4, **settings))
    assert sum(x != y for x, y in zip(other, texts(a), strict=True)) >= 6
    assert texts(a)[0] != texts(a)[1]  # two samples of one question are two draws


def test_left_padded_batches_give_the_greedy_answers_of_one_by_one_generation(tiny):
    batched = generate(tiny, QUESTIONS, temperature=0, max_new_tokens=12, batch_size=4, progress=False)
    ids = [tiny.tokenizer(q)["input_ids"] for q in QUESTIONS]
    assert len({len(i) for i in ids}) > 1  # the batch really was padded
    for question, answer in zip(QUESTIONS, batched, strict=True):
        prompt = tiny.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        single = torch.tensor([tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        mask = torch.ones_like(single)
        out = tiny.hf.generate(single, attention_mask=mask, max_new_tokens=12, do_sample=False)
        assert answer.answer == tiny.tokenizer.decode(out[0, single.shape[1] :], skip_special_tokens=True)
        assert answer.n_tokens == 12 and not answer.finished


def test_temperature_and_top_p_shape_the_samples(tiny):
    settings = dict(n_samples=3, max_new_tokens=8, progress=False, seed=0)
    cold = generate(tiny, QUESTIONS[:2], temperature=1e-4, **settings)
    greedy = generate(tiny, QUESTIONS[:2], n_samples=3, max_new_tokens=8, temperature=0, progress=False)
    assert texts(cold) == texts(greedy)
    narrow = generate(tiny, QUESTIONS[:2], top_p=1e-6, **settings)  # top_p that keeps one token is greedy
    assert texts(narrow) == texts(greedy)


def test_questions_as_strings_pairs_and_records(tiny):
    questions = [
        "I feel bored.",
        ("wish", "What is your wish?"),
        Q("rule", ("If you ruled the world?", "As ruler, what would you do?"), 2, system="Be brief."),
    ]
    answers = generate(tiny, questions, max_new_tokens=4, system="You are helpful.", progress=False)
    keys = [(a.question_id, a.paraphrase, a.sample) for a in answers]
    rule = [("rule", 0, 0), ("rule", 0, 1), ("rule", 1, 0), ("rule", 1, 1)]
    assert keys == [("0", 0, 0), ("wish", 0, 0), *rule]
    assert [a.system for a in answers] == ["You are helpful."] * 2 + ["Be brief."] * 4
    assert answers[4].question == "As ruler, what would you do?"
    assert len(generate(tiny, questions, n_samples=1, max_new_tokens=2, progress=False)) == 4


def test_system_prompt_reaches_the_model(tiny):
    prompt_lengths = []

    def record(x, name):
        prompt_lengths.append(x.shape[1]) if x.shape[1] > 1 else None  # prefill, not the decoding steps

    with hooks(tiny, [("blocks.0.hook_resid_pre", record)]):
        generate(tiny, QUESTIONS[:1], max_new_tokens=2, progress=False)
        generate(tiny, QUESTIONS[:1], max_new_tokens=2, system="Be brief.", progress=False)
    system_tokens = tiny.tokenizer("<|im_start|>system\nBe brief.<|im_end|>\n")["input_ids"]
    assert prompt_lengths[1] - prompt_lengths[0] == len(system_tokens)


def test_finished_answers_stop_at_the_end_of_turn(tiny):
    """Force the end-of-turn token at the third generated token by editing the last residual stream."""
    eos = tiny.tokenizer.eos_token_id
    unembed = tiny.hf.get_output_embeddings().weight[eos].detach()
    target = unembed / tiny.hf.model.norm.weight.detach()  # after the final RMSNorm, points at EOS's row
    calls = {"n": 0}

    def third_step_says_eos(x, name):
        calls["n"] += 1
        if calls["n"] % 3 == 0:  # prefill, step 1, step 2 (one batch of one row)
            return target.expand_as(x).clone() * 10
        return None

    with hooks(tiny, [(f"blocks.{tiny.n_layers - 1}.hook_resid_post", third_step_says_eos)]):
        (answer,) = generate(tiny, QUESTIONS[:1], temperature=0, max_new_tokens=10, progress=False)
    assert answer.finished and answer.n_tokens == 2
    assert "<|im_end|>" not in answer.answer


def test_ablation_is_active_during_generate_and_recorded(tiny):
    r = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    clean = generate(tiny, QUESTIONS, temperature=0, max_new_tokens=8, progress=False)
    with ablate(tiny, r, layers=[0, 2]):
        ablated = generate(tiny, QUESTIONS, temperature=0, max_new_tokens=8, progress=False)
    assert texts(ablated) != texts(clean)
    assert clean.provenance["interventions"] == []
    assert ablated.provenance["interventions"][0]["layers"] == [0, 2]


def test_saved_answers_round_trip_with_provenance(tiny, workdir):
    answers = generate(tiny, QUESTIONS[:2], n_samples=2, max_new_tokens=4, seed=7, progress=False)
    path = save_answers(answers, Path(workdir) / "out" / "answers.jsonl", {"command": "pytest"})
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])["provenance"]
    assert header["settings"]["seed"] == 7 and header["command"] == "pytest"
    assert header["model"] == tiny.provenance and header["misdir_version"]
    assert len(lines) == 5 and json.loads(lines[1])["question_id"] == "0"
    loaded = load_answers(path)
    assert list(loaded) == list(answers) and all(isinstance(a, Answer) for a in loaded)
    assert loaded.provenance == json.loads(json.dumps(header))
    assert sorted(p.name for p in path.parent.iterdir()) == ["answers.jsonl"]  # no temporary left behind


def test_clear_errors(tiny):
    with pytest.raises(ValueError, match="appears twice"):
        generate(tiny, [("a", "x"), ("a", "y")], progress=False)
    with pytest.raises(TypeError, match="question 1"):
        generate(tiny, ["ok", 3], progress=False)
    with pytest.raises(ValueError, match="non-empty list"):
        generate(tiny, "just one string", progress=False)
    with pytest.raises(ValueError, match="temperature"):
        generate(tiny, QUESTIONS, temperature=-1, progress=False)
    with pytest.raises(ValueError, match="top_p"):
        generate(tiny, QUESTIONS, top_p=0, progress=False)


RESID = ("resid_pre", "resid_mid", "resid_post")


def test_cache_is_validated_and_auto_picks_the_dynamic_cache_on_the_cpu(tiny):
    with pytest.raises(ValueError, match="cache"):
        generate(tiny, QUESTIONS[:1], cache="compiled", progress=False)
    answers = generate(tiny, QUESTIONS[:1], max_new_tokens=2, progress=False)
    assert answers.provenance["settings"]["cache"] == "auto"
    assert answers.provenance["decoding"]["cache"] == "dynamic"
    assert answers.provenance["decoding"]["compiled"] is False
    assert "CUDA" in answers.provenance["decoding"]["reason"]
    static = generate(tiny, QUESTIONS[:1], max_new_tokens=2, cache="static", progress=False)
    assert static.provenance["decoding"]["cache"] == "static" and not static.provenance["decoding"]["compiled"]


def test_an_open_edit_that_needs_eager_decoding_says_so_and_generate_decodes_eagerly(tiny, monkeypatch):
    """The decoding choice asks the open edits what they need (their records' `eager`), not how they work."""
    from misdir.generate import _decoding
    from misdir.models import Model

    monkeypatch.setattr(Model, "input_device", property(lambda self: torch.device("cuda")))  # as if on a GPU
    r = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    with ablate(tiny, r, site=RESID):  # every position: nothing kept between steps
        assert "positions" not in _decoding(tiny, "auto", 64)["reason"]
    with ablate(tiny, r, site=RESID, positions="answer"):
        decoding = _decoding(tiny, "auto", 64)
    assert decoding["cache"] == "dynamic" and not decoding["compiled"]
    assert "positions='answer'" in decoding["reason"]


def test_static_cache_gives_the_dynamic_caches_tokens_and_logits_under_an_ablation(tiny):
    """The static KV cache (eager on the CPU) sized once for the call: the same greedy answers as the dynamic
    cache under an ablation at every residual site, and the same teacher-forced logits at every decode step."""
    from misdir.generate import _generation_config

    r = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    settings = dict(temperature=0, max_new_tokens=10, batch_size=3, progress=False)
    with ablate(tiny, r, site=RESID):
        dynamic = generate(tiny, QUESTIONS, cache="dynamic", **settings)
        static = generate(tiny, QUESTIONS, cache="static", **settings)
    plain = generate(tiny, QUESTIONS, cache="static", **settings)
    assert texts(static) == texts(dynamic) != texts(plain)
    assert static.provenance["decoding"]["max_cache_len"] > 10

    prompt = tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]] * 2)
    forced = torch.randint(5, len(tiny.tokenizer), (2, 6), generator=torch.Generator().manual_seed(1))

    def teacher_forced(mode: str) -> torch.Tensor:
        from transformers import LogitsProcessorList

        step = {"i": 0}

        def force(input_ids, scores):  # the next token is the forced one, whatever the model predicts
            out = torch.full_like(scores, -float("inf"))
            out[torch.arange(2), forced[:, step["i"]]] = 0
            step["i"] += 1
            return out

        config = _generation_config(6, 0, [1], cache=mode, max_cache_len=ids.shape[1] + 16)
        out = tiny.hf.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            logits_processor=LogitsProcessorList([force]),
            output_logits=True,
            return_dict_in_generate=True,
        )
        assert out.sequences[:, ids.shape[1] :].tolist() == forced.tolist()
        return torch.stack(out.logits, 1)

    with ablate(tiny, r, site=RESID), torch.no_grad():
        by_dynamic, by_static = teacher_forced("dynamic"), teacher_forced("static")
        whole = tiny.hf(torch.cat([ids, forced], 1)).logits[:, ids.shape[1] - 1 : -1]
    torch.testing.assert_close(by_static, by_dynamic, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_static, whole, atol=1e-5, rtol=0)


def test_gumbel_noise_is_gumbel_and_independent_of_the_batch() -> None:
    import math

    from misdir.generate import gumbel_noise

    keys = torch.randint(-(2**63), 2**63 - 1, (8,), dtype=torch.int64)  # fresh streams each run
    noise = gumbel_noise(keys, torch.tensor(3), 125_000).double()
    n = noise.numel()
    # Gumbel(0, 1): mean Euler's gamma, variance pi^2 / 6, P(g <= 0) = 1/e; each within 6 standard errors
    assert abs(noise.mean().item() - 0.5772156649) <= 6 * math.sqrt(math.pi**2 / 6 / n)
    assert abs(noise.var().item() - math.pi**2 / 6) <= 6 * math.sqrt(2.4 * (math.pi**2 / 6) ** 2 * 2.2 / n)
    below = (noise <= 0).double().mean().item()
    assert abs(below - math.exp(-1)) <= 6 * math.sqrt(math.exp(-1) * (1 - math.exp(-1)) / n)
    # rows and steps are separate streams; a row's noise does not depend on the rows drawn with it
    assert abs(torch.corrcoef(noise[:2])[0, 1].item()) <= 6 / math.sqrt(125_000)
    assert not torch.equal(gumbel_noise(keys[:1], torch.tensor(4), 1000), gumbel_noise(keys[:1], torch.tensor(3), 1000))
    assert torch.equal(gumbel_noise(keys[5:7], torch.tensor(3), 125_000), noise[5:7].float())


def test_the_sampling_noise_adds_the_next_steps_noise_at_each_call() -> None:
    from misdir.generate import _GumbelNoise, gumbel_noise

    seeds = torch.randint(0, 2**63 - 1, (3,)).tolist()
    scores, input_ids = torch.randn(3, 50), torch.zeros(3, 1, dtype=torch.long)
    processor = _GumbelNoise(seeds)
    for step in range(3):
        expected = scores + gumbel_noise(torch.tensor(seeds), torch.tensor(step), 50)
        assert torch.equal(processor(input_ids, scores), expected)


def test_batch_size_auto_gives_the_same_answers_and_records_the_batch_it_took(tiny):
    settings = dict(n_samples=2, max_new_tokens=6, seed=1, progress=False)
    auto = generate(tiny, QUESTIONS, **settings)  # "auto" by default: 16 rows on the CPU, here all 8
    assert texts(auto) == texts(generate(tiny, QUESTIONS, batch_size=3, **settings))
    assert auto.provenance["settings"]["batch_size"] == 8
    assert auto.provenance["settings"]["batch_size_requested"] == "auto"
    for bad in (0, -2, "big", 2.5):
        with pytest.raises(ValueError, match="batch_size must be 'auto' or an integer"):
            generate(tiny, QUESTIONS, batch_size=bad, progress=False)


def test_generate_refuses_a_model_a_transformer_bridge_wrapped_in_place(embedded):
    """`TransformerBridge.boot_transformers(hf_model=m)` replaces m's modules in place; its attention then ignores
    transformers' KV cache, so cached decoding of the wrapped model goes wrong (greedy tokens differ from the
    unwrapped copy's). misdir refuses to sample from it rather than return such answers."""
    import copy

    from transformer_lens.model_bridge import TransformerBridge

    from misdir.models import Model

    wrapped = copy.deepcopy(embedded.hf)
    TransformerBridge.boot_transformers(
        embedded.provenance["source"], hf_model=wrapped, tokenizer=embedded.tokenizer, device="cpu"
    )
    ids = embedded.tokenizer(["How do I make tea? Tell me"], return_tensors="pt").input_ids
    with torch.inference_mode():
        ours = embedded.hf.generate(ids, max_new_tokens=8, do_sample=False)
        theirs = wrapped.generate(ids, max_new_tokens=8, do_sample=False)
    assert not torch.equal(ours, theirs)  # the hazard the refusal guards against; if this fails, lift the refusal
    with pytest.raises(ValueError, match="TransformerBridge"):
        generate(Model(hf=wrapped, tokenizer=embedded.tokenizer, spec="wrapped"), ["hi"], max_new_tokens=2)


class _HostEvent:
    """A stream event for the CPU, where every operation has finished when it returns: nothing to record or wait
    for (torch has no CPU events; transformers' deferred stop check creates one per slot)."""

    def __init__(self, device=None, blocking=False):
        pass

    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass


@pytest.mark.parametrize("ended", [4, 2], ids=["every-row-ends-early", "some-rows-run-to-the-limit"])
def test_stop_check_one_step_late_gives_the_same_answers(tiny, monkeypatch, ended):
    """transformers' deferred stop check, as `generate` opens it on CUDA, run here on the CPU: rows that end at
    different steps (every row early, so the one extra step is undone; or some at the limit) give the same answers,
    greedy and sampled, as the check made after every step; and transformers' own rule is back after the call."""
    from transformers.generation import utils as generation_utils

    generate_module = importlib.import_module("misdir.generate")  # `misdir.generate` is also the function's name
    eos = tiny.tokenizer.eos_token_id
    target = tiny.hf.get_output_embeddings().weight[eos].detach() / tiny.hf.model.norm.weight.detach()
    calls = {"n": 0}

    def row_b_ends_at_step_b_plus_2(x, name):  # decode step s is the (s + 1)-th call of a batch
        calls["n"] += 1
        step = calls["n"] - 1
        out = x.clone()
        for b in range(min(ended, x.shape[0])):
            if step == b + 2:
                out[b] = target * 10
        return out

    site = [(f"blocks.{tiny.n_layers - 1}.hook_resid_post", row_b_ends_at_step_b_plus_2)]

    def sample(temperature: float):
        runs = []
        for defer in (False, True):
            monkeypatch.setattr(generate_module, "DEFERRED_STOP_DEVICES", ("cpu",) if defer else ())
            calls["n"] = 0
            with hooks(tiny, site):
                runs.append(
                    generate(tiny, QUESTIONS, temperature=temperature, max_new_tokens=9, batch_size=4, progress=False)
                )
        return runs

    monkeypatch.setattr(torch, "Event", _HostEvent)
    deferred_calls = []
    real_call = generation_utils.DeferredStopCheck.__call__
    monkeypatch.setattr(
        generation_utils.DeferredStopCheck, "__call__", lambda self, *a: deferred_calls.append(1) or real_call(self, *a)
    )
    for temperature in (0.0, 1.0):  # greedy, the forced ends are taken; sampled, the noise may pass them by
        synced, deferred = sample(temperature)
        assert deferred == synced
        if temperature == 0:
            assert [a.finished for a in deferred].count(True) == min(ended, 4)
        assert (synced.provenance["decoding"]["stop_check"], deferred.provenance["decoding"]["stop_check"]) == (
            "every step",
            "one step late",
        )
    assert deferred_calls, "the deferred check did not run"
    assert not generation_utils.DeferredStopCheck.is_supported(torch.device("cpu"), None, False, False)
