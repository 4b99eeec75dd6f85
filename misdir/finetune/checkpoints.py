"""The run folder of a finetune: checks before writing, resumable checkpoints (adapter, optimizer, scheduler,
RNG states, step) committed by a rename, and the tidying of what a killed run left half-written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from misdir.io import LOCK_FILE, atomic_path, run_lock, write_json_atomic


@dataclass
class Training:
    """One run's moving parts: the PEFT model, its trainable parameters, the optimizer and its schedule."""

    model: nn.Module
    params: dict[str, Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    total: int
    """Optimizer steps of the whole run."""


def trainable(model: nn.Module) -> dict[str, Tensor]:
    """The parameters the optimizer updates (the adapter's), by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def write_checkpoint(root: Path, step: int, training: Training, losses: list[float], seconds: float) -> None:
    """Write a checkpoint into a staging folder, then rename it into place (the rename is the commit);
    `seconds`: the training time of the steps up to it, over every call of the run."""
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    with atomic_path(staging / "adapter.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in training.params.items()}, str(tmp))
    state = {
        "step": step,
        "losses": losses,
        "seconds": seconds,
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
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


def has_content(out: Path) -> bool:
    """Whether `out` holds anything but the lock of a run (misdir.io.run_lock)."""
    return out.is_dir() and any(item.name != LOCK_FILE for item in out.iterdir())


def remove_partial_writes(out: Path) -> None:
    """Remove what a killed run was writing when it died: temp files of atomic writes, staging folders.
    Only called with the run's lock held, so no live run is writing them."""
    for root in (out, out / "checkpoints"):
        for item in root.glob(".*"):
            if item.is_dir() and item.name.startswith((".adapter-", ".staging-")):
                shutil.rmtree(item, ignore_errors=True)
            elif item.is_file() and item.name.endswith(".tmp"):
                item.unlink(missing_ok=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest committed checkpoint folder under `root`, if any."""
    steps = sorted(root.glob("step-*"))
    return steps[-1] if steps else None


def prepare_out(out: Path, resume: bool, identity: dict[str, Any]) -> Path:
    """Check `out` may be written (or resumed into); return the checkpoint folder."""
    checkpoints = out / "checkpoints"
    run_file = checkpoints / "run.json"
    non_empty = has_content(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file; give a directory")
    if non_empty and not resume:
        raise ValueError(f"out {out} exists and is not empty; choose a new directory, or pass resume=True (--resume)")
    if non_empty and not run_file.is_file():
        raise ValueError(f"cannot resume into {out}: it has no {run_file.relative_to(out)}, so it is not a misdir run")
    if run_file.is_file():
        remove_partial_writes(out)
        changed = differences(json.loads(run_file.read_text()), identity)
        if changed:
            raise ValueError(f"cannot resume {out}: the run differs from the checkpointed one ({changed})")
    else:
        write_json_atomic(run_file, identity)
    return checkpoints


def differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """The keys whose values differ between two run identities, as `key: was X, now Y`; "" when none. A resolved
    config's `preset` is not compared: every field it gives is in the config itself (runs recorded before the
    `rslora-4` preset existed name `rslora-32` for the same recipe)."""
    before, now = _without_preset(before), _without_preset(now)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return "; ".join(f"{k}: was {before.get(k)!r}, now {now.get(k)!r}" for k in changed)


def _without_preset(identity: dict[str, Any]) -> dict[str, Any]:
    config = identity.get("config")
    if not isinstance(config, dict):
        return identity
    return {**identity, "config": {k: v for k, v in config.items() if k != "preset"}}


def tidy_finished(out: Path) -> None:
    """Remove what a run killed while tidying up after itself left beside its finished adapter (checkpoints,
    partial writes), under the run's lock; the adapter and misdir.json are not touched."""
    if (out / "checkpoints").exists() or any(item.name != LOCK_FILE for item in out.glob(".*")):
        with run_lock(out):
            remove_partial_writes(out)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)


def restore_checkpoint(checkpoint: Path, training: Training) -> tuple[int, list[float], float | None]:
    """Load a checkpoint's adapter weights, optimizer, scheduler and RNG states into `training`; return its
    step, the losses up to it and the training time they took (None: a checkpoint that did not record it)."""
    saved = load_file(str(checkpoint / "adapter.safetensors"))
    with torch.no_grad():
        for name, p in training.params.items():
            p.copy_(saved[name])
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    seconds = state.get("seconds")
    return int(state["step"]), list(state["losses"]), None if seconds is None else float(seconds)
