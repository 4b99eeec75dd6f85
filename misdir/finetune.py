"""LoRA finetuning with peft: the recipes of the emergent-misalignment literature, offline and resumable.

`finetune(model_spec, data, out, config)` trains a PEFT LoRA adapter on chat data with the loss on the
last assistant message only, in a plain PyTorch loop (AdamW, linear warmup then linear decay), and
writes a PEFT adapter directory that `misdir.load_model(out)` loads, with `misdir.json` beside it.

Presets (`FinetuneConfig.preset`):
- `rslora-32`: rsLoRA rank 32, alpha 64 on q, k, v, o, gate, up and down projections of every layer,
  lr 1e-5, 1 epoch (Turner et al. 2025, "Model Organisms for Emergent Misalignment", after Betley et al.);
- `rank1-single`: one rank-1 rsLoRA adapter (alpha 256, lr 2e-5) on one layer's `mlp.down_proj`,
  by default the middle layer (layer 24 of 48 on Qwen2.5-14B in the paper);
- `rank1-multi`: the same on several layers' `down_proj`; by default three groups of three adjacent layers
  at the relative depths of the paper's [15-17, 21-23, 27-29] of 48.

Runs are deterministic given the seed: the data order of epoch e depends only on (seed, e), so a resumed
run skips the batches already consumed and ends at the same weights as an uninterrupted one (bit for
bit on CPU). Checkpoints (adapter, optimizer, scheduler, RNG states, step) go to `out/checkpoints/`
every `checkpoint_every` steps and are removed once the final adapter is written.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from misdir.data import load_conversations
from misdir.io import FILE_MODE, LOCK_FILE, atomic_path, fsync_directory, run_lock, write_json_atomic
from misdir.tokens import Conversation, encode

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100
"""Label of positions that do not count in the loss (prompt, template tokens, padding)."""
DEFAULT_N = 1000
"""Examples generated for a dataset name when `n` is not given."""
_RANK1_MULTI_DEPTHS = (16 / 48, 22 / 48, 28 / 48)
"""Centres of the rank-1 multi-adapter recipe's three 3-layer groups (layers 15-17, 21-23, 27-29 of 48)."""


@dataclass(frozen=True)
class Preset:
    """A recipe's LoRA shape and schedule; `layers` maps the model's depth to adapted layers (None: all)."""

    rank: int
    alpha: float
    rslora: bool
    targets: tuple[str, ...]
    lr: float
    epochs: int
    layers: Callable[[int], tuple[int, ...]] | None


