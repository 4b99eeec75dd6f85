"""A positive control without training: plant a direction the model is known to write (`plant`), then check
that misdir's extraction finds it and its ablation removes the planted shift, beyond random directions
(`positive_control`). A null on a real finetune means something only where this finds a planted direction
of similar strength.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from misdir.directions import DirectionSet
from misdir.experiments import random_directions, share_removed
from misdir.models import Model, ModelLike
from misdir.positions import Positions
from misdir.sweep import against_null, shift
from misdir.tensors import unit


def plant(model: Model, direction: Float[Tensor, "d_model"], *, layer: int, strength: float, seed: int = 0) -> Any:
    """A context manager under which `model` behaves like a rank-1 organism with a known write direction.

    At `resid_post` of `layer`, each token's residual `x` gets `strength * |x| * g(x) * d` added, with `d`
    the unit `direction` and a gate `g(x) = sigmoid(sqrt(d_model) * a . x / |x|)` in (0, 1) read along a
    fixed random unit vector `a` (from `seed`). Like a rank-1 adapter, the edit writes only along `d`, by an
    amount that depends on the token; `strength` counts in residual norms, as `steer(relative="resid")` does.
    No training and no change to the weights.
    """
    from misdir.hooks import hook_name, hooks

    d = unit(direction.detach().float().cpu())
    a = unit(torch.randn(d.numel(), generator=torch.Generator().manual_seed(seed)))
    sharpness = d.numel() ** 0.5

    def write(x: Tensor, name: str) -> Tensor:
        xf = x.float()
        norm = xf.norm(dim=-1, keepdim=True)
        gate = torch.sigmoid(sharpness * (xf @ a.to(x.device)).unsqueeze(-1) / norm.clamp_min(1e-12))
        return (xf + strength * norm * gate * d.to(x.device)).to(x.dtype)

    return hooks(model, [(hook_name(layer, "resid_post"), write)])


def positive_control(
    model: ModelLike,
    texts: Sequence[Any],
    *,
    layer: int,
    strength: float,
    pairs: str = "general",
    direction: Float[Tensor, "d_model"] | None = None,
    ablate_layers: Sequence[int] | None = None,
    sites: Sequence[str] = ("resid_post",),
    positions: Positions = "all",
    n_random: int = 20,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Would misdir find and remove a direction that is known to be there? Plant one (`plant`), then run the
    extraction and ablation a study would run, and report how well they did.

    The planted model's model-diff direction (planted minus unplanted, mean over the answer tokens of `texts`
    at resid_post) is extracted without knowing the planted one; its cosine with the planted direction is reported at
    `layer`
    and after. Its row at `layer` is then ablated at `ablate_layers` (default: `layer`), `sites` and
    `positions`, and the share of the planted shift of the contrast metric on `pairs` that this removes is set
    against `n_random` random directions ablated the same way. A null on a real finetune means something only
    where these settings find and remove a planted direction of similar strength.
    """
    from misdir.cache import cache_activations
    from misdir.evaluate import evaluate_contrast
    from misdir.interventions import ablate
    from misdir.models import as_model

    if n_random < 1:
        raise ValueError(f"n_random {n_random}: the control sets its share against random directions; give at least 1")
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    planted = direction if direction is not None else torch.randn(model.d_model, generator=generator)
    ablated_layers = [layer] if ablate_layers is None else list(ablate_layers)

    def score() -> Any:
        return evaluate_contrast(model, pairs, limit=limit, batch_size=batch_size, progress=False)

    def ablated(vector: Tensor) -> Any:
        with ablate(model, vector, layers=ablated_layers, site=list(sites), positions=positions):
            return score()

    def mean() -> Tensor:
        return cache_activations(model, texts, positions="answer", reduce="mean", progress=False)

    # one bar over the control's passes: score, cache, planted score, planted cache, ablation, random ablations
    with tqdm(total=5 + n_random, desc="positive control", unit="pass", disable=not progress) as bar:

        def step(value: Any) -> Any:
            bar.update(1)
            return value

        unplanted, reference = step(score()), step(mean())
        with plant(model, planted, layer=layer, strength=strength, seed=seed):
            planted_score = step(score())
            extracted = DirectionSet(step(mean()) - reference, meta={"method": "model-diff", "planted_layer": layer})
            removed = step(ablated(extracted.vectors[layer]))
            nulls = [step(ablated(v)) for v in random_directions(model.d_model, n_random, seed=seed + 1)]
    share = share_removed(unplanted, planted_score, removed, seed=seed)
    unit_planted = unit(planted.float())
    cosines = [float(unit(extracted.vectors[i]) @ unit_planted) for i in range(layer, model.n_layers)]
    null_shares = [share_removed(unplanted, planted_score, n, seed=seed).value for n in nulls]
    return {
        "layer": layer,
        "strength": strength,
        "pairs": pairs,
        "ablate_layers": ablated_layers,
        "sites": list(sites),
        "positions": positions,
        "planted_shift": shift({"margins": unplanted.margins}, {"margins": planted_score.margins}, seed=seed)._asdict(),
        "cosine_by_layer": dict(zip(range(layer, model.n_layers), cosines, strict=True)),
        "share_removed": share._asdict(),
        "null_share": against_null(share.value, null_shares),
        "random_shares": null_shares,
        "fluency": {
            "unplanted": unplanted.fluency.value,
            "planted": planted_score.fluency.value,
            "ablated": removed.fluency.value,
        },
    }
