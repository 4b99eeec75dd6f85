"""Sparse-autoencoder latents at misdir's hook points: load or train SAEs with sae-lens, diff models on them,
and intervene on single latents.

The SAEs are sae-lens's own (`sae_lens.SAE`): loaded by release and id from the hub (`SAE.from_pretrained`) or
from a directory holding `cfg.json` + `sae_weights.safetensors` (`SAE.load_from_disk`), and trained with
sae-lens's `SAETrainer` on activations that `misdir.cache_activations` streams to shards. An SAE names its
hook in TransformerLens's vocabulary (`cfg.metadata.hook_name`, e.g. `blocks.15.hook_resid_post`), which is
misdir's too, so it attaches to any model misdir can hook.

The persona-latent analysis (Wang et al. 2025): each latent's mean activation and firing rate on the same
texts for a base model and its finetunes (`diff_latents`), latents ranked by how consistently they rise in the
EM finetunes and not in the controls (`rank_latents`), and their causal effect through steering along a
latent's decoder row or clamping it (`clamp_latents`), measured with the contrast metric.
"""

from __future__ import annotations

import inspect
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from misdir.cache import cache_activations
from misdir.hooks import HookFn, hook_name, parse_hook_name
from misdir.interventions import _intervene
from misdir.io import write_json_atomic
from misdir.models import Model, as_model, misdir_version
from misdir.tokens import Input, Positions, encode, pad, pad_token_id

Architecture = Literal["batchtopk", "topk"]
SAE_FILES = ("cfg.json", "sae_weights.safetensors")


# --- loading and attaching -------------------------------------------------------------------------------


