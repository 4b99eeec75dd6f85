"""Hook points read and write the residual stream where TransformerLens's names say they do."""

from __future__ import annotations

import pytest
import torch

from misdir import hooks
from misdir.hooks import SITES, parse_hook_name


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.hf(ids).logits


@pytest.fixture
def ids(tiny) -> torch.Tensor:
    return torch.tensor([tiny.tokenizer("Humans and AIs can work together honestly.")["input_ids"]])


def test_editing_resid_post_equals_editing_next_resid_pre(tiny, ids):
    v = torch.randn(tiny.d_model)

    def add(x, name):
        return x + v

    with hooks(tiny, [("blocks.0.hook_resid_post", add)]):
        a = logits(tiny, ids)
    with hooks(tiny, [("blocks.1.hook_resid_pre", add)]):
        b = logits(tiny, ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a - logits(tiny, ids)).abs().max() > 1e-2  # the edit did something


def test_editing_resid_mid_equals_editing_attn_out(tiny, ids):
    v = torch.randn(tiny.d_model)
    with hooks(tiny, [("blocks.1.hook_resid_mid", lambda x, name: x + v)]):
        a = logits(tiny, ids)
    with hooks(tiny, [("blocks.1.hook_attn_out", lambda x, name: x + v)]):
        b = logits(tiny, ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert (a - logits(tiny, ids)).abs().max() > 1e-2


def test_editing_mlp_out_equals_editing_resid_post(tiny, ids):
    v = torch.randn(tiny.d_model)
    with hooks(tiny, [("blocks.2.hook_mlp_out", lambda x, name: x + v)]):
        a = logits(tiny, ids)
    with hooks(tiny, [("blocks.2.hook_resid_post", lambda x, name: x + v)]):
        b = logits(tiny, ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_hooks_compose_in_order_and_see_the_name(tiny, ids):
    seen: list[str] = []
    with hooks(tiny, [("blocks.0.hook_resid_post", lambda x, name: seen.append(name))]):
        with hooks(tiny, [("blocks.2.hook_resid_pre", lambda x, name: seen.append(name))]):
            logits(tiny, ids)
    assert seen == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_pre"]


def test_hooks_are_removed_on_exception(tiny, ids):
    clean = logits(tiny, ids)
    with pytest.raises(RuntimeError, match="boom"):
        with hooks(tiny, [("blocks.0.hook_resid_post", lambda x, name: x * 0)]):
            raise RuntimeError("boom")
    torch.testing.assert_close(logits(tiny, ids), clean)
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in tiny.layers)


def test_hooks_work_through_generate(tiny, ids):
    calls = []
    with hooks(tiny, [("blocks.1.hook_resid_post", lambda x, name: calls.append(x.shape))]):
        tiny.hf.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert len(calls) == 3  # the prompt, then one call per new token after the first
    assert calls[0][1] == ids.shape[1] and calls[1][1] == 1


def test_bad_hook_names(tiny):
    with pytest.raises(ValueError, match="not of the form"):
        parse_hook_name("blocks.x.hook_resid_post", tiny.n_layers)
    with pytest.raises(ValueError, match="unknown hook site"):
        parse_hook_name("blocks.0.hook_resid_final", tiny.n_layers)
    with pytest.raises(ValueError, match="out of range"):
        parse_hook_name(f"blocks.{tiny.n_layers}.hook_resid_post", tiny.n_layers)


def test_a_compiled_decode_step_is_forgotten_when_hooks_are_added(tiny, monkeypatch):
    # torch.compile misses hooks added after a hook-free compilation (bench/NOTES.md), so a model that
    # transformers compiled for static-cache decoding must recompile when hooks are opened on it.
    import torch._dynamo

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    with hooks(tiny, [("blocks.0.hook_resid_post", lambda x, name: None)]):
        pass
    assert resets == []
    tiny.hf._compiled_call = tiny.hf.__call__  # what transformers' get_compiled_call leaves behind
    with hooks(tiny, [("blocks.0.hook_resid_post", lambda x, name: None)]):
        pass
    assert resets == [1]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_architecture_table_names_real_modules(tokenizer, arch):
    """Every module name the one table gives (hook sites, LoRA targets, stream writers) exists in a real
    layer, and the finetune presets take their targets from it."""
    from conftest import tiny_hf_model

    from misdir.finetune import PRESETS
    from misdir.models import PROJECTIONS, architecture_of, decoder_layers

    hf = tiny_hf_model(arch, len(tokenizer))
    table = architecture_of(hf.config)
    layer = decoder_layers(hf)[0]
    linear = {name.rsplit(".", 1)[-1] for name, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(table.projections) == linear
    for name in (table.attn_out, table.mlp_out, table.attn_norm, *table.writers):
        layer.get_submodule(name)
    assert all(isinstance(layer.get_submodule(name), torch.nn.Linear) for name in table.writers)
    assert PRESETS["rslora-32"].targets == PROJECTIONS == table.projections


def test_hook_points_lists_every_name_misdir_hooks_and_each_one_fires(tiny, ids):
    """`Model.hook_points()` on tiny Llama and Qwen2 models: TransformerLens names, each hookable, each firing once
    per forward pass with a `[batch, pos, d_model]` activation."""
    names = tiny.hook_points()
    assert names[:6] == ["hook_embed", *(f"blocks.0.hook_{s}" for s in SITES)]
    assert len(names) == 1 + 5 * tiny.n_layers and len(set(names)) == len(names)
    assert f"blocks.{tiny.n_layers - 1}.hook_mlp_out" in names
    seen: list[tuple[str, tuple[int, ...]]] = []
    with hooks(tiny, [(name, lambda x, name: seen.append((name, tuple(x.shape)))) for name in names]):
        logits(tiny, ids)
    assert sorted(n for n, _ in seen) == sorted(names)
    assert {shape for _, shape in seen} == {(*ids.shape, tiny.d_model)}
