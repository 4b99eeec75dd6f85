"""Data parallelism: each process takes a shard of the inputs, and the results are combined so that they
equal what one process computes over all of them.

Start one process per GPU with torchrun (NCCL), or several on CPUs (gloo):

    torchrun --nproc-per-node 2 my_script.py

and in the script:

    ranks = misdir.distributed.init()
    model = misdir.load_model(spec, device=ranks.device)
    means = misdir.distributed.cache_activations(model, inputs, reduce="mean")   # the same on every rank

Caching sums per layer in float64 and all-reduces the sums and token counts; per-input results,
contrast-metric items and sampled answers are gathered back into the inputs' own order. Inputs are
dealt round-robin (input i to rank i mod world size). Sampled answers are seeded by question id, not
by position, so a shard samples exactly what one process samples for the same questions. Without an
initialised process group every function here is one process doing all the work (world size 1).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor

from misdir.cache import Sums
from misdir.cache import cache_activations as _cache_one
from misdir.contrast import contrast_logprobs as _contrast_one
from misdir.generate import Answer, Answers
from misdir.generate import generate as _generate_one
from misdir.models import ModelLike, as_model

T = TypeVar("T")


class Ranks(NamedTuple):
    """This process's place in the group, and the device its model should live on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init(backend: str | None = None) -> Ranks:
    """Join the process group that torchrun's environment describes (`RANK`, `WORLD_SIZE`,
    `MASTER_ADDR`...), once: NCCL when CUDA is present, else gloo; each process takes the GPU numbered
    by its `LOCAL_RANK`. Without that environment this is a single process (rank 0 of 1)."""
    if dist.is_available() and not dist.is_initialized() and "WORLD_SIZE" in os.environ:
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return ranks()


def ranks() -> Ranks:
    """This process's rank, the world size, its local rank and device (world size 1 without a group)."""
    initialised = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if initialised else (0, 1)
    local = int(os.environ.get("LOCAL_RANK", rank)) if initialised else 0
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    return Ranks(rank, world, local, device)


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], rank: int | None = None, world_size: int | None = None) -> list[T]:
    """This rank's share of `items`: every `world_size`-th item starting at `rank`."""
    here = ranks()
    rank = here.rank if rank is None else rank
    world_size = here.world_size if world_size is None else world_size
    return list(items[rank::world_size])


def gather(local: Sequence[T]) -> list[T]:
    """The inverse of `shard`: every rank's share put back in the original order, on every rank."""
    world = ranks().world_size
    if world == 1:
        return list(local)
    shares: list[list[T] | None] = [None] * world
    dist.all_gather_object(shares, list(local))
    out: list[T] = []
    for i in range(max(len(s or []) for s in shares)):
        out.extend(s[i] for s in shares if s is not None and i < len(s))
    return out


def cache_activations(
    model: ModelLike, inputs: Sequence[Any], *, reduce: str = "mean", **options: Any
) -> Float[Tensor, "layer d_model"] | Float[Tensor, "input layer d_model"] | Sums:
    """`misdir.cache_activations` over this rank's shard, combined over all ranks; the same on every rank.

    `reduce="mean"` / `"sum"` all-reduce the float64 per-layer sums and the token counts;
    `"per-input"` gathers each input's mean in the inputs' order. `options` as in `misdir.cache_activations`.
    """
    if reduce not in ("mean", "sum", "per-input"):
        raise ValueError(f"distributed caching reduces with 'mean', 'sum' or 'per-input', not {reduce!r}")
    if not inputs:
        raise ValueError("no inputs given")
    local = shard(inputs)
    if reduce == "per-input":
        means = _cache_one(model, local, reduce="per-input", **options) if local else []
        return torch.stack(gather(list(means)))
    if local:
        sums, count = _cache_one(model, local, reduce="sum", **options)
    else:  # more ranks than inputs: this rank adds nothing, but still takes part in the all-reduce
        model = as_model(model)
        n_layers = len(options["layers"]) if options.get("layers") is not None else model.n_layers
        sums, count = torch.zeros(n_layers, model.d_model, dtype=torch.float64), 0
    total = _all_reduce(torch.cat([sums.flatten(), torch.tensor([float(count)], dtype=torch.float64)]))
    sums, count = total[:-1].view_as(sums), int(total[-1].item())
    return Sums(sums, count) if reduce == "sum" else sums.div(count).float()


def contrast_logprobs(model: ModelLike, pairs: Sequence[Any], **options: Any) -> Float[Tensor, "item 2"]:
    """`misdir.contrast.contrast_logprobs` over this rank's shard of the pairs, gathered in their order."""
    local = shard(pairs)
    both = torch.zeros(0, 2, dtype=torch.float64)
    if local:
        both = _contrast_one(model, local, **options)
    return torch.stack(gather(list(both))).view(len(pairs), 2)


def generate(model: ModelLike, questions: Sequence[Any], **options: Any) -> Answers:
    """`misdir.generate` over this rank's shard of the questions, gathered in the questions' order.

    Plain strings become `(index, text)` pairs first, so each keeps the id (and so the random stream)
    it has in one process. The provenance is this rank's, with the total count and the world size.
    """
    if isinstance(questions, str) or not questions:
        raise ValueError("questions must be a non-empty list of strings, (id, text) pairs or Questions")
    identified = [(str(i), q) if isinstance(q, str) else q for i, q in enumerate(questions)]
    local = shard(identified)
    answers = _generate_one(model, local, **options) if local else Answers()
    per_question: dict[str, list[Answer]] = {}
    for answer in answers:
        per_question.setdefault(answer.question_id, []).append(answer)
    ids = [_question_id(q) for q in local]
    groups = gather([per_question.get(qid, []) for qid in ids])
    everything = [answer for group in groups for answer in group]
    world = ranks().world_size
    provenance = {**_first_provenance(answers), "n_answers": len(everything), "world_size": world}
    return Answers(everything, provenance)


def _question_id(question: Any) -> str:
    return str(question[0]) if isinstance(question, tuple | list) else str(question.id)


def _first_provenance(answers: Answers) -> dict[str, Any]:
    """Rank 0's provenance (a rank with no questions has none of its own)."""
    found = [p for p in gather([answers.provenance]) if p]
    return found[0] if found else {}


def _all_reduce(tensor: Tensor) -> Tensor:
    """The sum of `tensor` over all ranks (on the device the backend needs: the GPU for NCCL)."""
    if ranks().world_size == 1:
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    on = tensor.to(device) if device is not None else tensor.clone()
    dist.all_reduce(on)
    return on.cpu()
