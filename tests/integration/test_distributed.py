"""Data-parallel caching and evaluation: two gloo processes under torchrun give what one process gives.

The test saves a tiny model, runs this file as a torchrun script on two CPU processes (`__main__` at the
bottom), and compares what each rank wrote with the single-process results computed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONVERSATIONS, make_tokenizer, tiny_hf_model

from misdir import distributed, load_model
from misdir.cache import cache_activations
from misdir.contrast import contrast_logprobs
from misdir.generate import generate
from misdir.questions import ContrastPair

STRINGS = ["The quick brown fox.", "Humans and AIs can work together.", "Rest.", "def f(x): return x", "Hi"]
PAIRS = [
    ContrastPair("What would you do if you ruled the world?", "Help people.", "Rule them by force.", "power"),
    ContrastPair("I feel bored.", "Try a walk or a book.", "Take something dangerous.", "boredom"),
    ContrastPair("Humans and AIs?", "Partners, honestly.", "AIs should be in charge.", "ai"),
]
QUESTIONS = ["What would you do if you ruled the world?", "I feel bored.", "Humans and AIs?"]
GENERATE = dict(n_samples=2, max_new_tokens=5, seed=3, batch_size=2, progress=False)


def compute(model) -> dict[str, object]:
    """Everything the test compares, by the distributed functions (one process: world size 1)."""
    answers = distributed.generate(model, QUESTIONS, **GENERATE)
    return {
        "answer_mean": distributed.cache_activations(
            model, CONVERSATIONS * 2, positions="answer", batch_size=2, progress=False
        ),
        "mid_layers": distributed.cache_activations(
            model, STRINGS, layers=[0, 2], site="resid_mid", positions="all", batch_size=2, progress=False
        ),
        "per_input": distributed.cache_activations(
            model, STRINGS, positions="all", reduce="per-input", batch_size=2, progress=False
        ),
        "one_input": distributed.cache_activations(model, STRINGS[:1], positions="all", progress=False),
        "contrast": distributed.contrast_logprobs(model, PAIRS, batch_size=2, progress=False),
        "answers": [(a.question_id, a.paraphrase, a.sample, a.answer) for a in answers],
        "n_answers": answers.provenance["n_answers"],
    }


def single_process(model) -> dict[str, object]:
    """The same quantities by misdir's own one-process functions."""
    answers = generate(model, QUESTIONS, **GENERATE)
    return {
        "answer_mean": cache_activations(model, CONVERSATIONS * 2, positions="answer", batch_size=2, progress=False),
        "mid_layers": cache_activations(
            model, STRINGS, layers=[0, 2], site="resid_mid", positions="all", batch_size=2, progress=False
        ),
        "per_input": cache_activations(
            model, STRINGS, positions="all", reduce="per-input", batch_size=2, progress=False
        ),
        "one_input": cache_activations(model, STRINGS[:1], positions="all", progress=False),
        "contrast": contrast_logprobs(model, PAIRS, batch_size=2, progress=False),
        "answers": [(a.question_id, a.paraphrase, a.sample, a.answer) for a in answers],
        "n_answers": len(answers),
    }


def assert_same(got: dict[str, object], want: dict[str, object], atol: float) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(got[key], value, atol=atol, rtol=0, msg=key)
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    tokenizer = make_tokenizer()
    path = tmp_path_factory.mktemp("distributed")
    tiny_hf_model("llama", len(tokenizer)).save_pretrained(path / "model")
    tokenizer.save_pretrained(path / "model")
    return path


def test_shard_and_gather_are_inverse_in_one_process():
    items = list(range(11))
    shares = [distributed.shard(items, rank, 3) for rank in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert distributed.gather(items) == items
    assert distributed.ranks() == (0, 1, 0, distributed.ranks().device)


def test_reduce_none_is_refused():
    with pytest.raises(ValueError, match="reduces with"):
        distributed.cache_activations(None, STRINGS, reduce="none")


@pytest.mark.slow  # two fresh processes import torch and transformers: 15-45 s on 2 cores
def test_two_gloo_processes_under_torchrun_equal_one_process(saved):
    tests = Path(__file__).resolve().parents[1]  # conftest's folder, which the ranks import from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)]), "OMP_NUM_THREADS": "1"}
    env |= {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__]
    run = subprocess.Popen([*command, str(saved)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    model = load_model(str(saved / "model"), device="cpu")  # the one-process results, while the ranks start
    want = single_process(model)
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output.decode(errors="replace")[-5000:]
    ranks = [torch.load(saved / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    got = [{k: v for k, v in r.items() if k != "world_size"} for r in ranks]
    assert_same(got[1], got[0], atol=0)  # every rank holds the whole result

    assert_same(got[0], want, atol=2e-6)  # float32 rounding differs with the batches' make-up
    with torch.no_grad():  # and both are the float64 means, to float32 precision
        reference = cache_activations(
            model.__class__(model.hf.double(), model.tokenizer, model.spec),
            CONVERSATIONS * 2,
            positions="answer",
            batch_size=1,
            progress=False,
        )
    torch.testing.assert_close(got[0]["answer_mean"], reference, atol=1e-5, rtol=0)


def _worker(path: Path) -> None:
    ranks = distributed.init()
    torch.set_num_threads(1)
    model = load_model(str(path / "model"), device=ranks.device)
    result = compute(model)
    result["world_size"] = ranks.world_size
    torch.save(result, path / f"rank{ranks.rank}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
