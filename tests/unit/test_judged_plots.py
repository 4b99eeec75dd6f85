"""misdir.judged.plots: the judged sweeps' figures plot exactly the numbers their records hold."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from misdir.judged import JudgedAblationRow, JudgedSteeringRow, JudgedSweep
from misdir.judged.plots import (
    ABLATION_PANELS,
    STEERING_PANELS,
    judged_ablation_figure,
    judged_steering_figure,
    plot_judged_sweep,
)
from misdir.stats import Estimate
from misdir.sweep import AgainstNull, Effect

DIRECTIONS = ["d", "e", *(f"random {i}" for i in range(20))]


def estimate(rng: random.Random, nan: bool = False) -> Estimate:
    value = float("nan") if nan else rng.uniform(-1, 1)
    return Estimate(value, value - rng.random(), value + rng.random(), 3)


def effect(rng: random.Random, direction: str, nan: bool = False) -> Effect:
    null = None if direction.startswith("random") else AgainstNull(rng.random(), 0.1, -0.2, 0.3, 42.5, 20)
    return Effect(estimate(rng, nan), null)


def settings(kind: str) -> dict[str, Any]:
    metric = {"questions": "q/general.yaml", "temperature": 1.0}
    return {"kind": kind, "judge": "openai:m", "metric": metric, "relative": "resid", "model": "m"}


def unedited(rng: random.Random, *names: str) -> dict[str, Any]:
    return {n: {k: estimate(rng)._asdict() for k in ("em_rate", "coherence_rate")} for n in names}


def ablation_sweep() -> JudgedSweep:
    rng = random.Random(0)
    rows = [
        JudgedAblationRow(
            model,
            d,
            "q/general.yaml",
            *(estimate(rng) for _ in range(6)),
            effect(rng, d),
            effect(rng, d, nan=model == "ft2"),  # no excess EM: the share is NaN, as the records hold it
            effect(rng, d),
            {"score": 3},
        )
        for model in ("ft1", "ft2")
        for d in DIRECTIONS
    ]
    return JudgedSweep({"settings": settings("judged ablation")}, unedited(rng, "base", "ft1", "ft2"), rows)


def steering_sweep() -> JudgedSweep:
    rng = random.Random(1)
    rows = [
        JudgedSteeringRow(
            d, 1, scale, "q/general.yaml", estimate(rng), estimate(rng), effect(rng, d), effect(rng, d), {}
        )
        for d in DIRECTIONS
        for scale in (0.5, 1.0)
    ]
    return JudgedSweep({"settings": settings("judged steering")}, unedited(rng, "m"), rows)


def same(a: Any, b: Any) -> bool:
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def check(fig: Any, sweep: JudgedSweep, panels: dict[str, str], where: Any) -> None:
    """Every panel's named points and intervals and its random box equal the rows' own numbers."""
    for panel in panels:
        traces = {t.name: t for t in fig.data if t.meta == panel}
        for direction in ("d", "e"):
            rows = [r for r in sweep.rows if r.direction == direction]
            values = [getattr(getattr(r, panel), "estimate", getattr(r, panel)) for r in rows]
            trace = traces[direction]
            assert list(trace.x) == [where(r) for r in rows]
            assert same(trace.y, [v.value for v in values])
            assert same(trace.error_y.array, [v.high - v.value for v in values])
            assert same(trace.error_y.arrayminus, [v.value - v.low for v in values])
        randoms = [r for r in sweep.rows if r.direction.startswith("random")]
        box = traces["random directions"]
        assert list(box.x) == [where(r) for r in randoms]
        assert same(box.y, [getattr(getattr(r, panel), "estimate", getattr(r, panel)).value for r in randoms])


def test_the_judged_ablation_figure_plots_the_records_numbers() -> None:
    sweep = JudgedSweep.from_dict(json.loads(json.dumps(ablation_sweep().to_dict())))  # as summary.json reads back
    fig = judged_ablation_figure(sweep)
    check(fig, sweep, ABLATION_PANELS, lambda r: r.model)
    for panel in ("em_rate", "coherence_rate"):
        traces = {t.name: t for t in fig.data if t.meta == panel}
        assert traces["base, unedited"].y == (sweep.unedited["base"][panel]["value"],)
        assert list(traces["finetune, unedited"].x) == ["ft1", "ft2"]
        assert traces["finetune, unedited"].y == tuple(sweep.unedited[m][panel]["value"] for m in ("ft1", "ft2"))
    assert "percentile 42" in next(t for t in fig.data if t.meta == "change" and t.name == "d").hovertext[0]


def test_the_judged_steering_figure_plots_the_records_numbers() -> None:
    sweep = JudgedSweep.from_dict(json.loads(json.dumps(steering_sweep().to_dict())))
    fig = judged_steering_figure(sweep)
    check(fig, sweep, STEERING_PANELS, lambda r: f"scale {r.scale:g}")
    unsteered = next(t for t in fig.data if t.meta == "em_rate" and t.name == "unsteered")
    assert unsteered.y == (sweep.unedited["m"]["em_rate"]["value"],)


@pytest.mark.parametrize("make", [ablation_sweep, steering_sweep])
def test_a_judged_sweep_round_trips_and_writes_its_figure(make: Any, tmp_path: Path) -> None:
    sweep = make()
    again = JudgedSweep.from_dict(json.loads(json.dumps(sweep.to_dict())))
    assert json.dumps(again.to_dict()) == json.dumps(sweep.to_dict())
    written = plot_judged_sweep(again, tmp_path / "fig")
    assert written[0] == tmp_path / "fig_judged_general.html" and written[0].is_file()
