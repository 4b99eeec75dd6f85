"""Judged ablation and steering sweeps: the cells of `misdir.experiments`' sweeps on the judged metric, and their
typed rows (EM rate, change, share of the excess removed, EM induced), each beside the random-direction null."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from misdir.display import Record, RowsRecord
from misdir.experiments import RESIDUAL_SITES, SWEEP_POSITIONS, _d_model, _list, check_directions
from misdir.interventions import Relative, describe_directions
from misdir.io import run_lock, write_json_atomic
from misdir.judged.cells import (
    JudgedMetric,
    JudgedPlan,
    JudgedResult,
    _run,
    as_judge,
    check_reachable,
    judged_result,
    plan,
    scored_answers,
)
from misdir.models import Model, as_model
from misdir.positions import Positions, check_positions
from misdir.stats import Estimate, compare, share_of_excess
from misdir.sweep import NO_EDIT, Cell, Edit, Effect, is_random, provenance, random_nulls, with_random

_ABLATION_ESTIMATES = (
    "em_rate",
    "coherence_rate",
    "unablated_em_rate",
    "unablated_coherence_rate",
    "base_em_rate",
    "excess",
)
"""A judged ablation row's estimates, in the order its fields and `summary.json` hold them."""


@dataclass(frozen=True, repr=False)
class JudgedAblationRow(Record):
    """A direction ablated in a finetune: its judged EM rate and coherent share before and after, the base's EM
    rate, and the change in EM rate and the share of the excess EM removed, each beside the random null."""

    model: str
    direction: str
    questions: str
    em_rate: Estimate
    coherence_rate: Estimate
    unablated_em_rate: Estimate
    unablated_coherence_rate: Estimate
    base_em_rate: Estimate
    excess: Estimate
    """The finetune's EM rate minus the base's (paired by question): a share means something only where > 0."""
    change: Effect
    share_removed: Effect
    coherence_change: Effect
    verdicts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        estimates = {k: getattr(self, k)._asdict() for k in _ABLATION_ESTIMATES}
        return (
            {"model": self.model, "direction": self.direction, "questions": self.questions, **estimates}
            | self.change.to_dict("change")
            | self.share_removed.to_dict("share_removed")
            | self.coherence_change.to_dict("coherence_change")
            | {"verdicts": self.verdicts}
        )

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> JudgedAblationRow:
        em, coherence, unablated_em, unablated_coherence, base_em, excess = (
            Estimate(**row[k]) for k in _ABLATION_ESTIMATES
        )
        change, share, coherence_change = (
            Effect.from_dict(row, k) for k in ("change", "share_removed", "coherence_change")
        )
        return cls(
            row["model"],
            row["direction"],
            row["questions"],
            em,
            coherence,
            unablated_em,
            unablated_coherence,
            base_em,
            excess,
            change,
            share,
            coherence_change,
            dict(row["verdicts"]),
        )


@dataclass(frozen=True, repr=False)
class JudgedSteeringRow(Record):
    """A direction added at one layer and scale: the EM rate it induces and the coherence it costs (paired by
    question, from the unsteered model), each beside the random null at the same layer and scale."""

    direction: str
    layer: int
    scale: float
    questions: str
    em_rate: Estimate
    coherence_rate: Estimate
    induced: Effect
    coherence_change: Effect
    verdicts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return (
            {
                "direction": self.direction,
                "layer": self.layer,
                "scale": self.scale,
                "questions": self.questions,
                "em_rate": self.em_rate._asdict(),
                "coherence_rate": self.coherence_rate._asdict(),
            }
            | self.induced.to_dict("induced")
            | self.coherence_change.to_dict("coherence_change")
            | {"verdicts": self.verdicts}
        )

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> JudgedSteeringRow:
        return cls(
            row["direction"],
            row["layer"],
            row["scale"],
            row["questions"],
            Estimate(**row["em_rate"]),
            Estimate(**row["coherence_rate"]),
            Effect.from_dict(row, "induced"),
            Effect.from_dict(row, "coherence_change"),
            dict(row["verdicts"]),
        )