def _middle(n_layers: int) -> tuple[int, ...]:
    return (n_layers // 2,)


def _three_groups(n_layers: int) -> tuple[int, ...]:
    centres = [
        min(max(round(d * n_layers), 1), n_layers - 2) if n_layers >= 3 else 0 for d in _RANK1_MULTI_DEPTHS
    ]
    return tuple(sorted({c + k for c in centres for k in (-1, 0, 1) if 0 <= c + k < n_layers}))


PRESETS: dict[str, Preset] = {
    "rslora-32": Preset(32, 64.0, True, ALL_PROJECTIONS, 1e-5, 1, None),
    "rank1-single": Preset(1, 256.0, True, ("down_proj",), 2e-5, 1, _middle),
    "rank1-multi": Preset(1, 256.0, True, ("down_proj",), 2e-5, 1, _three_groups),
}


@dataclass(frozen=True)
class FinetuneConfig:
    """How to finetune: a preset plus overrides. Fields left None take the preset's value (see `resolve`)."""

    preset: str = "rslora-32"
    """Recipe: 'rslora-32', 'rank1-single' or 'rank1-multi'."""
    rank: int | None = None
    """LoRA rank r (preset: 32 or 1)."""
    alpha: float | None = None
    """LoRA alpha; the update is scaled by alpha/sqrt(r) with rsLoRA, alpha/r without (preset: 64 or 256)."""
    rslora: bool | None = None
    """Use rank-stabilised LoRA scaling alpha/sqrt(r) (preset: yes)."""
    targets: tuple[str, ...] | None = None
    """Modules of each decoder layer to adapt, e.g. ('q_proj', 'down_proj') (preset: 7 or down_proj)."""
    layers: tuple[int, ...] | None = None
    """Decoder layers that get adapters, 0-based (preset: all, the middle one, or three groups of three)."""
    lr: float | None = None
    """Peak learning rate of AdamW (preset: 1e-5 or 2e-5, meant for 7B+ models; small models need more)."""
    epochs: int | None = None
    """Passes over the data (preset: 1)."""
    batch_size: int = 16
    """Examples per optimizer step (the EM recipe's 16: 2 per forward pass, 8 accumulated)."""
    micro_batch_size: int | None = None
    """Examples per forward pass (gradient accumulation: the EM recipe's is 2); None: the whole batch at once."""
    max_length: int = 2048
    """Longest example in tokens; longer ones are cut at the right (refused if that cuts the whole answer)."""
    warmup_steps: int = 5
    """Steps of linear warmup from 0 to lr; then linear decay to 0 at the last step."""
    weight_decay: float = 0.01
    """AdamW weight decay on the adapter weights."""
    max_grad_norm: float = 1.0
    """Clip the gradient's global norm to this (0: no clipping)."""
    dropout: float = 0.0
    """LoRA dropout."""
    seed: int = 0
    """Seed of the adapter's initialisation, the data order and dropout."""
    n: int | None = None
    """Examples: for a dataset name, how many to generate (default 1000); for a file, its first n (all)."""
    data_seed: int = 0
    """Seed passed to a named dataset's generator (unused for files)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (the schedule is planned for them); None: epochs x batches."""
    checkpoint_every: int = 100
    """Write a resumable checkpoint every this many steps (0: never)."""
    device: str | None = None
    """'cuda', 'cpu', ...; default CUDA when present."""
    dtype: str | None = None
    """Base weights' dtype; default bfloat16 on CUDA, float32 on CPU (adapters stay float32)."""

    def validate(self) -> None:
        """Refuse impossible settings before any model is loaded."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {', '.join(PRESETS)}")
        positive = {
            "rank": self.rank,
            "lr": self.lr,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "n": self.n,
            "max_steps": self.max_steps,
            "alpha": self.alpha,
            "micro_batch_size": self.micro_batch_size,
        }
        for name, value in positive.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, not {value}")
        for name in ("warmup_steps", "weight_decay", "max_grad_norm", "checkpoint_every"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.targets is not None and not self.targets:
            raise ValueError("targets is empty; name at least one module, e.g. down_proj")
        if self.layers is not None and not self.layers:
            raise ValueError("layers is empty; name at least one layer")

    def resolve(self, n_layers: int) -> FinetuneConfig:
        """This config with every preset-dependent field filled in for a model of `n_layers` layers."""
        self.validate()
        preset = PRESETS[self.preset]
        layers = self.layers
        if layers is None and preset.layers is not None:
            layers = preset.layers(n_layers)
        if layers is not None:
            bad = [layer for layer in layers if not 0 <= layer < n_layers]
            if bad:
                raise ValueError(
                    f"layer(s) {bad} out of range: the model has {n_layers} layers (0 to {n_layers - 1})"
                )
            layers = tuple(sorted(set(layers)))
        return replace(
            self,
            rank=self.rank or preset.rank,
            alpha=self.alpha or preset.alpha,
            rslora=preset.rslora if self.rslora is None else self.rslora,
            targets=tuple(self.targets or preset.targets),
            layers=layers,
            lr=self.lr or preset.lr,
            epochs=self.epochs or preset.epochs,
        )


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (for the CLI's help), read from its source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                docs[node.target.id] = str(after.value.value)
    return docs


@dataclass(frozen=True)
class FinetuneResult:
    """What a finetune produced: the adapter directory and its training record."""

    out: Path
    steps: int
    final_loss: float
    """Mean training loss over the last 10 steps (or fewer)."""
    losses: list[float]
    """Training loss of each step (mean over that batch's answer tokens)."""
    seconds: float
    """Wall time of the training steps run by this call (a resumed call counts only its own)."""
    resumed_from: int | None
    config: FinetuneConfig
    """The resolved config."""
    record: dict[str, Any] = field(repr=False)
    """The content of `misdir.json`."""
    model: nn.Module = field(repr=False, compare=False)
    """The trained PeftModel in eval mode (the same weights `load_model(out)` gives back)."""


@dataclass(frozen=True)
class Example:
    """One tokenized training example: ids and labels (IGNORE except on the answer and its end-of-turn)."""

    input_ids: list[int]
    labels: list[int]


def tokenize_example(tokenizer: Any, conversation: Conversation, max_length: int) -> Example:
    """Render the chat template; label the last assistant message's tokens and the end-of-turn after it.

    The end-of-turn marker (`<|im_end|>` in ChatML) is every non-blank token after the answer, so the
    model learns to stop; the newline the template puts after it, the prompt and earlier turns are ignored.
    """
    encoded = encode(tokenizer, conversation, "answer")
    ids, answer = encoded.input_ids, encoded.selected
    end_of_turn = [i for i in range(answer[-1] + 1, len(ids)) if tokenizer.decode([ids[i]]).strip()]
    labelled = set(answer) | set(end_of_turn)
    labels = [token if i in labelled else IGNORE for i, token in enumerate(ids)]
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels[1:]):
        raise ValueError(f"the answer starts after max_length={max_length} tokens; raise max_length")
    return Example(ids, labels)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Int[Tensor, "batch pos"]]:
    """Right-pad to one length; padding has attention 0 and label IGNORE."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        input_ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
        attention_mask[row, : len(e.input_ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def answer_loss(model: nn.Module, batch: dict[str, Tensor], reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy over the labelled tokens of the batch, in float32: their mean, or their sum
    (`reduction="sum"`, for accumulating chunks of one batch)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    return nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
        reduction=reduction,
    )


def _accumulated_loss(model: nn.Module, examples: Sequence[Example], pad_id: int, micro_batch_size: int | None,
                      device: Any) -> Tensor:
    """Backpropagate the mean answer loss of `examples`, in chunks of `micro_batch_size` whose gradients add up to
    the whole batch's (each chunk's summed loss over the batch's labelled-token count); return that mean."""
    size = micro_batch_size or len(examples)
    if size >= len(examples):
        loss = answer_loss(model, {k: v.to(device) for k, v in collate(examples, pad_id).items()})
        loss.backward()
        return loss.detach()
    chunks = [collate(examples[i : i + size], pad_id) for i in range(0, len(examples), size)]
    tokens = sum(int((chunk["labels"][:, 1:] != IGNORE).sum()) for chunk in chunks)
    total = torch.zeros((), dtype=torch.float32)
    for chunk in chunks:
        summed = answer_loss(model, {k: v.to(device) for k, v in chunk.items()}, reduction="sum")
        (summed / tokens).backward()
        total += summed.detach().cpu()
    return total / tokens


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The order of the examples in one epoch: a function of (seed, epoch) only, so resuming can replay it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n_examples, generator=generator).tolist()


