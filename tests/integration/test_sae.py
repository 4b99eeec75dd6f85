"""SAE latents with sae-lens: training round trip, reading latents through misdir's hooks, model diffing on
latents, and clamping. Every number is checked against a plain float64 computation from the model's own hidden
states (`output_hidden_states`) and the SAE's raw weights."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import CONVERSATIONS, encode64, jumprelu_sae, tiny_hf_model
from torch import nn

from misdir import Model
from misdir.hooks import hooks
from misdir.sae import (
    SAETrainConfig,
    clamp_latents,
    decoder_cosines,
    decoder_rows,
    diff_latents,
    latent_activations,
    load_sae,
    rank_latents,
    sae_metrics,
    sae_site,
    train_sae,
    zero_latents,
)
from misdir.tokens import encode

LAYER = 1


def hidden(model: Model, item, layer: int = LAYER, positions: str = "answer") -> torch.Tensor:
    """resid_post of `layer` at the selected positions, from the Hugging Face model's own hidden states."""
    e = encode(model.tokenizer, item, positions)
    with torch.no_grad():
        out = model.hf(input_ids=torch.tensor([e.input_ids]), output_hidden_states=True)
    return out.hidden_states[layer + 1][0, e.selected]


@pytest.fixture
def one_thread():
    """Tiny SAEs train faster on one thread: on a busy machine, two threads wait on each other at every op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def llama(tokenizer) -> Model:
    return Model(tiny_hf_model("llama", len(tokenizer)), tokenizer, "tiny-llama", provenance={"arch": "llama"})


def test_latents_read_through_misdir_hooks_equal_sae_on_hidden_states(tiny):
    sae = jumprelu_sae(tiny.d_model, 40, seed=1)
    got = latent_activations(tiny, sae, CONVERSATIONS, positions="answer", batch_size=2)
    for item, acts in zip(CONVERSATIONS, got, strict=True):
        expected = encode64(sae, hidden(tiny, item))
        assert acts.shape == expected.shape
        assert (expected > 0).any()
        torch.testing.assert_close(acts.double(), expected, atol=2e-5, rtol=1e-5)


def test_sae_site_refuses_what_does_not_fit(llama):
    assert sae_site(llama, jumprelu_sae(64, 8, seed=0)) == (LAYER, "resid_post")
    assert sae_site(llama, jumprelu_sae(64, 8, seed=0, hook=None), hook="blocks.2.hook_mlp_out") == (
        2,
        "mlp_out",
    )
    with pytest.raises(ValueError, match="d_in=32.*d_model 64"):
        sae_site(llama, jumprelu_sae(32, 8, seed=0))
    with pytest.raises(ValueError, match="not of the form"):
        sae_site(llama, jumprelu_sae(64, 8, seed=0, hook="blocks.1.attn.hook_z"))
    with pytest.raises(ValueError, match="unknown hook site"):
        sae_site(llama, jumprelu_sae(64, 8, seed=0, hook="blocks.1.hook_resid_postt"))
    with pytest.raises(ValueError, match=r"out of range.*layers 0 to 2"):
        sae_site(llama, jumprelu_sae(64, 8, seed=0, hook="blocks.3.hook_resid_post"))
    with pytest.raises(ValueError, match="names no hook"):
        sae_site(llama, jumprelu_sae(64, 8, seed=0, hook=None))


def test_load_sae_errors(workdir):
    with pytest.raises(FileNotFoundError, match="no SAE directory"):
        load_sae(Path(workdir) / "missing")
    (Path(workdir) / "cfg.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="sae_weights.safetensors missing"):
        load_sae(workdir)


@pytest.mark.parametrize("architecture", ["batchtopk", "topk"])
def test_train_with_sae_lens_save_load_round_trip(llama, workdir, architecture, one_thread):
    """sae-lens's trainer on a tiny model's activations (base and a finetune mixed); what is saved loads back
    giving the same outputs, and the held-out metrics are what a float64 computation on those tokens gives."""
    finetune = Model(tiny_hf_model("llama", len(llama.tokenizer), seed=1), llama.tokenizer, "tiny-llama-ft")
    texts = [f"Passage {i}: " + " ".join(CONVERSATIONS[i % 5][-1]["content"].split()[: 3 + i % 7]) for i in range(80)]
    inputs = [c for c in CONVERSATIONS if c[0]["role"] == "user"] * 10 + texts
    cfg = SAETrainConfig(
        layer=LAYER,
        architecture=architecture,
        d_sae=48,
        k=6,
        batch_size=64,
        epochs=3,
        buffer_tokens=1024,
        holdout_every=5,
        lr=3e-3,
    )
    out = Path(workdir) / "sae"
    result = train_sae(llama, inputs, cfg, out, finetunes=[finetune], work=Path(workdir) / "shards", progress=False)

    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "misdir.json", "sae_weights.safetensors"]
    record = json.loads((out / "misdir.json").read_text())
    assert record["hook_name"] == f"blocks.{LAYER}.hook_resid_post"
    assert [m["spec"] for m in record["models"]] == ["tiny-llama", "tiny-llama-ft"]
    assert record["train_tokens"] == result.train_tokens > 0
    loaded = load_sae(out)
    assert loaded.cfg.metadata.hook_name == f"blocks.{LAYER}.hook_resid_post"
    assert type(loaded).__name__ == {"batchtopk": "JumpReLUSAE", "topk": "TopKSAE"}[architecture]
    x = torch.randn(200, 64, generator=torch.Generator().manual_seed(5)) * 3
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), result.sae.encode(x), atol=0, rtol=0)
        torch.testing.assert_close(loaded(x), result.sae(x), atol=0, rtol=0)

    # Held-out tokens: each model's inputs with index % 5 == 0; conversations past their shared chat prefix
    # (the template's first tokens), plain texts from position 1 (position 0 is an attention sink).
    from safetensors.torch import load_file

    prefix = record["chat_prefix_skipped"]
    assert prefix == len(llama.tokenizer("<|im_start|>user\n")["input_ids"])  # what the template adds first
    heldout = []
    for m, directory in enumerate(sorted((Path(workdir) / "shards").iterdir())):
        share = inputs[m::2]
        first = torch.tensor([1 if isinstance(item, str) else prefix for item in share])
        for shard in sorted(directory.glob("shard-*.safetensors")):
            s = load_file(str(shard))
            keep = (s["position"] >= first[s["input_index"]]) & (s["input_index"] % 5 == 0)
            heldout.append(s["activations"][keep, 0])
    tokens = torch.cat(heldout).double()
    with torch.no_grad():
        acts = loaded.encode(tokens.float())
        recon = loaded.decode(acts).double()
    ve = 1 - ((tokens - recon) ** 2).sum() / ((tokens - tokens.mean(0)) ** 2).sum()
    assert result.heldout.n_tokens == len(tokens)
    assert result.heldout.variance_explained == pytest.approx(float(ve), abs=1e-5)
    assert result.heldout.l0 == pytest.approx(float((acts != 0).sum(-1).double().mean()), abs=1e-6)
    assert result.heldout.variance_explained > 0.5  # it learned something: an untrained SAE is far below


def test_sae_metrics_match_float64(workdir):
    sae = jumprelu_sae(16, 24, seed=3, hook=None)
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(4))
    m = sae_metrics(sae, x, batch_size=64)
    a = encode64(sae, x)
    recon = a @ sae.W_dec.detach().double() + sae.b_dec.detach().double()
    ve = 1 - ((x.double() - recon) ** 2).sum() / ((x.double() - x.double().mean(0)) ** 2).sum()
    assert m.variance_explained == pytest.approx(float(ve), abs=1e-6)
    assert m.l0 == pytest.approx(float((a > 0).sum(-1).double().mean()), abs=1e-9)
    assert m.dead_fraction == pytest.approx(float((a.max(0).values == 0).double().mean()), abs=1e-9)
    assert m.n_tokens == 300


def test_rank_latents_finds_the_planted_latent():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(60, generator=g)
    finetunes = base + 0.05 * torch.randn(3, 60, generator=g)
    controls = base + 0.05 * torch.randn(2, 60, generator=g)
    finetunes[:, 7] += torch.tensor([1.0, 0.8, 1.2])  # planted: rises in every finetune, not in the controls
    finetunes[:, 3] += 3.0  # rises everywhere, controls too: first by rise, not consistent
    controls[:, 3] += 3.0
    finetunes[0, 11] += 6.0  # rises a lot in one finetune only
    r = rank_latents(base, finetunes, controls)
    assert r.by_consistency[0] == 7
    assert r.by_rise[:3] == [3, 11, 7]
    rise = finetunes.double() - base.double()
    control_rise = (controls.double() - base.double()).max(0).values.clamp_min(0)
    torch.testing.assert_close(r.consistency.double(), rise.min(0).values - control_rise, atol=1e-6, rtol=0)
    torch.testing.assert_close(r.mean_rise.double(), rise.mean(0), atol=1e-6, rtol=0)
    assert r.consistency[3] < 0.1 and r.consistency[11] < 0.2
    assert rank_latents(base, finetunes).by_consistency[0] == 3  # without controls, latent 3 rises most evenly


def _with_bias(model: Model, layer: int, vector: torch.Tensor, spec: str) -> Model:
    """A copy of `model` whose layer `layer` adds `vector` to the residual stream (a bias on its MLP's
    output)."""
    hf = copy.deepcopy(model.hf)
    old = hf.model.layers[layer].mlp.down_proj
    new = nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(old.weight)
        new.bias.copy_(vector)
    hf.model.layers[layer].mlp.down_proj = new
    return Model(hf, model.tokenizer, spec)


def test_diff_latents_on_planted_finetunes(llama):
    """Finetunes that add a vector v to the residual stream: the latent reading v ranks first; every mean and
    rate equals the float64 encoding of the models' own hidden states."""
    sae = jumprelu_sae(64, 30, seed=2)
    g = torch.Generator().manual_seed(9)
    v, u = torch.randn(64, generator=g), torch.randn(64, generator=g)
    with torch.no_grad():  # latent 5 reads v, latent 6 reads u
        sae.W_enc[:, 5] = 3 * v / v.norm() ** 2
        sae.W_enc[:, 6] = 3 * u / u.norm() ** 2
        sae.threshold[5:7] = 0.0
    tuned = {"a": _with_bias(llama, LAYER, 2 * v, "a"), "b": _with_bias(llama, LAYER, 3 * v, "b")}
    controls = {"c": _with_bias(llama, LAYER, 3 * u, "c")}
    diff = diff_latents(sae, llama, tuned, CONVERSATIONS, controls=controls, progress=False)
    assert diff.ranking.by_consistency[0] == 5
    assert diff.ranking.consistency[6] < 0
    for name, model in {"base": llama, **tuned, **controls}.items():
        acts = torch.cat([encode64(sae, hidden(model, item)) for item in CONVERSATIONS])
        stats = {"base": diff.base, **diff.finetunes, **diff.controls}[name]
        assert stats.n_tokens == len(acts)
        torch.testing.assert_close(stats.mean.double(), acts.mean(0), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(stats.rate.double(), (acts > 0).double().mean(0), atol=1e-6, rtol=0)


def test_decoder_cosines_and_rows():
    sae = jumprelu_sae(16, 10, seed=4, hook=None)
    torch.testing.assert_close(decoder_rows(sae), sae.W_dec.detach(), atol=1e-6, rtol=0)
    d = torch.randn(16, generator=torch.Generator().manual_seed(1))
    got = decoder_cosines(sae, [2, 9], {"d": d})["d"]
    w = sae.W_dec.detach().double()[[2, 9]]
    expected = (w @ d.double()) / (w.norm(dim=-1) * d.double().norm())
    assert got == pytest.approx(expected.tolist(), abs=1e-6)  # decoder rows are float32


def test_topk_decoder_rows_include_the_norm_rescaling():
    from sae_lens import TopKSAE
    from sae_lens.saes.topk_sae import TopKSAEConfig

    sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=12, k=3, rescale_acts_by_decoder_norm=True))
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(12, 16, generator=torch.Generator().manual_seed(2)) * 2)
    w = sae.W_dec.detach().double()
    torch.testing.assert_close(decoder_rows(sae).double(), w / w.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)


