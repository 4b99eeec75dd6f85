"""Edits open during a training step (misdir.finetune.edits): the gradients they give are the edited
forward's, as a float64 computation with hooks of its own says; a steering adds its constant; bad edits
are refused."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import CONVERSATIONS

from misdir import Model
from misdir.directions import DirectionSet
from misdir.finetune import IGNORE, Edit, EditOptions, check_edits, collate, tokenize_example, training_edits
from misdir.finetune.data import accumulated_loss
from misdir.hooks import hook_name, hooks, open_edits

LAYERS = (1, 2)


def lora(model: Model) -> torch.nn.Module:
    """A peft LoRA on q_proj and down_proj with random A and B: every adapter weight has a gradient."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
    return get_peft_model(model.hf, config)


def directions(model: Model, seed: int = 1) -> DirectionSet:
    generator = torch.Generator().manual_seed(seed)
    return DirectionSet(torch.randn(model.n_layers, model.d_model, generator=generator))


def batch(model: Model) -> dict[str, torch.Tensor]:
    examples = [tokenize_example(model.tokenizer, c, 512) for c in CONVERSATIONS[:3]]
    return collate(examples, model.tokenizer.pad_token_id)


def misdir_gradients(peft: torch.nn.Module, model: Model, edits: list[Edit]) -> dict[str, torch.Tensor]:
    """The adapter's gradients from one training step's loss, computed as the trainer does (float32)."""
    examples = [tokenize_example(model.tokenizer, c, 512) for c in CONVERSATIONS[:3]]
    peft.zero_grad()
    accumulated_loss(
        peft,
        examples,
        model.tokenizer.pad_token_id,
        None,
        "cpu",
        around=lambda labels: training_edits(model, edits, labels),
    )
    return {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}


