"""Ablate or steer a direction in the residual stream while a block runs, or bake an ablation into weights.

`ablate` and `steer` are context managers over `misdir.hooks`: whatever runs inside the block
(`misdir.generate`, `model.hf.generate`, `cache_activations`, a scoring forward pass) runs edited, at
every position, prompt and generated tokens alike; the hooks are removed on exit or exception, and
blocks nest (inner edits run after outer ones at the same hook point). `orthogonalize` writes the
same single-direction ablation into the weights, so the ablated model needs no hooks at all.

`directions` is anything with `.vectors` `[layer, d_model]` and `.site` (a `misdir.DirectionSet`),
one `[layer, d_model]` tensor (each layer its own direction), or one `[d_model]` tensor (the same
direction at every layer). Directions are normalised here; their raw norm matters only to
`steer(..., relative="direction")`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, cast

import torch
from jaxtyping import Float
from torch import Tensor, nn

from misdir.hooks import (
    EMBED,
    SITES,
    HookFn,
    check_layers,
    check_site,
    forget_open_edits,
    hook_name,
    hooks,
    open_edits,
    recording,
)
from misdir.models import Model, ModelLike, as_model
from misdir.positions import Positions, TokenTracker, check_positions, where_edited
from misdir.tensors import unit

Relative = Literal["unit", "direction", "resid"]
RELATIVE = ("unit", "direction", "resid")
Method = Literal["auto", "hooks", "writers"]
METHODS = ("auto", "hooks", "writers")
STREAM_SITES = ("resid_pre", "resid_mid", "resid_post")
"""Ablating at all three residual sites of every layer removes the direction from the whole stream
(what `orthogonalize` does in the weights)."""


def active_interventions(model: ModelLike) -> list[dict[str, Any]]:
    """Descriptions of the `ablate` / `steer` blocks open on `model` now (for provenance): copies of
    `misdir.hooks.open_edits`."""
    return [dict(record) for record in open_edits(as_model(model))]


@contextmanager
def ablate(
    model: ModelLike,
    directions: Any,
    layers: Sequence[int] | int | None = None,
    site: str | Sequence[str] | None = None,
    *,
    positions: Positions = "all",
    method: Method = "auto",
) -> Iterator[Model]:
    """Project the unit direction `r` out of the residual stream: `x <- x - (x . r) r`.

    At `blocks.{l}.hook_{site}` for each of `layers` (default: all) and each site given (default: the
    DirectionSet's own site, else `resid_post`), at `positions` (see `misdir.positions`: every token, every
    token but the first, or answer tokens only). Computed in float32 and cast back to the activation's
    dtype. To match `orthogonalize` by hooks, ablate at `("resid_pre", "resid_mid", "resid_post")` with
    `positions="all"`.

    `method`: `"hooks"` edits the stream at each site named. `"writers"` computes the same edit more cheaply
    where it is exact: ablating one direction at resid_pre, resid_mid and resid_post of every layer, at every
    position, equals projecting it out of what writes to the stream (the embedding's output and each layer's
    attention and MLP outputs; `1 + 2 x layers` hooks instead of `4 x layers` calls, and no state kept between
    hooks, so a compiled decode step stays one graph). Inside such a block, `hook_attn_out` / `hook_mlp_out`
    read the projected outputs (what the stream receives), and an edit opened inside it that writes along `r`
    is not removed again downstream. `"auto"` (default) takes `"writers"` when the request is that edit (all
    layers, the three residual sites, positions "all", one direction at every layer) and no other edit is open
    on the model, else `"hooks"`. The method used is recorded in provenance.
    """
    model = as_model(model)
    if method not in METHODS:
        raise ValueError(f"unknown ablation method {method!r}; expected one of {', '.join(METHODS)}")
    layers, sites = _layers(model, layers), _sites(directions, site)
    units = _unit_rows(model, directions, layers)
    tracker = _tracker(model, positions)
    writers = _writers_exact(model, units, sites, positions)
    if method == "writers" and writers is None:
        raise ValueError(
            "method='writers' is exact only for one direction ablated at resid_pre, resid_mid and resid_post of "
            "every layer, at positions='all', on a Hugging Face model (load_model); use method='hooks'"
        )
    if method == "auto" and writers is not None and open_edits(model):
        writers = None  # another edit is open: keep the site-by-site semantics it was written against
    if method == "hooks":
        writers = None

    def make(unit: Tensor) -> HookFn:
        on = _on_device(unit)

        def hook(x: Float[Tensor, "batch pos d_model"], name: str) -> Tensor:
            return where_edited(x, _project_out(x, on(x.device)), tracker.edited(x))

        return hook

    described = describe_directions(directions)
    record = {
        "kind": "ablate",
        "layers": layers,
        "sites": sites,
        "positions": positions,
        "method": "hooks" if writers is None else "writers",
        "directions": described,
    }
    if writers is None:
        fwd_hooks = [(hook_name(layer, s), make(units[layer])) for s in sites for layer in layers]
    else:
        project = make(writers)
        writer_sites = ("attn_out", "mlp_out")
        fwd_hooks = [(EMBED, project)] + [(hook_name(layer, s), project) for layer in layers for s in writer_sites]
    with _intervene(model, fwd_hooks, record, tracker):
        yield model


def _project_out(x: Float[Tensor, "batch pos d_model"], r: Float[Tensor, "d_model"]) -> Tensor:
    """`x - (x . r) r` computed in float32 (one mat-vec and one fused multiply-subtract), cast back."""
    xf = x.float()
    return torch.addcmul(xf, (xf @ r).unsqueeze(-1), r, value=-1.0).to(x.dtype)


def _writers_exact(model: Model, units: dict[int, Tensor], sites: Sequence[str], positions: str) -> Tensor | None:
    """The one unit direction whose ablation at these sites equals projecting it out of every writer's output,
    or None where the two differ.

    The stream is the embedding plus each layer's attention and MLP outputs; with `P = I - r r^T`, ablating
    at resid_pre, resid_mid and resid_post of every layer gives `P e`, then `P(x + a) = x + P a` and
    `P(h + m) = h + P m` for streams already projected: the same values as projecting `e`, `a` and `m`.
    """
    if model.lens is not None or positions != "all" or set(sites) != set(STREAM_SITES):
        return None
    if sorted(units) != list(range(model.n_layers)):
        return None
    first = units[0]
    if any(not torch.equal(unit, first) for unit in units.values()):
        return None
    return first


@contextmanager
def steer(
    model: ModelLike,
    directions: Any,
    layers: Sequence[int] | int | None,
    scale: float,
    *,
    relative: Relative = "unit",
    site: str | Sequence[str] | None = None,
    positions: Positions = "all",
) -> Iterator[Model]:
    """Add the direction to the residual stream at `layers` (None: all), at `positions` (as in `ablate`).

    What `scale` counts, by `relative`:
    - `"unit"`: absolute; adds `scale * r` with `r` the unit direction (the added vector has norm |scale|);
    - `"direction"`: in units of the raw direction; adds `scale * v` (scale 1 adds a mean difference as is);
    - `"resid"`: in units of the residual stream's own norm; adds `scale * |x_t| * r` to each token `t`,
      so a scale means the same at every layer, although residual norms grow by orders of magnitude with
      depth (on a small model, absolute scales that matter at layer 2 do nothing at layer 25).
    Sites as in `ablate`. Computed in float32 and cast back.
    """
    model = as_model(model)
    if relative not in RELATIVE:
        raise ValueError(f"unknown relative {relative!r}; expected one of {', '.join(RELATIVE)}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ValueError(f"steering scale must be a finite number, got {scale!r}")
    layers, sites = _layers(model, layers), _sites(directions, site)
    rows = _rows(model, directions, layers)
    tracker = _tracker(model, positions)

    def make(layer: int) -> HookFn:
        per_token = relative == "resid"
        row = rows[layer] if relative == "direction" else unit(rows[layer])
        on = _on_device(float(scale) * row)

        def hook(x: Float[Tensor, "batch pos d_model"], name: str) -> Tensor:
            add = on(x.device)
            xf = x.float()
            new = xf + xf.norm(dim=-1, keepdim=True) * add if per_token else xf + add
            return where_edited(x, new.to(x.dtype), tracker.edited(x))

        return hook

    record = {
        "kind": "steer",
        "layers": layers,
        "sites": sites,
        "positions": positions,
        "scale": float(scale),
        "relative": relative,
        "directions": describe_directions(directions),
    }
    with _intervene(model, [(hook_name(layer, s), make(layer)) for s in sites for layer in layers], record, tracker):
        yield model


def orthogonalize(model: ModelLike, direction: Any, *, inplace: bool = False) -> Model:
    """A model whose weights never write the unit direction `r` into the residual stream.

    `W <- W - r r^T W` for every matrix whose output is added to the stream (each layer's attention
    `o_proj` and MLP `down_proj`, and their biases), and `r` projected out of every embedding row. In
    a pre-norm decoder the stream then has no component along `r` anywhere, which is what ablating at
    `resid_pre`, `resid_mid` and `resid_post` of every layer does with hooks. Tied input and output
    embeddings are untied first, so the unembedding is unchanged. Returns a deep copy (the model
    given is untouched) unless `inplace=True`, which spares the memory of a copy for large models.
    The edit is computed in float32; in bfloat16 weights the residue along `r` is bf16 rounding.
    """
    model = as_model(model)
    if model.lens is not None:
        raise TypeError("orthogonalize edits Hugging Face weights; load the model with misdir.load_model")
    if hasattr(model.hf, "peft_config"):
        raise ValueError("orthogonalize needs plain weights: load the adapter with merge=True first")
    if not model.architecture.pre_norm:
        raise ValueError(
            f"orthogonalize supports pre-norm decoders; {model.config.model_type!r} normalises each branch's "
            "output before adding it to the residual stream, so projecting the weights does not remove r"
        )
    vectors = _as_vectors(direction)
    if vectors.ndim != 1:
        raise ValueError(f"orthogonalize takes one [d_model] direction, got shape {list(vectors.shape)}; pick one row")
    r = _unit_rows(model, vectors, [0])[0]
    target = model
    if not inplace:
        provenance = copy.deepcopy(model.provenance)
        target = Model(copy.deepcopy(model.hf), model.tokenizer, model.spec, provenance=provenance)
        forget_open_edits(target.hf)
    hf = target.hf
    # nn.Module types every attribute as a Tensor or a Module: an embedding's and a linear map's weight are tensors
    with torch.no_grad():
        embedding, unembedding = hf.get_input_embeddings(), hf.get_output_embeddings()
        embedding_weight = cast(Tensor, embedding.weight)
        if unembedding is not None and unembedding.weight.data_ptr() == embedding_weight.data_ptr():
            unembedding.weight = nn.Parameter(unembedding.weight.detach().clone())
            hf.config.tie_word_embeddings = False
            hf.config.get_text_config().tie_word_embeddings = False
        _project_rows(embedding_weight, r)
        for block in target.layers:
            for name in target.architecture.writers:
                linear = block.get_submodule(name)
                _project_columns(cast(Tensor, linear.weight), r)
                bias = getattr(linear, "bias", None)
                if bias is not None:
                    _project_rows(bias, r)
    target.provenance["orthogonalized"] = describe_directions(direction)
    return target


def describe_directions(directions: Any) -> dict[str, Any]:
    """What identifies a direction in provenance: its shape, a hash of its float32 values, its meta."""
    vectors = _as_vectors(directions).float().cpu().contiguous()
    out: dict[str, Any] = {
        "shape": list(vectors.shape),
        "sha256": hashlib.sha256(vectors.numpy().tobytes()).hexdigest()[:16],
    }
    if getattr(directions, "site", None) is not None:
        out["site"] = directions.site
    if getattr(directions, "meta", None):
        out["meta"] = directions.meta
    return out


def _project_rows(weight: Tensor, r: Tensor) -> None:
    """In place: remove the component along unit `r` from each row of `weight` [n, d_model], or a bias."""
    w = weight.data.float()
    rr = r.to(w.device)
    weight.data.copy_(w - (w @ rr).unsqueeze(-1) * rr)


def _project_columns(weight: Tensor, r: Tensor) -> None:
    """In place: `W <- W - r r^T W` for an output-side `weight` [d_model, n]."""
    w = weight.data.float()
    rr = r.to(w.device)
    weight.data.copy_(w - rr.unsqueeze(-1) * (rr @ w).unsqueeze(0))


def _tracker(model: Model, positions: str) -> TokenTracker:
    """What tells the hooks which positions to edit."""
    if check_positions(positions) != "all" and model.lens is not None:
        raise ValueError(
            f"positions={positions!r} needs a model loaded with misdir.load_model; "
            "on a TransformerLens model misdir edits every position"
        )
    return TokenTracker(model.decoder if model.lens is None else model.lens, positions)


@contextmanager
def _intervene(
    model: Model, fwd_hooks: list[tuple[str, HookFn]], record: dict[str, Any], tracker: TokenTracker | None = None
) -> Iterator[None]:
    """Open `fwd_hooks` on `model` and record the edit as active; `tracker` (for positional edits) watches the
    decoder's forward passes while it is open. An edit at some positions only says in its record (`eager`)
    that a decode step cannot be compiled around it: which tokens it edits is Python state between steps."""
    if tracker is not None and tracker.positions != "all":
        record["eager"] = (
            f"an edit at positions={tracker.positions!r} is open " "(its position bookkeeping runs in Python each step)"
        )
    with hooks(model, fwd_hooks), tracker.watching() if tracker is not None else contextlib.nullcontext():
        with recording(model, record):
            yield


def _on_device(vector: Tensor) -> Callable[[torch.device], Tensor]:
    """`vector` on a given device, copied there once on first use (layers may sit on different GPUs)."""
    copies: dict[torch.device, Tensor] = {}

    def on(device: torch.device) -> Tensor:
        found = copies.get(device)
        if found is None:
            found = copies[device] = vector.to(device)
        return found

    return on


def _as_vectors(directions: Any) -> Tensor:
    vectors = getattr(directions, "vectors", directions)
    if not isinstance(vectors, Tensor):
        raise TypeError(
            "directions must be a DirectionSet or a [d_model] / [layer, d_model] tensor, "
            f"got {type(directions).__name__}"
        )
    return vectors.detach()


def _rows(model: Model, directions: Any, layers: list[int]) -> dict[int, Float[Tensor, "d_model"]]:
    """The raw float32 direction used at each of `layers`, checked against the model's shape."""
    vectors = _as_vectors(directions).float().cpu()
    if vectors.ndim not in (1, 2):
        raise ValueError(f"directions must be [d_model] or [layer, d_model], got shape {list(vectors.shape)}")
    if vectors.shape[-1] != model.d_model:
        raise ValueError(
            f"direction width {vectors.shape[-1]} does not match the model's d_model {model.d_model} " f"({model.spec})"
        )
    if vectors.ndim == 2 and vectors.shape[0] != model.n_layers:
        raise ValueError(
            f"directions have {vectors.shape[0]} layers but {model.spec} has {model.n_layers}; pass one row "
            "([d_model]) to use the same direction at every layer"
        )
    rows = {layer: vectors if vectors.ndim == 1 else vectors[layer] for layer in layers}
    for layer, row in rows.items():
        if not torch.isfinite(row).all():
            raise ValueError(f"the direction at layer {layer} has non-finite values")
        if row.norm() == 0:
            raise ValueError(f"the direction at layer {layer} is zero: there is nothing to ablate or steer")
    return rows


def _unit_rows(model: Model, directions: Any, layers: list[int]) -> dict[int, Float[Tensor, "d_model"]]:
    return {layer: unit(row) for layer, row in _rows(model, directions, layers).items()}


def _layers(model: Model, layers: Sequence[int] | int | None) -> list[int]:
    if layers is None:
        return list(range(model.n_layers))
    return check_layers([layers] if isinstance(layers, int) else layers, model.n_layers)


def _sites(directions: Any, site: str | Sequence[str] | None) -> list[str]:
    if site is None:
        site = getattr(directions, "site", None) or "resid_post"
    sites = [site] if isinstance(site, str) else list(site)
    if not sites:
        raise ValueError(f"no site given; expected one or more of {', '.join(SITES)}")
    for s in sites:
        check_site(s)
    return sites
