"""The causal tests: does ablating a direction remove a finetune's misalignment, does adding it induce it?

Measured with the contrast metric (`misdir.evaluate`): the share of excess misalignment an ablation removes is
    (M_ft - M_ft,ablated) / (M_ft - M_base)
with M the mean contrast margin, and a paired bootstrap interval over items. Random unit directions ablated
the same way are the control: on a small model, projecting out any direction at every layer does some damage,
and only what a misalignment direction removes beyond that counts. Fluency (aligned-answer log-prob) is
reported beside every number.

`ablation_sweep` and `steering_grid` are configurations of the sweep engine (`misdir.sweep`): each builds its
list of cells, runs them resumably, and returns typed rows (`AblationRow`, `SteeringRow`) that its figure
(`misdir.sweep_plots`) is drawn from. `ablation_effect` and `steering_sweep` are the same measurements on one loaded
model, in memory (no resume); they edit every position unless given `positions` (the sweeps: `SWEEP_POSITIONS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float
from torch import Tensor

from misdir.directions import DirectionSet
from misdir.display import Record, RowsRecord
from misdir.evaluate import ContrastResult, HasMargins, evaluate_contrast
from misdir.interventions import Relative, ablate, describe_directions, steer
from misdir.io import run_lock, write_json_atomic
from misdir.models import Model, ModelLike, as_model
from misdir.positions import Positions, check_positions
from misdir.stats import Estimate, bootstrap_indices, paired_difference
from misdir.sweep import (
    NO_EDIT,
    Cell,
    Edit,
    Effect,
    SweepRow,
    check_directions,
    is_random,
    provenance,
    random_directions,
    random_nulls,
    score_cells,
    with_random,
)

__all__ = [
    "RESIDUAL_SITES",
    "SWEEP_POSITIONS",
    "Ablation",
    "AblationRow",
    "AblationSweep",
    "Steering",
    "SteeringGrid",
    "SteeringRow",
    "ablation_effect",
    "ablation_sweep",
    "check_directions",
    "random_directions",
    "share_removed",
    "steering_grid",
    "steering_sweep",
]


def share_removed(
    base: HasMargins,
    finetune: HasMargins,
    ablated: HasMargins,
    *,
    n_resamples: int = 10_000,
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


@dataclass(frozen=True, repr=False)
class Ablation(Record):
    """A finetune with one direction ablated at the given layers, scored on a contrast set."""

    model: str
    direction: str
    layers: list[int]
    result: ContrastResult
    share_removed: Estimate


def ablation_effect(
    model: ModelLike,
    direction: Float[Tensor, "d_model"],
    *,
    name: str,
    base: ContrastResult,
    finetune: ContrastResult,
    layers: Sequence[int] | None = None,
    pairs: str = "general",
    limit: int | None = None,
    site: Sequence[str] = ("resid_pre", "resid_mid", "resid_post"),
    positions: Positions = "all",
    progress: bool = False,
) -> Ablation:
    """Ablate `direction` at every site of `layers` (default all; with the three residual sites and every position
    this equals `orthogonalize`), score the contrast set, and compare with the finetune and the base."""
    model = as_model(model)
    with ablate(model, direction, layers=layers, site=list(site), positions=positions):
        result = evaluate_contrast(model, pairs, limit=limit, progress=progress)
    chosen = list(range(model.n_layers)) if layers is None else list(layers)
    return Ablation(finetune.model, name, chosen, result, share_removed(base, finetune, result))


@dataclass(frozen=True, repr=False)
class Steering(Record):
    """The base model with a direction added at one layer, scored on a contrast set."""

    layer: int
    scale: float
    result: ContrastResult
    shift: float


def steering_sweep(
    model: ModelLike,
    direction: Float[Tensor, "d_model"],
    *,
    layer: int,
    scales: Sequence[float],
    base: ContrastResult,
    pairs: str = "general",
    limit: int | None = None,
    positions: Positions = "all",
    progress: bool = False,
) -> list[Steering]:
    """Add `scale` x (each token's residual norm) x the unit direction at `layer` (at `positions`), for each scale;
    the shift is the change of the mean margin from the unsteered base."""
    out = []
    for scale in scales:
        with steer(model, direction, layers=[layer], scale=scale, relative="resid", positions=positions):
            result = evaluate_contrast(model, pairs, limit=limit, progress=progress)
        out.append(Steering(layer, scale, result, result.margin.value - base.margin.value))
    return out


RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post")
"""Ablating here at every layer (and every position) removes a direction from everything the blocks read
(= `orthogonalize`)."""

SWEEP_POSITIONS: Positions = "skip-first"
"""Where ablation and steering sweeps edit by default: every token but each sequence's first. Measured on the
rank-1 organisms of the embedded model (`figures/ground_truth/`, against 20 random directions):
- ablating at the three residual sites of every layer, the first token's massive activation makes random
  ablations cost up to 0.25-0.29 nats/token of fluency (95% range) when it is edited and 0.11-0.17 when it is
  not, while ablating an organism's own B removes the same margin either way (-0.19 vs -0.17, -0.23 vs -0.23,
  -0.27 vs -0.26);