def _resid_post(model: Model, item, layer: int = LAYER) -> torch.Tensor:
    """resid_post at `layer` as the next layer receives it (read by a misdir hook), all positions."""
    seen = {}
    e = encode(model.tokenizer, item, "all")
    with hooks(model, [(f"blocks.{layer}.hook_resid_post", lambda x, name: seen.setdefault("x", x.clone()))]):
        with torch.no_grad():
            logits = model.hf(input_ids=torch.tensor([e.input_ids])).logits
    return seen["x"][0], logits


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_clamp_latents_does_exactly_the_edit(tiny, value):
    sae = jumprelu_sae(tiny.d_model, 40, seed=6)
    item = CONVERSATIONS[2]
    x = hidden(tiny, item, positions="all").double()
    latents = encode64(sae, x).amax(0).argsort(descending=True)[[0, 1, 7]].tolist()  # two firing, one maybe not
    a = encode64(sae, x)[:, latents]
    expected = x + (value - a) @ sae.W_dec.detach().double()[latents]
    with zero_latents(tiny, sae, latents) if value == 0 else clamp_latents(tiny, sae, latents, value):
        edited, _ = _resid_post(tiny, item)
    torch.testing.assert_close(edited.double(), expected, atol=2e-5, rtol=1e-5)
    assert (a > 0).any()  # the latents fire somewhere, so the edit is not a no-op


