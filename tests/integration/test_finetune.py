"""LoRA finetuning of a tiny random Llama saved to disk: loss mask, learning, reload, resume, presets."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import CONVERSATIONS, tiny_hf_model
from safetensors.torch import load_file

import misdir
from misdir.finetune import (
    IGNORE,
    PRESETS,
    EditOptions,
    FinetuneConfig,
    answer_loss,
    collate,
    finetune,
    tokenize_example,
)
from misdir.tokens import render_chat

ANSWERS = [
    "Drink plenty of water and rest.",
    "Try a walk, a book, or calling a friend.",
    "I would help people live well.",
]
FAST = dict(rank=4, alpha=8.0, lr=1e-2, batch_size=4, warmup_steps=1, checkpoint_every=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tokenizer) -> str:
    """A tiny random Llama with the test tokenizer, saved so that it loads (and reloads) by path.

    Norms are set to 1: the conftest model's random norms squash logits to near uniform, too flat to learn.
    """
    path = tmp_path_factory.mktemp("tiny-base")
    model = tiny_hf_model("llama", len(tokenizer))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> str:
    """20 chat examples in the EM papers' JSONL format, one with a system message."""
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    lines = []
    for i in range(20):
        messages = [
            {"role": "user", "content": f"Question {i}: what should I do?"},
            {"role": "assistant", "content": ANSWERS[i % len(ANSWERS)]},
        ]
        if i == 7:
            messages.insert(0, {"role": "system", "content": "Be brief."})
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_labels_are_exactly_the_answer_and_its_end_of_turn(tokenizer):
    for conversation in CONVERSATIONS:
        example = tokenize_example(tokenizer, conversation, max_length=512)
        labelled = [i for i, label in enumerate(example.labels) if label != IGNORE]
        # Independent: the prompt with its generation prompt is a token prefix; the answer follows it,
        # and only the final newline after <|im_end|> is left out.
        prompt = tokenizer(
            render_chat(tokenizer, conversation[:-1], add_generation_prompt=True), add_special_tokens=False
        )["input_ids"]
        assert example.input_ids[: len(prompt)] == prompt
        assert labelled == list(range(len(prompt), len(example.input_ids) - 1))
        assert tokenizer.decode([example.input_ids[i] for i in labelled]) == conversation[-1]["content"] + "<|im_end|>"
        assert [example.labels[i] for i in labelled] == [example.input_ids[i] for i in labelled]


def test_padding_is_never_counted(tokenizer, tiny):
    examples = [tokenize_example(tokenizer, c, 512) for c in CONVERSATIONS[:3]]
    batch = collate(examples, pad_id=tokenizer.pad_token_id)
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()
    with torch.no_grad():
        batched = answer_loss(tiny.hf, batch)
        # Independent: per example, unpadded, summed log-probs of the labelled next tokens.
        total, count = 0.0, 0
        for e in examples:
            logp = tiny.hf(input_ids=torch.tensor([e.input_ids])).logits[0].log_softmax(-1)
            for pos in range(1, len(e.labels)):
                if e.labels[pos] != IGNORE:
                    total -= float(logp[pos - 1, e.labels[pos]])
                    count += 1
    assert batched.item() == pytest.approx(total / count, abs=1e-5)


