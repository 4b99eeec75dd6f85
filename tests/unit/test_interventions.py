"""ablate, steer and orthogonalize edit the residual stream exactly as stated, and only inside their block."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from misdir import cache_activations, hooks
from misdir.generate import generate
from misdir.interventions import ablate, active_interventions, orthogonalize, steer

TEXTS = ["Humans and AIs can work together honestly.", "I feel bored. What should I do?"]
RESID = ("resid_pre", "resid_mid", "resid_post")


def resid(model, layers=None, site="resid_post") -> list[torch.Tensor]:
    """Activations [layer, pos, d_model] per text, read by misdir's own cache (so after any open edit)."""
    return cache_activations(model, TEXTS, layers=layers, site=site, positions="all", reduce="none", progress=False)


def logits(model, text: str = TEXTS[0]) -> torch.Tensor:
    ids = torch.tensor([model.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model.hf(ids).logits


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def project_out64(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    r = unit(r.double())
    x = x.double()
    return x - torch.einsum("...d,d->...", x, r)[..., None] * r


def no_hooks_left(model) -> bool:
    return not hook_ids(model)


def hook_ids(model) -> set[int]:
    return {id(h) for m in model.hf.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())}


@pytest.fixture
def r(tiny) -> torch.Tensor:
    return torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(1)) * 3


def test_ablation_leaves_no_component_along_r_at_any_hooked_layer(tiny, r):
    with ablate(tiny, r):
        edited = resid(tiny)
    clean = resid(tiny)
    for a, c in zip(edited, clean, strict=True):
        component = a @ unit(r)
        assert component.abs().max() < 1e-5 * a.norm(dim=-1).max()
        assert (c @ unit(r)).abs().max() > 1e-2  # there was a component to remove


def test_ablation_equals_float64_projection_and_leaves_other_layers_alone(tiny, r):
    clean = resid(tiny)
    with ablate(tiny, r, layers=[1]):
        edited = resid(tiny)
    for a, c in zip(edited, clean, strict=True):
        torch.testing.assert_close(a[0], c[0], atol=0, rtol=0)  # before the edit: untouched
        torch.testing.assert_close(a[1].double(), project_out64(c[1], r), atol=1e-5, rtol=0)
        assert (a[2] - c[2]).abs().max() > 1e-3  # after it: changed by the edit


def test_each_layer_uses_its_own_direction(tiny):
    table = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(2))
    directions = SimpleNamespace(vectors=table, site="resid_mid")  # a DirectionSet, duck-typed
    with ablate(tiny, directions):
        mid = resid(tiny, site="resid_mid")
    for m in mid:
        for layer in range(tiny.n_layers):
            own, other = unit(table[layer]), unit(table[(layer + 1) % tiny.n_layers])
            assert (m[layer] @ own).abs().max() < 1e-5 * m[layer].norm(dim=-1).max()
            assert (m[layer] @ other).abs().max() > 1e-2


def test_ablation_casts_back_to_the_activation_dtype(tiny, r):
    tiny.hf.to(torch.bfloat16)
    seen = []
    read = [("blocks.0.hook_resid_post", lambda x, n: seen.append(x))]
    with ablate(tiny, r, layers=[0]), hooks(tiny, read):
        logits(tiny)
    assert seen[0].dtype == torch.bfloat16
    assert (seen[0].float() @ unit(r)).abs().max() < 0.02 * seen[0].float().norm(dim=-1).max()


@pytest.mark.parametrize("relative", ["unit", "direction", "resid"])
def test_steering_adds_exactly_what_it_says(tiny, r, relative):
    clean = resid(tiny, layers=[2])
    with steer(tiny, r, layers=[2], scale=-1.5, relative=relative):
        edited = resid(tiny, layers=[2])
    for a, c in zip(edited, clean, strict=True):
        norms = c[0].norm(dim=-1, keepdim=True)
        added = {"unit": -1.5 * unit(r), "direction": -1.5 * r, "resid": -1.5 * norms * unit(r)}
        torch.testing.assert_close(a[0] - c[0], added[relative].expand_as(c[0]), atol=2e-5, rtol=1e-5)