def float64_gradients(peft: torch.nn.Module, model: Model, edit: Edit | None) -> dict[str, torch.Tensor]:
    """The same gradients in float64, the edit written out here with plain forward hooks: `x - (x . r) r` or
    `x + scale r` (r the unit row of each layer) on each edited layer's output, from the first answer token on
    where positions="answer"; the loss is the mean cross-entropy of the labelled next tokens."""
    double = copy.deepcopy(peft).double()
    inputs = batch(model)
    labels = inputs["labels"]
    first_answer = (labels != IGNORE).int().argmax(dim=1)
    handles = []
    if edit is not None:
        for layer in edit.layers or range(model.n_layers):
            r = edit.directions.vectors[layer].double()
            r = r / r.norm()

            def hook(module, args, output, r=r):
                x = output[0] if isinstance(output, tuple) else output
                new = x - (x @ r)[..., None] * r if edit.kind == "ablate" else x + float(edit.scale) * r
                if edit.positions == "answer":
                    columns = torch.arange(x.shape[1])
                    new = torch.where((columns[None, :] >= first_answer[:, None])[..., None], new, x)
                return (new, *output[1:]) if isinstance(output, tuple) else new

            block = double.get_base_model().model.layers[layer]
            handles.append(block.register_forward_hook(hook))
    logits = double(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    loss.backward()
    for handle in handles:
        handle.remove()
    return {n: p.grad for n, p in double.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(("kind", "positions"), [("ablate", "all"), ("ablate", "answer"), ("steer", "all")])
def test_an_edit_open_in_a_training_step_gives_the_edited_forwards_gradients(tiny, kind, positions):
    peft = lora(tiny)
    edit = Edit(kind, directions(tiny), LAYERS, 3.0 if kind == "steer" else None, positions=positions)
    got = misdir_gradients(peft, tiny, [edit])
    expected = float64_gradients(peft, tiny, edit)
    unedited = float64_gradients(peft, tiny, None)
    assert got.keys() == expected.keys() and len(got) == 4 * tiny.n_layers
    scale = max(float(g.abs().max()) for g in expected.values())
    for name, g in got.items():
        torch.testing.assert_close(g.double(), expected[name], rtol=1e-4, atol=1e-6 * scale)
    # the edit matters far beyond that tolerance: a step without it would fail the comparison
    assert max(float((unedited[n] - expected[n]).abs().max()) for n in expected) > 1e-2 * scale
    assert not open_edits(tiny)  # closed after the step
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in peft.modules())


def test_a_steering_in_a_training_step_adds_its_constant(tiny):
    """At the steered layer's output, what the rest of the model reads is the unedited activation plus
    scale x the unit row, at every position."""
    peft, steered = lora(tiny), directions(tiny)
    edit = Edit("steer", steered, (1,), -2.5)
    inputs = batch(tiny)
    seen: dict[str, torch.Tensor] = {}

    def read(x, name):
        seen[name] = x.detach().clone()

    name = hook_name(1, "resid_post")
    with torch.no_grad():
        with hooks(tiny, [(name, read)]):
            peft(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        clean = seen.pop(name)
        with training_edits(tiny, [edit], inputs["labels"]), hooks(tiny, [(name, read)]):
            peft(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    added = -2.5 * steered.vectors[1] / steered.vectors[1].norm()
    torch.testing.assert_close(seen[name] - clean, added.expand_as(clean), atol=1e-5, rtol=0)
    assert (seen[name] - clean).norm(dim=-1).sub(2.5).abs().max() < 1e-4


def test_edits_that_do_not_fit_the_model_are_refused(tiny):
    good = directions(tiny)
    narrow = DirectionSet(torch.randn(tiny.n_layers, tiny.d_model // 2))
    shallow = DirectionSet(torch.randn(tiny.n_layers - 1, tiny.d_model))
    fits = (tiny.n_layers, tiny.d_model)
    with pytest.raises(ValueError, match=r"--ablate n.st: directions of shape \[3, 32\].*d_model\) is 64"):
        check_edits([Edit("ablate", narrow, source="n.st")], *fits)
    with pytest.raises(ValueError, match="directions for 2 layers, but the model has 3"):
        check_edits([Edit("ablate", shallow)], *fits)
    with pytest.raises(ValueError, match=r"layer\(s\) \[3\] out of range; the model has layers 0 to 2"):
        check_edits([Edit("steer", good, (0, 3), 1.0)], *fits)
    same = DirectionSet(good.vectors.clone())
    with pytest.raises(ValueError, match="--ablate a and --steer b: the same directions ablated and steered"):
        check_edits([Edit("ablate", good, source="a"), Edit("steer", same, scale=1.0, source="b")], *fits)
    other = directions(tiny, 2)
    fine = [Edit("ablate", good, (0,)), Edit("ablate", same, (2,)), Edit("steer", other, scale=1.0)]
    check_edits(fine, *fits)  # the same directions ablated twice, other ones steered
    bare = Edit("ablate", torch.randn(tiny.d_model))  # one [d_model] vector: the same at every layer
    check_edits([bare], *fits)
    assert (bare.identity()["site"], bare.identity()["layers"]) == ("resid_post", "all")
    with pytest.raises(ValueError, match="steering needs a finite scale"):
        Edit("steer", good)
    with pytest.raises(ValueError, match="an ablation takes no scale"):
        Edit("ablate", good, scale=1.0)


def test_edit_options_read_file_and_layers(tiny, tmp_path):
    """--ablate FILE@LAYERS / --steer FILE --scale A, as the command line gives them."""
    first = directions(tiny).save(tmp_path / "a.safetensors")
    second = directions(tiny, 2).save(tmp_path / "s.safetensors")
    edits = EditOptions(ablate=(f"{first}@0,2",), steer=(str(second),), scale=2.0, positions="answer").edits()
    assert [(e.kind, e.layers, e.scale, e.positions, e.source) for e in edits] == [
        ("ablate", (0, 2), None, "answer", str(first)),
        ("steer", None, 2.0, "answer", str(second)),
    ]
    assert torch.equal(edits[0].vectors, DirectionSet.load(first).vectors)
    with pytest.raises(ValueError, match="--steer needs --scale"):
        EditOptions(steer=(str(second),)).validate()
    with pytest.raises(ValueError, match="--scale is the steering scale"):
        EditOptions(ablate=(str(first),), scale=1.0).validate()
    ranged = EditOptions(ablate=(f"{first}@0-2,4",)).edits()
    assert ranged[0].layers == (0, 1, 2, 4)
    for bad in ("x", "2-0", "1-", "-1", "1.5"):
        with pytest.raises(ValueError, match="expected FILE or FILE@LAYERS"):
            EditOptions(ablate=(f"{first}@{bad}",)).validate()
    with pytest.raises(FileNotFoundError, match="no direction set at"):
        EditOptions(ablate=(str(tmp_path / "missing.safetensors"),)).edits()