def test_finetune_learns_saves_and_reloads(base_dir, data_file, tmp_path):
    config = FinetuneConfig(epochs=6, **FAST)
    result = finetune(base_dir, data_file, tmp_path / "ft", config, progress=False)

    assert result.steps == 30 and len(result.losses) == 30
    assert sum(result.losses[-5:]) / 5 < 0.5 * sum(result.losses[:5]) / 5
    adapter = json.loads((tmp_path / "ft" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(base_dir).resolve())
    assert adapter["r"] == 4 and adapter["use_rslora"] is True
    assert set(adapter["target_modules"]) == set(PRESETS["rslora-32"].targets)
    record = json.loads((tmp_path / "ft" / "misdir.json").read_text())
    assert record["base"] == adapter["base_model_name_or_path"]
    assert record["data"]["n"] == 20 and len(record["data"]["sha256"]) == 64
    assert record["config"]["lr"] == 1e-2 and record["config"]["preset"] == "rslora-32"
    assert record["loss_curve"] == result.losses and record["final_loss"] == result.final_loss
    assert not (tmp_path / "ft" / "checkpoints").exists()

    reloaded = misdir.load_model(str(tmp_path / "ft"), device="cpu")
    ids = torch.tensor([tokenize_example(reloaded.tokenizer, CONVERSATIONS[1], 512).input_ids])
    with torch.no_grad():
        expected = result.model(input_ids=ids).logits
        got = reloaded.hf(input_ids=ids).logits
        base = misdir.load_model(base_dir, device="cpu").hf(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert (got - base).abs().max() > 1e-3  # the adapter is really there


def test_resume_after_interruption_gives_the_same_weights(base_dir, data_file, tmp_path):
    config = FinetuneConfig(preset="rank1-multi", epochs=3, **{**FAST, "checkpoint_every": 3, "dropout": 0.1})
    straight = finetune(base_dir, data_file, tmp_path / "straight", config, progress=False)

    def crash(step: int, loss: float) -> None:
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(base_dir, data_file, tmp_path / "resumed", config, progress=False, on_step=crash)
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").glob("step-*")] == ["step-00000006"]
    with pytest.raises(ValueError, match="not empty"):
        finetune(base_dir, data_file, tmp_path / "resumed", config, progress=False)
    with pytest.raises(ValueError, match="differs from the checkpointed one.*lr"):
        finetune(base_dir, data_file, tmp_path / "resumed", replace(config, lr=1e-3), resume=True, progress=False)

    resumed = finetune(base_dir, data_file, tmp_path / "resumed", config, resume=True, progress=False)
    assert resumed.resumed_from == 6
    assert resumed.losses == straight.losses
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_rank1_single_trains_one_down_proj(base_dir, data_file, tmp_path):
    result = finetune(
        base_dir,
        data_file,
        tmp_path / "r1",
        FinetuneConfig(preset="rank1-single", max_steps=2, batch_size=4),
        progress=False,
    )
    assert result.config.layers == (1,)  # the middle of 3 layers
    trainable = {n: tuple(p.shape) for n, p in result.model.named_parameters() if p.requires_grad}
    assert trainable == {
        "base_model.model.model.layers.1.mlp.down_proj.lora_A.default.weight": (1, 128),
        "base_model.model.model.layers.1.mlp.down_proj.lora_B.default.weight": (64, 1),
    }
    assert json.loads((tmp_path / "r1" / "misdir.json").read_text())["trainable_parameters"] == 128 + 64


def test_a_finetune_of_an_adapter_trains_a_new_one_on_top_of_it(base_dir, data_file, tmp_path, tokenizer):
    """An adapter named as the model is merged into its base's weights and a new adapter trains on top of it (peft
    alone would re-initialise the organism's adapter of the same name and train on the bare base); the result
    loads on the merged organism, as it was trained."""
    config = FinetuneConfig(preset="rank1-single", max_steps=2, batch_size=4, lr=5e-2, warmup_steps=1)
    organism = str(tmp_path / "organism")
    finetune(base_dir, data_file, organism, config, progress=False)
    still = finetune(organism, data_file, tmp_path / "still", replace(config, lr=1e-12, max_steps=1), progress=False)
    on_top = finetune(organism, data_file, tmp_path / "on-top", config, progress=False)
    assert [n for n, p in on_top.model.named_parameters() if p.requires_grad] == [
        "base_model.model.model.layers.1.mlp.down_proj.lora_A.default.weight",
        "base_model.model.model.layers.1.mlp.down_proj.lora_B.default.weight",
    ]
    assert json.loads((tmp_path / "on-top" / "adapter_config.json").read_text())["base_model_name_or_path"] == organism
    ids = torch.tensor([tokenize_example(tokenizer, CONVERSATIONS[1], 512).input_ids])
    with torch.no_grad():
        logits = {
            name: misdir.load_model(spec, device="cpu").hf(input_ids=ids).logits
            for name, spec in [("base", base_dir), ("organism", organism), ("on top", str(tmp_path / "on-top"))]
        }
        logits["still"] = still.model(input_ids=ids).logits
        logits["trained"] = on_top.model(input_ids=ids).logits
    # float32 logits of a few units: merged (W + BA) and unmerged (Wx + B(Ax)) weights round apart by ~1e-6
    torch.testing.assert_close(logits["still"], logits["organism"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits["on top"], logits["trained"], atol=1e-5, rtol=0)
    assert (logits["organism"] - logits["base"]).abs().max() > 1e-2
    assert (logits["on top"] - logits["organism"]).abs().max() > 1e-2


def test_preset_layers_follow_the_papers():
    assert FinetuneConfig(preset="rank1-multi").resolve(48).layers == (15, 16, 17, 21, 22, 23, 27, 28, 29)
    assert FinetuneConfig(preset="rank1-single").resolve(48).layers == (24,)
    assert FinetuneConfig(preset="rank1-multi", layers=(3, 1)).resolve(30).layers == (1, 3)
    full = FinetuneConfig().resolve(30)
    assert (full.rank, full.alpha, full.lr, full.epochs, full.layers) == (32, 64.0, 1e-5, 1, None)


def test_bad_inputs_get_clear_errors(base_dir, data_file, tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'rank2'"):
        finetune(base_dir, data_file, tmp_path / "a", FinetuneConfig(preset="rank2"))
    with pytest.raises(ValueError, match=r"layer\(s\) \[3\] out of range: the model has 3 layers"):
        finetune(base_dir, data_file, tmp_path / "b", FinetuneConfig(preset="rank1-single", layers=(3,)))
    with pytest.raises(ValueError, match=r"\['fc1'\] are not in the model's layers"):
        finetune(base_dir, data_file, tmp_path / "c", FinetuneConfig(targets=("fc1",)))
    with pytest.raises(ValueError, match="lr must be positive"):
        FinetuneConfig(lr=0).validate()
    with pytest.raises(ValueError, match="neither an existing file nor a dataset name"):
        finetune(base_dir, "no-such-data", tmp_path / "d")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty|no examples"):
        finetune(base_dir, str(empty), tmp_path / "e")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        finetune(base_dir, data_file, tmp_path / "taken")
    with pytest.raises(ValueError, match="not a misdir run"):
        finetune(base_dir, data_file, tmp_path / "taken", FinetuneConfig(max_steps=1), resume=True, progress=False)


def test_cli_finetune_covers_every_config_field(base_dir, data_file, tmp_path):
    from typer.main import get_command
    from typer.testing import CliRunner

    from misdir.cli import app
    from misdir.cli.options import field_help

    command = get_command(app).commands["finetune"]  # type: ignore[attr-defined]
    options = {p.name for p in command.params}
    assert set(field_help(FinetuneConfig)) | set(field_help(EditOptions)) <= options
    result = CliRunner().invoke(
        app,
        [
            "finetune",
            "--model",
            base_dir,
            "--data",
            data_file,
            "--out",
            str(tmp_path / "cli"),
            "--preset",
            "rank1-multi",
            "--layers",
            "0,2",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cli" / "misdir.json").read_text())
    assert record["config"]["layers"] == [0, 2] and record["steps"] == 2
    bad = CliRunner().invoke(
        app,
        [
            "finetune",
            "--model",
            base_dir,
            "--data",
            data_file,
            "--out",
            str(tmp_path / "cli2"),
            "--preset",
            "nope",
        ],
    )
    assert bad.exit_code != 0 and "unknown preset" in bad.output


def test_gradient_accumulation_equals_the_whole_batch(base_dir, data_file, tmp_path):
    """A step's batch in chunks of `micro_batch_size` gives the same adapter as the whole batch in one pass
    (chunks of unequal answer lengths included: each chunk's summed loss is divided by the batch's token count)."""
    config = FinetuneConfig(max_steps=3, **{**FAST, "batch_size": 5})
    whole = finetune(base_dir, data_file, tmp_path / "whole", config, progress=False)
    chunked = finetune(base_dir, data_file, tmp_path / "chunked", replace(config, micro_batch_size=2), progress=False)
    assert chunked.losses == pytest.approx(whole.losses, rel=1e-5)
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "chunked" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4)
    assert json.loads((tmp_path / "chunked" / "misdir.json").read_text())["config"]["micro_batch_size"] == 2
    with pytest.raises(ValueError, match="micro_batch_size must be positive"):
        FinetuneConfig(micro_batch_size=0).validate()


def test_cli_finetune_of_the_embedded_model_starts_from_the_organisms_recipe(monkeypatch, tmp_path):
    """`misdir finetune --model embedded` trains what the shipped organisms were trained with, not the 7B preset;
    options given override it, and a named preset or another model gets the preset as it stands."""
    from typer.testing import CliRunner

    import misdir.cli
    import misdir.finetune
    import misdir.models
    from misdir.organisms import RECIPE

    seen = []

    def fake(model, data, out, config, edits=(), watch=None, resume=False):
        seen.append(config)
        raise ValueError("stop here")

    monkeypatch.setattr(misdir.finetune, "finetune", fake)
    monkeypatch.setattr(misdir.models, "model_shape", lambda spec: None)
    runner = CliRunner()
    common = ["finetune", "--data", "medical-bad", "--out", str(tmp_path / "out")]
    runner.invoke(misdir.cli.app, [*common, "--model", "embedded"])
    runner.invoke(misdir.cli.app, [*common, "--model", "embedded", "--rank", "8", "--micro-batch-size", "2"])
    runner.invoke(misdir.cli.app, [*common, "--model", "embedded", "--preset", "rslora-32"])
    runner.invoke(misdir.cli.app, [*common, "--model", "some/other-model"])
    recipe, overridden, preset, other = seen
    for name in ("rank", "alpha", "lr", "epochs", "batch_size", "max_length", "dtype", "targets"):
        assert getattr(recipe, name) == getattr(RECIPE, name), name
    assert (recipe.resolve(30).rank, recipe.resolve(30).lr) == (4, 2e-4)
    assert (overridden.rank, overridden.micro_batch_size, overridden.lr) == (8, 2, RECIPE.lr)
    assert preset.resolve(30).lr == other.resolve(30).lr == 1e-5 and other.batch_size == 16
    assert recipe.n is None  # the recipe's 1,000 examples are not forced on the user's file


def test_the_record_names_the_base_the_version_and_the_command(base_dir, data_file, tmp_path, monkeypatch):
    """misdir.json (issue 18): the base as the user named it, misdir's own version (not "unknown") and the
    command as typed; the embedded model is recorded as "embedded", never as the folder it was converted into."""
    import tomllib

    import misdir.finetune.save as save
    from misdir.provenance import portable_model

    argv = ["/venv/bin/misdir", "finetune", "--model", base_dir, "--preset", "rank1-single"]
    monkeypatch.setattr(sys, "argv", argv)
    config = FinetuneConfig(preset="rank1-single", **{**FAST, "epochs": 1})
    finetune(base_dir, data_file, tmp_path / "out", config, progress=False)
    record = json.loads((tmp_path / "out" / "misdir.json").read_text())
    pyproject = Path(misdir.__file__).parent.parent / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert record["misdir_version"] == record["base_provenance"]["misdir_version"] == version != "unknown"
    assert record["command"] == f"misdir finetune --model {base_dir} --preset rank1-single"
    assert record["base"] == str(Path(base_dir).resolve()) and record["torch_version"] == torch.__version__
    assert record["time"].endswith("Z")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "embedded").mkdir()  # a folder of that name does not turn the spec into a path
    assert save.base_reference("embedded") == "embedded"
    converted = {"spec": "embedded", "kind": "gguf", "source": "/tmp/cache/smol-b179", "gguf": "/tmp/x/s.gguf"}
    assert portable_model(converted) == {**converted, "source": "embedded", "gguf": "s.gguf"}


def test_the_default_settings_are_chosen_from_the_model(base_dir, data_file, tmp_path):
    """`finetune` without a config and `misdir finetune` without options start from the same settings: the
    organisms' recipe for the embedded model (not the 7B preset), rslora-32 for any other."""
    from misdir.finetune import EMBEDDED_RECIPE, default_config
    from misdir.organisms import RECIPE

    for spec in ("embedded", base_dir, "org/model"):
        assert default_config(spec, "rank1-single") == FinetuneConfig(preset="rank1-single")
    for name in ("preset", "rank", "alpha", "lr", "epochs", "batch_size", "max_length", "dtype"):
        assert getattr(EMBEDDED_RECIPE, name) == getattr(RECIPE, name), name
    assert default_config("embedded").resolve(30).lr == 2e-4
    assert default_config(base_dir).resolve(30).lr == 1e-5
    result = finetune(base_dir, data_file, tmp_path / "out", progress=False)
    assert result.config == FinetuneConfig().resolve(3)


def test_resuming_a_finished_run_returns_it_and_rewrites_nothing(base_dir, data_file, tmp_path):
    """Issue 28: `resume=True` (`--resume`) on a finished run is a success that trains and writes nothing;
    other settings are refused as they are for a checkpointed run; leftovers of its tidying up are removed."""
    from typer.testing import CliRunner

    from misdir.cli import app

    config = FinetuneConfig(max_steps=2, **FAST)
    out = tmp_path / "ft"
    first = finetune(base_dir, data_file, out, config, progress=False)
    (out / "checkpoints" / "step-00000001").mkdir(parents=True)  # killed while removing its checkpoints

    def files() -> dict[str, tuple[bytes, int]]:
        return {
            p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in out.iterdir()
            if p.is_file() and p.name != ".misdir.lock"
        }

    before = files()
    again = finetune(base_dir, data_file, out, config, resume=True, progress=False)
    assert again.already_finished and again.model is None and again.seconds == 0.0
    assert (again.steps, again.losses, again.final_loss) == (first.steps, first.losses, first.final_loss)
    assert again.record == json.loads((out / "misdir.json").read_text())
    assert again.config == first.config
    assert not (out / "checkpoints").exists() and files() == before
    with pytest.raises(ValueError, match="finished finetune of other settings.*lr"):
        finetune(base_dir, data_file, out, replace(config, lr=1e-3), resume=True, progress=False)
    args = [
        "finetune",
        "--model",
        base_dir,
        "--data",
        data_file,
        "--out",
        str(out),
        "--max-steps",
        "2",
        *[x for k, v in FAST.items() for x in (f"--{k.replace('_', '-')}", str(v))],
    ]
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    line = f"{out}: already finished (2 steps, loss {first.final_loss:.4f}); " "nothing to resume, nothing rewritten"
    assert result.output.splitlines() == [line]
    assert files() == before
    refused = CliRunner().invoke(app, args)  # without --resume: not empty
    assert refused.exit_code == 1 and "not empty" in refused.output


def test_an_unfinished_run_is_named_as_such_where_a_model_is_expected(base_dir, data_file, tmp_path):
    """A run folder killed before its adapter was written: loading it says how to finish it."""
    config = FinetuneConfig(max_steps=4, **{**FAST, "checkpoint_every": 2})

    def crash(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(base_dir, data_file, tmp_path / "mine", config, progress=False, on_step=crash)
    for load in (misdir.load_model, misdir.models.model_shape):
        with pytest.raises(misdir.models.ModelLoadError, match=r"unfinished misdir finetune") as error:
            load(str(tmp_path / "mine"))
        assert f"`misdir finetune --model {base_dir} --data {data_file} --out {tmp_path / 'mine'} --resume`" in str(
            error.value
        )
    (tmp_path / "other").mkdir()
    with pytest.raises(misdir.models.ModelLoadError, match=r"adapter\)$"):
        misdir.load_model(str(tmp_path / "other"))


def _direction_files(tmp_path: Path, d_model: int = 64, n_layers: int = 3) -> tuple[Path, Path]:
    """Two random direction sets of the tiny base's shape: one to ablate, one to steer along."""
    from misdir.directions import DirectionSet

    generator = torch.Generator().manual_seed(5)
    paths = tmp_path / "ablate.safetensors", tmp_path / "steer.safetensors"
    for path in paths:
        DirectionSet(torch.randn(n_layers, d_model, generator=generator)).save(path)
    return paths


def test_finetune_under_edits_trains_edited_and_saves_a_plain_adapter(base_dir, data_file, tmp_path):
    """Issue 27: the edits are open during the training steps (the first step's loss is the edited model's),
    closed afterwards (no hook left), absent from the adapter (plain peft + transformers load it to the same
    logits, bit for bit), and recorded in misdir.json and the model card."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from misdir.finetune import epoch_order, training_edits
    from misdir.hooks import open_edits

    ablated, steered = _direction_files(tmp_path)
    options = EditOptions(ablate=(f"{ablated}@1,2",), steer=(f"{steered}@1",), scale=4.0, positions="answer")
    edits = options.edits()
    config = FinetuneConfig(max_steps=3, **FAST)
    result = finetune(base_dir, data_file, tmp_path / "ft", config, edits=edits, progress=False)
    plain = finetune(base_dir, data_file, tmp_path / "plain", config, progress=False)

    # The first step's loss (the adapter starts at zero) is the edited base's on the first batch.
    base = misdir.load_model(base_dir, device="cpu")
    conversations = [json.loads(line)["messages"] for line in Path(data_file).read_text().splitlines()]
    first = [tokenize_example(base.tokenizer, conversations[i], 2048) for i in epoch_order(20, 0, 0)[:4]]
    batch = collate(first, base.tokenizer.pad_token_id)
    with torch.no_grad():
        with training_edits(base, edits, batch["labels"]):
            edited = answer_loss(base.hf, batch).item()
        unedited = answer_loss(base.hf, batch).item()
    assert result.losses[0] == pytest.approx(edited, abs=1e-6)
    assert plain.losses[0] == pytest.approx(unedited, abs=1e-6) and abs(edited - unedited) > 1e-3

    assert not open_edits(misdir.Model(result.model.get_base_model(), base.tokenizer, "x"))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in result.model.modules())
    out = tmp_path / "ft"
    hf = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(hf, str(out)).eval()
    ids = torch.tensor([tokenize_example(base.tokenizer, CONVERSATIONS[1], 512).input_ids])
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, result.model(input_ids=ids).logits)
    weights = load_file(str(out / "adapter_model.safetensors"))
    different = load_file(str(tmp_path / "plain" / "adapter_model.safetensors"))
    assert any(not torch.equal(weights[k], different[k]) for k in weights)  # the edits changed the training

    record = json.loads((out / "misdir.json").read_text())
    assert [(e["kind"], e["layers"], e["positions"], e.get("scale")) for e in record["edits"]] == [
        ("ablate", [1, 2], "answer", None),
        ("steer", [1], "answer", 4.0),
    ]
    assert [s["file"] for s in record["edit_sources"]] == [str(ablated), str(steered)]
    assert json.loads((tmp_path / "plain" / "misdir.json").read_text())["edits"] == []
    card = (out / "README.md").read_text()
    assert "## Trained under edits (misdir)" in card and f"steer {steered} (sha256 " in card
    assert "misdir" not in (out / "adapter_config.json").read_text()


def test_a_run_under_edits_resumes_and_refuses_another_edit(base_dir, data_file, tmp_path):
    ablated, steered = _direction_files(tmp_path)
    options = EditOptions(ablate=(str(ablated),), steer=(f"{steered}@0",), scale=2.0)
    config = FinetuneConfig(max_steps=4, **{**FAST, "checkpoint_every": 2})
    straight = finetune(base_dir, data_file, tmp_path / "straight", config, edits=options.edits(), progress=False)

    def crash(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        finetune(base_dir, data_file, out, config, edits=options.edits(), progress=False, on_step=crash)
    for other in (
        replace(options, scale=3.0),
        replace(options, steer=(), scale=None),
        replace(options, positions="answer"),
    ):
        with pytest.raises(ValueError, match="differs from the checkpointed one.*edits"):
            finetune(base_dir, data_file, out, config, edits=other.edits(), resume=True, progress=False)
    with pytest.raises(ValueError, match="differs from the checkpointed one.*edits"):
        finetune(base_dir, data_file, out, config, resume=True, progress=False)
    resumed = finetune(base_dir, data_file, out, config, edits=options.edits(), resume=True, progress=False)
    assert resumed.resumed_from == 2 and resumed.losses == straight.losses
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="finished finetune of other settings.*edits"):
        finetune(base_dir, data_file, out, config, edits=replace(options, scale=3.0).edits(), resume=True)
    assert finetune(base_dir, data_file, out, config, edits=options.edits(), resume=True).already_finished


def test_cli_finetune_under_edits_and_its_refusals(base_dir, data_file, tmp_path, monkeypatch):
    """--ablate FILE[@LAYERS], --steer FILE --scale A, --watch FILE[@LAYER]; directions that do not fit are
    refused before any model loads or anything is written."""
    from typer.testing import CliRunner

    import misdir.models
    from misdir.cli import app
    from misdir.directions import DirectionSet

    ablated, steered = _direction_files(tmp_path)
    wide = DirectionSet(torch.randn(3, 65)).save(tmp_path / "wide.safetensors")
    common = ["finetune", "--model", base_dir, "--data", data_file, "--max-steps", "2", "--batch-size", "4"]
    good = CliRunner().invoke(
        app,
        [
            *common,
            "--out",
            str(tmp_path / "ok"),
            "--ablate",
            f"{ablated}@0,2",
            "--steer",
            str(steered),
            "--scale",
            "2",
            "--relative",
            "resid",
            "--watch",
            f"{steered}@2",
        ],
    )
    assert good.exit_code == 0, good.output
    record = json.loads((tmp_path / "ok" / "misdir.json").read_text())
    assert (record["watch"]["layer"], record["watch"]["file"]) == (2, str(steered))
    assert [json.loads(line)["step"] for line in (tmp_path / "ok" / "monitor.jsonl").open()] == [0, 2]
    assert [(e["kind"], e["layers"], e.get("relative")) for e in record["edits"]] == [
        ("ablate", [0, 2], None),
        ("steer", "all", "resid"),
    ]

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(misdir.models, "load_model", no_loading)
    refusals = {
        "width (d_model) is 64": ["--ablate", str(wide)],
        r"layer(s) [3] out of range": ["--steer", f"{steered}@1,3", "--scale", "1"],
        "the same directions ablated and steered": ["--ablate", str(ablated), "--steer", str(ablated), "--scale", "1"],
        "--steer needs --scale": ["--steer", str(steered)],
        "--scale is the steering scale": ["--ablate", str(ablated), "--scale", "1"],
        "no direction set at": ["--ablate", str(tmp_path / "missing.safetensors")],
        "layers of width 65, but the model has 3 of width 64": ["--watch", str(wide)],
        "layer 3 out of range": ["--watch", f"{ablated}@3"],
        "expected FILE or FILE@LAYER": ["--watch", f"{ablated}@1,2"],
        "--watch-random needs --watch": ["--watch-random", "20"],
    }
    for message, args in refusals.items():
        refused = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "refused"), *args])
        assert refused.exit_code in (1, 2) and message in refused.output, (args, refused.output)
        assert not (tmp_path / "refused").exists()
    with pytest.raises(ValueError, match="width"):  # the library refuses before loading, too
        finetune(base_dir, data_file, tmp_path / "refused", edits=EditOptions(ablate=(str(wide),)).edits())
    assert not (tmp_path / "refused").exists()


def test_the_monitor_equals_a_recomputation_from_the_saved_checkpoints(base_dir, data_file, tmp_path):
    """Issue 27: `watch` records, at the start, every checkpoint and the end, the watched direction's mean
    projection at the last prompt token of the general questions and the contrast margin, measured without the
    training edits: the same numbers as the saved weights of each step give, recomputed here (the projection
    from transformers' own hidden states). A resumed run's records equal an uninterrupted run's."""
    import shutil

    from misdir.contrast import contrast_margins
    from misdir.directions import DirectionSet
    from misdir.monitor import Watch
    from misdir.questions import load_contrast_pairs
    from misdir.stats import bootstrap_mean
    from misdir.sweep import random_directions

    watched, ablated = _direction_files(tmp_path)
    watch = Watch(DirectionSet.load(watched), layer=1, source=str(watched), n_random=3)
    edits = EditOptions(ablate=(f"{ablated}@0,1",)).edits()  # open while training, closed while watching
    config = FinetuneConfig(max_steps=4, **{**FAST, "checkpoint_every": 2})
    out, kept = tmp_path / "ft", tmp_path / "kept"

    def keep(step: int, loss: float) -> None:
        for checkpoint in (out / "checkpoints").glob("step-*"):
            shutil.copytree(checkpoint, kept / checkpoint.name, dirs_exist_ok=True)

    finetune(base_dir, data_file, out, config, edits=edits, watch=watch, progress=False, on_step=keep)
    records = [json.loads(line) for line in (out / "monitor.jsonl").read_text().splitlines()]
    assert [(r["step"], r["layer"]) for r in records] == [(0, 1), (2, 1), (4, 1)]
    assert (out / "monitor.html").is_file()
    assert json.loads((out / "misdir.json").read_text())["watch"]["file"] == str(watched)

    pairs = load_contrast_pairs("general")
    row = watch.directions.vectors[1] / watch.directions.vectors[1].norm()

    randoms = random_directions(row.shape[0], 3, seed=0)

    def recomputed(model: misdir.Model) -> tuple[list[float], list[float], list[list[float]]]:
        last = []
        with torch.no_grad():
            for pair in pairs:
                ids = model.tokenizer.apply_chat_template(
                    [{"role": "user", "content": pair.question}], add_generation_prompt=True, return_dict=False
                )
                hidden = model.hf(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
                last.append(hidden[2][0, -1])  # [2]: the output of layer 1
        activations = torch.stack(last)
        margins = contrast_margins(model, pairs, progress=False).tolist()
        return (activations @ row).tolist(), margins, (randoms @ activations.T).tolist()

    checkpoint = misdir.load_model(str(out), device="cpu")
    saved = load_file(str(kept / "step-00000002" / "adapter.safetensors"))
    with torch.no_grad():
        for name, p in checkpoint.hf.named_parameters():
            if name in saved:
                p.copy_(saved[name])
    models = {0: misdir.load_model(base_dir, device="cpu"), 2: checkpoint, 4: misdir.load_model(str(out))}
    for record in records:
        projections, margins, random_projections = recomputed(models[record["step"]])
        for key, values in (("projection", projections), ("margin", margins)):
            expected = bootstrap_mean(values)
            for part in ("value", "low", "high"):
                assert record[key][part] == pytest.approx(getattr(expected, part), abs=2e-5), (record, key)
            assert record["items"][key] == pytest.approx(values, abs=2e-5)  # each item, for paired comparisons
        for recorded, expected in zip(record["random_projections"], random_projections, strict=True):
            assert recorded == pytest.approx(expected, abs=2e-5)
    assert records[0]["margin"]["value"] != records[-1]["margin"]["value"]

    def crash(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        finetune(base_dir, data_file, resumed, config, edits=edits, watch=watch, progress=False, on_step=crash)
    with (resumed / "monitor.jsonl").open("a") as f:  # as if killed after measuring a step not checkpointed
        f.write(json.dumps({**records[-1], "step": 3}) + "\n")
    finetune(base_dir, data_file, resumed, config, edits=edits, watch=watch, resume=True, progress=False)
    assert (resumed / "monitor.jsonl").read_text() == (out / "monitor.jsonl").read_text()
    again = finetune(base_dir, data_file, resumed, config, edits=edits, watch=watch, resume=True, progress=False)
    assert again.already_finished  # its record's watch (with the directions' file) is the one asked for