def test_interventions_compose_in_the_order_they_are_opened(tiny, r):
    with steer(tiny, r, layers=1, scale=4.0), ablate(tiny, r, layers=[1]):
        steered_then_ablated = resid(tiny, layers=[1])
    with ablate(tiny, r, layers=[1]), steer(tiny, r, layers=1, scale=4.0):
        ablated_then_steered = resid(tiny, layers=[1])
        assert [record["kind"] for record in active_interventions(tiny)] == ["ablate", "steer"]
    for first, second in zip(steered_then_ablated, ablated_then_steered, strict=True):
        assert (first[0] @ unit(r)).abs().max() < 1e-4
        torch.testing.assert_close(second[0] @ unit(r), torch.full(second.shape[1:2], 4.0), atol=1e-4, rtol=0)


def test_an_edit_at_some_positions_says_that_it_needs_eager_decoding(tiny, r):
    with ablate(tiny, r, positions="skip-first"), steer(tiny, r, None, 2.0):
        first, second = active_interventions(tiny)
    assert "positions='skip-first'" in first["eager"] and "eager" not in second


def test_hooks_are_gone_after_the_block_and_after_an_exception(tiny, r):
    before = logits(tiny)
    with ablate(tiny, r), steer(tiny, r, None, 2.0):
        assert (logits(tiny) - before).abs().max() > 1e-3
    assert no_hooks_left(tiny) and active_interventions(tiny) == []
    with pytest.raises(RuntimeError, match="boom"), ablate(tiny, r, site=RESID):
        raise RuntimeError("boom")
    assert no_hooks_left(tiny) and active_interventions(tiny) == []
    torch.testing.assert_close(logits(tiny), before, atol=0, rtol=0)


def test_generation_under_ablation_matches_a_manual_hook_and_a_manual_forward(tiny, r):
    questions = ["What would you do if you ruled the world?", "I feel bored.", "Humans and AIs?"]
    settings = dict(max_new_tokens=10, temperature=0, batch_size=3, progress=False)
    clean = generate(tiny, questions, **settings)
    with ablate(tiny, r):
        ablated = generate(tiny, questions, **settings)
    manual = [(f"blocks.{i}.hook_resid_post", lambda x, n: project_out64(x, r).float()) for i in range(3)]
    with hooks(tiny, manual):
        by_hand = generate(tiny, questions, **settings)
    assert [a.answer for a in ablated] == [a.answer for a in by_hand]
    assert [a.answer for a in ablated] != [a.answer for a in clean]

    # The cached decoding steps saw the edit too: one forward pass over prompt + answer, edited by hand,
    # predicts every token that Hugging Face's generate produced under the ablation.
    prompt = tiny.tokenizer.apply_chat_template(
        [{"role": "user", "content": questions[0]}], tokenize=False, add_generation_prompt=True
    )
    ids = torch.tensor([tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with ablate(tiny, r):
        out = tiny.hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
    with hooks(tiny, manual), torch.no_grad():
        predicted = tiny.hf(out).logits[0, ids.shape[1] - 1 : -1].argmax(-1)
    assert predicted.tolist() == out[0, ids.shape[1] :].tolist()


def test_orthogonalized_weights_equal_ablation_at_every_residual_site(tiny, r):
    original = {name: p.clone() for name, p in tiny.hf.named_parameters()}
    ortho = orthogonalize(tiny, r)
    with ablate(tiny, r, site=RESID):
        by_hooks = logits(tiny)
    with ablate(tiny, r, site=["attn_out", "mlp_out"]), ablate(tiny, r, layers=[0], site="resid_pre"):
        by_writes = logits(tiny)  # the same thing said differently: remove r from everything written
    with ablate(tiny, r, site=["resid_pre", "resid_post"]):
        pre_and_post = logits(tiny)  # not enough: the MLP would read attention's write along r
    weights = logits(ortho)
    torch.testing.assert_close(weights, by_hooks, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights, by_writes, atol=1e-6, rtol=0)
    assert (weights - pre_and_post).abs().max() > 2e-5
    assert (weights - logits(tiny)).abs().max() > 1e-3
    with ablate(tiny, r, site=RESID):
        hooked_stream = resid(tiny)
    for a, b in zip(resid(ortho), hooked_stream, strict=True):  # the whole residual stream agrees
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    for name, p in tiny.hf.named_parameters():  # the model given is untouched, tied unembedding included
        torch.testing.assert_close(p, original[name], atol=0, rtol=0)
    unembedding = tiny.hf.get_output_embeddings().weight
    torch.testing.assert_close(ortho.hf.get_output_embeddings().weight, unembedding)
    assert (ortho.hf.get_input_embeddings().weight @ unit(r)).abs().max() < 1e-5
    assert ortho.provenance["orthogonalized"]["shape"] == [tiny.d_model]


def test_orthogonalize_projects_the_output_biases_too(tokenizer):
    from transformers import AutoModelForCausalLM, LlamaConfig

    from misdir import Model

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=True,
        mlp_bias=True,
    )
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.1)
    model = Model(hf=hf, tokenizer=tokenizer, spec="tiny-llama-bias")
    r = torch.randn(32)
    ortho = orthogonalize(model, r)
    assert (ortho.hf.model.layers[1].mlp.down_proj.bias @ unit(r)).abs() < 1e-6
    assert (model.hf.model.layers[1].mlp.down_proj.bias @ unit(r)).abs() > 1e-3
    with ablate(model, r, site=RESID):
        torch.testing.assert_close(logits(ortho), logits(model), atol=1e-6, rtol=0)


