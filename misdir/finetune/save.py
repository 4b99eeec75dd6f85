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
    seconds: float,
    edits: Sequence[Edit],
    watch: dict[str, Any] | None,
    **counts: int,
) -> dict[str, Any]:
    """The content of `misdir.json`: what made the adapter (base as named, data, resolved config, the edits
    open while it trained and their directions' files), how training went, what watched it (`misdir.monitor`),
    and the software and command (`misdir.provenance`). `counts`: steps_per_epoch, answer_tokens,
    trainable_parameters."""
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
        "seconds_this_call": seconds,
        "steps_per_second_this_call": (total - start) / seconds if seconds > 0 else None,
        "device": str(base.device),
        "dtype": str(next(base.hf.parameters()).dtype).removeprefix("torch."),
        **provenance(),
    }


def save_adapter(model: nn.Module, out: Path, card_note: str = "") -> None:
    """peft's save_pretrained into a staging folder, `card_note` added to its model card (README.md), then
    each file renamed into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".adapter-"))
    try:
        # misdir adapts decoder-layer projections only, never the embeddings: peft need not look the base's vocabulary
        # up (which for an adapter on an organism, or a base named "embedded", it cannot)
        model.save_pretrained(staging, save_embedding_layers=False)  # type: ignore[operator]
        if card_note:
            with (staging / "README.md").open("a") as card:
                card.write(card_note)
        for item in staging.iterdir():
            item.chmod(FILE_MODE)  # safetensors writes 0600 files
            os.replace(item, out / item.name)
        fsync_directory(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
