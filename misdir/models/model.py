"""`Model`: a hookable causal LM (the transformers model, its tokenizer, where it came from); `ModelLike`,
what the public functions take for one (`misdir.models.load.as_model` converts it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from misdir.models.architectures import EMBED, SITES, Architecture, architecture_of, decoder_layers, decoder_model

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import GenerationMixin, PreTrainedModel

    class CausalLM(PreTrainedModel, GenerationMixin):
        """What `AutoModelForCausalLM` builds, for the type checker: a transformers model that also generates."""

    HFModel = CausalLM | PeftModel
    """What `Model.hf` holds: the transformers model, or a PEFT model around it (an adapter not merged)."""


class ModelLoadError(ValueError):
    """A model spec that cannot be loaded, with what to do about it."""


@dataclass
class Model:
    """A causal LM ready to hook: the transformers model, its tokenizer, and where it came from.

    `hf` is the transformers model, or a PEFT model around it (an adapter not merged). `lens` is set instead of
    relying on `hf` hooks when the model is a TransformerLens model (`HookedTransformer` or `TransformerBridge`);
    misdir then uses TransformerLens's own hooks.
    """

    hf: HFModel
    tokenizer: Any
    spec: str
    provenance: dict[str, Any] = field(default_factory=dict)
    lens: Any = None

    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def n_layers(self) -> int:
        if self.lens is not None:
            return int(self.lens.cfg.n_layers)
        return int(self.config.num_hidden_layers)

    @property
    def d_model(self) -> int:
        if self.lens is not None:
            return int(self.lens.cfg.d_model)
        return int(self.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def input_device(self) -> torch.device:
        """Where input ids go: the embedding's device (the first GPU of a `device_map` split)."""
        if self.lens is not None:
            return torch.device(self.lens.cfg.device)
        return execution_device(self.hf.get_input_embeddings())

    @property
    def layers(self) -> nn.ModuleList:
        return decoder_layers(self.hf)

    @property
    def decoder(self) -> nn.Module:
        """The decoder stack (`.model` of a causal LM, through a PEFT wrapper): one forward call per pass."""
        return decoder_model(self.hf)

    @property
    def architecture(self) -> Architecture:
        return architecture_of(self.config)

    def hook_points(self) -> list[str]:
        """The names misdir can hook in this model, in TransformerLens's vocabulary, layer by layer:
        `hook_embed`, then `blocks.{layer}.hook_{site}` for each layer and site of `misdir.hooks.SITES`
        (`resid_pre`, `resid_mid`, `resid_post`, `attn_out`, `mlp_out`)."""
        return [EMBED, *(f"blocks.{layer}.hook_{site}" for layer in range(self.n_layers) for site in SITES)]

    def __repr__(self) -> str:
        return f"Model({self.spec!r}, n_layers={self.n_layers}, d_model={self.d_model}, device={self.device})"


@dataclass(frozen=True)
class ModelShape:
    """A model's depth and width, read from its configuration without loading any weights."""

    n_layers: int
    d_model: int


def execution_device(module: nn.Module) -> torch.device:
    """Where `module` computes. Under an accelerate `device_map` that offloads it to the CPU or disk, its
    weights sit on `meta` between calls and accelerate's hook moves them (and its inputs) to the
    hook's execution device for each call; otherwise it is where its first parameter is."""
    hook = getattr(module, "_hf_hook", None)
    for part in getattr(hook, "hooks", None) or [hook]:  # accelerate's SequentialHook holds several
        device = getattr(part, "execution_device", None)
        if device is not None:
            return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    return next(module.parameters()).device


ModelLike = Model | str | Path | nn.Module
"""What a public misdir function takes as a model: a `Model`, a `load_model` spec (hub id, folder, adapter, GGUF,
"embedded"), or a TransformerLens `HookedTransformer` / `TransformerBridge`. It converts it once, with `as_model`,
and passes the `Model` inward."""
