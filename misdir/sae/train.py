"""Training an SAE with sae-lens's `SAETrainer` on activations misdir caches from a base and its finetunes:
the texts (`training_inputs`, `python_docs`), the activation shards and their shuffled batches, the held-out
metrics (`sae_metrics`), and saving in sae-lens's format with misdir's provenance beside it (`train_sae`)."""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from misdir.cache import cache_activations
from misdir.hooks import hook_name, parse_hook_name
from misdir.io import write_json_atomic
from misdir.models import ModelLike, as_model
from misdir.provenance import command_line, portable_model, software
from misdir.sae.load import load_sae
from misdir.tokens import Input, encode

Architecture = Literal["batchtopk", "topk"]


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
    sources: Sequence[str], *, n: int = 100, seed: int = 1, tokenizer: Any = None
) -> tuple[list[Input], list[dict[str, Any]]]:
    """Texts to train an SAE on, from named sources, each with a record of where it came from: a misdir
    dataset name (its first `n` held-out examples), `contrast:NAME[:N]` (both answers of each of the first N,
    default all, pairs of a contrast set), `python-docs[:N]` (`N`, default `n`, passages of standard-library
    docstrings), a chat JSONL file (first `n`), or a streamed Hugging Face dataset,
    `hf:PATH[,column=C][,split=S][,name=N][,tokens=T|words=W|texts=N]` (`misdir.corpus.stream_source`; a
    budget in tokens counts `tokenizer`'s; default the first `n` texts)."""
    from misdir.corpus import stream_source
    from misdir.data import DATASETS, Split, load_conversations
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
        elif source.startswith("hf:"):
            texts, record = stream_source(source, texts=n, tokenizer=tokenizer)
            items = list(texts)
        else:
            split: Split = "heldout" if source in DATASETS else "train"
            conversations, record = load_conversations(source, n=n, seed=seed, split=split)
            items = list(conversations)
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


def _shared_prefix(model: ModelLike, inputs: Sequence[Input]) -> int:
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
def sae_metrics(sae: Any, activations: Float[Tensor, "token d_model"], *, batch_size: int = 4096) -> SAEMetrics:
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
        sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(**options))
    elif cfg.architecture == "topk":
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(**options))
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
    model: ModelLike,
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
        sae, metrics, record = train_sae_on_shards(dirs, cfg, base.d_model, metadata=metadata, progress=progress)
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)
    full = {
        "format": "misdir.sae/1",
        "hook_name": hook_name(cfg.layer, cfg.site),
        "config": asdict(cfg),
        "models": [{"spec": m.spec, **portable_model(m.provenance)} for m in models],
        "data": list(sources),
        "n_inputs": len(inputs),
        "chat_prefix_skipped": _shared_prefix(base, inputs),
        "seconds_caching": seconds_caching,
        "heldout": asdict(metrics),
        **record,
        "sae_lens_version": _sae_lens_version(),
        **software(),
        "command": command or command_line(),
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