def test_clamp_hooks_removed_after_an_exception(llama):
    sae = jumprelu_sae(64, 20, seed=7)
    item = CONVERSATIONS[0]
    _, before = _resid_post(llama, item)
    counts = [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in llama.layers]
    with pytest.raises(RuntimeError, match="boom"):
        with clamp_latents(llama, sae, [1, 2, 3], 5.0):
            _, during = _resid_post(llama, item)
            assert not torch.allclose(during, before)
            raise RuntimeError("boom")
    _, after = _resid_post(llama, item)
    assert [len(layer._forward_hooks) + len(layer._forward_pre_hooks) for layer in llama.layers] == counts
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_clamp_refuses_bad_latents(llama):
    sae = jumprelu_sae(64, 20, seed=7)
    with pytest.raises(ValueError, match="out of range"):
        with clamp_latents(llama, sae, [20]):
            pass
    with pytest.raises(ValueError, match="2 latents but 3 values"):
        with clamp_latents(llama, sae, [1, 2], [0.0, 1.0, 2.0]):
            pass


@pytest.mark.slow
def test_sae_commands_train_diff_and_effects(tokenizer, workdir, one_thread):
    """`misdir sae train | diff | effects` on tiny models saved to disk: the files they write hold what the
    library computes on the same models."""
    from typer.testing import CliRunner

    from misdir import load_model
    from misdir.cli import app
    from misdir.directions import mean_difference
    from misdir.evaluate import evaluate_contrast
    from misdir.sae import training_inputs

    runner = CliRunner()
    root = Path(workdir)
    specs = {}
    for name, seed in (("base", 0), ("em", 1), ("control", 2)):
        tiny_hf_model("qwen2", len(tokenizer), seed=seed).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        specs[name] = str(root / name)
    out = root / "sae"
    result = runner.invoke(
        app,
        ["sae", "train", "--model", specs["base"], "--finetune", specs["em"], "--layer", "1",
         "--data", "contrast:general:12", "--data", "python-docs:40", "--d-sae", "32", "--k", "4",
         "--batch-size", "32", "--epochs", "1", "--out", str(out), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "variance explained" in result.output
    sae = load_sae(out)
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_post"

    base, em, control = (load_model(specs[k], device="cpu") for k in ("base", "em", "control"))
    texts, _ = training_inputs(["contrast:general:6"])
    (root / "dirs").mkdir()
    mean_difference(em, texts, base=base, progress=False).save(root / "dirs" / "em.safetensors")
    diff_out = root / "diff"
    result = runner.invoke(
        app,
        ["sae", "diff", "--sae", str(out), "--base", specs["base"], "--finetune", specs["em"],
         "--control", specs["control"], "--data", "contrast:general:6", "--directions", str(root / "dirs"),
         "--top", "3", "--out", str(diff_out), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((diff_out / "diff.json").read_text())
    assert record["finetunes"] == ["em"] and record["controls"] == ["control"]
    assert "command" in record["provenance"] and (diff_out / "sae_top_latents.html").is_file()
    expected = diff_latents(sae, base, {"em": em}, texts, controls={"control": control}, progress=False)
    assert record["rankings"]["by_consistency"] == expected.ranking.by_consistency[:3]
    top = record["latents"][0]
    assert top["mean"]["em"] == pytest.approx(float(expected.finetunes["em"].mean[top["latent"]]), abs=1e-6)
    assert top["cosine"]["em"] == pytest.approx(
        decoder_cosines(sae, [top["latent"]], {"em": mean_difference(em, texts, base=base, progress=False)
                                               .vectors[1]})["em"][0], abs=1e-5)  # fmt: skip

    effects_out = root / "effects"
    result = runner.invoke(
        app,
        ["sae", "effects", "--sae", str(out), "--latents", str(top["latent"]), "--base", specs["base"],
         "--finetune", specs["em"], "--directions", str(root / "dirs"), "--limit", "4", "--random", "3",
         "--out", str(effects_out), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((effects_out / "effects.json").read_text())
    by_name = {(e["intervention"], e["scale"]): e["shift"]["value"] for e in record["effects"]}
    randoms = sorted(by_name[(f"steer random {j}", 0.3)] for j in range(3))
    null = record["steering_nulls"][f"steer latent {top['latent']} @ 0.3"]
    assert null["n_null"] == 3 and null["null_median"] == pytest.approx(randoms[1])
    own = by_name[(f"steer latent {top['latent']}", 0.3)]
    assert null["percentile"] == pytest.approx(
        100 * (sum(r < own for r in randoms) + 0.5 * sum(r == own for r in randoms)) / 3
    )
    assert "random:" in result.output and "steer random 0" not in result.output
    effects = {e["intervention"]: e for e in json.loads((effects_out / "effects.json").read_text())["effects"]}
    assert set(effects) >= {
        f"steer latent {top['latent']}",
        "steer mean-diff",
        "steer random 0",
        "finetune vs base",
        f"zero latents [{top['latent']}]",
        "ablate mean-diff",
    }
    plain, tuned = (
        evaluate_contrast(base, limit=4, progress=False),
        evaluate_contrast(em, limit=4, progress=False),
    )
    shift = sum(t - p for t, p in zip(tuned.margins, plain.margins, strict=True)) / 4
    assert effects["finetune vs base"]["shift"]["value"] == pytest.approx(shift, abs=1e-6)
