"""Loading an sae-lens SAE and attaching it to a model: the hook it reads (`sae_site`), its latents of an
activation (`encode_latents`), of misdir inputs read through misdir's hooks (`latent_activations`), and what each
latent writes (`decoder_rows`, `latent_direction`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from misdir.cache import cache_activations
from misdir.hooks import parse_hook_name
from misdir.models import ModelLike, as_model
from misdir.tokens import Input, Positions

SAE_FILES = ("cfg.json", "sae_weights.safetensors")


def load_sae(source: str | Path, sae_id: str | None = None, *, device: str = "cpu", dtype: str = "float32") -> Any:
    """An sae-lens SAE from a directory (`cfg.json` + `sae_weights.safetensors`) or, with `sae_id`, from a
    pretrained sae-lens release on the Hugging Face hub (`SAE.from_pretrained(release, sae_id)`)."""
    from sae_lens import SAE

    path = Path(source).expanduser()
    if sae_id is None:
        if not path.is_dir():
            raise FileNotFoundError(
                f"no SAE directory at {path}; give a directory with {' + '.join(SAE_FILES)}, "
                "or a release and an sae_id of a pretrained sae-lens SAE"
            )
        missing = [name for name in SAE_FILES if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not an sae-lens SAE directory: {', '.join(missing)} missing")
        return SAE.load_from_disk(str(path), device=device, dtype=dtype)
    return SAE.from_pretrained(str(source), sae_id, device=device, dtype=dtype)


def sae_site(model: ModelLike, sae: Any, hook: str | None = None) -> tuple[int, str]:
    """(layer, site) where `sae` reads `model`: `hook` if given, else the SAE's own `cfg.metadata.hook_name`.

    Clear errors for a hook that is not a misdir site (`blocks.{l}.hook_{site}`), a layer the model does not
    have, and an SAE whose input width `d_in` is not the model's `d_model`.
    """
    model = as_model(model)
    name = hook or sae.cfg.metadata.hook_name
    if not name:
        raise ValueError("the SAE's config names no hook (cfg.metadata.hook_name); pass hook='blocks.L.hook_SITE'")
    layer, site = parse_hook_name(name, model.n_layers)
    if int(sae.cfg.d_in) != model.d_model:
        raise ValueError(
            f"the SAE reads vectors of width d_in={sae.cfg.d_in}, but {model.spec} has d_model "
            f"{model.d_model}: it was trained on another model"
        )
    return layer, site


@torch.no_grad()
def encode_latents(sae: Any, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_sae"]:
    """The SAE's latent activations of `x`, computed in the SAE's device and dtype, returned as float32 on
    CPU."""
    return sae.encode(x.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)).float().cpu()


@torch.no_grad()
def decoder_rows(sae: Any) -> Float[Tensor, "d_sae d_model"]:
    """What one unit of each latent adds to the reconstruction: `decode(e_i) - decode(0)`, float32 on CPU.

    Equal to `W_dec` for most SAEs; it also covers a decoder that rescales by its row norms (TopK SAEs).
    """
    d_sae = int(sae.cfg.d_sae)
    eye = torch.eye(d_sae, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
    zero = torch.zeros(1, d_sae, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
    return (sae.decode(eye) - sae.decode(zero)).float().cpu()


def latent_direction(sae: Any, latent: int) -> Float[Tensor, "d_model"]:
    """The decoder row of `latent` (unnormalised): the direction steering along that latent adds."""
    _check_latents(sae, [latent])
    return decoder_rows(sae)[latent]


def latent_activations(
    model: ModelLike,
    sae: Any,
    inputs: Sequence[Input],
    *,
    hook: str | None = None,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = False,
) -> list[Float[Tensor, "pos d_sae"]]:
    """Latent activations of each input at its selected positions, read at the SAE's hook through misdir's
    hooks."""
    layer, site = sae_site(model, sae, hook)
    acts = cache_activations(
        model,
        inputs,
        layers=[layer],
        site=site,
        positions=positions,
        reduce="none",
        batch_size=batch_size,
        progress=progress,
    )
    return [encode_latents(sae, a[0]) for a in acts]


def describe_sae(sae: Any) -> dict[str, Any]:
    """What identifies an SAE in provenance: architecture, widths, hook, and where it came from."""
    meta = sae.cfg.metadata
    return {
        "architecture": sae.cfg.architecture(),
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "hook_name": meta.hook_name,
        "model_name": meta.model_name,
        "source": getattr(sae, "_misdir_source", None),
    }


def _check_latents(sae: Any, latents: Sequence[int]) -> None:
    bad = [i for i in latents if not 0 <= i < int(sae.cfg.d_sae)]
    if bad:
        raise ValueError(f"latent(s) {bad} out of range: this SAE has latents 0 to {int(sae.cfg.d_sae) - 1}")
    if not latents:
        raise ValueError("no latents given")
