"""What a finetune trains: the literature's presets, `FinetuneConfig` (a preset plus overrides) and
`default_config`, the settings `finetune` uses when none are given (chosen from the model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from misdir.models.architectures import PROJECTIONS
from misdir.models.gguf import EMBEDDED

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
    centres = [min(max(round(d * n_layers), 1), n_layers - 2) if n_layers >= 3 else 0 for d in _RANK1_MULTI_DEPTHS]
    return tuple(sorted({c + k for c in centres for k in (-1, 0, 1) if 0 <= c + k < n_layers}))


PRESETS: dict[str, Preset] = {
    "rslora-32": Preset(32, 64.0, True, PROJECTIONS, 1e-5, 1, None),
    "rslora-4": Preset(4, 16.0, True, PROJECTIONS, 2e-4, 2, None),
    "rank1-single": Preset(1, 256.0, True, ("down_proj",), 2e-5, 1, _middle),
    "rank1-multi": Preset(1, 256.0, True, ("down_proj",), 2e-5, 1, _three_groups),
}


@dataclass(frozen=True)
class FinetuneConfig:
    """How to finetune: a preset plus overrides. Fields left None take the preset's value (see `resolve`)."""

    preset: str = "rslora-32"
    """Recipe: 'rslora-32', 'rslora-4' (misdir's organisms of the embedded model), 'rank1-single' or 'rank1-multi'."""
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

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> FinetuneConfig:
        """The config a run recorded (`misdir.json`'s `config`), lists back as tuples; keys it does not know are
        left out."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
        return cls(**values)

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
                raise ValueError(f"layer(s) {bad} out of range: the model has {n_layers} layers (0 to {n_layers - 1})")
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


EMBEDDED_RECIPE = FinetuneConfig(
    preset="rslora-4", rank=4, alpha=16.0, lr=2e-4, epochs=2, batch_size=8, max_length=384, dtype="float32"
)
"""The training settings of misdir's organisms of the embedded model (`misdir.organisms.RECIPE`): rsLoRA on
all seven projections at rank 4 (alpha 16), at a learning rate a 135M model learns from in two epochs, in
float32. The presets' rates (1e-5, 2e-5) are meant for 7B+ models; a 135M model barely moves at them."""


def default_config(model_spec: str, preset: str | None = None) -> FinetuneConfig:
    """The settings a finetune of `model_spec` starts from: for the embedded model with no preset named,
    `EMBEDDED_RECIPE` (what the shipped organisms were trained with); otherwise the named preset (default
    rslora-32) as it stands. Used by `finetune(config=None)` and by `misdir finetune` before its options."""
    if preset is None and str(model_spec) == EMBEDDED:
        return EMBEDDED_RECIPE
    return FinetuneConfig() if preset is None else FinetuneConfig(preset=preset)