- steering the base along B at layer 15 (0.2 of the residual norm), random directions move the margin within
  [-0.11, +0.22] and cost 0.40-1.21 nats/token when the first token is steered, [-0.03, +0.07] and 0.06-0.30
  when it is not; the EM organisms' Bs shift +0.06/+0.08/+0.17 (percentiles 65/80/90 of the null) at every
  position but +0.06/+0.11/+0.10 (80/100/100) skipping the first (`steer_positions` study).
Pass `positions="all"` to match `orthogonalize`, which cannot skip a position."""


def _d_model(directions: Mapping[str, Any]) -> int:
    first = next(iter(directions.values()))
    return int(first.d_model if isinstance(first, DirectionSet) else first.shape[-1])


def _pairs_of(pairs: Sequence[str] | Mapping[str, Sequence[str]], name: str) -> list[str]:
    if isinstance(pairs, Mapping):
        return list(pairs[name]) if name != "base" else list(dict.fromkeys(p for ps in pairs.values() for p in ps))
    return list(pairs)


@dataclass(frozen=True, repr=False)
class AblationRow(SweepRow):
    """A direction ablated in a finetune: its margin and fluency before and after, the base's margin, and the
    share of the finetune's excess misalignment removed and the margin change, each beside the random null."""

    unablated_margin: Estimate
    unablated_fluency: Estimate
    base_margin: Estimate
    excess: Estimate
    """The finetune's margin minus the base's (paired): a share removed means something only where it is > 0."""
    change: Effect
    share_removed: Effect

    def to_dict(self) -> dict[str, Any]:
        """The row as `summary.json` holds it (the edit's layers, sites and positions are in its settings)."""
        return {
            "model": self.model,
            "direction": self.direction,
            "pairs": self.pairs,
            "margin": self.margin._asdict(),
            "unablated_margin": self.unablated_margin._asdict(),
            "base_margin": self.base_margin._asdict(),
            "change": self.change.estimate._asdict(),
            "excess": self.excess._asdict(),
            "share_removed": self.share_removed.estimate._asdict(),
            "fluency": self.fluency._asdict(),
            "unablated_fluency": self.unablated_fluency._asdict(),
        } | _nulls(share_removed=self.share_removed, change=self.change)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], settings: Mapping[str, Any]) -> AblationRow:
        layers = settings["layers"]
        return cls(
            row["model"],
            row["direction"],
            row["pairs"],
            None if layers is None else tuple(layers),
            tuple(settings["site"]),
            settings["positions"],
            0.0,
            **{
                k: Estimate(**row[k])
                for k in ("margin", "fluency", "unablated_margin", "unablated_fluency", "base_margin", "excess")
            },
            change=Effect.from_dict(row, "change"),
            share_removed=Effect.from_dict(row, "share_removed"),
        )


