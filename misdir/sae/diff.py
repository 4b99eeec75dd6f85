"""Model diffing on latents (the persona-latent analysis of Wang et al. 2025): each latent's mean activation
and firing rate in a base and its finetunes on the same texts (`diff_latents`), latents ranked by how consistently
they rise in the EM finetunes and not in the controls (`rank_latents`), and the record, files and figures of a
diff."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from misdir.io import write_json_atomic
from misdir.models import ModelLike, as_model
from misdir.sae.load import _check_latents, decoder_rows, latent_activations
from misdir.tensors import unit
from misdir.tokens import Input, Positions, encode


@dataclass
class LatentStats:
    """One model's latents over a set of texts: token-weighted means and firing rates, and where each fires
    most."""

    model: str
    mean: Float[Tensor, "d_sae"]
    rate: Float[Tensor, "d_sae"]
    n_tokens: int
    top_value: Float[Tensor, "input d_sae"]
    """Each input's largest activation of each latent."""
    top_position: Tensor
    """Index, among the input's selected positions, of that largest activation ([input, d_sae], int)."""


def latent_stats(
    model: ModelLike,
    sae: Any,
    inputs: Sequence[Input],
    *,
    hook: str | None = None,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = False,
) -> LatentStats:
    """Mean activation and firing rate of every latent over the selected tokens of `inputs` (float64 sums)."""
    model = as_model(model)
    per_input = latent_activations(
        model, sae, inputs, hook=hook, positions=positions, batch_size=batch_size, progress=progress
    )
    d_sae = int(sae.cfg.d_sae)
    total, fired, n = torch.zeros(d_sae, dtype=torch.float64), torch.zeros(d_sae, dtype=torch.float64), 0
    tops, where = [], []
    for acts in per_input:
        total += acts.double().sum(0)
        fired += (acts > 0).double().sum(0)
        n += len(acts)
        value, index = acts.max(0)
        tops.append(value)
        where.append(index)
    return LatentStats(model.spec, (total / n).float(), (fired / n).float(), n, torch.stack(tops), torch.stack(where))


@dataclass(frozen=True)
class Ranking:
    """Latents ordered by how they rise in the finetunes over the base (each a vector over latents)."""

    rise: Float[Tensor, "finetune d_sae"]
    """Mean activation of each finetune minus the base's."""
    control_rise: Float[Tensor, "control d_sae"]
    mean_rise: Float[Tensor, "d_sae"]
    """Mean rise over the finetunes."""
    consistency: Float[Tensor, "d_sae"]
    """Smallest rise over the finetunes minus the largest positive rise over the controls: > 0 only for a
    latent that rises in every finetune, and by more than in any control."""
    by_rise: list[int]
    by_consistency: list[int]


def rank_latents(
    base_mean: Float[Tensor, "d_sae"],
    finetune_means: Float[Tensor, "finetune d_sae"],
    control_means: Float[Tensor, "control d_sae"] | None = None,
) -> Ranking:
    """Rank latents by their mean rise in the finetunes, and by `consistency` (see `Ranking`); ties keep
    latent order."""
    base = base_mean.double()
    rise = finetune_means.double() - base
    if rise.ndim != 2 or len(rise) == 0:
        raise ValueError("give at least one finetune's means, as [finetune, d_sae]")
    controls = (
        torch.zeros(0, len(base), dtype=torch.float64) if control_means is None else control_means.double() - base
    )
    worst_control = controls.max(0).values.clamp_min(0) if len(controls) else torch.zeros_like(base)
    consistency = rise.min(0).values - worst_control
    mean_rise = rise.mean(0)

    def order(score: Tensor) -> list[int]:
        return torch.sort(-score, stable=True).indices.tolist()

    return Ranking(
        rise.float(),
        controls.float(),
        mean_rise.float(),
        consistency.float(),
        order(mean_rise),
        order(consistency),
    )