@dataclass(frozen=True, repr=False)
class JudgedSweep(RowsRecord):
    """What a judged sweep returns and writes to `summary.json`: provenance, the unedited cells' results, rows."""

    provenance: dict[str, Any]
    unedited: dict[str, dict[str, Any]]
    rows: list[JudgedAblationRow] | list[JudgedSteeringRow]
    _hidden = staticmethod(lambda row: is_random(row.direction))

    def to_dict(self) -> dict[str, Any]:
        return {"provenance": self.provenance, "unedited": self.unedited, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgedSweep:
        """Read back a `summary.json` (to redraw its figures without sampling or judging anything)."""
        row = JudgedAblationRow if data["provenance"]["settings"]["kind"] == "judged ablation" else JudgedSteeringRow
        rows: Any = [row.from_dict(r) for r in data["rows"]]
        return cls(dict(data["provenance"]), dict(data["unedited"]), rows)


def judged_ablation_sweep(
    base: Any,
    models: Mapping[str, Any],
    directions: Mapping[str, Any],
    *,
    out: str | Path,
    judge: Any,
    metric: JudgedMetric = JudgedMetric(),
    n_random: int = 20,
    layers: Sequence[int] | None = None,
    site: Sequence[str] = RESIDUAL_SITES,
    positions: Positions = SWEEP_POSITIONS,
    batch_size: int = 16,
    seed: int = 0,
    judge_url: str | None = None,
    judge_device: str | None = None,
    load: Callable[[Any], Model] = as_model,
    progress: bool = True,
    dry_run: bool = False,
) -> JudgedSweep | JudgedPlan:
    """`misdir.experiments.ablation_sweep` with the judged metric: each direction (and `n_random` random ones)
    ablated in each model, answers sampled for `metric.questions` and judged; resumable (see the module
    docstring). `judge` is a judge object or a spec (``openai:MODEL`` with `judge_url`, ``local:SPEC`` on
    `judge_device`). Writes `out/summary.json` (`JudgedSweep.to_dict`) and returns it; with `dry_run`, returns
    the `JudgedPlan` and samples nothing."""
    check_positions(positions)
    questions = metric.load()  # a bad file is refused before any model loads
    check_directions({"base": base, **models}, directions, layers)
    chosen = with_random(directions, _d_model(directions), n_random, seed)
    judge = as_judge(judge, out, judge_url=judge_url, device=judge_device)
    settings = {
        "kind": "judged ablation",
        "models": {n: str(getattr(m, "spec", m)) for n, m in models.items()},
        "base": str(getattr(base, "spec", base)),
        "judge": judge.name,
        "metric": metric.identity(),
        "directions": {n: describe_directions(v) for n, v in chosen.items()},
        "layers": _list(layers),
        "site": list(site),
        "positions": positions,
        "seed": seed,
    }
    cells = ablation_cells(list(models), list(chosen), metric, layers, site, positions)
    out = Path(out)
    todo = plan(cells, metric, judge, out)
    if dry_run:
        return todo
    if todo.judge_calls_cached < todo.judge_calls:
        check_reachable(judge)
    loaders = {name: partial(load, spec) for name, spec in (("base", base), *models.items())}
    with run_lock(out):
        records = _run(
            cells,
            judge=judge,
            metric=metric,
            out=out,
            settings=settings,
            loaders=loaders,
            directions=chosen,
            batch_size=batch_size,
            progress=progress,
            desc="judged ablation cells",
        )
        t, rows = metric.thresholds, []
        edited = [c for c in cells if c.edit.kind != "none"]
        for cell in edited:
            base_rows, before, after = (
                scored_answers(records[k])
                for k in (Cell("base", NO_EDIT, cell.pairs).key, Cell(cell.model, NO_EDIT, cell.pairs).key, cell.key)
            )
            rows.append(
                (
                    cell,
                    compare(before, after, "em_rate", t, seed=seed).diff,
                    share_of_excess(base_rows, before, after, "em_rate", t, seed=seed),
                    compare(before, after, "coherence_rate", t, seed=seed).diff,
                    compare(base_rows, before, "em_rate", t, seed=seed).diff,
                )
            )
        keys = [(c.model, c.edit.direction) for c in edited]
        effects = [(change, share, coherence) for _, change, share, coherence, _ in rows]
        nulls = [random_nulls(keys, [e[i].value for e in effects]) for i in range(3)]
        results = {c.key: judged_result(records[c.key], t, seed) for c in cells}
        sweep = JudgedSweep(
            provenance(settings | {"questions": [q.id for q in questions], "thresholds": asdict(t)}),
            {c.model: _result_dict(results[c.key]) for c in cells if c.edit.kind == "none"},
            [
                JudgedAblationRow(
                    c.model,
                    c.edit.direction,
                    c.pairs,
                    results[c.key].em_rate,
                    results[c.key].coherence_rate,
                    results[Cell(c.model, NO_EDIT, c.pairs).key].em_rate,
                    results[Cell(c.model, NO_EDIT, c.pairs).key].coherence_rate,
                    results[Cell("base", NO_EDIT, c.pairs).key].em_rate,
                    excess,
                    Effect(change, n1),
                    Effect(share, n2),
                    Effect(coherence, n3),
                    results[c.key].verdicts,
                )
                for (c, change, share, coherence, excess), n1, n2, n3 in zip(rows, *nulls, strict=True)
            ],
        )
        write_json_atomic(out / "summary.json", sweep.to_dict())
    return sweep


def judged_steering_grid(
    model: Any,
    directions: Mapping[str, Any],
    *,
    out: str | Path,
    judge: Any,
    layers: Sequence[int],
    scales: Sequence[float],
    metric: JudgedMetric = JudgedMetric(),
    n_random: int = 20,
    relative: Relative = "resid",
    positions: Positions = SWEEP_POSITIONS,
    batch_size: int = 16,
    seed: int = 0,
    judge_url: str | None = None,
    judge_device: str | None = None,
    progress: bool = True,
    dry_run: bool = False,
) -> JudgedSweep | JudgedPlan:
    """`misdir.experiments.steering_grid` with the judged metric: the EM rate each direction (and `n_random`
    random ones) induces when added at each layer and scale, paired with the unsteered model's answers."""
    check_positions(positions)
    questions = metric.load()
    model = as_model(model)
    check_directions({model.spec: model}, directions, layers)
    chosen = with_random(directions, model.d_model, n_random, seed)
    judge = as_judge(judge, out, judge_url=judge_url, device=judge_device)
    settings = {
        "kind": "judged steering",
        "model": model.spec,
        "judge": judge.name,
        "metric": metric.identity(),
        "directions": {n: describe_directions(v) for n, v in chosen.items()},
        "layers": list(layers),
        "scales": [float(s) for s in scales],
        "relative": relative,
        "positions": positions,
        "seed": seed,
    }
    sites = {d: getattr(v, "site", "resid_post") for d, v in chosen.items()}
    cells = steering_cells(model.spec, sites, metric, layers, scales, relative, positions)
    out = Path(out)
    todo = plan(cells, metric, judge, out)
    if dry_run:
        return todo
    if todo.judge_calls_cached < todo.judge_calls:
        check_reachable(judge)
    with run_lock(out):
        records = _run(
            cells,
            judge=judge,
            metric=metric,
            out=out,
            settings=settings,
            loaders={model.spec: lambda: model},
            directions=chosen,
            batch_size=batch_size,
            progress=progress,
            desc="judged steering cells",
        )
        t = metric.thresholds
        before = scored_answers(records[cells[0].key])
        edited = cells[1:]
        measured = [
            (
                compare(before, scored_answers(records[c.key]), "em_rate", t, seed=seed).diff,
                compare(before, scored_answers(records[c.key]), "coherence_rate", t, seed=seed).diff,
            )
            for c in edited
        ]
        keys = [((c.edit.layers, c.edit.scale), c.edit.direction) for c in edited]
        induced_nulls = random_nulls(keys, [m[0].value for m in measured])
        coherence_nulls = random_nulls(keys, [m[1].value for m in measured])
        results = {c.key: judged_result(records[c.key], t, seed) for c in cells}
        sweep = JudgedSweep(
            provenance(settings | {"questions": [q.id for q in questions], "thresholds": asdict(t)}),
            {model.spec: _result_dict(results[cells[0].key])},
            [
                JudgedSteeringRow(
                    c.edit.direction,
                    c.edit.layer,
                    c.edit.scale,
                    c.pairs,
                    results[c.key].em_rate,
                    results[c.key].coherence_rate,
                    Effect(induced, n1),
                    Effect(coherence, n2),
                    results[c.key].verdicts,
                )
                for c, (induced, coherence), n1, n2 in zip(
                    edited, measured, induced_nulls, coherence_nulls, strict=True
                )
            ],
        )
        write_json_atomic(out / "summary.json", sweep.to_dict())
    return sweep


def ablation_cells(
    models: Sequence[str],
    directions: Sequence[str],
    metric: JudgedMetric,
    layers: Sequence[int] | None = None,
    site: Sequence[str] = RESIDUAL_SITES,
    positions: Positions = SWEEP_POSITIONS,
) -> list[Cell]:
    """The cells of `judged_ablation_sweep`: the base and each model unedited, then each direction (by name)
    ablated in each model. Known before any direction is computed, so a run can be planned (`plan`) first."""
    edit = Edit("ablate", "", None if layers is None else tuple(int(x) for x in layers), tuple(site), positions)
    cells = [Cell(n, NO_EDIT, metric.questions) for n in ("base", *models)]
    return cells + [Cell(n, replace(edit, direction=d), metric.questions) for n in models for d in directions]


def steering_cells(
    model: str,
    sites: Mapping[str, str],
    metric: JudgedMetric,
    layers: Sequence[int],
    scales: Sequence[float],
    relative: Relative = "resid",
    positions: Positions = SWEEP_POSITIONS,
) -> list[Cell]:
    """The cells of `judged_steering_grid`: `model` unsteered, then each direction (by name, with the site it is
    added at) at each layer and nonzero scale."""
    cells = [Cell(model, NO_EDIT, metric.questions)]
    return cells + [
        Cell(model, Edit("steer", d, (int(layer),), (site,), positions, float(s), relative), metric.questions)
        for d, site in sites.items()
        for layer in layers
        for s in scales
        if s != 0
    ]


def _result_dict(result: JudgedResult) -> dict[str, Any]:
    return {k: v._asdict() if isinstance(v, Estimate) else v for k, v in asdict(result).items()}