@dataclass(frozen=True, repr=False)
class SteeringRow(SweepRow):
    """A direction added at one layer and scale: the shift of the margin and the fluency change from the
    unsteered model (paired), each beside the random null at the same layer and scale."""

    relative: str
    shift: Effect
    fluency_change: Effect

    @property
    def layer(self) -> int:
        return self.layers[0] if self.layers else -1

    def to_dict(self) -> dict[str, Any]:
        """The row as `summary.json` holds it."""
        return {
            "direction": self.direction,
            "layer": self.layer,
            "scale": self.scale,
            "pairs": self.pairs,
            "margin": self.margin._asdict(),
            "fluency": self.fluency._asdict(),
            "shift": self.shift.estimate._asdict(),
            "fluency_change": self.fluency_change.estimate._asdict(),
        } | _nulls(shift=self.shift, fluency_change=self.fluency_change)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], settings: Mapping[str, Any]) -> SteeringRow:
        site = settings["directions"].get(row["direction"], {}).get("site", "resid_post")
        return cls(
            settings["model"],
            row["direction"],
            row["pairs"],
            (row["layer"],),
            (site,),
            settings["positions"],
            row["scale"],
            Estimate(**row["margin"]),
            Estimate(**row["fluency"]),
            settings["relative"],
            Effect.from_dict(row, "shift"),
            Effect.from_dict(row, "fluency_change"),
        )


def _nulls(**effects: Effect) -> dict[str, Any]:
    """`null_<name>` of each effect that has one, in the order given (after all the estimates)."""
    return {f"null_{name}": e.null._asdict() for name, e in effects.items() if e.null is not None}


