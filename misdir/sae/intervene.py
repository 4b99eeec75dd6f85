"""Editing a model through an SAE while it runs: clamping or zeroing latents (`clamp_latents`,
`zero_latents`), splicing in the SAE's reconstruction (`splice_sae`), and the next-token loss that splicing adds
(`spliced_loss`)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from misdir.hooks import HookFn, hook_name
from misdir.interventions import _intervene
from misdir.models import Model, ModelLike, as_model
from misdir.sae.load import _check_latents, decoder_rows, describe_sae, sae_site
from misdir.tokens import Input, encode, pad, pad_token_id


@contextmanager
def clamp_latents(
    model: ModelLike,
    sae: Any,
    latents: int | Sequence[int],
    value: float | Sequence[float] = 0.0,
    *,
    hook: str | None = None,
) -> Iterator[Model]:
    """Set latents to `value` at the SAE's hook while the block runs: `x <- x + (value - a_i(x)) * d_i`, at
    every position, with `a_i` the SAE's activation of latent i and `d_i` its decoder row. `value=0` zeroes
    them (removes what they write, leaving the SAE's reconstruction error in place). Several latents are
    clamped together from one encoding of `x`. Computed in float32 and cast back; removed on exit or
    exception.
    """
    model = as_model(model)
    layer, site = sae_site(model, sae, hook)
    chosen = [latents] if isinstance(latents, int) else [int(i) for i in latents]
    _check_latents(sae, chosen)
    values = [float(value)] * len(chosen) if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != len(chosen):
        raise ValueError(f"{len(chosen)} latents but {len(values)} values")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"clamp values must be finite, got {values}")
    rows = decoder_rows(sae)[chosen]
    target = torch.tensor(values)

    def edit(x: Float[Tensor, "batch pos d_model"], name: str) -> Tensor:
        with torch.no_grad():
            acts = sae.encode(x.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype))[..., chosen].float()
            delta = (target.to(acts.device) - acts) @ rows.to(acts.device)
        return (x.float() + delta.to(x.device)).to(x.dtype)

    fwd: list[tuple[str, HookFn]] = [(hook_name(layer, site), edit)]
    record = {
        "kind": "clamp-latents",
        "layer": layer,
        "site": site,
        "latents": chosen,
        "values": values,
        "sae": describe_sae(sae),
    }
    with _intervene(model, fwd, record):
        yield model


def zero_latents(model: ModelLike, sae: Any, latents: int | Sequence[int], *, hook: str | None = None) -> Any:
    """`clamp_latents(..., value=0)`: remove what the latents write at the SAE's hook."""
    return clamp_latents(model, sae, latents, 0.0, hook=hook)


@contextmanager
def splice_sae(model: ModelLike, sae: Any, *, hook: str | None = None) -> Iterator[Model]:
    """Replace the activations at the SAE's hook by its reconstruction `decode(encode(x))` at every position
    while the block runs (float32 inside, cast back): what the rest of the model sees if the SAE were exact."""
    model = as_model(model)
    layer, site = sae_site(model, sae, hook)

    def edit(x: Float[Tensor, "batch pos d_model"], name: str) -> Tensor:
        with torch.no_grad():
            recon = sae.decode(sae.encode(x.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)))
        return recon.to(device=x.device, dtype=x.dtype)

    record = {"kind": "splice-sae", "layer": layer, "site": site, "sae": describe_sae(sae)}
    with _intervene(model, [(hook_name(layer, site), edit)], record):
        yield model


@torch.no_grad()
def next_token_loss(model: ModelLike, inputs: Sequence[Input], *, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats) of `model` over every token of `inputs` (chats rendered with the
    template), padding excluded, summed in float64."""
    model = as_model(model)
    tokenizer = model.tokenizer
    pad_id = pad_token_id(tokenizer)
    total, count = 0.0, 0
    for start in range(0, len(inputs), batch_size):
        batch = pad([encode(tokenizer, x, "all") for x in inputs[start : start + batch_size]], pad_id, side="right")
        ids = batch.input_ids.to(model.input_device)
        mask = batch.attention_mask.to(model.input_device)
        logits = model.hf(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        keep = mask[:, 1:].bool()  # right padding: a real target token
        total += float(losses[keep].double().sum())
        count += int(keep.sum())
    return total / count


def spliced_loss(model: ModelLike, sae: Any, inputs: Sequence[Input], *, batch_size: int = 16) -> dict[str, float]:
    """Next-token loss of `model` on `inputs` as is, with the SAE's reconstruction spliced in at its hook, and
    with the hook's activations zeroed (the scale that "loss added" is read against)."""
    clean = next_token_loss(model, inputs, batch_size=batch_size)
    with splice_sae(model, sae):
        spliced = next_token_loss(model, inputs, batch_size=batch_size)
    layer, site = sae_site(model, sae)
    with _intervene(
        as_model(model),
        [(hook_name(layer, site), lambda x, name: torch.zeros_like(x))],
        {"kind": "zero-site", "layer": layer, "site": site},
    ):
        zeroed = next_token_loss(model, inputs, batch_size=batch_size)
    return {
        "clean": clean,
        "spliced": spliced,
        "zeroed": zeroed,
        "added": spliced - clean,
        "recovered": (zeroed - spliced) / (zeroed - clean) if zeroed != clean else float("nan"),
    }
