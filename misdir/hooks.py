"""TransformerLens hook names on Hugging Face decoder modules.

misdir does not build its own model tree. It speaks TransformerLens's vocabulary
(`blocks.{layer}.hook_resid_post`, ...) and registers plain PyTorch hooks on the Hugging Face
modules that compute each quantity, so anything transformers runs (PEFT-wrapped, split over
GPUs with `device_map`, SDPA or flash attention, `generate`) can be read and edited. A
TransformerLens model (`HookedTransformer`, `TransformerBridge`) is hooked through its own
hook points instead.

A hook function receives the activation `[batch, pos, d_model]` and the hook name, and returns
either None (read only) or a tensor of the same shape that replaces the activation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from jaxtyping import Float
from torch import Tensor, nn

from misdir.models.architectures import EMBED, SITES

if TYPE_CHECKING:
    from misdir.models import Model


HookFn = Callable[[Float[Tensor, "batch pos d_model"], str], Tensor | None]
_HOOK_NAME = re.compile(r"^blocks\.(\d+)\.hook_(\w+)$")
_OPEN_EDITS = "_misdir_open_edits"
"""The attribute of a model's Hugging Face module that lists the edits open on it (see `open_edits`)."""


def hook_name(layer: int, site: str) -> str:
    return f"blocks.{layer}.hook_{site}"


def parse_hook_name(name: str, n_layers: int) -> tuple[int, str]:
    """`blocks.3.hook_resid_post` -> (3, "resid_post"), with a clear error for anything else."""
    match = _HOOK_NAME.match(name)
    if match is None:
        raise ValueError(f"hook name {name!r} is not of the form 'blocks.{{layer}}.hook_{{site}}'")
    layer, site = int(match.group(1)), match.group(2)
    check_site(site)
    check_layers([layer], n_layers)
    return layer, site


def check_site(site: str) -> None:
    if site not in SITES:
        raise ValueError(f"unknown hook site {site!r}; expected one of {', '.join(SITES)}")


def check_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    """Layers as a list of ints in [0, n_layers), with a clear error naming any other."""
    out = [int(layer) for layer in layers]
    bad = [layer for layer in out if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layer(s) {bad} out of range: this model has layers 0 to {n_layers - 1}")
    if not out:
        raise ValueError("no layers given")
    return out


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, new: Tensor) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _add_hf_hook(model: Model, layer: int, site: str, fn: HookFn) -> list[Any]:
    """Register `fn` at (layer, site) on the Hugging Face modules; return the handles."""
    name = hook_name(layer, site)
    block = model.layers[layer]
    arch = model.architecture

    def on_output(module: nn.Module, args: Any, output: Any) -> Any:
        new = fn(_first(output), name)
        return None if new is None else _replace_first(output, new)

    if site == "resid_pre":

        def on_input(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            x = args[0] if args else kwargs["hidden_states"]
            new = fn(x, name)
            if new is None:
                return None
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return [block.register_forward_pre_hook(on_input, with_kwargs=True)]
    if site == "resid_post":
        return [block.register_forward_hook(on_output)]
    if site in ("attn_out", "mlp_out"):
        module = block.get_submodule(arch.attn_out if site == "attn_out" else arch.mlp_out)
        return [module.register_forward_hook(on_output)]

    # resid_mid = resid_pre + attn_out. The attention norm's input is the residual stream exactly as the
    # layer sees it (after any resid_pre edits); an edit of resid_mid is written back through attn_out.
    residual: dict[str, Tensor] = {}

    def remember_residual(module: nn.Module, args: tuple) -> None:
        residual["x"] = args[0]

    def on_attn_output(module: nn.Module, args: Any, output: Any) -> Any:
        pre = residual.pop("x")
        mid = pre + _first(output)
        new = fn(mid, name)
        return None if new is None else _replace_first(output, new - pre)

    return [
        block.get_submodule(arch.attn_norm).register_forward_pre_hook(remember_residual),
        block.get_submodule(arch.attn_out).register_forward_hook(on_attn_output),
    ]


@contextmanager
def hooks(model: Model, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[Model]:
    """Run `fn` at each named hook point while the context is open; removed on exit or exception.

    Names are `blocks.{layer}.hook_{site}`, or `hook_embed` for the token embedding's output.

    >>> with hooks(model, [("blocks.3.hook_resid_post", lambda x, name: x * 0.5)]):
    ...     model.hf(input_ids)
    """
    parsed = [(None if name == EMBED else parse_hook_name(name, model.n_layers), fn) for name, fn in fwd_hooks]
    if model.lens is not None:
        lens_hooks = [(EMBED if at is None else hook_name(*at), _lens_hook(fn)) for at, fn in parsed]
        with model.lens.hooks(fwd_hooks=lens_hooks):
            yield model
        return
    _forget_compiled_decoding(model.hf)
    with ExitStack() as stack:
        for at, fn in parsed:
            for handle in _add_embed_hook(model, fn) if at is None else _add_hf_hook(model, *at, fn):
                stack.callback(handle.remove)
        yield model


def _add_embed_hook(model: Model, fn: HookFn) -> list[Any]:
    """Register `fn` on the token embedding's output (`hook_embed`)."""

    def on_output(module: nn.Module, args: Any, output: Tensor) -> Tensor | None:
        return fn(output, EMBED)

    return [model.hf.get_input_embeddings().register_forward_hook(on_output)]


def _forget_compiled_decoding(hf: nn.Module) -> None:
    """Make a decode step that transformers compiled earlier (static KV cache) compile again, with the hooks.

    torch.compile notices hooks removed from a module, but not hooks added to modules that had none when it
    compiled (seen with torch 2.13; pytorch/pytorch#186507): without this, generating inside `ablate` or
    `steer` after a plain static-cache generation would run its compiled decode steps unedited, silently.
    """
    if any(hasattr(module, "_compiled_call") for module in hf.modules()):
        import torch._dynamo

        torch._dynamo.reset()


def _lens_hook(fn: HookFn) -> Callable[..., Tensor | None]:
    def hook(activation: Tensor, hook: Any) -> Tensor | None:
        return fn(activation, hook.name)

    return hook


def open_edits(model: Model) -> list[dict[str, Any]]:
    """The records of the edits (`misdir.ablate`, `misdir.steer`, ...) open on `model` now, outermost first.
    A record says what the edit needs of whoever runs the model inside it: `eager`, why a decode step must
    not be compiled around it (`misdir.generate` then decodes eagerly).

    The list lives on the model's Hugging Face module itself, so every `Model` wrapping that module sees the
    same edits, and it goes away with the module. This is the live list: `recording` appends and removes.
    """
    owner = model.hf
    edits = owner.__dict__.get(_OPEN_EDITS)
    if edits is None:
        edits = []
        owner.__dict__[_OPEN_EDITS] = edits
    return edits


@contextmanager
def recording(model: Model, record: dict[str, Any]) -> Iterator[None]:
    """Keep `record` among `open_edits(model)` while the block runs."""
    edits = open_edits(model)
    edits.append(record)
    try:
        yield
    finally:
        edits.remove(record)


def forget_open_edits(hf: nn.Module) -> None:
    """Clear the open-edit list of a module copied (deep-copied) from one inside an edit block: the copy runs
    none of the original's hooks."""
    hf.__dict__.pop(_OPEN_EDITS, None)
