"""Stream inputs through a model and read activations at hook points, reducing as it goes.

`cache_activations(..., reduce="mean")` keeps one float64 running sum per layer, so its memory is
O(layers x d_model) however many tokens pass. The forward pass stops right after the last
requested layer: no later layer and no unembedding is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import torch
from einops import einsum
from jaxtyping import Float
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from misdir.batching import in_batches
from misdir.hooks import check_layers, check_site, hook_name, hooks
from misdir.io import atomic_path, write_json_atomic
from misdir.models import Model, ModelLike, as_model
from misdir.tokens import Batch, Encoded, Input, Positions, encode, pad, pad_token_id

Reduce = Literal["mean", "sum", "per-input", "none"]
Reader = Callable[[int, Float[Tensor, "batch pos d_model"], Batch], Any]
"""What a batch keeps of layer i's activation (a sum, per-input means, the selected tokens), off the GPU."""


class Sums(NamedTuple):
    """Per-layer float64 sums of the selected tokens' activations and how many tokens they sum.

    What `reduce="mean"` divides; sums over disjoint shards of the inputs add up to the sums over all
    of them, which is how `misdir.distributed` combines processes."""

    sums: Float[Tensor, "layer d_model"]
    count: int  # type: ignore[assignment]  # a field may shadow tuple.count; this public name stays


class _StopForward(Exception):
    """Raised by the last hook that is needed, to skip the rest of the forward pass."""


# What comes back depends on `reduce` (and with "none" on `out`); the overloads give each caller its type.
@overload
def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Literal["mean"] = "mean",
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: None = None,
    progress: bool = True,
) -> Float[Tensor, "layer d_model"]: ...


@overload
def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Literal["sum"],
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: None = None,
    progress: bool = True,
) -> Sums: ...


@overload
def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Literal["per-input"],
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: None = None,
    progress: bool = True,
) -> Float[Tensor, "input layer d_model"]: ...


@overload
def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Literal["none"],
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: None = None,
    progress: bool = True,
) -> list[Float[Tensor, "layer pos d_model"]]: ...


@overload
def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Literal["none"],
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: str | Path,
    progress: bool = True,
) -> Path: ...


@overload
def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Reduce = "mean",
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: str | Path | None = None,
    progress: bool = True,
) -> (
    Float[Tensor, "layer d_model"]
    | Sums
    | Float[Tensor, "input layer d_model"]
    | list[Float[Tensor, "layer pos d_model"]]
    | Path
): ...


