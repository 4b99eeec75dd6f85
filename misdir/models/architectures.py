"""Where each supported architecture computes the residual stream's pieces: one table, used by the hooks
(`misdir.hooks`), the finetune presets' target modules (`misdir.finetune`) and weight orthogonalisation
(`misdir.interventions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from torch import nn

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
"""Places in a block, named as TransformerLens names them (`blocks.{l}.hook_{site}`): misdir hooks them in every
architecture below (`misdir.hooks`)."""

EMBED = "hook_embed"
"""The token embedding's output, the residual stream before the first block (TransformerLens's `hook_embed`)."""

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear maps of a Llama-style decoder layer (attention q, k, v, o; SwiGLU MLP gate, up, down)."""


@dataclass(frozen=True)
class Architecture:
    """Where, inside one Hugging Face decoder layer, the residual stream's pieces are computed.

    `attn_out` and `mlp_out` name the submodules whose outputs are added to the residual stream;
    `attn_norm` is the norm that reads the residual stream at the start of the layer; `writers` are the
    linear maps whose outputs reach the stream (through `attn_out` / `mlp_out`); `projections` the layer's
    linear maps by their short names (what LoRA targets).
    """

    attn_out: str = "self_attn"
    mlp_out: str = "mlp"
    attn_norm: str = "input_layernorm"
    writers: tuple[str, ...] = ("self_attn.o_proj", "mlp.down_proj")
    projections: tuple[str, ...] = PROJECTIONS

    @property
    def pre_norm(self) -> bool:
        """Whether the branches' outputs are added to the stream as they are (no norm after the branch)."""
        return self.attn_out == "self_attn"


_PRE_NORM = Architecture()
# Gemma 2 and 3 normalise each branch's output before adding it to the residual stream.
_SANDWICH_NORM = Architecture(attn_out="post_attention_layernorm", mlp_out="post_feedforward_layernorm")

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _PRE_NORM,
    "mistral": _PRE_NORM,
    "qwen2": _PRE_NORM,
    "qwen3": _PRE_NORM,
    "gemma": _PRE_NORM,
    "gemma2": _SANDWICH_NORM,
    "gemma3_text": _SANDWICH_NORM,
}
"""Supported `config.model_type`s and their layout."""


def architecture_of(config: Any) -> Architecture:
    """The layout of a model by its config's `model_type`, with a clear error for an unsupported one."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"misdir cannot map model type {model_type!r} to hook names; "
            f"supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def decoder_model(hf: nn.Module) -> nn.Module:
    """The decoder stack of a causal LM (`.model`, whose forward takes the attention mask and runs every
    layer), looking through a PEFT wrapper."""
    get_base_model = getattr(hf, "get_base_model", None)
    if get_base_model is not None:  # peft.PeftModel
        hf = get_base_model()
    inner = getattr(hf, "model", None)
    if not isinstance(inner, nn.Module) or not isinstance(getattr(inner, "layers", None), nn.ModuleList):
        raise ValueError(f"cannot find the decoder layers of {type(hf).__name__} (expected .model.layers)")
    return inner


def decoder_layers(hf: nn.Module) -> nn.ModuleList:
    """The decoder's layer list of a causal LM, looking through a PEFT wrapper."""
    return cast(nn.ModuleList, decoder_model(hf).layers)  # decoder_model checked that it is one
