"""The training loop: a PEFT LoRA adapter on a loaded base, AdamW with linear warmup then linear decay, in a
plain PyTorch loop that checkpoints and resumes bit for bit (the data order of epoch e depends only on
(seed, e), so a resumed run skips the batches already consumed)."""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from misdir.data import load_conversations
from misdir.finetune.checkpoints import (
    Training,
    differences,
    has_content,
    latest_checkpoint,
    prepare_out,
    restore_checkpoint,
    tidy_finished,
    trainable,
    write_checkpoint,
)
from misdir.finetune.config import DEFAULT_N, FinetuneConfig, default_config
from misdir.finetune.data import IGNORE, Example, accumulated_loss, epoch_order, tokenize_example
from misdir.finetune.edits import Edit, check_edits, model_card_section, training_edits
from misdir.finetune.save import base_reference, finetune_record, save_adapter
from misdir.io import run_lock, write_json_atomic
from misdir.models import Model, ModelShape
from misdir.monitor import Monitor, Watch, plot_monitor
from misdir.plots import optional_figure


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
    total_seconds: float | None = field(default=None, kw_only=True)
    """Wall time of all the training steps of the run, over every call (None: a checkpoint of an older misdir
    did not record its part)."""
    resumed_from: int | None
    config: FinetuneConfig
    """The resolved config."""
    record: dict[str, Any] = field(repr=False)
    """The content of `misdir.json`."""
    model: nn.Module | None = field(repr=False, compare=False)
    """The trained PeftModel in eval mode (the same weights `load_model(out)` gives back); None when the run
    had finished before this call (`already_finished`): load it with `misdir.load_model(out)`."""
    already_finished: bool = False
    """`resume=True` found the run finished (misdir.json written): nothing was trained or rewritten."""


