"""load_model for every kind of spec that can run offline, and the hub path through a real hub cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_hf_model

from misdir import ModelLoadError, load_model
from misdir.models import ModelShape, model_shape


def save_tiny(tokenizer, path: Path, arch: str = "llama", n_layers: int = 3) -> Path:
    tiny_hf_model(arch, len(tokenizer), n_layers=n_layers).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def ids_of(model) -> torch.Tensor:
    return torch.tensor([model.tokenizer("Humans and AIs can work together.")["input_ids"]])


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(ids).logits


def make_adapter(base_dir: Path, out: Path, seed: int = 1) -> Path:
    """A LoRA adapter on the tiny base with non-zero B, so that it changes the model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_local_directory(tokenizer, workdir, arch):
    path = save_tiny(tokenizer, Path(workdir) / "m", arch)
    model = load_model(str(path), device="cpu")
    assert (model.n_layers, model.d_model) == (3, 64)
    assert model.provenance["kind"] == "transformers" and model.provenance["source"] == str(path)
    assert model.tokenizer.chat_template
    assert model.hf.dtype == torch.float32


def test_adapter_loads_on_its_base_and_merges(tokenizer, workdir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = save_tiny(tokenizer, Path(workdir) / "base")
    adapter = make_adapter(base_dir, Path(workdir) / "adapter")
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)

    model = load_model(str(adapter), device="cpu")
    merged = load_model(str(adapter), device="cpu", merge=True)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter).eval()
    ids = ids_of(model)
    expected = logits(type("M", (), {"hf": reference}), ids)
    torch.testing.assert_close(logits(model, ids), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(merged, ids), expected, atol=1e-4, rtol=0)
    assert not torch.allclose(expected, logits(load_model(str(base_dir), device="cpu"), ids), atol=1e-3)
    assert model.provenance["kind"] == "peft-adapter" and model.provenance["base"] == str(base_dir)
    assert len(model.layers) == 3  # hooks find the layers through the PEFT wrapper


def test_adapter_with_explicit_base_and_for_another_base(tokenizer, workdir):
    base_dir = save_tiny(tokenizer, Path(workdir) / "base")
    adapter = make_adapter(base_dir, Path(workdir) / "adapter")
    moved = Path(workdir) / "moved"
    base_dir.rename(moved)
    with pytest.raises(Exception):  # noqa: B017 - the adapter's own base is gone
        load_model(str(adapter), device="cpu")
    assert load_model(str(adapter), base=str(moved), device="cpu").provenance["base"] == str(moved)

    shallow = save_tiny(tokenizer, Path(workdir) / "shallow", n_layers=1)
    with pytest.raises(ModelLoadError, match="does not have"):
        load_model(str(adapter), base=str(shallow), device="cpu")
    from transformers import AutoModelForCausalLM, LlamaConfig

    wide = Path(workdir) / "wide"
    AutoModelForCausalLM.from_config(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).save_pretrained(wide)
    tokenizer.save_pretrained(wide)
    with pytest.raises(ModelLoadError, match="does not fit base"):
        load_model(str(adapter), base=str(wide), device="cpu")


def test_hub_id_resolves_through_the_hub_cache(tokenizer, workdir):
    """The hub path is transformers' own: lay out a hub cache as huggingface_hub does, and load 'org/name' offline."""
    hub = Path(workdir) / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--misdir-test--tiny-chat"
    save_tiny(tokenizer, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    script = (
        "import misdir; m = misdir.load_model('misdir-test/tiny-chat', device='cpu');"
        "print(m.provenance['kind'], m.provenance['source'], m.n_layers,"
        " misdir.models.model_shape('misdir-test/tiny-chat').n_layers)"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["transformers", "misdir-test/tiny-chat", "3", "3"]


def test_model_shape_reads_the_config_alone(tokenizer, tmp_path):
    from misdir.models import ModelShape, model_shape

    base = save_tiny(tokenizer, tmp_path / "base", n_layers=4)
    assert model_shape(str(base)) == ModelShape(4, 64)
    assert model_shape(str(make_adapter(base, tmp_path / "adapter"))) == ModelShape(4, 64)  # its base's
    with pytest.raises(ModelLoadError, match="no such file"):
        model_shape("./does/not/exist")


def test_model_shape_of_a_gguf_file_from_its_header(tmp_path):
    from misdir.models import ModelShape, embedded_gguf, model_shape

    try:
        gguf = embedded_gguf()
    except ModelLoadError as error:
        pytest.skip(str(error))
    assert model_shape("embedded") == ModelShape(30, 576)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[:300])
    with pytest.raises(ModelLoadError, match="unreadable GGUF metadata"):
        model_shape(str(cut))


def test_bad_specs_say_what_is_wrong(workdir):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model("./does/not/exist")
    with pytest.raises(ModelLoadError, match="neither config.json"):
        load_model(workdir)
    not_gguf = Path(workdir) / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_model(str(not_gguf))
    text = Path(workdir) / "weights.bin"
    text.write_text("x")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        load_model(str(text))
    with pytest.raises(ModelLoadError, match="not in misdir's catalog"):
        load_model("em:qwen2.5-14b/no-such-organism")
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model("embedded", dtype="float33")


def test_unsupported_architecture_is_refused(workdir, tokenizer):
    from transformers import AutoModelForCausalLM, GPT2Config

    path = Path(workdir) / "gpt2"
    AutoModelForCausalLM.from_config(
        GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer))
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    with pytest.raises(ValueError, match="cannot map model type 'gpt2'"):
        load_model(str(path), device="cpu")


def test_a_path_object_is_a_spec(tokenizer, tmp_path):
    from conftest import tiny_hf_model

    from misdir.models import as_model, load_model

    tiny_hf_model("qwen2", len(tokenizer)).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m").spec == as_model(tmp_path / "m").spec == str(tmp_path / "m")


def test_small_local_models_load_without_the_weights_bar(tokenizer, tmp_path, capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    import misdir.models

    path = save_tiny(tokenizer, tmp_path / "m", "llama")
    load_model(path)
    assert "Loading weights" not in capfd.readouterr().err and hf_logging.is_progress_bar_enabled()
    monkeypatch.setattr(misdir.models.load, "QUIET_BELOW_BYTES", 1)  # the same model counted as large keeps its bar
    load_model(path)
    assert "Loading weights" in capfd.readouterr().err


def test_model_shape_of_a_catalog_name_reads_its_repository_config(tmp_path, monkeypatch):
    """`em:` names are sized from the config of the repository the catalog names (this raised NameError before
    the models package: `catalog` was never imported there)."""
    import huggingface_hub.constants

    from misdir.catalog import catalog_entry

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo_id, commit = catalog_entry("em:qwen2.5-14b").repo, "0" * 40
    repo = tmp_path / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "num_hidden_layers": 48, "hidden_size": 5120})
    )
    assert model_shape("em:qwen2.5-14b") == ModelShape(48, 5120)
    with pytest.raises(ModelLoadError, match="not in misdir's catalog"):
        model_shape("em:qwen2.5-14b/no-such-organism")


def test_a_misspelt_spec_names_the_closest_known_one() -> None:
    from misdir.models import ModelLoadError, model_shape

    with pytest.raises(ModelLoadError, match=r"did you mean 'embedded'\?.*misdir models"):
        model_shape("embeded")
    with pytest.raises(ModelLoadError, match=r"misdir models") as refused:
        model_shape("nothing-like-it")
    assert "did you mean" not in str(refused.value)
