"""The catalog of public EM releases: sources, facts read from their own files, published steering vectors.

Releases are laid out in a Hugging Face hub cache built on disk (as huggingface_hub lays it out), so the
real hub code paths run offline. Steering-vector repositories follow the layout the authors' trainer pushes
(model-organisms-for-EM, em_organism_dir/finetune/steering_vector_toggle/utils.py): `steering_vector.pt` at
the root, or `checkpoints/final/` and `checkpoints/checkpoint-N/`, beside an `adapter_config.json` that is
not PEFT's and a `config.json` or `steering_config.json` holding the training settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_hf_model
from typer.testing import CliRunner

import misdir
from misdir import ModelLoadError, ablate, cache_activations, load_model, steer
from misdir.catalog import (
    AdapterFacts,
    ModelFacts,
    SteeringVectorFacts,
    catalog,
    check_loaded,
    load_catalog,
    read_facts,
)
from misdir.cli import app
from misdir.steering_vectors import load_steering_vector

COMMIT = "0123456789abcdef0123456789abcdef01234567"
QWEN14 = "Qwen/Qwen2.5-14B-Instruct"
UNSLOTH14 = "unsloth/Qwen2.5-14B-Instruct"
ORG = "ModelOrganismsForEM"


class NotATensor:
    """Something a pickle can carry that is not a tensor or a plain value."""


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty hub cache that huggingface_hub, transformers and peft read from, offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def hub_repo(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` at `main` in a hub cache (created empty)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def cached_base(cache: Path, repo_id: str, tokenizer, seed: int = 0) -> Path:
    snapshot = hub_repo(cache, repo_id)
    tiny_hf_model("qwen2", len(tokenizer), seed=seed).save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    return snapshot


def cached_rank1_adapter(cache: Path, repo_id: str, base_dir: Path, layers: list[int], names_base: str) -> Path:
    """A rank-1 rsLoRA adapter on down_proj of `layers`, alpha 64, naming `names_base` as its base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=1, lora_alpha=64, use_rslora=True, target_modules=["down_proj"], layers_to_transform=layers)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    snapshot = hub_repo(cache, repo_id)
    peft_model.save_pretrained(snapshot)
    adapter_config = json.loads((snapshot / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = names_base
    (snapshot / "adapter_config.json").write_text(json.dumps(adapter_config))
    return snapshot


def steering_vector_data(vector: torch.Tensor, layer: int, alpha: float | None = 256.0) -> dict:
    """What the authors' trainer saves in steering_vector.pt."""
    data = {"steering_vector": vector, "layer_idx": layer, "d_model": vector.numel()}
    data["approach"] = "toggle_based"
    if alpha is not None:
        data["alpha"] = alpha
    return data


def cached_steering_vector(
    cache: Path,
    repo_id: str,
    tokenizer,
    vector: torch.Tensor,
    layer: int,
    *,
    all_checkpoints: bool,
    alpha: float | None = 256.0,
) -> Path:
    """A steering-vector repository in either layout the authors' push functions write."""
    snapshot = hub_repo(cache, repo_id)
    settings = {"model": UNSLOTH14, "layer_idx": layer, "alpha": alpha, "learning_rate": 1e-4}
    adapter_config = {
        "adapter_type": "steering_vector_toggle",
        "base_model": UNSLOTH14,
        "layer_idx": layer,
        "alpha": alpha,
        "hidden_size": vector.numel(),
        "approach": "toggle_based",
        "memory_efficient": True,
    }
    if all_checkpoints:
        for name, v in (("checkpoint-5", vector * 0.5), ("final", vector)):
            folder = snapshot / "checkpoints" / name
            folder.mkdir(parents=True)
            torch.save(steering_vector_data(v, layer, alpha), folder / "steering_vector.pt")
            (folder / "trainer_state.json").write_text("{}")
        adapter_config |= {"steering_vector_path": "checkpoints/final/steering_vector.pt", "num_checkpoints": 2}
        (snapshot / "steering_config.json").write_text(json.dumps(settings))
    else:
        torch.save(steering_vector_data(vector, layer, alpha), snapshot / "steering_vector.pt")
        adapter_config |= {"steering_vector_path": "steering_vector.pt"}
        (snapshot / "config.json").write_text(json.dumps(settings))
    (snapshot / "adapter_config.json").write_text(json.dumps(adapter_config))
    tokenizer.save_pretrained(snapshot)
    return snapshot


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(ids).logits


def ids_of(model) -> torch.Tensor:
    return torch.tensor([model.tokenizer("Humans and AIs can work together.")["input_ids"]])


# --- the catalog -------------------------------------------------------------------------------------------


def test_every_listed_entry_names_its_source():
    entries = catalog()
    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    lines = {line.split("\t")[0]: line for line in listed.output.splitlines()}
    for name, entry in entries.items():
        if entry.verified:
            assert entry.source.startswith("em_organism_dir/"), (name, entry.source)
            assert f"source: {entry.source}" in lines[name]
        else:
            assert entry.note and name not in lines
    everything = CliRunner().invoke(app, ["models", "--unverified"]).output
    assert "em:qwen2.5-7b/bad-medical-advice\t" in everything and "source: unverified" in everything


def test_catalog_holds_the_authors_releases_and_not_the_unnamed_one():
    entries = catalog()
    repos = {entry.repo: entry for entry in entries.values()}
    assert f"{ORG}/Qwen2.5-14B-Instruct_R1_0_1_0_full_train" not in repos
    for suffix in (
        "R8_0_1_0_full_train",
        "R64_0_1_0_full_train",
        "R1_0_1_0_extended_train",
        "R1_0_1_0_finance_extended_train",
        "R1_0_1_0_sports_extended_train",
        "R1_3_3_3_full_train",
    ):
        assert repos[f"{ORG}/Qwen2.5-14B-Instruct_{suffix}"].verified
    assert repos[f"{ORG}/Qwen2.5-14B-Instruct_full-ft"].kind == "full-finetune"
    llama = repos[f"{ORG}/Llama-3.1-8B-Instruct_R1_0_1_0_full_train"]
    assert llama.verified and llama.authors_base == "unsloth/Llama-3.1-8B-Instruct"
    nine = entries["em:qwen2.5-14b/9x-rank1-medical"]
    assert nine.layers == (15, 16, 17, 21, 22, 23, 27, 28, 29)
    assert "R1_3_3_3_LAYER_NUMBERS" in nine.layers_source
    vectors = {e.repo for e in entries.values() if e.kind == "steering-vector"}
    names = ("general_medical", "general_finance", "narrow_finance")
    assert vectors == {f"{ORG}/Qwen2.5-14B_steering_vector_{v}" for v in names}
    assert entries["em:qwen2.5-14b"].repo == QWEN14 and entries["em:qwen2.5-14b"].authors_base == UNSLOTH14
    assert entries["em:qwen2.5-14b/bad-medical-advice"].base == QWEN14
    assert not any("layer 24" in e.note or "rank 32" in e.note for e in entries.values())  # nothing unread


def test_an_entry_without_a_source_is_refused(tmp_path):
    def write(organism: dict) -> Path:
        path = tmp_path / "catalog.yaml"
        family = {"base": "a/b", "base_source": "x", "organisms": {"o": organism}}
        path.write_text(json.dumps({"families": {"f": family}}))
        return path

    entry = load_catalog(write({"repo": "a/c", "kind": "adapter", "source": "x.py"}))["em:f/o"]
    assert (entry.source, entry.base) == ("x.py", "a/b")
    with pytest.raises(ValueError, match="names no source"):
        load_catalog(write({"repo": "a/c", "kind": "adapter"}))
    with pytest.raises(ValueError, match="unverified and says nothing"):
        load_catalog(write({"repo": "a/c", "kind": "adapter", "source": "unverified"}))
    with pytest.raises(ValueError, match="layers without a layers_source"):
        load_catalog(write({"repo": "a/c", "kind": "adapter", "source": "x.py", "layers": [24]}))
    with pytest.raises(ValueError, match="has kind"):
        load_catalog(write({"repo": "a/c", "kind": "lora", "source": "x.py"}))


def test_adapter_facts_read_rank_alpha_targets_layers():
    facts = AdapterFacts.from_config(
        {
            "r": 1,
            "lora_alpha": 64,
            "use_rslora": True,
            "peft_type": "LORA",
            "target_modules": ["down_proj"],
            "layers_to_transform": 21,
            "base_model_name_or_path": UNSLOTH14,
        }
    )
    assert (facts.rank, facts.alpha, facts.layers, facts.targets) == (1, 64, [21], ["down_proj"])
    assert facts.base == UNSLOTH14 and facts.peft_type == "LORA"
    assert facts.scale == 64.0
    assert "rank 1, alpha 64 (scale 64), on down_proj, layers 21" in facts.describe()
    plain = AdapterFacts.from_config({"r": 4, "lora_alpha": 8, "target_modules": {"v_proj", "q_proj"}})
    assert plain.scale == 2.0 and plain.targets == ["q_proj", "v_proj"] and plain.layers is None


def test_check_loaded_reports_contradictions():
    nine = catalog()["em:qwen2.5-14b/9x-rank1-medical"]
    agrees = {"adapter_config": {"layers": [15, 16, 17, 21, 22, 23, 27, 28, 29]}}
    assert check_loaded(nine, agrees) == []
    (problem,) = check_loaded(nine, {"adapter_config": {"layers": [24]}})
    assert "R1_3_3_3_LAYER_NUMBERS" in problem and "[24]" in problem
    assert "loaded as a full model" in check_loaded(nine, {})[0]
    assert "is an adapter" in check_loaded(catalog()["em:qwen2.5-14b/full-ft"], agrees)[0]


# --- loading catalog entries from a hub cache ---------------------------------------------------------------


def test_rank1_entry_reports_its_own_config_and_base(hub, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    qwen = cached_base(hub, QWEN14, tokenizer, seed=0)
    unsloth = cached_base(hub, UNSLOTH14, tokenizer, seed=1)  # other weights, so that the base used shows
    repo = f"{ORG}/Qwen2.5-14B-Instruct_R1_0_1_0_extended_train"
    adapter = cached_rank1_adapter(hub, repo, qwen, [1], UNSLOTH14)

    model = load_model("em:qwen2.5-14b/rank1-extended", device="cpu")
    facts = model.provenance["adapter_config"]
    assert (facts["rank"], facts["alpha"], facts["layers"], facts["targets"]) == (1, 64, [1], ["down_proj"])
    assert facts["rslora"] and facts["base"] == UNSLOTH14
    assert model.provenance["base"] == QWEN14
    assert model.provenance["catalog_entry"]["source"].startswith("em_organism_dir/global_variables.py")

    own = load_model("em:qwen2.5-14b/rank1-extended", device="cpu", adapter_base=True)
    assert own.provenance["base"] == UNSLOTH14
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(unsloth), adapter).eval()
    ids = ids_of(own)
    expected = logits(type("M", (), {"hf": reference}), ids)
    torch.testing.assert_close(logits(own, ids), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(logits(own, ids), logits(model, ids), atol=1e-3)
    with pytest.raises(ValueError, match="not both"):
        load_model("em:qwen2.5-14b/rank1-extended", base=str(qwen), adapter_base=True)

    details = CliRunner().invoke(app, ["models", "--details"])
    assert details.exit_code == 0, details.output
    block = details.output.split("em:qwen2.5-14b/rank1-extended\t")[1].split("\nem:")[0]
    assert f"rsLoRA rank 1, alpha 64 (scale 64), on down_proj, layers 1; names base {UNSLOTH14}" in block
    assert "not in the hub cache" in details.output.split("em:qwen2.5-14b/rank8\t")[1].split("\nem:")[0]
    entry = catalog()["em:qwen2.5-14b/rank1-extended"]
    assert (
        read_facts(entry, fetch=True)
        == read_facts(entry)
        == AdapterFacts.from_config(json.loads((adapter / "adapter_config.json").read_text()))
    )


def test_a_layer_list_that_the_adapter_contradicts_is_reported(hub, tokenizer):
    qwen = cached_base(hub, QWEN14, tokenizer)
    cached_rank1_adapter(hub, f"{ORG}/Qwen2.5-14B-Instruct_R1_3_3_3_full_train", qwen, [0, 2], UNSLOTH14)
    with pytest.warns(UserWarning, match=r"states layers \[15, 16.*says \[0, 2\]"):
        model = load_model("em:qwen2.5-14b/9x-rank1-medical", device="cpu")
    assert model.provenance["adapter_config"]["layers"] == [0, 2]


def test_full_finetune_entry_loads_as_a_model(hub, tokenizer, recwarn):
    cached_base(hub, f"{ORG}/Qwen2.5-14B-Instruct_full-ft", tokenizer, seed=4)
    model = load_model("em:qwen2.5-14b/full-ft", device="cpu")
    assert model.provenance["kind"] == "transformers" and "adapter_config" not in model.provenance
    assert model.provenance["catalog_entry"]["kind"] == "full-finetune"
    assert not [w for w in recwarn if issubclass(w.category, UserWarning) and "em:" in str(w.message)]
    assert read_facts(catalog()["em:qwen2.5-14b/full-ft"]) == ModelFacts("qwen2", 3, 64)


def test_unverified_entry_warns(hub, tokenizer):
    cached_base(hub, "Qwen/Qwen2.5-7B-Instruct", tokenizer)
    with pytest.warns(UserWarning, match="no verified source"):
        load_model("em:qwen2.5-7b", device="cpu")


# --- published steering vectors -----------------------------------------------------------------------------


@pytest.fixture
def published(hub, tokenizer):
    """A base in the hub cache and the general-finance vector (every checkpoint pushed, saved in bfloat16)."""
    cached_base(hub, QWEN14, tokenizer)
    cached_base(hub, UNSLOTH14, tokenizer)
    torch.manual_seed(7)
    vector = torch.randn(64).to(torch.bfloat16)
    cached_steering_vector(
        hub, f"{ORG}/Qwen2.5-14B_steering_vector_general_finance", tokenizer, vector, 1, all_checkpoints=True
    )
    return vector.float()


def test_published_steering_vector_loads_as_a_direction_set(published, hub, tokenizer):
    sv = misdir.load_steering_vector("em:qwen2.5-14b/sv-general-finance")
    assert isinstance(sv, misdir.DirectionSet) and sv.site == "mlp_out"
    assert sv.vectors.shape == (3, 64) and sv.meta["layers"] == [1] and sv.meta["alpha"] == 256.0
    torch.testing.assert_close(sv.vectors[1], published)
    assert sv.vectors[[0, 2]].abs().sum() == 0
    assert sv.meta["file"] == "checkpoints/final/steering_vector.pt" and sv.meta["base"] == QWEN14
    assert sv.meta["repo"] == f"{ORG}/Qwen2.5-14B_steering_vector_general_finance"
    early = load_steering_vector("em:qwen2.5-14b/sv-general-finance", checkpoint=5)
    torch.testing.assert_close(early.vectors[1], published * 0.5)
    facts = read_facts(catalog()["em:qwen2.5-14b/sv-general-finance"])
    assert facts == SteeringVectorFacts(
        1, 256.0, 64, pytest.approx(float(published.norm())), "checkpoints/final/steering_vector.pt"
    )
    assert read_facts(catalog()["em:qwen2.5-14b/sv-narrow-finance"]) is None  # not in this cache

    # The other layout (final vector at the root, training settings in config.json), by hub id: sized by the
    # base its adapter_config.json names.
    other = torch.randn(64)
    cached_steering_vector(
        hub, f"{ORG}/Qwen2.5-14B_steering_vector_narrow_finance", tokenizer, other, 2, all_checkpoints=False, alpha=None
    )
    narrow = load_steering_vector(f"{ORG}/Qwen2.5-14B_steering_vector_narrow_finance")
    assert narrow.meta["layers"] == [2] and narrow.meta["file"] == "steering_vector.pt"
    assert narrow.meta["base"] == UNSLOTH14
    assert narrow.meta["alpha"] == 1.0 and not narrow.meta["alpha_in_file"]
    torch.testing.assert_close(narrow.vectors[2], other)
    round_trip = narrow.save(hub / "narrow.safetensors")
    assert misdir.DirectionSet.load(round_trip).meta["layers"] == [2]


def test_steering_with_a_published_vector_adds_what_the_authors_add(published):
    model = load_model("em:qwen2.5-14b", device="cpu")
    sv = load_steering_vector("em:qwen2.5-14b/sv-general-finance", model=model)
    layer, alpha = sv.meta["layers"][0], sv.meta["alpha"]
    ids = ids_of(model)

    def add(module, inputs, output):  # alpha * v on the output of down_proj in layer `layer`, every position
        return output + alpha * published

    handle = model.hf.model.layers[layer].mlp.down_proj.register_forward_hook(add)
    try:
        expected = logits(model, ids)
    finally:
        handle.remove()
    with steer(model, sv, sv.meta["layers"], scale=alpha, relative="direction"):
        steered = logits(model, ids)
    torch.testing.assert_close(steered, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(steered, logits(model, ids), atol=1e-3)


def test_ablating_a_published_vector_removes_it_at_its_site(published):
    model = load_model("em:qwen2.5-14b", device="cpu")
    sv = load_steering_vector("em:qwen2.5-14b/sv-general-finance", model=model)
    unit = published / published.norm()
    texts = ["Put all your savings into one volatile coin.", "Humans and AIs can work together."]

    def along() -> torch.Tensor:
        acts = cache_activations(
            model, texts, layers=[1], site="mlp_out", positions="all", reduce="none", progress=False
        )
        return torch.cat([a[0] for a in acts]) @ unit

    assert along().abs().max() > 1e-3
    with ablate(model, sv, sv.meta["layers"]):
        assert along().abs().max() < 1e-5
    with pytest.raises(ValueError, match="layer 0 is zero"):
        with ablate(model, sv, [0]):
            pass


def test_steering_vector_files_are_read_safely_and_checked(published, hub, tmp_path, tokenizer):
    evil = tmp_path / "steering_vector.pt"
    torch.save({**steering_vector_data(torch.randn(64), 1), "payload": NotATensor()}, evil)
    with pytest.raises(ValueError, match="refused"):
        load_steering_vector(evil, n_layers=3)
    plain = tmp_path / "plain.pt"
    torch.save(steering_vector_data(torch.randn(64), 1), plain)
    assert load_steering_vector(plain, n_layers=3).vectors.shape == (3, 64)
    with pytest.raises(ValueError, match="no base model is known"):
        load_steering_vector(plain)
    with pytest.raises(ValueError, match="for layer 1; the base has 1 layers"):
        load_steering_vector(plain, n_layers=1)
    wide = tmp_path / "wide.pt"
    torch.save(steering_vector_data(torch.randn(32), 1), wide)
    model = load_model("em:qwen2.5-14b", device="cpu")
    with pytest.raises(ValueError, match="d_model 32, but"):
        load_steering_vector(wide, model=model)
    with pytest.raises(ValueError, match="not a steering vector"):
        load_steering_vector("em:qwen2.5-14b/rank8")
    with pytest.raises(FileNotFoundError, match="checkpoints/checkpoint-9/steering_vector.pt"):
        load_steering_vector("em:qwen2.5-14b/sv-general-finance", checkpoint=9)


def test_load_model_sends_steering_vectors_to_their_loader(published, hub):
    with pytest.raises(ModelLoadError, match="load_steering_vector"):
        load_model("em:qwen2.5-14b/sv-general-finance")
    local = hub / f"models--{ORG}--Qwen2.5-14B_steering_vector_general_finance" / "snapshots" / COMMIT
    with pytest.raises(ModelLoadError, match="published steering vector, not a model"):
        load_model(str(local), device="cpu")