def finetune(
    model_spec: str,
    data: str | Path,
    out: str | Path,
    config: FinetuneConfig | None = None,
    *,
    edits: Sequence[Edit] = (),
    watch: Watch | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on `model_spec` (a `load_model` spec) with `data` (JSONL file or dataset name).

    Writes a PEFT adapter directory to `out` (refused if it exists and is not empty, unless `resume`),
    whose `base_model_name_or_path` is `model_spec`, plus `misdir.json`. `config` None takes
    `default_config(model_spec)` (the organisms' recipe for the embedded model, else rslora-32). With
    `resume=True` the run continues from the last checkpoint in `out` (or starts, if there is none); on a
    finished run (misdir.json written) it returns that run's result without training (`already_finished`).
    `edits` (`misdir.finetune.Edit`: ablations, steerings) are open during each training step only, never
    in the saved adapter; they are checked against the model before it loads, recorded in misdir.json and
    the model card, and part of the run's identity (a resume with other edits is refused). `watch`
    (`misdir.monitor.Watch`) records, with the edits closed, the contrast margin (and a direction's projection,
    given one) at the start, at every checkpoint and at the end, in `out/monitor.jsonl`, drawn in
    `out/monitor.html`. A `model_spec` that is an adapter is merged into its base and trained on top of.
    `on_step(step, loss)` is called after each optimizer step (1-based).
    """
    from misdir.models import model_shape

    config = config or default_config(model_spec)
    config.validate()
    out, edits = Path(out), tuple(edits)
    if not resume and has_content(out):
        raise ValueError(f"out {out} exists and is not empty; choose a new directory, or pass resume=True (--resume)")
    reference = base_reference(model_spec)
    finished = resume and (out / "misdir.json").is_file()
    shape = model_shape(model_spec) if edits or watch or finished else None  # None: a hub model not cached
    if shape is not None:
        check_inputs(edits, watch, shape)
    if finished:
        return _finished(out, shape, reference, data, config, edits, watch)
    base, config, examples, data_record = _prepare(model_spec, data, config)
    check_inputs(edits, watch, ModelShape(base.n_layers, base.d_model))
    identity: dict[str, Any] = {"base": reference, "data": data_record, "config": asdict(config)}
    if edits:  # only then, so that runs checkpointed before edits existed still resume
        identity["edits"] = [edit.identity() for edit in edits]
    if watch:
        identity["watch"] = watch.identity(base.n_layers)
    with run_lock(out):  # a second run on the same folder is refused, not interleaved
        checkpoints = prepare_out(out, resume, json.loads(json.dumps(identity)))
        training = _start(base, config, reference, len(examples))
        latest = latest_checkpoint(checkpoints) if resume else None
        start, losses, earlier = (0, [], 0.0) if latest is None else restore_checkpoint(latest, training)
        monitor = Monitor(base, training.model, watch, out) if watch else None
        began = time.perf_counter()

        def elapsed() -> float:  # the run's training time so far, over every call (a checkpoint keeps it)
            return (earlier or 0.0) + time.perf_counter() - began

        _train(training, base, examples, config, edits, monitor, start, losses, checkpoints, progress, on_step, elapsed)
        seconds = time.perf_counter() - began
        total_seconds = None if earlier is None else earlier + seconds
        training.model.eval()
        record = finetune_record(
            base,
            reference,
            data_record,
            config,
            losses,
            start,
            (seconds, total_seconds),
            edits,
            _watch_record(watch, base.n_layers),
            steps_per_epoch=training.steps_per_epoch,
            answer_tokens=sum(sum(label != IGNORE for label in e.labels) for e in examples),
            trainable_parameters=sum(p.numel() for p in training.params.values()),
        )
        save_adapter(training.model, out, model_card_section(edits) if edits else "", record)
        if monitor is not None:
            title = f"finetune of {reference} on {data}"
            optional_figure(plot_monitor, monitor.records(), out / "monitor", title=title)
        write_json_atomic(out / "misdir.json", record)
        shutil.rmtree(checkpoints, ignore_errors=True)
        return FinetuneResult(
            out,
            training.total,
            record["final_loss"],
            losses,
            seconds,
            start or None,
            config,
            record,
            training.model,
            total_seconds=total_seconds,
        )


def _finished(
    out: Path,
    shape: ModelShape | None,
    reference: str,
    data: str | Path,
    config: FinetuneConfig,
    edits: Sequence[Edit],
    watch: Watch | None,
) -> FinetuneResult:
    """The result of the finished run in `out`, read from its misdir.json, if it was made with these settings
    (refused otherwise, as resuming a checkpointed run with other settings is); leftovers of its tidying up
    are removed, nothing else is written. `shape` None (a hub model not cached): its config goes unchecked."""
    record = json.loads((out / "misdir.json").read_text())
    _, data_record = load_conversations(data, n=config.n, seed=config.data_seed, default_n=DEFAULT_N)
    now: dict[str, Any] = {"base": reference, "data": data_record, "edits": [e.identity() for e in edits]}
    if shape is not None:
        now["config"] = asdict(config.resolve(shape.n_layers))
        now["watch"] = _watch_record(watch, shape.n_layers)
    before = {**{k: record.get(k) for k in now}, "edits": record.get("edits", [])}
    changed = differences(before, json.loads(json.dumps(now)))
    if changed:
        raise ValueError(f"cannot resume {out}: it holds a finished finetune of other settings ({changed})")
    tidy_finished(out)
    return FinetuneResult(
        out,
        record["steps"],
        record["final_loss"],
        record["loss_curve"],
        0.0,
        None,
        FinetuneConfig.from_dict(record["config"]),
        record,
        None,
        already_finished=True,
        total_seconds=record.get("seconds_total"),
    )


def _prepare(
    model_spec: str, data: str | Path, config: FinetuneConfig
) -> tuple[Model, FinetuneConfig, list[Example], dict[str, Any]]:
    """Read the data, load the base, resolve the config for its depth and tokenize every example. A base that is
    itself an adapter (an organism trained on further) is merged into its weights: the new adapter trains on top
    of it, as `load_model` loads the result."""
    from misdir.models import load_model

    conversations, data_record = load_conversations(data, n=config.n, seed=config.data_seed, default_n=DEFAULT_N)
    base = load_model(model_spec, device=config.device, dtype=config.dtype, merge=True)
    config = config.resolve(base.n_layers)
    examples = []
    for i, conversation in enumerate(conversations):
        try:
            examples.append(tokenize_example(base.tokenizer, conversation, config.max_length))
        except ValueError as error:
            raise ValueError(f"data {data}: example {i}: {error}") from None
    _check_targets(base.layers, config.targets or ())
    return base, config, examples, data_record


def _start(base: Model, config: FinetuneConfig, reference: str, n_examples: int) -> Training:
    """Wrap the base in a fresh LoRA adapter (initialised from the seed) with its optimizer and schedule."""
    from peft import LoraConfig, get_peft_model

    assert config.rank is not None and config.alpha is not None and config.lr is not None, "a resolved config"
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # peft annotates an int; it divides any number
        use_rslora=bool(config.rslora),
        target_modules=list(config.targets or ()),
        layers_to_transform=list(config.layers) if config.layers is not None else None,
        lora_dropout=config.dropout,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft asks transformers 5 a deprecated question (is_gradient_checkpointing)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(base.hf, lora)
    model.peft_config["default"].base_model_name_or_path = reference
    model.train()
    params = trainable(model)
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(n_examples / config.batch_size)
    total = steps_per_epoch * (config.epochs or 1)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_decay(config.warmup_steps, total))
    return Training(model, params, optimizer, scheduler, steps_per_epoch, total)


def warmup_then_decay(warmup_steps: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor of each step: linear warmup from 0 over `warmup_steps`, then linear decay to
    0 at step `total`."""
    warmup = min(warmup_steps, total)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return schedule


def _train(
    training: Training,
    base: Model,
    examples: Sequence[Example],
    config: FinetuneConfig,
    edits: Sequence[Edit],
    monitor: Monitor | None,
    start: int,
    losses: list[float],
    checkpoints: Path,
    progress: bool,
    on_step: Callable[[int, float], None] | None,
    elapsed: Callable[[], float],
) -> None:
    """Run the optimizer steps `start` to `training.total`, appending each step's loss to `losses`; the
    monitor records the start, each checkpoint and the end; a checkpoint keeps `elapsed()`, the run's time."""
    from tqdm.auto import tqdm

    tokenizer = base.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device, total = base.device, training.total
    if monitor is not None:
        monitor.resume_at(start)
    with tqdm(total=total, initial=start, desc="finetune", unit="step", disable=not progress) as bar:
        for step in range(start, total):
            epoch, index = divmod(step, training.steps_per_epoch)
            order = epoch_order(len(examples), config.seed, epoch)
            chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
            batch = [examples[i] for i in chosen]
            loss = accumulated_loss(
                training.model,
                batch,
                pad_id,
                config.micro_batch_size,
                device,
                around=lambda labels: training_edits(base, edits, labels),
            )
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(training.params.values(), config.max_grad_norm)
            training.optimizer.step()
            training.scheduler.step()
            training.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", epoch=epoch + 1)
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
                write_checkpoint(checkpoints, step + 1, training, losses, elapsed())
                if monitor is not None:
                    monitor.record(step + 1)
            if on_step is not None:
                on_step(step + 1, losses[-1])
    if monitor is not None:
        monitor.record(total)


def _watch_record(watch: Watch | None, n_layers: int) -> dict[str, Any] | None:
    """misdir.json's `watch`: what it measures and the file its directions came from."""
    return None if watch is None else {**watch.identity(n_layers), "file": watch.source}


def check_inputs(edits: Sequence[Edit], watch: Watch | None, shape: ModelShape) -> None:
    """Refuse edits or a watched direction that do not fit the model (before it loads: from its config)."""
    check_edits(edits, shape.n_layers, shape.d_model)
    if watch is not None:
        watch.check(shape.n_layers, shape.d_model)


def _check_targets(layers: nn.ModuleList, targets: Sequence[str]) -> None:
    """Refuse target module names that no decoder layer has, listing the linear modules it does have."""
    names = {name.rsplit(".", 1)[-1] for name, m in layers[0].named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(f"target module(s) {missing} are not in the model's layers; it has {sorted(names)}")