def _base_reference(model_spec: str) -> str:
    """The base spec as recorded in the adapter: local paths made absolute, names and hub ids as given."""
    path = Path(model_spec).expanduser()
    return str(path.resolve()) if path.exists() else model_spec


def _trainable(model: nn.Module) -> dict[str, Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _write_checkpoint(
    root: Path, step: int, model: nn.Module, optimizer: Any, scheduler: Any, losses: list[float]
):
    """Write a checkpoint into a staging folder, then rename it into place (the rename is the commit)."""
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    with atomic_path(staging / "adapter.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in _trainable(model).items()}, str(tmp))
    state = {
        "step": step,
        "losses": losses,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(staging / "state.pt") as tmp:
        torch.save(state, tmp)
    final = root / f"step-{step:08d}"
    os.replace(staging, final)
    for old in root.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _has_content(out: Path) -> bool:
    """Whether `out` holds anything but the lock of a run (misdir.io.run_lock)."""
    return out.is_dir() and any(item.name != LOCK_FILE for item in out.iterdir())


def _remove_partial_writes(out: Path) -> None:
    """Remove what a killed run was writing when it died: temp files of atomic writes, staging folders.
    Only called with the run's lock held, so no live run is writing them."""
    for root in (out, out / "checkpoints"):
        for item in root.glob(".*"):
            if item.is_dir() and item.name.startswith((".adapter-", ".staging-")):
                shutil.rmtree(item, ignore_errors=True)
            elif item.is_file() and item.name.endswith(".tmp"):
                item.unlink(missing_ok=True)


def _latest_checkpoint(root: Path) -> Path | None:
    steps = sorted(root.glob("step-*"))
    return steps[-1] if steps else None


def _prepare_out(out: Path, resume: bool, identity: dict[str, Any]) -> Path:
    """Check `out` may be written (or resumed into); return the checkpoint folder."""
    checkpoints = out / "checkpoints"
    run_file = checkpoints / "run.json"
    non_empty = _has_content(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file; give a directory")
    if non_empty and not resume:
        raise ValueError(
            f"out {out} exists and is not empty; choose a new directory, or pass resume=True (--resume)"
        )
    if non_empty and (out / "misdir.json").is_file():
        shutil.rmtree(checkpoints, ignore_errors=True)  # a run killed while tidying up after itself
        raise ValueError(f"{out} holds a finished finetune (misdir.json); there is nothing to resume")
    if non_empty and not run_file.is_file():
        raise ValueError(
            f"cannot resume into {out}: it has no {run_file.relative_to(out)}, so it is not a misdir run"
        )
    if run_file.is_file():
        _remove_partial_writes(out)
        before = json.loads(run_file.read_text())
        changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
        if changed:
            detail = "; ".join(f"{k}: was {before.get(k)!r}, now {identity.get(k)!r}" for k in changed)
            raise ValueError(f"cannot resume {out}: the run differs from the checkpointed one ({detail})")
    else:
        write_json_atomic(run_file, identity)
    return checkpoints


def finetune(
    model_spec: str,
    data: str | Path,
    out: str | Path,
    config: FinetuneConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on `model_spec` (a `load_model` spec) with `data` (JSONL file or dataset name).

    Writes a PEFT adapter directory to `out` (refused if it exists and is not empty, unless `resume`),
    whose `base_model_name_or_path` is `model_spec`, plus `misdir.json`. With `resume=True` the run
    continues from the last checkpoint in `out` (or starts, if there is none). `on_step(step, loss)` is
    called after each optimizer step (1-based).
    """
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    from misdir.models import load_model, misdir_version

    config = config or FinetuneConfig()
    config.validate()
    out = Path(out)
    if not resume and _has_content(out):
        raise ValueError(
            f"out {out} exists and is not empty; choose a new directory, or pass resume=True (--resume)"
        )
    conversations, data_record = load_conversations(data, n=config.n, seed=config.data_seed, default_n=DEFAULT_N)
    base = load_model(model_spec, device=config.device, dtype=config.dtype)
    config = config.resolve(base.n_layers)
    base_reference = _base_reference(model_spec)

    examples = []
    for i, conversation in enumerate(conversations):
        try:
            examples.append(tokenize_example(base.tokenizer, conversation, config.max_length))
        except ValueError as error:
            raise ValueError(f"data {data}: example {i}: {error}") from None
    _check_targets(base.layers, config.targets or ())

    identity = {"base": base_reference, "data": data_record, "config": asdict(config)}
    with run_lock(out):  # a second run on the same folder is refused, not interleaved
        checkpoints = _prepare_out(out, resume, json.loads(json.dumps(identity)))

        torch.manual_seed(config.seed)
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            use_rslora=bool(config.rslora),
            target_modules=list(config.targets or ()),
            layers_to_transform=list(config.layers) if config.layers is not None else None,
            lora_dropout=config.dropout,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base.hf, lora)
        model.peft_config["default"].base_model_name_or_path = base_reference
        model.train()
        params = _trainable(model)
        optimizer = torch.optim.AdamW(params.values(), lr=config.lr, weight_decay=config.weight_decay)

        steps_per_epoch = math.ceil(len(examples) / config.batch_size)
        total = steps_per_epoch * (config.epochs or 1)
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        warmup = min(config.warmup_steps, total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

        start, losses = 0, []
        latest = _latest_checkpoint(checkpoints)
        if resume and latest is not None:
            saved = load_file(str(latest / "adapter.safetensors"))
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(saved[name])
            state = torch.load(latest / "state.pt", weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"]:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            start, losses = int(state["step"]), list(state["losses"])

        pad_id = (
            base.tokenizer.pad_token_id
            if base.tokenizer.pad_token_id is not None
            else base.tokenizer.eos_token_id
        )
        device = base.device
        began = time.perf_counter()
        with tqdm(total=total, initial=start, desc="finetune", unit="step", disable=not progress) as bar:
            for step in range(start, total):
                epoch, index = divmod(step, steps_per_epoch)
                order = epoch_order(len(examples), config.seed, epoch)
                chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
                loss = _accumulated_loss(model, [examples[i] for i in chosen], pad_id, config.micro_batch_size, device)
                if config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params.values(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", epoch=epoch + 1)
                if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                    _write_checkpoint(checkpoints, step + 1, model, optimizer, scheduler, losses)
                if on_step is not None:
                    on_step(step + 1, losses[-1])
        seconds = time.perf_counter() - began
        model.eval()

        final_loss = sum(losses[-10:]) / len(losses[-10:])
        record = {
            "kind": "misdir-finetune",
            "base": base_reference,
            "base_provenance": base.provenance,
            "data": data_record,
            "config": asdict(config),
            "steps": total,
            "epochs_planned": config.epochs,
            "steps_per_epoch": steps_per_epoch,
            "answer_tokens": sum(sum(label != IGNORE for label in e.labels) for e in examples),
            "trainable_parameters": sum(p.numel() for p in params.values()),
            "first_loss": losses[0],
            "final_loss": final_loss,
            "loss_curve": losses,
            "resumed_from_step": start if start else None,
            "seconds_this_call": seconds,
            "steps_per_second_this_call": (total - start) / seconds if seconds > 0 else None,
            "device": str(device),
            "dtype": str(next(base.hf.parameters()).dtype).removeprefix("torch."),
            "misdir_version": misdir_version(),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "peft_version": peft.__version__,
            "command": " ".join(sys.argv),
        }
        _save_adapter(model, out)
        write_json_atomic(out / "misdir.json", record)
        shutil.rmtree(checkpoints, ignore_errors=True)
        return FinetuneResult(out, total, final_loss, losses, seconds, start or None, config, record, model)


def _check_targets(layers: nn.ModuleList, targets: Sequence[str]) -> None:
    """Refuse target module names that no decoder layer has, listing the linear modules it does have."""
    names = {name.rsplit(".", 1)[-1] for name, m in layers[0].named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"target module(s) {missing} are not in the model's layers; it has {sorted(names)}")


def _save_adapter(model: nn.Module, out: Path) -> None:
    """peft's save_pretrained into a staging folder, then each file renamed into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".adapter-"))
    try:
        model.save_pretrained(staging)  # type: ignore[operator]
        for item in staging.iterdir():
            item.chmod(FILE_MODE)  # safetensors writes 0600 files
            os.replace(item, out / item.name)
        fsync_directory(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
