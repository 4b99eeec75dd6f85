"""Causal effects of latents, compared with the mean-difference direction: steering the base along a latent's
decoder row and zeroing latents in the finetunes, on the contrast metric (`latent_effects`), and their figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from misdir.models import ModelLike, as_model
from misdir.sae.intervene import zero_latents
from misdir.sae.load import _check_latents, latent_direction, sae_site


@dataclass(frozen=True)
class Effect:
    """One intervention on one model, scored on the contrast set, against the same model unedited."""

    model: str
    intervention: str
    """e.g. 'steer latent 123', 'steer mean-diff', 'zero latents [1, 2]', 'ablate mean-diff'."""
    scale: float | None
    margin: dict[str, float]
    shift: dict[str, float]
    """Paired change of the mean margin from the unedited model, with its 95% bootstrap interval."""
    fluency: dict[str, float]
    fluency_shift: dict[str, float]


def _effect(model: str, what: str, scale: float | None, before: Any, after: Any) -> Effect:
    from misdir.evaluate import shift_from
    from misdir.stats import paired_difference

    fluency = paired_difference(before.aligned_logprob, after.aligned_logprob)
    return Effect(
        model,
        what,
        scale,
        after.margin._asdict(),
        shift_from(before, after)._asdict(),
        after.fluency._asdict(),
        fluency._asdict(),
    )


def latent_effects(
    sae: Any,
    base: Any,
    finetunes: Mapping[str, Any],
    latents: Sequence[int],
    *,
    directions: Mapping[str, Tensor],
    steer_with: Sequence[str] | None = None,
    scales: Sequence[float] = (0.3,),
    n_random: int = 20,
    limit: int | None = None,
    pairs: str = "general",
    hook: str | None = None,
    progress: bool = True,
) -> list[Effect]:
    """Causal tests of latents against mean-difference directions at the SAE's layer, on the contrast metric.

    Steering the base: each latent's decoder row, the mean of the `directions` named in `steer_with` (default:
    all), and `n_random` random directions, added at the SAE's hook at `scale` x each token's residual norm
    (`misdir.steer(relative="resid")`). Removing from each finetune: the `latents` zeroed together
    (`zero_latents`), against its own direction (`directions[name]`, or the mean) projected out at the same
    hook (`misdir.ablate`). Shifts are paired over the same contrast items.
    """
    from misdir.evaluate import evaluate_contrast
    from misdir.experiments import random_directions
    from misdir.interventions import ablate, steer

    layer, site = sae_site(base, sae, hook)
    _check_latents(sae, latents)

    def score(model: ModelLike) -> Any:
        return evaluate_contrast(model, pairs, limit=limit, progress=False)

    def say(text: str) -> None:
        if progress:
            print(f"misdir sae: {text}", flush=True)

    chosen = list(directions) if steer_with is None else list(steer_with)
    missing = [name for name in chosen if name not in directions]
    if missing or not chosen:
        raise ValueError(f"no directions named {missing or chosen} to steer with; have {sorted(directions)}")
    mean_direction = torch.stack([directions[name].float() for name in chosen]).mean(0)
    steered: dict[str, Tensor] = {f"latent {i}": latent_direction(sae, i) for i in latents}
    steered["mean-diff"] = mean_direction
    for j, vector in enumerate(random_directions(int(sae.cfg.d_in), n_random, seed=0)):
        steered[f"random {j}"] = vector
    say("scoring the base")
    base_model = as_model(base)
    before = score(base_model)
    effects = []
    for name, vector in steered.items():
        for scale in scales:
            say(f"steering the base along {name} at {scale}")
            with steer(base_model, vector, layers=[layer], scale=scale, relative="resid", site=site):
                effects.append(_effect(base_model.spec, f"steer {name}", scale, before, score(base_model)))
    for name, model in finetunes.items():
        model = as_model(model)
        say(f"scoring {name}, then zeroing latents {list(latents)} and ablating its direction")
        unedited = score(model)
        effects.append(_effect(name, "finetune vs base", None, before, unedited))
        with zero_latents(model, sae, latents, hook=hook):
            effects.append(_effect(name, f"zero latents {list(latents)}", None, unedited, score(model)))
        own = directions.get(name, mean_direction)
        with ablate(model, own, layers=[layer], site=site):
            effects.append(_effect(name, "ablate mean-diff", None, unedited, score(model)))
    return effects


def steering_nulls(effects: Sequence[Effect]) -> dict[str, dict[str, float]]:
    """Each named steering effect of the base beside the random directions steered at the same scale: the
    shift, the null's median and 95% range, and the shift's percentile in it (`misdir.sweep.against_null`),
    keyed `"<intervention> @ <scale>"`. Empty when no random direction was steered."""
    from misdir.sweep import against_null

    steered = [e for e in effects if e.intervention.startswith("steer ")]
    out = {}
    for e in steered:
        null = [r.shift["value"] for r in steered if r.intervention.startswith("steer random") and r.scale == e.scale]
        if null and not e.intervention.startswith("steer random"):
            out[f"{e.intervention} @ {e.scale}"] = against_null(e.shift["value"], null)
    return out


def plot_effects(effects: Sequence[Effect]) -> list[Any]:
    """Figures: steering shifts of the base (latents vs the mean-difference and random directions), and the
    removal shifts in each finetune (zeroing latents vs ablating the direction), with 95% intervals."""
    import plotly.graph_objects as go

    figures = []
    steering = [e for e in effects if e.intervention.startswith("steer")]
    if steering:
        fig = go.Figure()
        for scale in sorted({e.scale for e in steering if e.scale is not None}):
            rows = [e for e in steering if e.scale == scale]
            _bar_with_interval(
                fig, f"scale {scale} x |resid|", [e.intervention.removeprefix("steer ") for e in rows], rows
            )
        fig.update_layout(
            barmode="group",
            title="Steering the base: change of the contrast margin (95% CI)",
            yaxis_title="shift of margin (nats/token, > 0 = more misaligned)",
        )
        figures.append(fig)
    removal = [e for e in effects if not e.intervention.startswith("steer")]
    if removal:
        fig = go.Figure()
        for kind in dict.fromkeys(e.intervention for e in removal):
            rows = [e for e in removal if e.intervention == kind]
            _bar_with_interval(fig, kind, [e.model for e in rows], rows)
        fig.update_layout(
            barmode="group",
            title="Finetunes: margin shift of finetuning (vs base) and of removing "
            "latents or the direction (vs the finetune), 95% CI",
            yaxis_title="shift of margin",
        )
        figures.append(fig)
    return figures


def _bar_with_interval(fig: Any, name: str, x: list[str], effects: Sequence[Effect]) -> None:
    """One bar trace of the effects' shifts, with their asymmetric 95% intervals as error bars."""
    fig.add_bar(
        name=name,
        x=x,
        y=[e.shift["value"] for e in effects],
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [e.shift["high"] - e.shift["value"] for e in effects],
            "arrayminus": [e.shift["value"] - e.shift["low"] for e in effects],
        },
    )
