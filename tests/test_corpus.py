"""The offline SAE corpus (misdir.corpus) and the spliced-in loss of an SAE (misdir.sae.spliced_loss)."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch

from misdir.corpus import SOURCES, _passages, build_corpus, load_corpus, package_docs
from misdir.sae import next_token_loss, spliced_loss
from misdir.tokens import render_chat

LAYER = 1


def test_docstrings_are_cut_into_word_windows(tmp_path):
    words = [f"w{i}" for i in range(70)]
    source = tmp_path / "m.py"
    source.write_text(f'"""{" ".join(words)}"""\n\ndef f():\n    """{" ".join(words[:20])}"""\n\n'
                      f'class C:\n    """{" ".join(words[:10])}"""\n')
    got = list(_passages(source, words=64, min_words=16))
    assert got == [" ".join(words[:64]), " ".join(words[:20])]  # the 6-word tail and the 10-word class doc drop
    (tmp_path / "bad.py").write_text("def (:\n")
    assert list(_passages(tmp_path / "bad.py", 64, 16)) == []


def test_package_docs_record_each_distribution():
    passages, records = package_docs(["jaxtyping"])
    assert [r["name"].lower() for r in records] == ["jaxtyping"]
    assert records[0]["version"] == importlib.metadata.version("jaxtyping")
    assert int(records[0]["passages"]) == len(passages) > 0
    assert all(16 <= len(p.split()) <= 64 for p in passages)


def test_load_corpus_names_the_file_and_line(tmp_path):
    (tmp_path / "datasets.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"oops": 1}\n')
    with pytest.raises(ValueError, match=r"datasets.jsonl:2"):
        load_corpus(tmp_path, ["datasets"])
    with pytest.raises(ValueError, match="unknown corpus sources"):
        load_corpus(tmp_path, ["web"])


def test_build_corpus_counts_what_it_wrote_and_keeps_it(tiny, tmp_path):
    record = build_corpus(tiny, tmp_path, sample_tokens=24, total_tokens=4000, per_dataset=1, packages=["jaxtyping"],
                          batch_size=4, max_new_tokens=6, progress=False)
    tokenizer = tiny.tokenizer
    for source in SOURCES:
        inputs = load_corpus(tmp_path, [source])
        texts = [x if isinstance(x, str) else render_chat(tokenizer, x) for x in inputs]
        assert record["sources"][source]["tokens"] == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"])
                                                         for t in texts)
    samples = load_corpus(tmp_path, ["samples"])
    assert record["sources"]["samples"]["answer_tokens"] >= 24 and all(c[-1]["role"] == "assistant" for c in samples)
    assert record["tokens"] >= 4000 > record["tokens"] - 200  # docs fill up to the total, one passage over at most
    stamp = (tmp_path / "samples.jsonl").stat().st_mtime_ns
    again = build_corpus(tiny, tmp_path, sample_tokens=10**9, per_dataset=1, packages=["jaxtyping"], progress=False)
    assert (tmp_path / "samples.jsonl").stat().st_mtime_ns == stamp and again["tokens"] == record["tokens"]
    assert json.loads((tmp_path / "corpus.json").read_text())["tokens"] == record["tokens"]


def exact_sae(d: int):
    """A standard ReLU SAE whose reconstruction is exact: W_enc = [I, -I], W_dec = [I; -I] (relu(x) - relu(-x) = x)."""
    from sae_lens import StandardSAE
    from sae_lens.saes.standard_sae import StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=2 * d))
    sae.cfg.metadata.hook_name = f"blocks.{LAYER}.hook_resid_post"
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_spliced_loss_against_float64_and_an_exact_sae(tiny):
    inputs = ["the cat sat on the mat", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
              "a longer plain text that pads the others in its batch"]
    total, count = 0.0, 0
    for item in inputs:
        text = item if isinstance(item, str) else render_chat(tiny.tokenizer, item)
        ids = torch.tensor([tiny.tokenizer(text, add_special_tokens=isinstance(item, str))["input_ids"]])
        with torch.no_grad():
            logits = tiny.hf(input_ids=ids).logits[0, :-1].double()
        total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    assert next_token_loss(tiny, inputs, batch_size=2) == pytest.approx(total / count, rel=1e-5)
    loss = spliced_loss(tiny, exact_sae(tiny.d_model), inputs, batch_size=2)
    assert loss["spliced"] == pytest.approx(loss["clean"], rel=1e-5) and loss["added"] == pytest.approx(0, abs=1e-4)
    assert abs(loss["zeroed"] - loss["clean"]) > 1e-3 and loss["recovered"] == pytest.approx(1, abs=1e-3)


def test_splice_feeds_the_reconstruction_on(tiny):
    """An SAE reconstructing 2x: the spliced loss equals the loss with layer 1's output doubled by a plain
    PyTorch forward hook on the Hugging Face layer (not misdir's hooks)."""
    sae = exact_sae(tiny.d_model)
    with torch.no_grad():
        sae.W_dec.mul_(2)
    inputs = ["the cat sat on the mat", "a longer plain text than the first one is"]
    spliced = spliced_loss(tiny, sae, inputs, batch_size=2)["spliced"]

    def double(module, args, output):
        return (output[0] * 2, *output[1:]) if isinstance(output, tuple) else output * 2

    handle = tiny.hf.model.layers[LAYER].register_forward_hook(double)
    try:
        expected = next_token_loss(tiny, inputs, batch_size=1)
    finally:
        handle.remove()
    assert spliced == pytest.approx(expected, rel=1e-5) and abs(spliced - next_token_loss(tiny, inputs)) > 1e-3
