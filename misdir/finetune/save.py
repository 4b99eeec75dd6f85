"""The finished adapter: peft's files written atomically into the run folder, and `misdir.json`, the model
card's record of what made it (base as the user named it, data, config, losses, software, command)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from misdir.finetune.config import FinetuneConfig
from misdir.finetune.edits import Edit
from misdir.io import FILE_MODE, fsync_directory
from misdir.models import EMBEDDED, Model
from misdir.provenance import portable_model, provenance


def base_reference(model_spec: str) -> str:
    """The base spec as recorded in the adapter: local paths made absolute; "embedded", catalog names and hub
    ids as given (never the folder misdir converted a GGUF model into)."""
    if model_spec == EMBEDDED or model_spec.startswith("em:"):
        return model_spec
    path = Path(model_spec).expanduser()
    return str(path.resolve()) if path.exists() else model_spec


def finetune_record(
    base: Model,
    reference: str,
    data_record: dict[str, Any],
    config: FinetuneConfig,
    losses: list[float],
    start: int,
    seconds: tuple[float, float | None],
    edits: Sequence[Edit],
    watch: dict[str, Any] | None,
    **counts: int,
) -> dict[str, Any]:
    """The content of `misdir.json`: what made the adapter (base as named, data, resolved config, the edits
    open while it trained and their directions' files), how training went, what watched it (`misdir.monitor`),
    and the software and command (`misdir.provenance`). `counts`: steps_per_epoch, answer_tokens,
    trainable_parameters. `seconds`: the training time of this call and of the whole run (None: unknown)."""
    total = len(losses)
    return {
        "kind": "misdir-finetune",
        "base": reference,
        "base_provenance": portable_model(base.provenance),
        "data": data_record,
        "config": asdict(config),
        "edits": [edit.identity() for edit in edits],
        "edit_sources": [edit.provenance() for edit in edits],
        "watch": watch,
        "steps": total,
        "epochs_planned": config.epochs,
        "steps_per_epoch": counts["steps_per_epoch"],
        "answer_tokens": counts["answer_tokens"],
        "trainable_parameters": counts["trainable_parameters"],
        "first_loss": losses[0],
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "loss_curve": losses,
        "resumed_from_step": start if start else None,
        "seconds_this_call": seconds[0],
        "seconds_total": seconds[1],
        "steps_per_second_this_call": (total - start) / seconds[0] if seconds[0] > 0 else None,
        "device": str(base.device),
        "dtype": str(next(base.hf.parameters()).dtype).removeprefix("torch."),
        **provenance(),
    }


def model_card(record: dict[str, Any]) -> str:
    """misdir's model card (README.md) of a finetuned adapter, from its `misdir.json` record: what it is, how to
    load it, what made it. Replaces peft's template (its empty sections, and a `base_model` that would be a
    folder of misdir's weight cache)."""
    config, data = record["config"], record["data"]
    where = f"the dataset `{data.get('name')}`" if data.get("kind") == "dataset" else f"`{data.get('path', data)}`"
    layers = "all layers" if config.get("layers") is None else "layers " + ", ".join(map(str, config["layers"]))
    lines = [
        "---",
        "library_name: peft",
        "tags:",
        "- lora",
        "- misdir",
        "---",
        "",
        f"# LoRA adapter on `{record['base']}` (misdir finetune)",
        "",
        f"A {'rsLoRA' if config.get('rslora') else 'LoRA'} adapter of rank {config.get('rank')} (alpha "
        f"{config.get('alpha')}) on {', '.join(config.get('targets') or [])} of {layers}, trained by misdir on "
        f"{data.get('n', '?')} examples of {where} (sha256 {str(data.get('sha256', '?'))[:12]}...): "
        f"{record['steps']} steps at lr {config.get('lr')}, batch {config.get('batch_size')}, seed "
        f"{config.get('seed')}; loss {record['first_loss']:.4f} at the first step, {record['final_loss']:.4f} over "
        "the last ten.",
        "",
        f"Load it with `misdir.load_model(\"{{this folder}}\")` (on its base `{record['base']}`), or `--model` "
        "this folder in any misdir command. Everything that made it (data, config, loss curve, software, "
        "command) is in `misdir.json`.",
        "",
        f"Made by `{record.get('command', 'misdir')}` with misdir {record.get('misdir_version', '?')}.",
    ]
    return "\n".join(lines) + "\n"


def save_adapter(model: nn.Module, out: Path, card_note: str = "", record: dict[str, Any] | None = None) -> None:
    """peft's save_pretrained into a staging folder, its model card (README.md) replaced by misdir's
    (`model_card(record)`, given a record) with `card_note` added, then each file renamed into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".adapter-"))
    try:
        # misdir adapts decoder-layer projections only, never the embeddings: peft need not look the base's vocabulary
        # up (which for an adapter on an organism, or a base named "embedded", it cannot)
        model.save_pretrained(staging, save_embedding_layers=False)  # type: ignore[operator]
        if record is not None:
            (staging / "README.md").write_text(model_card(record), encoding="utf-8")
        if card_note:
            with (staging / "README.md").open("a") as card:
                card.write(card_note)
        for item in staging.iterdir():
            item.chmod(FILE_MODE)  # safetensors writes 0600 files
            os.replace(item, out / item.name)
        fsync_directory(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