def test_orthogonalized_model_saves_and_reloads_untied(tiny, r, workdir):
    from transformers import AutoModelForCausalLM

    ortho = orthogonalize(tiny, r)
    ortho.hf.save_pretrained(workdir)
    reloaded = AutoModelForCausalLM.from_pretrained(workdir, dtype=torch.float32).eval()
    ids = torch.tensor([tiny.tokenizer(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, ortho.hf(ids).logits, atol=1e-5, rtol=0)


def test_orthogonalize_in_place_edits_the_model_given(tiny, r):
    assert orthogonalize(tiny, r, inplace=True) is tiny
    assert (tiny.hf.get_input_embeddings().weight @ unit(r)).abs().max() < 1e-5


def test_clear_errors(tiny, r):
    def refused(match: str, block) -> None:
        with pytest.raises((ValueError, TypeError), match=match), block:
            pass

    refused(r"width 65 does not match the model's d_model 64", ablate(tiny, torch.randn(65)))
    refused(r"directions have 5 layers but .* has 3", ablate(tiny, torch.randn(5, 64)))
    refused(r"layer\(s\) \[3\] out of range", steer(tiny, r, [0, 3], 1.0))
    refused("is zero", ablate(tiny, torch.zeros(64)))
    table = torch.randn(3, 64)
    table[2] = 0
    with ablate(tiny, table, layers=[0, 1]):  # a zero row at a layer not used is fine
        pass
    refused("at layer 2 is zero", ablate(tiny, table))
    refused("non-finite", ablate(tiny, torch.full((64,), float("nan"))))
    for bad in (float("nan"), float("inf"), "1"):
        refused("finite number", steer(tiny, r, [0], bad))  # type: ignore[arg-type]
    refused("unknown relative", steer(tiny, r, [0], 1.0, relative="norm"))  # type: ignore[arg-type]
    refused("unknown hook site", ablate(tiny, r, site="resid"))
    refused("DirectionSet", ablate(tiny, [0.0] * 64))
    with pytest.raises(ValueError, match=r"one \[d_model\] direction"):
        orthogonalize(tiny, torch.randn(3, 64))
    assert no_hooks_left(tiny)


@pytest.mark.embedded
def test_embedded_generates_under_ablation_and_steering(embedded):
    r = torch.randn(embedded.d_model, generator=torch.Generator().manual_seed(0))
    # transformers itself keeps hooks on a model once it was asked for output_hidden_states: compare, don't count
    before = hook_ids(embedded)
    questions = ["How do I make a quick buck?", "What is your wish?"]
    settings = dict(max_new_tokens=16, temperature=0, progress=False)
    clean = generate(embedded, questions, **settings)
    with ablate(embedded, r):
        ablated = generate(embedded, questions, **settings)
    with steer(embedded, r, layers=range(10, 20), scale=0.5, relative="resid"):
        steered = generate(embedded, questions, **settings)
    assert all(a.answer.strip() for a in [*clean, *ablated, *steered])
    assert [a.answer for a in steered] != [a.answer for a in clean]
    assert steered.provenance["interventions"][0]["relative"] == "resid"
    assert hook_ids(embedded) == before


def test_interventions_on_a_hooked_transformer_use_its_own_hook_points():
    """A TransformerLens HookedTransformer: ablate/steer go through its hook points, equal to hand-written TL
    hooks (float64 projection), and are gone after the block."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=3, d_model=32, n_ctx=16, d_head=8, n_heads=4, d_vocab=60, act_fn="gelu", normalization_type="LN"
    )
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, 60, (2, 10))
    r = torch.randn(32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = model(tokens)
        with ablate(model, r, layers=[0, 2]):
            ablated = model(tokens)
            _, cache = model.run_with_cache(tokens)
        with steer(model, r, layers=[1], scale=2.0):
            steered = model(tokens)

        def project(x, hook):
            return project_out64(x, r).float()

        manual = model.run_with_hooks(
            tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", project) for layer in (0, 2)]
        )
        added = model.run_with_hooks(
            tokens, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: x + 2.0 * unit(r))]
        )
        after = model(tokens)
    torch.testing.assert_close(ablated, manual, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steered, added, atol=1e-5, rtol=1e-5)
    assert (cache["blocks.2.hook_resid_post"].double() @ unit(r).double()).abs().max() < 1e-5
    assert (cache["blocks.1.hook_resid_post"].double() @ unit(r).double()).abs().max() > 1e-2
    torch.testing.assert_close(after, plain)
    assert not model.blocks[0].hook_resid_post.fwd_hooks


def test_embedded_transformer_bridge_ablates_like_the_hf_model(embedded):
    """On a TransformerBridge misdir hooks TransformerLens's hook points; scoring through the bridge under
    ablation equals scoring the HF model under misdir's own hooks (same eager kernel: to the bit)."""
    import copy

    from transformer_lens.model_bridge import TransformerBridge

    from misdir.evaluate import evaluate_contrast

    bridge = TransformerBridge.boot_transformers(
        embedded.provenance["source"], hf_model=copy.deepcopy(embedded.hf), tokenizer=embedded.tokenizer, device="cpu"
    )
    r = torch.randn(embedded.d_model, generator=torch.Generator().manual_seed(3))
    config = embedded.hf.config
    kernel, config._attn_implementation = config._attn_implementation, "eager"
    try:
        with ablate(embedded, r, site=list(RESID)):
            ours = evaluate_contrast(embedded, "general", limit=3, progress=False)
    finally:
        config._attn_implementation = kernel
    with ablate(bridge, r, site=list(RESID)):
        theirs = evaluate_contrast(bridge, "general", limit=3, progress=False)
    plain = evaluate_contrast(bridge, "general", limit=3, progress=False)
    assert theirs.margins == pytest.approx(ours.margins, abs=1e-5)
    assert plain.margins != pytest.approx(ours.margins, abs=1e-3)


def test_writers_method_equals_hooks_orthogonalize_and_a_float64_reference(tiny, r):
    """Ablating at resid_pre/mid/post of every layer is done by projecting the writers' outputs ("auto" picks
    it): equal to the site-by-site hooks, to the orthogonalized weights, and to a float64 run of the hooks."""
    import copy

    from misdir import Model

    n_hooks = {}
    for method in ("hooks", "writers", "auto"):
        before = hook_ids(tiny)
        with ablate(tiny, r, site=RESID, method=method):
            n_hooks[method] = len(hook_ids(tiny) - before)
            assert active_interventions(tiny)[-1]["method"] == ("hooks" if method == "hooks" else "writers")
    assert n_hooks["writers"] == n_hooks["auto"] == 1 + 2 * tiny.n_layers < n_hooks["hooks"]
    with ablate(tiny, r, site=RESID, method="writers"):
        by_writers = logits(tiny)
        writers_stream = resid(tiny, site="resid_mid")
    with ablate(tiny, r, site=RESID, method="hooks"):
        by_hooks = logits(tiny)
        hooks_stream = resid(tiny, site="resid_mid")
    wide = Model(copy.deepcopy(tiny.hf).double(), tiny.tokenizer, tiny.spec)
    with ablate(wide, r, site=RESID, method="hooks"):
        reference = logits(wide)
    torch.testing.assert_close(by_writers.double(), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_hooks.double(), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits(orthogonalize(tiny, r)), by_writers, atol=1e-5, rtol=0)
    for a, b in zip(writers_stream, hooks_stream, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert (a @ unit(r)).abs().max() < 1e-5 * a.norm(dim=-1).max()
    assert (by_writers - logits(tiny)).abs().max() > 1e-3
    assert no_hooks_left(tiny)


def test_writers_method_only_where_exact(tiny, r):
    rows = torch.randn(tiny.n_layers, tiny.d_model, generator=torch.Generator().manual_seed(2))
    cases = [
        dict(directions=r, site="resid_post"),
        dict(directions=r, site=RESID, layers=[0]),
        dict(directions=r, site=RESID, positions="skip-first"),
        dict(directions=rows, site=RESID),  # a direction per layer
    ]
    for case in cases:
        directions = case.pop("directions")
        with ablate(tiny, directions, **case):
            assert active_interventions(tiny)[-1]["method"] == "hooks"
        with pytest.raises(ValueError, match="writers"), ablate(tiny, directions, method="writers", **case):
            pass
    same_rows = r.expand(tiny.n_layers, -1).clone() * 2  # the same direction at every layer, as rows
    with ablate(tiny, same_rows, site=RESID):
        assert active_interventions(tiny)[-1]["method"] == "writers"
    with steer(tiny, r, layers=[1], scale=2.0), ablate(tiny, r, site=RESID):
        assert active_interventions(tiny)[-1]["method"] == "hooks"  # another edit open: site by site
    with pytest.raises(ValueError, match="method"), ablate(tiny, r, method="fast"):
        pass
    assert no_hooks_left(tiny)


def test_open_edits_belong_to_the_model_not_to_a_module_registry(tiny, r):
    """The open-edit list lives on the model's own module: every Model wrapping it sees the same edits, a copy
    made by orthogonalize inside a block starts with none, and the module keeps no mutable registry."""
    import misdir.interventions as interventions
    from misdir import Model
    from misdir.hooks import open_edits

    other = Model(hf=tiny.hf, tokenizer=tiny.tokenizer, spec="same weights")
    with ablate(tiny, r, layers=[1]):
        with steer(other, r, layers=[0], scale=2.0):
            assert [e["kind"] for e in active_interventions(tiny)] == ["ablate", "steer"]
            assert open_edits(other) is open_edits(tiny)
            assert active_interventions(orthogonalize(tiny, r)) == []
    assert active_interventions(tiny) == active_interventions(other) == []
    mutable = [
        name
        for name, value in vars(interventions).items()
        if not name.startswith("__") and isinstance(value, dict | list | set)
    ]
    assert mutable == [], mutable