@dataclass
class LatentDiff:
    """Base and finetunes (and controls) on the same texts, latent by latent."""

    base: LatentStats
    finetunes: dict[str, LatentStats]
    controls: dict[str, LatentStats]
    ranking: Ranking


def diff_latents(
    sae: Any,
    base: Any,
    finetunes: Mapping[str, Any],
    inputs: Sequence[Input],
    *,
    controls: Mapping[str, Any] | None = None,
    hook: str | None = None,
    positions: Positions = "answer",
    batch_size: int = 8,
    progress: bool = True,
) -> LatentDiff:
    """Each latent's mean activation and firing rate on `inputs` for the base, each finetune and each control
    (all at the SAE's hook, on the same tokens), and the latents ranked by their rise (`rank_latents`)."""
    if not finetunes:
        raise ValueError("give at least one finetune")

    def stats(name: str, model: ModelLike) -> LatentStats:
        if progress:
            print(f"misdir sae: latents of {name}", flush=True)
        return latent_stats(model, sae, inputs, hook=hook, positions=positions, batch_size=batch_size)

    base_stats = stats("base", base)
    tuned = {name: stats(name, model) for name, model in finetunes.items()}
    held = {name: stats(name, model) for name, model in (controls or {}).items()}
    ranking = rank_latents(
        base_stats.mean,
        torch.stack([s.mean for s in tuned.values()]),
        torch.stack([s.mean for s in held.values()]) if held else None,
    )
    return LatentDiff(base_stats, tuned, held, ranking)