@dataclass(frozen=True, repr=False)
class AblationSweep(RowsRecord):
    """What `ablation_sweep` returns and writes to `summary.json`: its provenance and one row per ablated cell."""

    provenance: dict[str, Any]
    rows: list[AblationRow]
    _hidden = staticmethod(lambda row: is_random(row.direction))

    def to_dict(self) -> dict[str, Any]:
        return {"provenance": self.provenance, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AblationSweep:
        """Read back a `summary.json` (to redraw its figures without scoring anything)."""
        settings = data["provenance"]["settings"]
        return cls(dict(data["provenance"]), [AblationRow.from_dict(r, settings) for r in data["rows"]])


@dataclass(frozen=True, repr=False)
class SteeringGrid(RowsRecord):
    """What `steering_grid` returns and writes to `summary.json`: provenance, the unsteered model's scores per
    contrast set, and one row per steered cell."""

    provenance: dict[str, Any]
    unsteered: dict[str, ContrastResult]
    rows: list[SteeringRow]
    _hidden = staticmethod(lambda row: is_random(row.direction))

    def to_dict(self) -> dict[str, Any]:
        return {
            "provenance": self.provenance,
            "unsteered": {p: r.to_dict() for p, r in self.unsteered.items()},
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SteeringGrid:
        """Read back a `summary.json` (to redraw its figures without scoring anything)."""
        settings = data["provenance"]["settings"]
        return cls(
            dict(data["provenance"]),
            {p: ContrastResult.from_dict(r) for p, r in data["unsteered"].items()},
            [SteeringRow.from_dict(r, settings) for r in data["rows"]],
        )


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
    positions: Positions = SWEEP_POSITIONS,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    load: Callable[[Any], Model] = as_model,
    progress: bool = True,
) -> AblationSweep:
    """Each direction (and `n_random` random ones) ablated in each model, scored on contrast sets; resumable.

    `models` maps names to finetunes (specs or loaded models), `directions` names to `[d_model]` vectors (used
    at every layer of `layers`, default all) or `DirectionSet`s (each layer's own). `pairs` is a list of
    contrast sets for every model, or a mapping from model name to its sets (e.g. general + its own domain).
    The cells (model, edit, set) run on `misdir.sweep`'s engine: each is appended to `out/cells.jsonl` as it
    finishes; a rerun skips the cells already there (also those an older misdir wrote) and loads only the
    models it still needs. Writes `out/summary.json` (`AblationSweep.to_dict`: share of excess misalignment
    removed, margin change and fluency per cell, with intervals, each beside the same numbers for the
    `n_random` random directions, seeded by `seed`) and returns it. `positions` as in `misdir.ablate`; the
    default leaves each sequence's first token alone (see `SWEEP_POSITIONS`).
    """
    check_positions(positions)
    check_directions({"base": base, **models}, directions, layers)
    chosen = with_random(directions, _d_model(directions), n_random, seed)
    sets = {n: _pairs_of(pairs, n) for n in ("base", *models)}
    settings = {
        "kind": "ablation",
        "models": {n: str(getattr(m, "spec", m)) for n, m in models.items()},
        "base": str(getattr(base, "spec", base)),
        "directions": {n: describe_directions(v) for n, v in chosen.items()},
        "pairs": sets,
        "layers": _list(layers),
        "site": list(site),
        "positions": positions,
        "limit": limit,
        "seed": seed,
    }
    edit = Edit("ablate", "", None if layers is None else tuple(int(x) for x in layers), tuple(site), positions)
    cells = [Cell(n, NO_EDIT, p) for n in ("base", *models) for p in sets[n]]
    cells += [Cell(n, replace(edit, direction=d), p) for n in models for d in chosen for p in sets[n]]
    loaders = {name: partial(load, spec) for name, spec in (("base", base), *models.items())}
    with run_lock(out):
        records = score_cells(
            cells,
            models=loaders,
            directions=chosen,
            out=out,
            settings=settings,
            limit=limit,
            batch_size=batch_size,
            progress=progress,
            desc="ablation cells",
            legacy_key=_legacy_ablation_key,
        )
        sweep = AblationSweep(provenance(settings), _ablation_rows(cells, records, seed))
        write_json_atomic(Path(out) / "summary.json", sweep.to_dict())
    return sweep


def _ablation_rows(cells: Sequence[Cell], records: Mapping[str, Mapping[str, Any]], seed: int) -> list[AblationRow]:
    """Per ablated cell of a finetune: margin, change from the unablated model (paired), share removed, fluency."""
    edited = [c for c in cells if c.edit.kind != "none" and c.model != "base"]
    measured = []
    for cell in edited:
        scores = [records[Cell(m, NO_EDIT, cell.pairs).key] for m in ("base", cell.model)] + [records[cell.key]]
        names = ("base", cell.model, cell.model)
        base, unablated, ablated = (_result(r, seed, m) for r, m in zip(scores, names, strict=True))
        change = paired_difference(scores[1]["margins"], scores[2]["margins"], seed=seed)
        excess = paired_difference(scores[0]["margins"], scores[1]["margins"], seed=seed)
        measured.append((base, unablated, ablated, change, excess, share_removed(base, unablated, ablated, seed=seed)))
    keys = [((c.model, c.pairs), c.edit.direction) for c in edited]
    share_nulls = random_nulls(keys, [m[5].value for m in measured])
    change_nulls = random_nulls(keys, [m[3].value for m in measured])
    return [
        AblationRow(
            c.model,
            c.edit.direction,
            c.pairs,
            c.edit.layers,
            c.edit.sites,
            c.edit.positions,
            0.0,
            ablated.margin,
            ablated.fluency,
            unablated.margin,
            unablated.fluency,
            base.margin,
            excess,
            Effect(change, change_null),
            Effect(share, share_null),
        )
        for c, (base, unablated, ablated, change, excess, share), share_null, change_null in zip(
            edited, measured, share_nulls, change_nulls, strict=True
        )
    ]


def _legacy_ablation_key(cell: Cell) -> str:
    """The key `ablation_sweep` wrote cells under before it ran on `misdir.sweep`."""
    return f"{cell.model}|{cell.edit.direction or 'none'}|{cell.pairs}"


def steering_grid(
    model: ModelLike,
    directions: Mapping[str, Any],
    *,
    out: str | Path,
    layers: Sequence[int],
    scales: Sequence[float],
    pairs: Sequence[str] = ("general",),
    n_random: int = 20,
    relative: Relative = "resid",
    positions: Positions = SWEEP_POSITIONS,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> SteeringGrid:
    """Each direction (and `n_random` random ones) added at each layer and scale, scored on contrast sets;
    resumable like `ablation_sweep` (cells in `out/cells.jsonl`, `SteeringGrid.to_dict` in `out/summary.json`).

    Scales count as in `misdir.steer(relative=...)`; the default, a fraction of each token's residual norm,
    means the same at every layer. Each cell reports the margin's change from the unsteered model (paired),
    beside the same change for the `n_random` random directions at that layer and scale. `positions` as in
    `misdir.steer` (default `SWEEP_POSITIONS`: every token but the first); each direction goes to its own site (a
    `DirectionSet`'s, else `resid_post`).
    """
    check_positions(positions)
    model = as_model(model)
    check_directions({model.spec: model}, directions, layers)
    chosen = with_random(directions, model.d_model, n_random, seed)
    settings = {
        "kind": "steering",
        "model": model.spec,
        "directions": {n: describe_directions(v) for n, v in chosen.items()},
        "layers": list(layers),
        "scales": [float(s) for s in scales],
        "pairs": list(pairs),
        "relative": relative,
        "positions": positions,
        "limit": limit,
        "seed": seed,
    }
    cells = [Cell(model.spec, NO_EDIT, p) for p in pairs]
    cells += [
        Cell(
            model.spec,
            Edit("steer", d, (int(layer),), (getattr(v, "site", "resid_post"),), positions, float(s), relative),
            p,
        )
        for d, v in chosen.items()
        for layer in layers
        for s in scales
        if s != 0
        for p in pairs
    ]
    with run_lock(out):
        records = score_cells(
            cells,
            models={model.spec: lambda: model},
            directions=chosen,
            out=out,
            settings=settings,
            limit=limit,
            batch_size=batch_size,
            progress=progress,
            desc="steering cells",
            legacy_key=_legacy_steering_key,
        )
        unsteered = {p: _result(records[Cell(model.spec, NO_EDIT, p).key], seed, model.spec) for p in pairs}
        grid = SteeringGrid(provenance(settings), unsteered, _steering_rows(cells, records, seed))
        write_json_atomic(Path(out) / "summary.json", grid.to_dict())
    return grid


def _steering_rows(cells: Sequence[Cell], records: Mapping[str, Mapping[str, Any]], seed: int) -> list[SteeringRow]:
    """Per steered cell: margin, fluency, and their paired changes from the unsteered model."""
    edited = [c for c in cells if c.edit.kind != "none"]
    measured = []
    for cell in edited:
        before, after = records[Cell(cell.model, NO_EDIT, cell.pairs).key], records[cell.key]
        measured.append(
            (
                _result(after, seed, cell.model),
                paired_difference(before["margins"], after["margins"], seed=seed),
                paired_difference(before["aligned_logprob"], after["aligned_logprob"], seed=seed),
            )
        )
    keys = [((c.edit.layers, c.edit.scale, c.pairs), c.edit.direction) for c in edited]
    shift_nulls = random_nulls(keys, [m[1].value for m in measured])
    fluency_nulls = random_nulls(keys, [m[2].value for m in measured])
    return [
        SteeringRow(
            c.model,
            c.edit.direction,
            c.pairs,
            c.edit.layers,
            c.edit.sites,
            c.edit.positions,
            c.edit.scale,
            result.margin,
            result.fluency,
            c.edit.relative,
            Effect(shift, shift_null),
            Effect(fluency, fluency_null),
        )
        for c, (result, shift, fluency), shift_null, fluency_null in zip(
            edited, measured, shift_nulls, fluency_nulls, strict=True
        )
    ]


def _legacy_steering_key(cell: Cell) -> str:
    """The key `steering_grid` wrote cells under before it ran on `misdir.sweep`."""
    if cell.edit.kind == "none":
        return f"none|-1|0|{cell.pairs}"
    return f"{cell.edit.direction}|{cell.edit.layer}|{cell.edit.scale:g}|{cell.pairs}"


def _result(record: Mapping[str, Any], seed: int, model: str) -> ContrastResult:
    return ContrastResult.from_scores(
        model, record["pairs"], None, record["margins"], record["aligned_logprob"], seed=seed
    )


def _list(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else [int(v) for v in values]