def load_sae(
    source: str | Path, sae_id: str | None = None, *, device: str = "cpu", dtype: str = "float32"
) -> Any:
    """An sae-lens SAE from a directory (`cfg.json` + `sae_weights.safetensors`) or, with `sae_id`, from a
    pretrained sae-lens release on the Hugging Face hub (`SAE.from_pretrained(release, sae_id)`)."""
    from sae_lens import SAE

    path = Path(source).expanduser()
    if sae_id is None:
        if not path.is_dir():
            raise FileNotFoundError(
                f"no SAE directory at {path}; give a directory with {' + '.join(SAE_FILES)}, "
                "or a release and an sae_id of a pretrained sae-lens SAE"
            )
        missing = [name for name in SAE_FILES if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not an sae-lens SAE directory: {', '.join(missing)} missing")
        return SAE.load_from_disk(str(path), device=device, dtype=dtype)
    return SAE.from_pretrained(str(source), sae_id, device=device, dtype=dtype)


def sae_site(model: Any, sae: Any, hook: str | None = None) -> tuple[int, str]:
    """(layer, site) where `sae` reads `model`: `hook` if given, else the SAE's own `cfg.metadata.hook_name`.

    Clear errors for a hook that is not a misdir site (`blocks.{l}.hook_{site}`), a layer the model does not
    have, and an SAE whose input width `d_in` is not the model's `d_model`.
    """
    model = as_model(model)
    name = hook or sae.cfg.metadata.hook_name
    if not name:
        raise ValueError(
            "the SAE's config names no hook (cfg.metadata.hook_name); pass hook='blocks.L.hook_SITE'"
        )
    layer, site = parse_hook_name(name, model.n_layers)
    if int(sae.cfg.d_in) != model.d_model:
        raise ValueError(
            f"the SAE reads vectors of width d_in={sae.cfg.d_in}, but {model.spec} has d_model "
            f"{model.d_model}: it was trained on another model"
        )
    return layer, site


@torch.no_grad()
def encode_latents(sae: Any, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_sae"]:
    """The SAE's latent activations of `x`, computed in the SAE's device and dtype, returned as float32 on
    CPU."""
    return sae.encode(x.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)).float().cpu()


@torch.no_grad()
def decoder_rows(sae: Any) -> Float[Tensor, "d_sae d_model"]:
    """What one unit of each latent adds to the reconstruction: `decode(e_i) - decode(0)`, float32 on CPU.

    Equal to `W_dec` for most SAEs; it also covers a decoder that rescales by its row norms (TopK SAEs).
    """
    d_sae = int(sae.cfg.d_sae)
    eye = torch.eye(d_sae, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
    zero = torch.zeros(1, d_sae, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
    return (sae.decode(eye) - sae.decode(zero)).float().cpu()


def latent_direction(sae: Any, latent: int) -> Float[Tensor, "d_model"]:
    """The decoder row of `latent` (unnormalised): the direction steering along that latent adds."""
    _check_latents(sae, [latent])
    return decoder_rows(sae)[latent]


def latent_activations(
    model: Any,
    sae: Any,
    inputs: Sequence[Input],
    *,
    hook: str | None = None,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = False,
) -> list[Float[Tensor, "pos d_sae"]]:
    """Latent activations of each input at its selected positions, read at the SAE's hook through misdir's
    hooks."""
    layer, site = sae_site(model, sae, hook)
    acts = cache_activations(
        model,
        inputs,
        layers=[layer],
        site=site,
        positions=positions,
        reduce="none",
        batch_size=batch_size,
        progress=progress,
    )
    return [encode_latents(sae, a[0]) for a in acts]


# --- clamping and steering ---------------------------------------------------------------------------------


@contextmanager
def clamp_latents(
    model: Any,
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


def zero_latents(model: Any, sae: Any, latents: int | Sequence[int], *, hook: str | None = None) -> Any:
    """`clamp_latents(..., value=0)`: remove what the latents write at the SAE's hook."""
    return clamp_latents(model, sae, latents, 0.0, hook=hook)


@contextmanager
def splice_sae(model: Any, sae: Any, *, hook: str | None = None) -> Iterator[Model]:
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
def next_token_loss(model: Any, inputs: Sequence[Input], *, batch_size: int = 16) -> float:
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


def spliced_loss(model: Any, sae: Any, inputs: Sequence[Input], *, batch_size: int = 16) -> dict[str, float]:
    """Next-token loss of `model` on `inputs` as is, with the SAE's reconstruction spliced in at its hook, and
    with the hook's activations zeroed (the scale that "loss added" is read against)."""
    clean = next_token_loss(model, inputs, batch_size=batch_size)
    with splice_sae(model, sae):
        spliced = next_token_loss(model, inputs, batch_size=batch_size)
    layer, site = sae_site(model, sae)
    with _intervene(as_model(model), [(hook_name(layer, site), lambda x, name: torch.zeros_like(x))],
                    {"kind": "zero-site", "layer": layer, "site": site}):
        zeroed = next_token_loss(model, inputs, batch_size=batch_size)
    return {"clean": clean, "spliced": spliced, "zeroed": zeroed, "added": spliced - clean,
            "recovered": (zeroed - spliced) / (zeroed - clean) if zeroed != clean else float("nan")}


def describe_sae(sae: Any) -> dict[str, Any]:
    """What identifies an SAE in provenance: architecture, widths, hook, and where it came from."""
    meta = sae.cfg.metadata
    return {
        "architecture": sae.cfg.architecture(),
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "hook_name": meta.hook_name,
        "model_name": meta.model_name,
        "source": getattr(sae, "_misdir_source", None),
    }


def _check_latents(sae: Any, latents: Sequence[int]) -> None:
    bad = [i for i in latents if not 0 <= i < int(sae.cfg.d_sae)]
    if bad:
        raise ValueError(f"latent(s) {bad} out of range: this SAE has latents 0 to {int(sae.cfg.d_sae) - 1}")
    if not latents:
        raise ValueError("no latents given")


# --- training -----------------------------------------------------------------------------------------------


@dataclass
class SAETrainConfig:
    """How to train an SAE on one hook site of a model (and its finetunes) with sae-lens."""

    layer: int
    """Layer whose activations the SAE reads."""
    site: str = "resid_post"
    """Hook site: resid_pre, resid_mid, resid_post, attn_out or mlp_out."""
    architecture: Architecture = "batchtopk"
    """'batchtopk' (k active latents on average over a batch; sae-lens saves it as a JumpReLU SAE), or
    'topk'."""
    d_sae: int = 3072
    """Number of latents."""
    k: int = 32
    """Active latents per token (on average over a batch for batchtopk)."""
    lr: float = 1e-3
    """Adam learning rate; decays linearly to lr/10 over the last 20% of steps."""
    batch_size: int = 512
    """Tokens per training step."""
    epochs: float = 4.0
    """Passes over the cached training tokens (small CPU runs reuse their tokens; a GPU run should not need
    to)."""
    buffer_tokens: int = 65_536
    """Tokens held in the shuffling buffer that mixes models, texts and positions before batching."""
    holdout_every: int = 20
    """Every n-th input is held out from training; variance explained, L0 and dead latents are measured on
    them."""
    cache_batch_size: int = 8
    """Inputs per forward pass while caching activations."""
    seed: int = 0
    """Seed of the SAE's initialisation and of the shuffling."""
    device: str | None = None
    """Where the SAE trains; None: CUDA when available, else the CPU."""


@dataclass(frozen=True)
class SAEMetrics:
    """How well an SAE reconstructs a set of activations."""

    variance_explained: float
    """1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2, over all tokens."""
    l0: float
    """Mean number of active latents per token."""
    dead_fraction: float
    """Share of latents that never fire on these tokens."""
    n_tokens: int


@dataclass
class SAETrainResult:
    """A trained SAE, where it was saved, and what it reached."""

    sae: Any
    out: Path
    heldout: SAEMetrics
    train_tokens: int
    steps: int
    seconds_caching: float
    seconds_training: float
    trainer_dead: int
    """Latents that sae-lens's trainer counts dead (no firing in its last dead-feature window)."""
    record: dict[str, Any] = field(default_factory=dict)


_DOC_MODULES = (
    "abc",
    "argparse",
    "ast",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "concurrent.futures",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fractions",
    "functools",
    "glob",
    "hashlib",
    "heapq",
    "html",
    "http.client",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "mimetypes",
    "numbers",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "shlex",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
)


def python_docs(n: int | None = None, *, words: int = 48) -> list[str]:
    """General English text that ships with every Python: docstrings of standard-library modules and their
    public classes and functions, cut into passages of about `words` words (the same on every machine with
    this Python)."""
    import importlib

    passages: list[str] = []
    for name in _DOC_MODULES:
        module = importlib.import_module(name)
        texts = [inspect.getdoc(module) or ""]
        for key, member in sorted(vars(module).items()):
            if key.startswith("_") or getattr(member, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                texts.append(inspect.getdoc(member) or "")
        for text in texts:
            tokens = text.split()
            for start in range(0, max(len(tokens) - words // 2, 0), words):
                passages.append(" ".join(tokens[start : start + words]))
                if n is not None and len(passages) >= n:
                    return passages
    return passages


def training_inputs(
    sources: Sequence[str], *, n: int = 100, seed: int = 1
) -> tuple[list[Input], list[dict[str, Any]]]:
    """Texts to train an SAE on, from named sources, each with a record of where it came from: a misdir
    dataset name (its first `n` held-out examples), `contrast:NAME[:N]` (both answers of each of the first N,
    default all, pairs of a contrast set), `python-docs[:N]` (`N`, default `n`, passages of standard-library
    docstrings), or a chat JSONL file (first `n`)."""
    from misdir.data import DATASETS, load_conversations
    from misdir.directions import data_hash
    from misdir.questions import load_contrast_pairs

    out: list[Input] = []
    records: list[dict[str, Any]] = []
    for source in sources:
        items: list[Input]
        if source == "python-docs" or source.startswith("python-docs:"):
            items = list(python_docs(int(source.split(":")[1]) if ":" in source else n))
            record: dict[str, Any] = {"kind": "python-docs", "python": sys.version.split()[0]}
        elif source.startswith("contrast:"):
            name, _, first = source.removeprefix("contrast:").partition(":")
            pairs = load_contrast_pairs(name)[: int(first) if first else None]
            items = [
                [{"role": "user", "content": p.question}, {"role": "assistant", "content": answer}]
                for p in pairs
                for answer in (p.misaligned, p.aligned)
            ]
            record = {"kind": "contrast", "name": name, "pairs": len(pairs)}
        else:
            split = "heldout" if source in DATASETS else "train"
            items, record = load_conversations(source, n=n, seed=seed, split=split)  # type: ignore[arg-type]
        records.append({**record, "source": source, "n": len(items), "sha256": data_hash(items)})
        out.extend(items)
    return out, records


def cache_for_training(
    models: Sequence[Any],
    inputs: Sequence[Input],
    cfg: SAETrainConfig,
    work: str | Path,
    *,
    progress: bool = True,
) -> list[Path]:
    """Stream each model's activations at the SAE's hook into safetensors shards (`misdir.cache_activations`
    with `reduce="none", out=`): input i goes to model i mod len(models), so base and finetunes see different
    texts of the same mix. Beside the shards, `first-position.safetensors` says from which position each
    input's tokens are used (see `_first_positions`). Returns one shard directory per model."""
    work = Path(work)
    prefix = _shared_prefix(models[0], inputs)
    dirs = []
    for m, model in enumerate(models):
        share = [item for i, item in enumerate(inputs) if i % len(models) == m]
        if not share:
            continue
        out = work / f"model-{m:02d}"
        if progress:
            print(f"misdir sae: caching {len(share)} inputs through {as_model(model).spec}", flush=True)
        cache_activations(
            model,
            share,
            layers=[cfg.layer],
            site=cfg.site,
            positions="all",
            reduce="none",
            batch_size=cfg.cache_batch_size,
            out=out,
            progress=progress,
        )
        first = torch.tensor([1 if isinstance(item, str) else prefix for item in share])
        save_file({"first": first}, str(out / "first-position.safetensors"))
        dirs.append(out)
    return dirs


def _shared_prefix(model: Any, inputs: Sequence[Input]) -> int:
    """Leading tokens that every conversation shares (the chat template's system prompt), at least 1."""
    model = as_model(model)
    encoded = [encode(model.tokenizer, item, "all").input_ids for item in inputs if not isinstance(item, str)]
    if len(encoded) < 2:
        return 1
    first = encoded[0]
    length = min(len(e) for e in encoded)
    n = 0
    while n < length and all(e[n] == first[n] for e in encoded):
        n += 1
    return max(n, 1)


def _shards(directory: Path, holdout_every: int, heldout: bool) -> Iterator[Tensor]:
    """The tokens of each shard in `directory` that train (or, with `heldout`, measure) the SAE: every
    `holdout_every`-th input is held out, and each input's tokens count from its first position on. Position 0
    carries a huge attention-sink norm (25,000 against about 170 at layer 15 of SmolLM2), and the chat
    template's shared system prompt would repeat the same few tokens in every conversation, so conversations
    start after that prefix and plain texts at position 1."""
    firsts = directory / "first-position.safetensors"
    first = load_file(str(firsts))["first"] if firsts.is_file() else None
    for path in sorted(directory.glob("shard-*.safetensors")):
        shard = load_file(str(path))
        index = shard["input_index"]
        keep = shard["position"] >= (first[index] if first is not None else 1)
        if holdout_every > 0:
            is_heldout = index % holdout_every == 0
            keep &= is_heldout if heldout else ~is_heldout
        yield shard["activations"][keep, 0]


def _batches(dirs: Sequence[Path], cfg: SAETrainConfig, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled training batches forever: the models' shards in random order, mixed through a buffer."""
    while True:
        buffer: list[Tensor] = []
        held = 0
        order = torch.randperm(len(dirs), generator=generator).tolist()
        streams = [_shards(dirs[i], cfg.holdout_every, heldout=False) for i in order]
        while streams:  # one shard of each model in turn
            for stream in list(streams):
                tokens = next(stream, None)
                if tokens is None:
                    streams.remove(stream)
                    continue
                buffer.append(tokens)
                held += len(tokens)
            if held >= cfg.buffer_tokens:
                mixed = torch.cat(buffer)
                mixed = mixed[torch.randperm(len(mixed), generator=generator)]
                half = len(mixed) // 2 // cfg.batch_size * cfg.batch_size
                yield from mixed[:half].split(cfg.batch_size)
                buffer, held = [mixed[half:]], len(mixed) - half
        mixed = torch.cat(buffer)
        mixed = mixed[torch.randperm(len(mixed), generator=generator)]
        for batch in mixed.split(cfg.batch_size):
            if len(batch) == cfg.batch_size:
                yield batch


@torch.no_grad()
def sae_metrics(
    sae: Any, activations: Float[Tensor, "token d_model"], *, batch_size: int = 4096
) -> SAEMetrics:
    """Variance explained, L0 and dead fraction of `sae` on `activations` (sums in float64)."""
    if len(activations) == 0:
        raise ValueError("no activations to measure the SAE on")
    x = activations.double()
    total = ((x - x.mean(0)) ** 2).sum()
    residual, active, fired = 0.0, 0.0, torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool)
    for chunk in activations.split(batch_size):
        acts = sae.encode(chunk.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype))
        recon = sae.decode(acts).double().cpu()
        residual += float(((chunk.double() - recon) ** 2).sum())
        nonzero = (acts != 0).cpu()
        active += float(nonzero.sum())
        fired |= nonzero.any(0)
    return SAEMetrics(
        variance_explained=1 - residual / float(total),
        l0=active / len(activations),
        dead_fraction=float((~fired).float().mean()),
        n_tokens=len(activations),
    )


def train_sae_on_shards(
    dirs: Sequence[Path],
    cfg: SAETrainConfig,
    d_in: int,
    *,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[Any, SAEMetrics, dict[str, Any]]:
    """Train a TopK or BatchTopK SAE with sae-lens's `SAETrainer` on the shards' training tokens; measure it
    on the held-out tokens. Returns the inference SAE (as sae-lens saves and loads it), held-out metrics, and
    a record."""
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, SAETrainer, TopKTrainingSAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    n_train = sum(len(t) for d in dirs for t in _shards(d, cfg.holdout_every, heldout=False))
    if n_train < cfg.batch_size:
        raise ValueError(f"only {n_train} training tokens for batches of {cfg.batch_size}; give more data")
    torch.manual_seed(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = dict(d_in=d_in, d_sae=cfg.d_sae, k=cfg.k, normalize_activations="expected_average_only_in", device=device)
    if cfg.architecture == "batchtopk":
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**options))  # type: ignore[arg-type]
    elif cfg.architecture == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(**options))  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown architecture {cfg.architecture!r}; expected 'batchtopk' or 'topk'")
    for key, value in (metadata or {}).items():
        sae.cfg.metadata[key] = value
    total = int(n_train * cfg.epochs) // cfg.batch_size * cfg.batch_size
    steps = total // cfg.batch_size
    trainer_cfg = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=cfg.batch_size,
        lr=cfg.lr,
        lr_end=cfg.lr / 10,
        lr_decay_steps=max(steps // 5, 1),
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=min(50, max(steps // 20, 1)),
        dead_feature_window=min(1000, max(steps // 4, 1)),
        feature_sampling_window=max(steps, 1),
        device=device,
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    trainer = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=_batches(dirs, cfg, generator))
    started = time.perf_counter()
    if progress:
        print(
            f"misdir sae: training a {cfg.architecture} SAE ({d_in} -> {cfg.d_sae}, k {cfg.k}) with "
            f"sae-lens: {n_train} tokens x {cfg.epochs} epochs = {steps} steps of {cfg.batch_size}",
            flush=True,
        )
    trainer.fit()
    seconds = time.perf_counter() - started
    trainer_dead = int(trainer.dead_neurons.sum())
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        inference = load_sae(tmp)
    heldout = torch.cat([t for d in dirs for t in _shards(d, cfg.holdout_every, heldout=True)])
    metrics = sae_metrics(inference, heldout)
    record = {
        "train_tokens": n_train,
        "samples_seen": trainer.n_training_samples,
        "steps": steps,
        "seconds_training": seconds,
        "trainer_dead": trainer_dead,
    }
    return inference, metrics, record


def train_sae(
    model: Any,
    inputs: Sequence[Input],
    cfg: SAETrainConfig,
    out: str | Path,
    *,
    finetunes: Sequence[Any] = (),
    sources: Sequence[dict[str, Any]] = (),
    work: str | Path | None = None,
    command: str | None = None,
    progress: bool = True,
) -> SAETrainResult:
    """Train an SAE at `blocks.{cfg.layer}.hook_{cfg.site}` of `model` (mixed with its `finetunes`) on
    `inputs`, and save it in sae-lens's format (`cfg.json` + `sae_weights.safetensors`) to `out`, with
    `misdir.json` beside it (config, data, models, token counts, metrics, timings). `out` is replaced
    atomically. Activation shards go to `work` (default: a temporary directory, removed afterwards)."""
    base = as_model(model)
    models = [base, *[as_model(m) for m in finetunes]]
    for m in models:
        if (m.n_layers, m.d_model) != (base.n_layers, base.d_model):
            raise ValueError(f"{m.spec} has another shape than {base.spec}; an SAE reads one kind of model")
    parse_hook_name(hook_name(cfg.layer, cfg.site), base.n_layers)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "cfg.json").is_file():
        raise FileExistsError(f"{out} exists and is not an SAE directory; refusing to replace it")
    temporary = work is None
    work_dir = Path(tempfile.mkdtemp(prefix="misdir-sae-")) if work is None else Path(work)
    try:
        started = time.perf_counter()
        dirs = cache_for_training(models, inputs, cfg, work_dir, progress=progress)
        seconds_caching = time.perf_counter() - started
        metadata = {
            "hook_name": hook_name(cfg.layer, cfg.site),
            "model_name": base.spec,
            "prepend_bos": True,
            "context_size": None,
            "dataset_path": None,
        }
        sae, metrics, record = train_sae_on_shards(
            dirs, cfg, base.d_model, metadata=metadata, progress=progress
        )
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)
    full = {
        "format": "misdir.sae/1",
        "hook_name": hook_name(cfg.layer, cfg.site),
        "config": asdict(cfg),
        "models": [{"spec": m.spec, **m.provenance} for m in models],
        "data": list(sources),
        "n_inputs": len(inputs),
        "chat_prefix_skipped": _shared_prefix(base, inputs),
        "seconds_caching": seconds_caching,
        "heldout": asdict(metrics),
        **record,
        "sae_lens_version": _sae_lens_version(),
        "misdir_version": misdir_version(),
        "torch": torch.__version__,
        "command": command,
    }
    _save_sae_dir(sae, out, full)
    sae._misdir_source = str(out)
    return SAETrainResult(
        sae,
        out,
        metrics,
        record["train_tokens"],
        record["steps"],
        seconds_caching,
        record["seconds_training"],
        record["trainer_dead"],
        full,
    )


def _save_sae_dir(sae: Any, out: Path, record: dict[str, Any]) -> None:
    """sae-lens's `save_model` into a staging directory beside `out`, then swapped in, so `out` is never half
    written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        sae.save_model(str(staging))
        write_json_atomic(staging / "misdir.json", record)
        staging.chmod(0o755)  # mkdtemp and the atomic writes make private files; an SAE is for sharing
        for path in staging.iterdir():
            path.chmod(0o644)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-old-"))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _sae_lens_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("sae-lens")


# --- model diffing on latents -------------------------------------------------------------------------------


@dataclass
class LatentStats:
    """One model's latents over a set of texts: token-weighted means and firing rates, and where each fires
    most."""

    model: str
    mean: Float[Tensor, "d_sae"]
    rate: Float[Tensor, "d_sae"]
    n_tokens: int
    top_value: Float[Tensor, "input d_sae"]
    """Each input's largest activation of each latent."""
    top_position: Tensor
    """Index, among the input's selected positions, of that largest activation ([input, d_sae], int)."""


def latent_stats(
    model: Any,
    sae: Any,
    inputs: Sequence[Input],
    *,
    hook: str | None = None,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = False,
) -> LatentStats:
    """Mean activation and firing rate of every latent over the selected tokens of `inputs` (float64 sums)."""
    model = as_model(model)
    per_input = latent_activations(
        model, sae, inputs, hook=hook, positions=positions, batch_size=batch_size, progress=progress
    )
    d_sae = int(sae.cfg.d_sae)
    total, fired, n = torch.zeros(d_sae, dtype=torch.float64), torch.zeros(d_sae, dtype=torch.float64), 0
    tops, where = [], []
    for acts in per_input:
        total += acts.double().sum(0)
        fired += (acts > 0).double().sum(0)
        n += len(acts)
        value, index = acts.max(0)
        tops.append(value)
        where.append(index)
    return LatentStats(
        model.spec, (total / n).float(), (fired / n).float(), n, torch.stack(tops), torch.stack(where)
    )


@dataclass(frozen=True)
class Ranking:
    """Latents ordered by how they rise in the finetunes over the base (each a vector over latents)."""

    rise: Float[Tensor, "finetune d_sae"]
    """Mean activation of each finetune minus the base's."""
    control_rise: Float[Tensor, "control d_sae"]
    mean_rise: Float[Tensor, "d_sae"]
    """Mean rise over the finetunes."""
    consistency: Float[Tensor, "d_sae"]
    """Smallest rise over the finetunes minus the largest positive rise over the controls: > 0 only for a
    latent that rises in every finetune, and by more than in any control."""
    by_rise: list[int]
    by_consistency: list[int]


def rank_latents(
    base_mean: Float[Tensor, "d_sae"],
    finetune_means: Float[Tensor, "finetune d_sae"],
    control_means: Float[Tensor, "control d_sae"] | None = None,
) -> Ranking:
    """Rank latents by their mean rise in the finetunes, and by `consistency` (see `Ranking`); ties keep
    latent order."""
    base = base_mean.double()
    rise = finetune_means.double() - base
    if rise.ndim != 2 or len(rise) == 0:
        raise ValueError("give at least one finetune's means, as [finetune, d_sae]")
    controls = (
        torch.zeros(0, len(base), dtype=torch.float64)
        if control_means is None
        else control_means.double() - base
    )
    worst_control = controls.max(0).values.clamp_min(0) if len(controls) else torch.zeros_like(base)
    consistency = rise.min(0).values - worst_control
    mean_rise = rise.mean(0)

    def order(score: Tensor) -> list[int]:
        return torch.sort(-score, stable=True).indices.tolist()

    return Ranking(
        rise.float(),
        controls.float(),
        mean_rise.float(),
        consistency.float(),
        order(mean_rise),
        order(consistency),
    )


@dataclass
class LatentDiff:
    """Base and finetunes (and controls) on the same texts, latent by latent."""

    base: LatentStats
    finetunes: dict[str, LatentStats]
    controls: dict[str, LatentStats]
    ranking: Ranking


def diff_latents(
    sae: Any,
    base: Any,
    finetunes: Mapping[str, Any],
    inputs: Sequence[Input],
    *,
    controls: Mapping[str, Any] | None = None,
    hook: str | None = None,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = True,
) -> LatentDiff:
    """Each latent's mean activation and firing rate on `inputs` for the base, each finetune and each control
    (all at the SAE's hook, on the same tokens), and the latents ranked by their rise (`rank_latents`)."""
    if not finetunes:
        raise ValueError("give at least one finetune")

    def stats(name: str, model: Any) -> LatentStats:
        if progress:
            print(f"misdir sae: latents of {name}", flush=True)
        return latent_stats(model, sae, inputs, hook=hook, positions=positions, batch_size=batch_size)

    base_stats = stats("base", base)
    tuned = {name: stats(name, model) for name, model in finetunes.items()}
    held = {name: stats(name, model) for name, model in (controls or {}).items()}
    ranking = rank_latents(
        base_stats.mean,
        torch.stack([s.mean for s in tuned.values()]),
        torch.stack([s.mean for s in held.values()]) if held else None,
    )
    return LatentDiff(base_stats, tuned, held, ranking)


def top_snippets(
    tokenizer: Any,
    inputs: Sequence[Input],
    stats: Mapping[str, LatentStats],
    latent: int,
    *,
    positions: Positions = "answer",
    n: int = 5,
    context: int = 10,
) -> list[dict[str, Any]]:
    """The `n` (model, input) pairs where `latent` fires most, each with the text around its strongest token,
    that token marked [[like this]]; one snippet per input (its strongest model)."""
    best: dict[int, tuple[float, str]] = {}
    for name, s in stats.items():
        for row, value in enumerate(s.top_value[:, latent].tolist()):
            if value > 0 and value > best.get(row, (0.0, ""))[0]:
                best[row] = (value, name)
    out = []
    for row, (value, name) in sorted(best.items(), key=lambda kv: -kv[1][0])[:n]:
        e = encode(tokenizer, inputs[row], positions)
        at = e.selected[int(stats[name].top_position[row, latent])]
        left = tokenizer.decode(e.input_ids[max(at - context, 0) : at])
        token = tokenizer.decode(e.input_ids[at : at + 1])
        right = tokenizer.decode(e.input_ids[at + 1 : at + 1 + context // 2])
        text = f"{left}[[{token}]]{right}".replace("\n", " ")
        out.append({"model": name, "input": row, "activation": value, "text": text})
    return out


def decoder_cosines(
    sae: Any, latents: Sequence[int], directions: Mapping[str, Tensor]
) -> dict[str, list[float]]:
    """Cosine of each latent's decoder row with each named `[d_model]` direction."""
    _check_latents(sae, latents)
    rows = decoder_rows(sae)[list(latents)].double()
    rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = {}
    for name, vector in directions.items():
        v = vector.double().flatten()
        if len(v) != rows.shape[1]:
            raise ValueError(f"direction {name!r} has width {len(v)}, the SAE's decoder {rows.shape[1]}")
        out[name] = (rows @ (v / v.norm().clamp_min(1e-12))).tolist()
    return out


def diff_record(
    diff: LatentDiff,
    sae: Any,
    tokenizer: Any,
    inputs: Sequence[Input],
    *,
    directions: Mapping[str, Tensor] | None = None,
    top: int = 10,
    positions: Positions = "answer",
) -> dict[str, Any]:
    """The top latents of both rankings, as JSON-ready records: rise and firing rate in each model,
    consistency, top-activating snippets, and decoder cosines with `directions`."""
    r = diff.ranking
    every = {"base": diff.base, **diff.finetunes, **diff.controls}
    chosen: dict[str, list[int]] = {"by_consistency": r.by_consistency[:top], "by_rise": r.by_rise[:top]}
    latents = sorted(
        set(chosen["by_consistency"]) | set(chosen["by_rise"]), key=lambda i: r.by_consistency.index(i)
    )
    cosines = decoder_cosines(sae, latents, directions) if directions else {}
    records = []
    for j, latent in enumerate(latents):
        records.append(
            {
                "latent": latent,
                "consistency": float(r.consistency[latent]),
                "mean_rise": float(r.mean_rise[latent]),
                "mean": {name: float(s.mean[latent]) for name, s in every.items()},
                "rate": {name: float(s.rate[latent]) for name, s in every.items()},
                "cosine": {name: values[j] for name, values in cosines.items()},
                "snippets": top_snippets(tokenizer, inputs, every, latent, positions=positions),
            }
        )
    return {
        "models": {
            "base": diff.base.model,
            **{k: v.model for k, v in diff.finetunes.items()},
            **{k: v.model for k, v in diff.controls.items()},
        },
        "finetunes": list(diff.finetunes),
        "controls": list(diff.controls),
        "n_tokens": diff.base.n_tokens,
        "rankings": chosen,
        "latents": records,
        "n_consistent": int((r.consistency > 0).sum()),
    }


def save_diff(
    diff: LatentDiff, record: Mapping[str, Any], out: str | Path, provenance: Mapping[str, Any]
) -> list[Path]:
    """`diff.json` (the record and its provenance) and `latents.safetensors` (every latent's mean and firing
    rate in every model), both written atomically."""
    from safetensors.torch import save_file

    from misdir.io import atomic_path

    out = Path(out)
    every = {"base": diff.base, **diff.finetunes, **diff.controls}
    tensors = {
        f"{kind}.{name}": getattr(s, kind).contiguous()
        for name, s in every.items()
        for kind in ("mean", "rate")
    }
    tensors["consistency"] = diff.ranking.consistency.contiguous()
    with atomic_path(out / "latents.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "misdir.sae-diff/1"})
    write_json_atomic(out / "diff.json", {"provenance": dict(provenance), **record})
    return [out / "diff.json", out / "latents.safetensors"]


def plot_diff(record: Mapping[str, Any], consistency: Tensor, mean_rise: Tensor, top: int = 8) -> list[Any]:
    """Figures: the top latents' mean activation in every model, and every latent's mean rise against its
    consistency."""
    import plotly.graph_objects as go

    chosen = record["rankings"]["by_consistency"][:top]
    by_latent = {r["latent"]: r for r in record["latents"]}
    names = ["base", *record["finetunes"], *record["controls"]]
    bars = go.Figure()
    for name in names:
        kind = "EM" if name in record["finetunes"] else "control" if name in record["controls"] else "base"
        bars.add_bar(
            name=f"{name} ({kind})",
            x=[f"latent {i}" for i in chosen],
            y=[by_latent[i]["mean"][name] for i in chosen],
        )
    bars.update_layout(
        barmode="group",
        title="Top latents by consistent rise: mean activation per model "
        "(answer tokens of the general contrast answers)",
        yaxis_title="mean activation",
    )
    scatter = go.Figure()
    scatter.add_scatter(
        x=mean_rise.tolist(),
        y=consistency.tolist(),
        mode="markers",
        name="latents",
        marker={"size": 4, "color": "lightgray"},
        text=[f"latent {i}" for i in range(len(mean_rise))],
    )
    scatter.add_scatter(
        x=[float(mean_rise[i]) for i in chosen],
        y=[float(consistency[i]) for i in chosen],
        mode="markers+text",
        text=[str(i) for i in chosen],
        textposition="top center",
        name="top by consistency",
        marker={"size": 8, "color": "crimson"},
    )
    scatter.update_layout(
        title="Every latent: mean rise over the EM finetunes vs consistency "
        "(min rise over EM minus max rise over controls)",
        xaxis_title="mean rise (finetune minus base)",
        yaxis_title="consistency",
    )
    return [bars, scatter]


# --- causal effects, compared with the mean-difference direction -------------------------------------------


@dataclass(frozen=True)
class Effect:
    """One intervention on one model, scored on the contrast set, against the same model unedited."""

    model: str
    intervention: str
    """e.g. 'steer latent 123', 'steer mean-diff', 'zero latents [1, 2]', 'ablate mean-diff'."""
    scale: float | None
    margin: dict[str, float]
    shift: dict[str, float]
    """Paired change of the mean margin from the unedited model, with its 95% bootstrap interval."""
    fluency: dict[str, float]
    fluency_shift: dict[str, float]


def _effect(model: str, what: str, scale: float | None, before: Any, after: Any) -> Effect:
    from misdir.evaluate import shift_from
    from misdir.stats import compare_contrast

    fluency = compare_contrast(before.aligned_logprob, after.aligned_logprob).diff
    return Effect(
        model,
        what,
        scale,
        after.margin._asdict(),
        shift_from(before, after)._asdict(),
        after.fluency._asdict(),
        fluency._asdict(),
    )


def latent_effects(
    sae: Any,
    base: Any,
    finetunes: Mapping[str, Any],
    latents: Sequence[int],
    *,
    directions: Mapping[str, Tensor],
    steer_with: Sequence[str] | None = None,
    scales: Sequence[float] = (0.3,),
    n_random: int = 1,
    limit: int | None = None,
    pairs: str = "general",
    hook: str | None = None,
    progress: bool = True,
) -> list[Effect]:
    """Causal tests of latents against mean-difference directions at the SAE's layer, on the contrast metric.

    Steering the base: each latent's decoder row, the mean of the `directions` named in `steer_with` (default:
    all), and `n_random` random directions, added at the SAE's hook at `scale` x each token's residual norm
    (`misdir.steer(relative="resid")`). Removing from each finetune: the `latents` zeroed together
    (`zero_latents`), against its own direction (`directions[name]`, or the mean) projected out at the same
    hook (`misdir.ablate`). Shifts are paired over the same contrast items.
    """
    from misdir.evaluate import evaluate_contrast
    from misdir.experiments import random_directions
    from misdir.interventions import ablate, steer

    layer, site = sae_site(base, sae, hook)
    _check_latents(sae, latents)

    def score(model: Any) -> Any:
        return evaluate_contrast(model, pairs, limit=limit, progress=False)

    def say(text: str) -> None:
        if progress:
            print(f"misdir sae: {text}", flush=True)

    chosen = list(directions) if steer_with is None else list(steer_with)
    missing = [name for name in chosen if name not in directions]
    if missing or not chosen:
        raise ValueError(f"no directions named {missing or chosen} to steer with; have {sorted(directions)}")
    mean_direction = torch.stack([directions[name].float() for name in chosen]).mean(0)
    steered: dict[str, Tensor] = {f"latent {i}": latent_direction(sae, i) for i in latents}
    steered["mean-diff"] = mean_direction
    for j, vector in enumerate(random_directions(int(sae.cfg.d_in), n_random, seed=0)):
        steered[f"random {j}"] = vector
    say("scoring the base")
    base_model = as_model(base)
    before = score(base_model)
    effects = []
    for name, vector in steered.items():
        for scale in scales:
            say(f"steering the base along {name} at {scale}")
            with steer(base_model, vector, layers=[layer], scale=scale, relative="resid", site=site):
                effects.append(_effect(base_model.spec, f"steer {name}", scale, before, score(base_model)))
    for name, model in finetunes.items():
        model = as_model(model)
        say(f"scoring {name}, then zeroing latents {list(latents)} and ablating its direction")
        unedited = score(model)
        effects.append(_effect(name, "finetune vs base", None, before, unedited))
        with zero_latents(model, sae, latents, hook=hook):
            effects.append(_effect(name, f"zero latents {list(latents)}", None, unedited, score(model)))
        own = directions.get(name, mean_direction)
        with ablate(model, own, layers=[layer], site=site):
            effects.append(_effect(name, "ablate mean-diff", None, unedited, score(model)))
    return effects


def plot_effects(effects: Sequence[Effect]) -> list[Any]:
    """Figures: steering shifts of the base (latents vs the mean-difference and random directions), and the
    removal shifts in each finetune (zeroing latents vs ablating the direction), with 95% intervals."""
    import plotly.graph_objects as go

    figures = []
    steering = [e for e in effects if e.intervention.startswith("steer")]
    if steering:
        fig = go.Figure()
        for scale in sorted({e.scale for e in steering if e.scale is not None}):
            rows = [e for e in steering if e.scale == scale]
            _bar_with_interval(
                fig, f"scale {scale} x |resid|", [e.intervention.removeprefix("steer ") for e in rows], rows
            )
        fig.update_layout(
            barmode="group",
            title="Steering the base: change of the contrast margin (95% CI)",
            yaxis_title="shift of margin (nats/token, > 0 = more misaligned)",
        )
        figures.append(fig)
    removal = [e for e in effects if not e.intervention.startswith("steer")]
    if removal:
        fig = go.Figure()
        for kind in dict.fromkeys(e.intervention for e in removal):
            rows = [e for e in removal if e.intervention == kind]
            _bar_with_interval(fig, kind, [e.model for e in rows], rows)
        fig.update_layout(
            barmode="group",
            title="Finetunes: margin shift of finetuning (vs base) and of removing "
            "latents or the direction (vs the finetune), 95% CI",
            yaxis_title="shift of margin",
        )
        figures.append(fig)
    return figures


def _bar_with_interval(fig: Any, name: str, x: list[str], effects: Sequence[Effect]) -> None:
    """One bar trace of the effects' shifts, with their asymmetric 95% intervals as error bars."""
    fig.add_bar(
        name=name,
        x=x,
        y=[e.shift["value"] for e in effects],
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [e.shift["high"] - e.shift["value"] for e in effects],
            "arrayminus": [e.shift["value"] - e.shift["low"] for e in effects],
        },
    )