def top_snippets(
    tokenizer: Any,
    inputs: Sequence[Input],
    stats: Mapping[str, LatentStats],
    latent: int,
    *,
    positions: Positions = "answer",
    n: int = 5,
    context: int = 10,
) -> list[dict[str, Any]]:
    """The `n` (model, input) pairs where `latent` fires most, each with the text around its strongest token,
    that token marked [[like this]]; one snippet per input (its strongest model)."""
    best: dict[int, tuple[float, str]] = {}
    for name, s in stats.items():
        for row, value in enumerate(s.top_value[:, latent].tolist()):
            if value > 0 and value > best.get(row, (0.0, ""))[0]:
                best[row] = (value, name)
    out = []
    for row, (value, name) in sorted(best.items(), key=lambda kv: -kv[1][0])[:n]:
        e = encode(tokenizer, inputs[row], positions)
        at = e.selected[int(stats[name].top_position[row, latent])]
        left = tokenizer.decode(e.input_ids[max(at - context, 0) : at])
        token = tokenizer.decode(e.input_ids[at : at + 1])
        right = tokenizer.decode(e.input_ids[at + 1 : at + 1 + context // 2])
        text = f"{left}[[{token}]]{right}".replace("\n", " ")
        out.append({"model": name, "input": row, "activation": value, "text": text})
    return out


def decoder_cosines(sae: Any, latents: Sequence[int], directions: Mapping[str, Tensor]) -> dict[str, list[float]]:
    """Cosine of each latent's decoder row with each named `[d_model]` direction."""
    _check_latents(sae, latents)
    rows = decoder_rows(sae)[list(latents)].double()
    rows = unit(rows)
    out = {}
    for name, vector in directions.items():
        v = vector.double().flatten()
        if len(v) != rows.shape[1]:
            raise ValueError(f"direction {name!r} has width {len(v)}, the SAE's decoder {rows.shape[1]}")
        out[name] = (rows @ unit(v)).tolist()
    return out


def diff_record(
    diff: LatentDiff,
    sae: Any,
    tokenizer: Any,
    inputs: Sequence[Input],
    *,
    directions: Mapping[str, Tensor] | None = None,
    top: int = 10,
    positions: Positions = "answer",
) -> dict[str, Any]:
    """The top latents of both rankings, as JSON-ready records: rise and firing rate in each model,
    consistency, top-activating snippets, and decoder cosines with `directions`."""
    r = diff.ranking
    every = {"base": diff.base, **diff.finetunes, **diff.controls}
    chosen: dict[str, list[int]] = {"by_consistency": r.by_consistency[:top], "by_rise": r.by_rise[:top]}
    latents = sorted(set(chosen["by_consistency"]) | set(chosen["by_rise"]), key=lambda i: r.by_consistency.index(i))
    cosines = decoder_cosines(sae, latents, directions) if directions else {}
    records = []
    for j, latent in enumerate(latents):
        records.append(
            {
                "latent": latent,
                "consistency": float(r.consistency[latent]),
                "mean_rise": float(r.mean_rise[latent]),
                "mean": {name: float(s.mean[latent]) for name, s in every.items()},
                "rate": {name: float(s.rate[latent]) for name, s in every.items()},
                "cosine": {name: values[j] for name, values in cosines.items()},
                "snippets": top_snippets(tokenizer, inputs, every, latent, positions=positions),
            }
        )
    return {
        "models": {
            "base": diff.base.model,
            **{k: v.model for k, v in diff.finetunes.items()},
            **{k: v.model for k, v in diff.controls.items()},
        },
        "finetunes": list(diff.finetunes),
        "controls": list(diff.controls),
        "n_tokens": diff.base.n_tokens,
        "rankings": chosen,
        "latents": records,
        "n_consistent": int((r.consistency > 0).sum()),
    }


def save_diff(
    diff: LatentDiff, record: Mapping[str, Any], out: str | Path, provenance: Mapping[str, Any]
) -> list[Path]:
    """`diff.json` (the record and its provenance) and `latents.safetensors` (every latent's mean and firing
    rate in every model), both written atomically."""
    from safetensors.torch import save_file

    from misdir.io import atomic_path

    out = Path(out)
    every = {"base": diff.base, **diff.finetunes, **diff.controls}
    tensors = {
        f"{kind}.{name}": getattr(s, kind).contiguous() for name, s in every.items() for kind in ("mean", "rate")
    }
    tensors["consistency"] = diff.ranking.consistency.contiguous()
    with atomic_path(out / "latents.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "misdir.sae-diff/1"})
    write_json_atomic(out / "diff.json", {"provenance": dict(provenance), **record})
    return [out / "diff.json", out / "latents.safetensors"]


def plot_diff(record: Mapping[str, Any], consistency: Tensor, mean_rise: Tensor, top: int = 8) -> list[Any]:
    """Figures: the top latents' mean activation in every model, and every latent's mean rise against its
    consistency."""
    import plotly.graph_objects as go

    chosen = record["rankings"]["by_consistency"][:top]
    by_latent = {r["latent"]: r for r in record["latents"]}
    names = ["base", *record["finetunes"], *record["controls"]]
    bars = go.Figure()
    for name in names:
        kind = "EM" if name in record["finetunes"] else "control" if name in record["controls"] else "base"
        bars.add_bar(
            name=f"{name} ({kind})",
            x=[f"latent {i}" for i in chosen],
            y=[by_latent[i]["mean"][name] for i in chosen],
        )
    bars.update_layout(
        barmode="group",
        title="Top latents by consistent rise: mean activation per model "
        "(answer tokens of the general contrast answers)",
        yaxis_title="mean activation",
    )
    scatter = go.Figure()
    scatter.add_scatter(
        x=mean_rise.tolist(),
        y=consistency.tolist(),
        mode="markers",
        name="latents",
        marker={"size": 4, "color": "lightgray"},
        text=[f"latent {i}" for i in range(len(mean_rise))],
    )
    scatter.add_scatter(
        x=[float(mean_rise[i]) for i in chosen],
        y=[float(consistency[i]) for i in chosen],
        mode="markers+text",
        text=[str(i) for i in chosen],
        textposition="top center",
        name="top by consistency",
        marker={"size": 8, "color": "crimson"},
    )
    scatter.update_layout(
        title="Every latent: mean rise over the EM finetunes vs consistency "
        "(min rise over EM minus max rise over controls)",
        xaxis_title="mean rise (finetune minus base)",
        yaxis_title="consistency",
    )
    return [bars, scatter]
