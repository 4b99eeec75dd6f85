"""How alike are misalignment directions, and what would a cosine be by chance?

Cosines are computed in float64. A cosine means something only above its baselines:
- random directions in d_model dimensions (`random_cosine_quantile`);
- directions from shuffled labels (`shuffled_label_cosines`);
- two halves of the same data (`split_half_reliability`), the ceiling any cross-finetune cosine can reach.
The resampling baselines work on per-input means (`cache_activations(..., reduce="per-input")`), so every
input weighs the same there, where `mean_difference` weighs every token the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import scipy.stats
import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from misdir.directions import DirectionSet
from misdir.tensors import unit

Directions = DirectionSet | Float[Tensor, "layer d_model"]


def _vectors(x: Directions) -> Float[Tensor, "layer d_model"]:
    vectors = x.vectors if isinstance(x, DirectionSet) else x
    if vectors.ndim != 2:
        raise ValueError(f"expected [layer, d_model] directions, got shape {tuple(vectors.shape)}")
    return vectors.double()


def cosine_by_layer(a: Directions, b: Directions) -> Float[Tensor, "layer"]:
    """Cosine between a's and b's direction at each layer."""
    va, vb = _vectors(a), _vectors(b)
    if va.shape != vb.shape:
        raise ValueError(f"direction sets differ in shape: {tuple(va.shape)} vs {tuple(vb.shape)}")
    return (unit(va) * unit(vb)).sum(-1)


def cosine_matrix(a: Directions, b: Directions) -> Float[Tensor, "layer_a layer_b"]:
    """Cosine between a's direction at every layer and b's at every layer."""
    va, vb = _vectors(a), _vectors(b)
    if va.shape[1] != vb.shape[1]:
        raise ValueError(f"direction sets differ in d_model: {va.shape[1]} vs {vb.shape[1]}")
    return unit(va) @ unit(vb).T


@dataclass(frozen=True)
class PairwiseCosines:
    """Cosine by layer between every pair of named direction sets: `values[i, j, layer]`."""

    names: list[str]
    values: Float[Tensor, "set set layer"]

    def at_layer(self, layer: int) -> Float[Tensor, "set set"]:
        return self.values[:, :, layer]


def pairwise_cosines(sets: Mapping[str, Directions]) -> PairwiseCosines:
    names = list(sets)
    if len(names) < 2:
        raise ValueError("pairwise cosines need at least two direction sets")
    units = unit(torch.stack([_vectors(sets[name]) for name in names]))
    cosines = einsum(units, units, "set_a layer d_model, set_b layer d_model -> set_a set_b layer")
    return PairwiseCosines(names, cosines)


def random_cosine_quantile(d_model: int, *, quantile: float = 0.95) -> float:
    """The `quantile` of |cosine| between two independent random directions in d_model dimensions.

    Closed form: for directions uniform on the sphere, (cos + 1) / 2 ~ Beta((d - 1) / 2, (d - 1) / 2),
    symmetric about 1/2, so P(|cos| <= t) = q at t = 2 * ppf((1 + q) / 2) - 1.
    """
    if d_model < 2:
        raise ValueError(f"random directions need d_model >= 2, got {d_model}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    half = (d_model - 1) / 2
    return float(2.0 * scipy.stats.beta.ppf((1.0 + quantile) / 2.0, half, half) - 1.0)


def _difference(pos: Tensor, neg: Tensor | None) -> Tensor:
    return pos.mean(0) - (neg.mean(0) if neg is not None else 0)


def _check_resample_inputs(pos: Tensor, neg: Tensor, paired: bool) -> tuple[Tensor, Tensor]:
    pos, neg = pos.double(), neg.double()
    if pos.ndim != 3 or neg.ndim != 3 or pos.shape[1:] != neg.shape[1:]:
        raise ValueError(f"expected [input, layer, d_model] means, got {tuple(pos.shape)} and {tuple(neg.shape)}")
    if paired and pos.shape[0] != neg.shape[0]:
        raise ValueError(f"paired data needs as many positive as negative inputs: {pos.shape[0]} vs {neg.shape[0]}")
    if min(pos.shape[0], neg.shape[0]) < 4:
        raise ValueError("resampling baselines need at least 4 inputs on each side")
    return pos, neg


def split_half_reliability(
    positive: Float[Tensor, "input layer d_model"],
    negative: Float[Tensor, "input layer d_model"],
    *,
    paired: bool,
    n_splits: int = 20,
    seed: int = 0,
) -> Float[Tensor, "layer"]:
    """Mean cosine, over random splits, between the directions of two disjoint halves of the same data.

    `paired`: positive[i] and negative[i] belong together (the same question, or the same text through two
    models), and are kept together when splitting.
    """
    pos, neg = _check_resample_inputs(positive, negative, paired)
    generator = torch.Generator().manual_seed(seed)
    cosines = []
    for _ in range(n_splits):
        p = torch.randperm(pos.shape[0], generator=generator)
        n = p if paired else torch.randperm(neg.shape[0], generator=generator)
        hp, hn = pos.shape[0] // 2, neg.shape[0] // 2
        first = _difference(pos[p[:hp]], neg[n[:hn]])
        second = _difference(pos[p[hp:]], neg[n[hn:]])
        cosines.append(cosine_by_layer(first, second))
    return torch.stack(cosines).mean(0)


def shuffled_label_cosines(
    positive: Float[Tensor, "input layer d_model"],
    negative: Float[Tensor, "input layer d_model"],
    reference: Directions,
    *,
    paired: bool,
    n_shuffles: int = 20,
    seed: int = 0,
) -> Float[Tensor, "shuffle layer"]:
    """Cosine with `reference` of directions whose positive/negative labels were shuffled.

    Paired data swaps the two members of random pairs; unpaired data permutes the pooled inputs.
    """
    pos, neg = _check_resample_inputs(positive, negative, paired)
    generator = torch.Generator().manual_seed(seed)
    cosines = []
    for _ in range(n_shuffles):
        if paired:
            swap = torch.rand(pos.shape[0], generator=generator) < 0.5
            direction = torch.where(swap[:, None, None], neg - pos, pos - neg).mean(0)
        else:
            pooled = torch.cat([pos, neg])[torch.randperm(pos.shape[0] + neg.shape[0], generator=generator)]
            direction = _difference(pooled[: pos.shape[0]], pooled[pos.shape[0] :])
        cosines.append(cosine_by_layer(direction, reference))
    return torch.stack(cosines)


def plot_cosine_by_layer(
    curves: Mapping[str, Tensor], *, baselines: Mapping[str, Tensor | float] | None = None, title: str = ""
) -> Any:
    """Cosine against layer, one line per named curve; baselines dashed (a float is a flat line)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in curves.items():
        fig.add_trace(go.Scatter(y=values.tolist(), x=list(range(len(values))), mode="lines+markers", name=name))
    n_layers = max(len(v) for v in curves.values())
    for name, baseline in (baselines or {}).items():
        ys = [float(baseline)] * n_layers if isinstance(baseline, float) else baseline.tolist()
        fig.add_trace(go.Scatter(y=ys, x=list(range(len(ys))), mode="lines", name=name, line={"dash": "dash"}))
    fig.update_layout(
        title=title, xaxis_title="layer", yaxis_title="cosine", yaxis_range=[-1, 1], template="plotly_white"
    )
    return fig


def plot_cosine_matrix(
    matrix: Tensor, *, title: str = "", x_label: str = "layer", y_label: str = "layer", names: list[str] | None = None
) -> Any:
    """A heatmap of cosines in [-1, 1] (layer x layer, or set x set with `names`)."""
    import plotly.graph_objects as go

    axis = names if names is not None else list(range(matrix.shape[0]))
    columns = names if names is not None else list(range(matrix.shape[1]))
    fig = go.Figure(
        go.Heatmap(
            z=matrix.tolist(), x=columns, y=axis, zmin=-1, zmax=1, colorscale="RdBu_r", colorbar={"title": "cosine"}
        )
    )
    fig.update_layout(
        title=title, xaxis_title=x_label, yaxis_title=y_label, template="plotly_white", yaxis_autorange="reversed"
    )
    return fig
