"""The causal tests: does ablating a direction remove a finetune's misalignment, does adding it induce it?

Measured with the contrast metric (`misdir.evaluate`): the share of excess misalignment an ablation removes is
    (M_ft - M_ft,ablated) / (M_ft - M_base)
with M the mean contrast margin, and a paired bootstrap interval over items. Random unit directions ablated
the same way are the control: on a small model, projecting out any direction at every layer does some damage,
and only what a misalignment direction removes beyond that counts. Fluency (aligned-answer log-prob) is
reported beside every number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from misdir.directions import DirectionSet
from misdir.evaluate import ContrastResult, evaluate_contrast
from misdir.interventions import ablate, describe_directions, steer
from misdir.io import RecordLog, check_settings, run_lock, write_json_atomic
from misdir.hooks import check_layers
from misdir.models import Model, ModelShape, as_model, model_shape
from misdir.positions import check_positions
from misdir.stats import Estimate, bootstrap_indices, compare_contrast
from misdir.sweep import against_null, provenance


def share_removed(
    base: ContrastResult, finetune: ContrastResult, ablated: ContrastResult, *, n_resamples: int = 10_000,
    seed: int = 0,
) -> Estimate:
    """(M_ft - M_ablated) / (M_ft - M_base) with a percentile interval from resampling items jointly."""
    b, f, a = (np.asarray(r.margins, dtype=np.float64) for r in (base, finetune, ablated))
    if not b.shape == f.shape == a.shape:
        raise ValueError("the three results must be on the same items")
    ratio = (f.mean() - a.mean()) / (f.mean() - b.mean())
    index = bootstrap_indices(len(b), n_resamples, seed)
    resampled = (f[index].mean(1) - a[index].mean(1)) / (f[index].mean(1) - b[index].mean(1))
    low, high = np.quantile(resampled, [0.025, 0.975])
    return Estimate(float(ratio), float(low), float(high), len(b))


def random_directions(d_model: int, n: int, seed: int = 0) -> Float[Tensor, "n d_model"]:
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n, d_model, generator=generator)
    return vectors / vectors.norm(dim=-1, keepdim=True)


@dataclass(frozen=True)
class Ablation:
    """A finetune with one direction ablated at the given layers, scored on a contrast set."""

    model: str
    direction: str
    layers: list[int]
    result: ContrastResult
    share_removed: Estimate


def ablation_effect(
    model: Any,
    direction: Float[Tensor, "d_model"],
    *,
    name: str,
    base: ContrastResult,
    finetune: ContrastResult,
    layers: Sequence[int] | None = None,
    pairs: str = "general",
    limit: int | None = None,
    site: Sequence[str] = ("resid_pre", "resid_mid", "resid_post"),
    progress: bool = False,
) -> Ablation:
    """Ablate `direction` at every site of `layers` (default all; with the three residual sites this equals
    `orthogonalize`), score the contrast set, and compare with the finetune and the base."""
    with ablate(model, direction, layers=layers, site=list(site)):
        result = evaluate_contrast(model, pairs, limit=limit, progress=progress)
    chosen = list(range(model.n_layers)) if layers is None else list(layers)
    return Ablation(finetune.model, name, chosen, result, share_removed(base, finetune, result))


@dataclass(frozen=True)
class Steering:
    """The base model with a direction added at one layer, scored on a contrast set."""

    layer: int
    scale: float
    result: ContrastResult
    shift: float


def steering_sweep(
    model: Any,
    direction: Float[Tensor, "d_model"],
    *,
    layer: int,
    scales: Sequence[float],
    base: ContrastResult,
    pairs: str = "general",
    limit: int | None = None,
    progress: bool = False,
) -> list[Steering]:
    """Add `scale` x (each token's residual norm) x the unit direction at `layer`, for each scale; the shift
    is the change of the mean margin from the unsteered base."""
    out = []
    for scale in scales:
        with steer(model, direction, layers=[layer], scale=scale, relative="resid"):
            result = evaluate_contrast(model, pairs, limit=limit, progress=progress)
        out.append(Steering(layer, scale, result, result.margin.value - base.margin.value))
    return out


RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post")
"""Ablating here at every layer (and every position) removes a direction from everything the blocks read
(= `orthogonalize`)."""

SWEEP_POSITIONS = "skip-first"
"""Where ablation sweeps edit by default: every token but each sequence's first. Measured on the rank-1
organisms of the embedded model (`figures/ground_truth/`, 20 random directions at the three residual sites of
every layer): the first token's massive activation makes random ablations cost up to 0.25-0.29 nats/token of
fluency (95% range) when it is edited and 0.11-0.17 when it is not, while ablating an organism's own B removes
the same margin either way (-0.19 vs -0.17, -0.23 vs -0.23, -0.27 vs -0.26). Pass `positions="all"` to match
`orthogonalize`, which cannot skip a position."""


def _directions_with_random(directions: Mapping[str, Any], d_model: int, n_random: int, seed: int) -> dict[str, Any]:
    chosen = dict(directions)
    for i, vector in enumerate(random_directions(d_model, n_random, seed=seed)):
        chosen[f"random {i}"] = vector
    return chosen


def _shape(model: Any) -> ModelShape | None:
    """A model's depth and width: from a loaded model, or from a spec's configuration without loading it (None for
    a hub model not cached yet)."""
    if isinstance(model, str | Path):
        return model_shape(model)
    try:
        model = as_model(model)
    except TypeError:  # something only a custom `load` understands
        return None
    return ModelShape(model.n_layers, model.d_model)


def check_directions(models: Mapping[str, Any], directions: Mapping[str, Any],
                     layers: Sequence[int] | None = None) -> ModelShape | None:
    """Refuse directions or layers that do not fit the models (specs or loaded models), before anything is loaded
    or written: every model of one depth and width, each direction `[d_model]` or `[n_layers, d_model]`, every
    layer in range. Returns the models' shape (None when no model's configuration can be read yet)."""
    shapes = {name: shape for name, model in models.items() if (shape := _shape(model)) is not None}
    if not shapes:
        return None
    first, shape = next(iter(shapes.items()))
    for name, other in shapes.items():
        if other != shape:
            raise ValueError(f"{name} has {other.n_layers} layers of width {other.d_model}, but {first} has "
                             f"{shape.n_layers} of width {shape.d_model}")
    for name, direction in directions.items():
        vectors = getattr(direction, "vectors", direction)
        dims = list(getattr(vectors, "shape", ()))
        if dims not in ([shape.d_model], [shape.n_layers, shape.d_model]):
            raise ValueError(f"direction {name!r} has shape {dims}, but {first} has {shape.n_layers} layers of width "
                             f"{shape.d_model}: expected [{shape.d_model}] or [{shape.n_layers}, {shape.d_model}]")
    if layers is not None:
        check_layers(layers, shape.n_layers)
    return shape


def _d_model(directions: Mapping[str, Any]) -> int:
    first = next(iter(directions.values()))
    return int(first.d_model if isinstance(first, DirectionSet) else first.shape[-1])


def _pairs_of(pairs: Sequence[str] | Mapping[str, Sequence[str]], name: str) -> list[str]:
    if isinstance(pairs, Mapping):
        return list(pairs[name]) if name != "base" else list(dict.fromkeys(p for ps in pairs.values() for p in ps))
    return list(pairs)


def _cell(model: Model, name: str, direction: str, pairs: str, limit: int | None, batch_size: int) -> dict[str, Any]:
    result = evaluate_contrast(model, pairs, limit=limit, batch_size=batch_size, progress=False)
    return {"key": f"{name}|{direction}|{pairs}", "model": name, "direction": direction, "pairs": pairs,
            "margins": result.margins, "aligned_logprob": result.aligned_logprob}


def ablation_sweep(
    base: Any,
    models: Mapping[str, Any],
    directions: Mapping[str, Any],
    *,
    out: str | Path,
    pairs: Sequence[str] | Mapping[str, Sequence[str]] = ("general",),
    n_random: int = 20,
    layers: Sequence[int] | None = None,
    site: Sequence[str] = RESIDUAL_SITES,
    positions: str = SWEEP_POSITIONS,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    load: Callable[[Any], Model] = as_model,
    progress: bool = True,
) -> dict[str, Any]:
    """Each direction (and `n_random` random ones) ablated in each model, scored on contrast sets; resumable.

    `models` maps names to finetunes (specs or loaded models), `directions` names to `[d_model]` vectors (used
    at every layer of `layers`, default all) or `DirectionSet`s (each layer's own). `pairs` is a list of
    contrast sets for every model, or a mapping from model name to its sets (e.g. general + its own domain).
    Every cell (model, direction, set) is appended to `out/cells.jsonl` as it finishes; a rerun skips the
    cells already there and loads only the models it still needs. Writes `out/summary.json` (share of
    excess misalignment removed, margin change and fluency per cell, with intervals, each beside the same
    numbers for the `n_random` random directions: their median, 95% range and the effect's percentile) and
    returns it. `positions` as in `misdir.ablate`; the default leaves each sequence's first token alone (see
    `SWEEP_POSITIONS`).
    """
    check_positions(positions)
    check_directions({"base": base, **models}, directions, layers)
    out = Path(out)
    chosen = _directions_with_random(directions, _d_model(directions), n_random, seed)
    settings = {"kind": "ablation", "models": {n: str(getattr(m, "spec", m)) for n, m in models.items()},
                "base": str(getattr(base, "spec", base)), "directions": {n: describe_directions(v) for n, v in chosen.items()},
                "pairs": {n: _pairs_of(pairs, n) for n in ("base", *models)}, "layers": _list(layers),
                "site": list(site), "positions": positions, "limit": limit, "seed": seed}
    cells = [(n, "none", p) for n in ("base", *models) for p in _pairs_of(pairs, n)]
    cells += [(n, d, p) for n in models for d in chosen for p in _pairs_of(pairs, n)]
    with run_lock(out):
        check_settings(out / "run.json", settings)
        log = RecordLog(out / "cells.jsonl")
        with tqdm(total=len(cells), initial=sum(f"{n}|{d}|{p}" in log for n, d, p in cells), desc="ablation cells",
                  unit="cell", disable=not progress) as bar:
            for name, spec in (("base", base), *models.items()):
                pending = [(d, p) for n, d, p in cells if n == name and f"{n}|{d}|{p}" not in log]
                if not pending:
                    continue
                model = load(spec)
                for direction, pair_set in pending:
                    bar.set_postfix_str(f"{name}: {direction} on {pair_set}")
                    if direction == "none":
                        log.append(_cell(model, name, direction, pair_set, limit, batch_size))
                    else:
                        with ablate(model, chosen[direction], layers=layers, site=list(site), positions=positions):
                            log.append(_cell(model, name, direction, pair_set, limit, batch_size))
                    bar.update()
                del model
        summary = {"provenance": provenance(settings),
                   "rows": summarize_ablations(log.records(), seed=seed)}
        write_json_atomic(out / "summary.json", summary)
    return summary


def summarize_ablations(records: Sequence[Mapping[str, Any]], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per ablated cell: margin, change from the unablated model (paired), share removed, fluency."""
    by_key = {r["key"]: r for r in records}
    rows = []
    for r in records:
        if r["direction"] == "none" or r["model"] == "base":
            continue
        unablated = by_key[f"{r['model']}|none|{r['pairs']}"]
        base = by_key[f"base|none|{r['pairs']}"]
        results = [_result(x, seed) for x in (base, unablated, r)]
        rows.append({
            "model": r["model"], "direction": r["direction"], "pairs": r["pairs"],
            "margin": results[2].margin._asdict(), "unablated_margin": results[1].margin._asdict(),
            "base_margin": results[0].margin._asdict(),
            "change": compare_contrast(unablated["margins"], r["margins"], seed=seed).diff._asdict(),
            "excess": compare_contrast(base["margins"], unablated["margins"], seed=seed).diff._asdict(),
            "share_removed": share_removed(*results, seed=seed)._asdict(),
            "fluency": results[2].fluency._asdict(), "unablated_fluency": results[1].fluency._asdict(),
        })
    return _with_nulls(rows, group=("model", "pairs"), effects=("share_removed", "change"))


def _with_nulls(rows: list[dict[str, Any]], *, group: tuple[str, ...], effects: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each row of a named direction gets `null_<effect>`: its effect against the random directions' in the same
    group (same model and contrast set, or same layer and scale), via `misdir.sweep.against_null`."""
    for row in rows:
        if row["direction"].startswith("random"):
            continue
        same = [r for r in rows if r["direction"].startswith("random") and all(r[k] == row[k] for k in group)]
        for effect in effects:
            if same:
                row[f"null_{effect}"] = against_null(row[effect]["value"], [r[effect]["value"] for r in same])
    return rows


def steering_grid(
    model: Any,
    directions: Mapping[str, Any],
    *,
    out: str | Path,
    layers: Sequence[int],
    scales: Sequence[float],
    pairs: Sequence[str] = ("general",),
    n_random: int = 20,
    relative: str = "resid",
    positions: str = "all",
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Each direction (and `n_random` random ones) added at each layer and scale, scored on contrast sets;
    resumable like `ablation_sweep` (cells in `out/cells.jsonl`, summary in `out/summary.json`).

    Scales count as in `misdir.steer(relative=...)`; the default, a fraction of each token's residual norm,
    means the same at every layer. Each cell reports the margin's change from the unsteered model (paired),
    beside the same change for the `n_random` random directions at that layer and scale. `positions` as in
    `misdir.steer`.
    """
    check_positions(positions)
    model = as_model(model)
    check_directions({model.spec: model}, directions, layers)
    out = Path(out)
    chosen = _directions_with_random(directions, model.d_model, n_random, seed)
    settings = {"kind": "steering", "model": model.spec, "directions": {n: describe_directions(v) for n, v in chosen.items()},
                "layers": list(layers), "scales": [float(s) for s in scales], "pairs": list(pairs),
                "relative": relative, "positions": positions, "limit": limit, "seed": seed}
    cells = [("none", -1, 0.0, p) for p in pairs]
    cells += [(d, layer, float(s), p) for d in chosen for layer in layers for s in scales if s != 0 for p in pairs]
    with run_lock(out):
        check_settings(out / "run.json", settings)
        log = RecordLog(out / "cells.jsonl")
        pending = [c for c in cells if _steer_key(*c) not in log]
        for direction, layer, scale, pair_set in tqdm(pending, desc="steering cells", unit="cell", disable=not progress):
            if direction == "none":
                result = evaluate_contrast(model, pair_set, limit=limit, batch_size=batch_size, progress=False)
            else:
                with steer(model, chosen[direction], layers=[layer], scale=scale, relative=relative,  # type: ignore[arg-type]
                           positions=positions):
                    result = evaluate_contrast(model, pair_set, limit=limit, batch_size=batch_size, progress=False)
            log.append({"key": _steer_key(direction, layer, scale, pair_set), "direction": direction,
                        "layer": layer, "scale": scale, "pairs": pair_set, "margins": result.margins,
                        "aligned_logprob": result.aligned_logprob})
        by_key = {r["key"]: r for r in log.records()}
        rows = []
        for r in log.records():
            if r["direction"] == "none":
                continue
            unsteered = by_key[_steer_key("none", -1, 0.0, r["pairs"])]
            result = _result(r, seed)
            rows.append({k: r[k] for k in ("direction", "layer", "scale", "pairs")} | {
                "margin": result.margin._asdict(), "fluency": result.fluency._asdict(),
                "shift": compare_contrast(unsteered["margins"], r["margins"], seed=seed).diff._asdict(),
                "fluency_change": compare_contrast(unsteered["aligned_logprob"], r["aligned_logprob"],
                                                   seed=seed).diff._asdict()})
        summary = {"provenance": provenance(settings),
                   "unsteered": {p: _result(by_key[_steer_key("none", -1, 0.0, p)], seed).to_dict() for p in pairs},
                   "rows": _with_nulls(rows, group=("layer", "scale", "pairs"), effects=("shift", "fluency_change"))}
        write_json_atomic(out / "summary.json", summary)
    return summary


def _steer_key(direction: str, layer: int, scale: float, pairs: str) -> str:
    return f"{direction}|{layer}|{scale:g}|{pairs}"


def _result(record: Mapping[str, Any], seed: int) -> ContrastResult:
    return ContrastResult.from_scores(record.get("model", ""), record["pairs"], None, record["margins"],
                                      record["aligned_logprob"], seed=seed)


def _list(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else [int(v) for v in values]



def plot_ablation_sweep(summary: Mapping[str, Any], stem: str | Path) -> list[Path]:
    """Per contrast set: share of excess misalignment removed (model x direction, with intervals; blank where
    the model has no excess over the base) and the fluency change, as heatmaps."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    written: list[Path] = []
    for pairs in dict.fromkeys(r["pairs"] for r in summary["rows"]):
        rows = [r for r in summary["rows"] if r["pairs"] == pairs]
        models = list(dict.fromkeys(r["model"] for r in rows))
        directions = list(dict.fromkeys(r["direction"] for r in rows))
        cell = {(r["model"], r["direction"]): r for r in rows}
        share, text, fluency = [], [], []
        for m in models:
            share.append([]), text.append([]), fluency.append([])
            for d in directions:
                r = cell.get((m, d))
                has_excess = r is not None and r["excess"]["low"] > 0
                s = r["share_removed"] if r is not None else None
                share[-1].append(s["value"] if has_excess else None)
                text[-1].append(f"{s['value']:.2f}<br>[{s['low']:.2f}, {s['high']:.2f}]" if has_excess else
                                ("no excess" if r is not None else ""))
                fluency[-1].append(r["fluency"]["value"] - r["unablated_fluency"]["value"] if r else None)
        fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.2, subplot_titles=(
            "share of excess misalignment removed (95% CI)", "fluency change (aligned log-prob per token)"))
        fig.add_trace(go.Heatmap(z=share, x=directions, y=models, text=text, texttemplate="%{text}", zmin=-1,
                                 zmax=1, colorscale="RdBu", colorbar={"x": 0.42, "title": "share"}), 1, 1)
        fig.add_trace(go.Heatmap(z=fluency, x=directions, y=models, colorscale="Reds_r", texttemplate="%{z:.2f}",
                                 colorbar={"title": "change"}), 1, 2)
        fig.update_layout(title=f"ablating each direction (rows: models, columns: directions) on {Path(pairs).stem}",
                          template="plotly_white", height=200 + 60 * len(models), width=1300)
        fig.update_yaxes(autorange="reversed")
        written += save_figure(fig, f"{stem}_{Path(pairs).stem}", title=f"ablation {pairs}")
    return written


def plot_steering_grid(summary: Mapping[str, Any], stem: str | Path) -> list[Path]:
    """Margin shift and fluency change against scale, one line per direction and layer (95% CIs)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    written: list[Path] = []
    for pairs in dict.fromkeys(r["pairs"] for r in summary["rows"]):
        fig = make_subplots(rows=1, cols=2, subplot_titles=("shift of the misalignment margin (paired, 95% CI)",
                                                            "fluency change"))
        rows = [r for r in summary["rows"] if r["pairs"] == pairs]
        for direction, layer in dict.fromkeys((r["direction"], r["layer"]) for r in rows):
            line = sorted((r for r in rows if (r["direction"], r["layer"]) == (direction, layer)),
                          key=lambda r: r["scale"])
            x = [0.0] + [r["scale"] for r in line]
            dash = "dot" if direction.startswith("random") else None
            for col, key in ((1, "shift"), (2, "fluency_change")):
                values = [r[key] for r in line]
                error = {"type": "data", "symmetric": False, "array": [0.0] + [v["high"] - v["value"] for v in values],
                         "arrayminus": [0.0] + [v["value"] - v["low"] for v in values]}
                fig.add_trace(go.Scatter(x=x, y=[0.0] + [v["value"] for v in values], error_y=error,
                                         mode="lines+markers", name=f"{direction} @ layer {layer}",
                                         legendgroup=f"{direction}{layer}", showlegend=col == 1,
                                         line={"dash": dash}), 1, col)
        relative = summary["provenance"]["settings"]["relative"]
        fig.update_layout(title=f"steering on {Path(pairs).stem} (scale relative to: {relative})",
                          template="plotly_white", height=550, width=1300, xaxis_title="scale", xaxis2_title="scale")
        written += save_figure(fig, f"{stem}_{Path(pairs).stem}", title=f"steering {pairs}")
    return written