def cache_activations(
    model: ModelLike,
    inputs: Sequence[Input],
    *,
    layers: Sequence[int] | None = None,
    site: str = "resid_post",
    positions: Positions = "answer",
    reduce: Reduce = "mean",
    batch_size: int = 8,
    padding_side: Literal["left", "right"] = "right",
    out: str | Path | None = None,
    progress: bool = True,
) -> (
    Float[Tensor, "layer d_model"]
    | Sums
    | Float[Tensor, "input layer d_model"]
    | list[Float[Tensor, "layer pos d_model"]]
    | Path
):
    """Activations of `model` at `blocks.{l}.hook_{site}` over the chosen positions of every input.

    `inputs` are plain strings or chat conversations (lists of `{"role", "content"}` dicts, rendered
    with the model's chat template). `positions`: `"all"` tokens, `"answer"` (the tokens of the last
    assistant message's content), or `"last"` prompt token. Returns, in float32:
    - `reduce="mean"`: the mean over all selected tokens of all inputs, `[layer, d_model]`;
    - `reduce="sum"`: that mean's float64 numerator and its token count, as `Sums` (they add across shards);
    - `reduce="per-input"`: each input's mean over its own selected tokens, `[input, layer, d_model]`
      (what resampling needs: label shuffles, split halves, bootstraps);
    - `reduce="none"`: one `[layer, pos, d_model]` tensor per input (pos = its selected positions),
      or, with `out=DIR`, the directory where shards `shard-00000.safetensors`... were written, each
      holding `activations [tokens, layer, d_model]`, `input_index [tokens]` and `position [tokens]`.
    """
    model = as_model(model)
    layers = check_layers(range(model.n_layers) if layers is None else layers, model.n_layers)
    check_site(site)
    if reduce not in ("mean", "sum", "per-input", "none"):
        raise ValueError(f"unknown reduce {reduce!r}; expected 'mean', 'sum', 'per-input' or 'none'")
    if out is not None and reduce != "none":
        raise ValueError("out= writes per-token shards; it needs reduce='none'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if out is not None and (Path(out).is_file() or any(Path(out).glob("shard-*.safetensors"))):
        raise ValueError(f"out {out} is a file or already holds shards; choose a new or empty directory")
    if not inputs:
        raise ValueError("no inputs given")
    encoded = [encode(model.tokenizer, item, positions) for item in inputs]

    def stream(read: Reader) -> Iterator[tuple[Sequence[int], Batch, list[Any]]]:
        return _stream(model, encoded, layers, site, batch_size, padding_side, progress, read)

    if out is not None:
        meta = {
            "layers": layers,
            "site": site,
            "positions": positions,
            "n_inputs": len(encoded),
            "n_tokens": sum(len(e.selected) for e in encoded),
            "model": model.provenance,
        }
        return _write_shards(stream, Path(out), meta)

    if reduce in ("mean", "sum"):
        # float64 running sums stay on each layer's device until the end: a copy to the host per layer would
        # make the CPU wait for the GPU 28 times a batch instead of preparing the next batch meanwhile
        sums: list[Tensor] = []  # one per layer, from the first batch on

        def token_sum(i: int, x: Tensor, batch: Batch) -> Tensor:
            weights = batch.selected.to(device=x.device, dtype=torch.float32)
            return einsum(weights, x.float(), "batch pos, batch pos d_model -> d_model").double()

        for _, _, pieces in stream(token_sum):
            sums = [s.add_(partial) for s, partial in zip(sums, pieces, strict=True)] if sums else list(pieces)
        count = sum(len(e.selected) for e in encoded)
        total = torch.stack([s.cpu() for s in sums])
        return Sums(total, count) if reduce == "sum" else total.div(count).float()

    if reduce == "per-input":
        means = torch.zeros(len(encoded), len(layers), model.d_model)

        def input_means(i: int, x: Tensor, batch: Batch) -> Tensor:
            weights = batch.selected.to(device=x.device, dtype=torch.float32)
            weights = weights / weights.sum(-1, keepdim=True)
            return einsum(weights, x.float(), "batch pos, batch pos d_model -> batch d_model")

        for rows, _, pieces in stream(input_means):  # to the host once the whole forward pass is queued
            means[list(rows)] = torch.stack([piece.cpu() for piece in pieces], dim=1)
        return means

    per_input: list[list[Tensor]] = [[] for _ in encoded]
    for rows, _, pieces in stream(_selected):
        for row, per_layer in zip(rows, zip(*pieces, strict=True), strict=True):
            per_input[row] = list(per_layer)
    return [torch.stack(chunks) for chunks in per_input]


def _selected(i: int, x: Tensor, batch: Batch) -> tuple[Tensor, ...]:
    """Each input's selected positions, `[pos, d_model]` on the CPU."""
    counts = batch.selected.sum(-1).tolist()
    return x[batch.selected.to(x.device)].float().cpu().split(counts)


def _write_shards(stream: Callable[[Reader], Iterator[Any]], out: Path, meta: dict[str, Any]) -> Path:
    """One safetensors shard per batch, then `meta.json` (with the shard count) once all are written."""
    out.mkdir(parents=True, exist_ok=True)
    shard = 0

    def tokens(i: int, x: Tensor, batch: Batch) -> Tensor:
        return x[batch.selected.to(x.device)].float().cpu()

    for rows, batch, pieces in stream(tokens):
        batch = batch.to(torch.device("cpu"))
        row, column = batch.selected.nonzero(as_tuple=True)
        index, position = torch.tensor(list(rows))[row], batch.position_ids[row, column]
        activations = torch.stack(pieces, dim=1).contiguous()
        tensors = {"activations": activations, "input_index": index, "position": position}
        with atomic_path(out / f"shard-{shard:05d}.safetensors") as tmp:
            save_file(tensors, str(tmp))
        shard += 1
    write_json_atomic(out / "meta.json", {**meta, "n_shards": shard})
    return out


def _stream(
    model: Model,
    encoded: list[Encoded],
    layers: list[int],
    site: str,
    batch_size: int,
    padding_side: Literal["left", "right"],
    progress: bool,
    read: Reader,
) -> Iterator[tuple[Sequence[int], Batch, list[Any]]]:
    """Run every input through the model in padded batches; for each batch, yield its input indices, the
    batch (on the model's input device) and `read(i, activation, batch)` of each requested layer i in order.

    Longest inputs go first (less padding). A batch that runs out of GPU memory is retried in halves
    (`misdir.batching`); nothing is yielded for a batch until its forward pass is complete.
    """
    order = sorted(range(len(encoded)), key=lambda row: -len(encoded[row].input_ids))
    pad_id = pad_token_id(model.tokenizer)
    if model.lens is not None:
        padding_side = "right"  # with right padding and causal attention, real tokens never see padding
    current: dict[str, Any] = {}
    last = len(layers) - 1

    def make_hook(i: int) -> Callable[[Tensor, str], None]:
        def hook(x: Tensor, name: str) -> None:
            current["pieces"].append(read(i, x, current["batch"]))
            if i == last:
                raise _StopForward

        return hook

    fwd_hooks = [(hook_name(layer, site), make_hook(i)) for i, layer in enumerate(layers)]
    device = model.input_device

    def forward(rows: Sequence[int]) -> tuple[Batch, list[Any]]:
        current.clear()
        on_device = pad([encoded[row] for row in rows], pad_id, padding_side).to(device)
        current["batch"], current["pieces"] = on_device, []
        try:
            if model.lens is not None:
                model.lens(on_device.input_ids)
            else:
                model.hf(
                    input_ids=on_device.input_ids,
                    attention_mask=on_device.attention_mask,
                    position_ids=on_device.position_ids,
                    use_cache=False,
                )
        except _StopForward:
            return on_device, current.pop("pieces")
        raise RuntimeError(f"the hooks at {fwd_hooks[-1][0]} never ran: the model did not reach that layer")

    with (
        hooks(model, fwd_hooks),
        torch.inference_mode(),
        tqdm(total=len(order), desc="caching", unit="input", disable=not progress) as bar,
    ):
        for rows, (batch, pieces) in in_batches(forward, order, batch_size, what="caching activations"):
            yield rows, batch, pieces
            bar.update(len(rows))
