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
    source.write_text(
        f'"""{" ".join(words)}"""\n\ndef f():\n    """{" ".join(words[:20])}"""\n\n'
        f'class C:\n    """{" ".join(words[:10])}"""\n'
    )
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
    record = build_corpus(
        tiny,
        tmp_path,
        sample_tokens=24,
        total_tokens=4000,
        per_dataset=1,
        packages=["jaxtyping"],
        batch_size=4,
        max_new_tokens=6,
        progress=False,
    )
    tokenizer = tiny.tokenizer
    for source in SOURCES:
        inputs = load_corpus(tmp_path, [source])
        texts = [x if isinstance(x, str) else render_chat(tokenizer, x) for x in inputs]
        assert record["sources"][source]["tokens"] == sum(
            len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts
        )
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
    inputs = [
        "the cat sat on the mat",
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
        "a longer plain text that pads the others in its batch",
    ]
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


# ------------------------------------------------------------------------------------------------------------
# Streaming a Hugging Face dataset (real `datasets`, local files, no network)

STREAM_ROWS = [f"row {i} " + "word " * (i % 5) for i in range(40)]
STREAM_ROWS[3] = "   "  # blank texts are skipped


def _first_until(sizes: list[int], budget: int) -> int:
    """How many of the texts, in order, it takes for their sizes to reach `budget` (all when they never do)."""
    total = 0
    for i, size in enumerate(sizes, 1):
        total += size
        if total >= budget:
            return i
    return len(sizes)


@pytest.fixture
def local_datasets(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "folder"
    folder.mkdir()
    with (folder / "train.jsonl").open("w") as f:
        for i, text in enumerate(STREAM_ROWS):
            f.write(json.dumps({"id": i, "body": text}) + "\n")
    pq.write_table(pa.table({"text": STREAM_ROWS, "n": list(range(40))}), tmp_path / "rows.parquet")
    return folder, tmp_path / "rows.parquet"


def test_stream_dataset_reads_local_files_to_a_budget(local_datasets, tokenizer):
    from misdir.corpus import stream_dataset

    folder, parquet = local_datasets
    kept = [t for t in STREAM_ROWS if t.strip()]
    texts, record = stream_dataset(str(folder), 30, unit="words", column="body")
    assert texts == kept[: _first_until([len(t.split()) for t in kept], 30)]
    assert record["words"] == sum(len(t.split()) for t in texts) >= 30 > record["words"] - len(texts[-1].split())
    assert (record["kind"], record["path"], record["texts"]) == ("hf-stream", str(folder), len(texts))

    tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in kept]
    texts, record = stream_dataset(str(parquet), 100, tokenizer=tokenizer)
    assert texts == kept[: _first_until(tokens, 100)] and record["tokens"] == sum(tokens[: len(texts)])
    assert record["format"] == "parquet"
    assert stream_dataset(str(parquet), 7, unit="texts")[0] == kept[:7]
    everything, record = stream_dataset(str(parquet), 10**9, unit="words")
    assert everything == kept and record["words"] < 10**9  # a budget larger than the data takes it all


def test_stream_dataset_refuses_bad_input_in_one_line(local_datasets, tmp_path):
    from misdir.corpus import stream_dataset

    folder, parquet = local_datasets
    with pytest.raises(ValueError, match=r"no column 'text'; the dataset has 'id', 'body'"):
        stream_dataset(str(folder), 5, unit="texts")
    with pytest.raises(ValueError, match=r"'n' is int, not text"):
        stream_dataset(str(parquet), 5, unit="texts", column="n")
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        stream_dataset(str(parquet), 5)
    with pytest.raises(ValueError, match="positive number of words"):
        stream_dataset(str(parquet), 0, unit="words")
    (tmp_path / "rows.xml").write_text("<rows/>")
    with pytest.raises(ValueError, match=r"no dataset reader for '.xml' files"):
        stream_dataset(str(tmp_path / "rows.xml"), 5, unit="texts")


def test_a_hub_dataset_offline_fails_at_once_in_one_line():
    """CI has no network: one unretried question to the hub, then one line (an unknown id online too)."""
    import time

    from misdir.corpus import stream_dataset

    started = time.perf_counter()
    with pytest.raises(ValueError, match="Hugging Face hub gave no dataset") as caught:
        stream_dataset("misdir-tests/no-such-dataset-4242", 10, unit="texts")
    assert time.perf_counter() - started < 15 and "\n" not in str(caught.value)


def test_hf_sources_in_training_inputs(local_datasets, tokenizer):
    from misdir.directions import data_hash
    from misdir.sae import training_inputs

    folder, parquet = local_datasets
    kept = [t for t in STREAM_ROWS if t.strip()]
    items, records = training_inputs([f"hf:{folder},column=body,words=30", f"hf:{parquet}"], n=4)
    first = _first_until([len(t.split()) for t in kept], 30)
    assert items == kept[:first] + kept[:4]  # without a budget: the first n texts
    assert [r["n"] for r in records] == [first, 4] and records[1]["sha256"] == data_hash(kept[:4])
    tokens, _ = training_inputs([f"hf:{parquet},tokens=50"], tokenizer=tokenizer)
    assert len(tokens) == _first_until([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in kept], 50)
    for spec, message in (
        (f"hf:{parquet},limit=3", "options are"),
        (f"hf:{parquet},words=3,texts=2", "one budget"),
        (f"hf:{parquet},words=many", "whole number"),
        ("hf:", "no dataset named"),
    ):
        with pytest.raises(ValueError, match=message):
            training_inputs([spec])
