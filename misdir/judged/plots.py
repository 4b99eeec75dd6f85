"""Figures of the judged sweeps, drawn from their records alone (a `JudgedSweep`, or its `summary.json` read back
with `JudgedSweep.from_dict`, so a rerun redraws them without sampling or judging): each cell's EM rate and
coherent share with their bootstrap intervals, and each named direction's effect (change in EM rate, share of
the excess EM removed, EM induced, change in coherent share) as a marked point with its interval beside a box
of the same edit's effects along the random directions (its null)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from misdir.judged.sweeps import JudgedSteeringRow, JudgedSweep
from misdir.stats import Estimate
from misdir.sweep import is_random

ABLATION_PANELS = {
    "em_rate": "EM rate per cell (95% CI)",
    "coherence_rate": "coherent share per cell (95% CI)",
    "change": "change in EM rate (paired)",
    "share_removed": "share of the excess EM removed",
    "coherence_change": "change in coherent share",
}
STEERING_PANELS = {
    "em_rate": "EM rate per cell (95% CI)",
    "coherence_rate": "coherent share per cell (95% CI)",
    "induced": "EM induced (paired, from the unsteered)",
    "coherence_change": "change in coherent share",
}
"""Each figure's panels: the key (a trace's `meta`, and the row's field it plots) and its title."""

_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def plot_judged_sweep(sweep: JudgedSweep, stem: str | Path) -> list[Path]:
    """Write the sweep's figure to `STEM_judged_QUESTIONS.html` (and .png where kaleido finds a browser)."""
    from misdir.plots import save_figure

    settings = sweep.provenance["settings"]
    questions = Path(settings["metric"]["questions"]).stem
    ablation = settings["kind"] == "judged ablation"
    fig = judged_ablation_figure(sweep) if ablation else judged_steering_figure(sweep)
    return save_figure(fig, f"{stem}_judged_{questions}", title=f"{settings['kind']} {questions}")


RATES = ("em_rate", "coherence_rate")
"""The panels of each cell's own rates (the others are effects, beside the random null)."""

Reference = tuple[str, list[str], list[Estimate], str]
"""Unedited cells drawn in a rate panel: their name, x categories, estimates and marker symbol."""


def judged_ablation_figure(sweep: JudgedSweep) -> Any:
    """Per finetune: the EM rate and coherent share of each cell (the base and the finetune unedited, each named
    direction ablated, the random ones as a box), then the effects of each ablation beside the random null."""
    unedited = {name: _estimates(result) for name, result in sweep.unedited.items()}
    finetunes = [m for m in unedited if m != "base"]
    references = {
        panel: [
            ("base, unedited", ["base"], [unedited["base"][panel]], "circle-open"),
            ("finetune, unedited", finetunes, [unedited[m][panel] for m in finetunes], "diamond"),
        ]
        for panel in RATES
    }
    title = "judged ablation ({about}): each direction ablated at every layer, beside {n} random directions"
    return _figure(sweep, ABLATION_PANELS, [[3, 3], [2, 2, 2]], lambda r: r.model, references, title, 900)


def judged_steering_figure(sweep: JudgedSweep) -> Any:
    """Against scale (and layer): the EM rate and coherent share of each steered cell and the unsteered one,
    then the EM induced and the coherence change beside the random null at the same layer and scale."""
    rows = cast(list[JudgedSteeringRow], sweep.rows)  # a steering sweep's
    one_layer = len({r.layer for r in rows}) == 1

    def where(r: JudgedSteeringRow) -> str:
        return f"scale {r.scale:g}" if one_layer else f"layer {r.layer}, scale {r.scale:g}"

    ((model, result),) = sweep.unedited.items()
    unsteered = _estimates(result)
    references = {panel: [("unsteered", ["unsteered"], [unsteered[panel]], "diamond")] for panel in RATES}
    relative = sweep.provenance["settings"]["relative"]
    title = f"judged steering of {model} ({{about}}; scale relative to: {relative}), beside {{n}} random directions"
    return _figure(sweep, STEERING_PANELS, [[1, 1], [1, 1]], where, references, title, 800)


def _figure(
    sweep: JudgedSweep,
    panels: dict[str, str],
    widths: Sequence[Sequence[int]],
    x: Callable[[Any], str],
    references: dict[str, list[Reference]],
    title: str,
    height: int,
) -> Any:
    """Each panel of `panels` (`_beside_null`), laid out in rows of `widths`; `title` with `{about}` (judge,
    questions, temperature) and `{n}` (random directions) filled in."""
    fig, at = _grid(panels, widths)
    for panel in panels:
        _beside_null(fig, at, panel, sweep.rows, x, references.get(panel, []))
    metric = sweep.provenance["settings"]["metric"]
    about = f"judge {sweep.provenance['settings']['judge']} on {Path(metric['questions']).stem}, "
    about += f"T={metric['temperature']:g}"
    n = len({r.direction for r in sweep.rows if is_random(r.direction)})
    fig.update_layout(title=title.format(about=about, n=n), height=height)
    return fig


def _grid(panels: dict[str, str], widths: Sequence[Sequence[int]]) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Subplots in rows of panels (`widths`: per row, the columns each panel spans), and each panel's
    (row, column)."""
    from plotly.subplots import make_subplots

    span = sum(widths[0])
    specs = []
    for row in widths:
        spec: list[dict[str, Any] | None] = []
        for width in row:
            spec += [{"colspan": width}] + [None] * (width - 1)
        specs.append(spec)
    fig = make_subplots(
        rows=len(widths),
        cols=span,
        specs=specs,
        subplot_titles=list(panels.values()),
        vertical_spacing=0.15,
        horizontal_spacing=0.06,
    )
    fig.update_layout(template="plotly_white", width=1300, boxmode="overlay")
    places = [(i + 1, 1 + sum(row[:j])) for i, row in enumerate(widths) for j in range(len(row))]
    return fig, dict(zip(panels, places, strict=True))


def _beside_null(
    fig: Any,
    at: dict[str, tuple[int, int]],
    panel: str,
    rows: Sequence[Any],
    x: Callable[[Any], str],
    references: Sequence[Reference] = (),
) -> None:
    """One panel: the reference cells and each named direction as points with their intervals (the named ones
    as stars, their null's percentile in the hover text), the random directions' values as a box of points."""
    import plotly.graph_objects as go

    row, col = at[panel]
    first = panel == next(iter(at))
    for name, xs, estimates, symbol in references:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[e.value for e in estimates],
                error_y=_interval(estimates),
                mode="markers",
                marker={"symbol": symbol, "size": 10, "color": "black"},
                name=name,
                legendgroup=name,
                showlegend=first,
                meta=panel,
            ),
            row,
            col,
        )
    randoms = [r for r in rows if is_random(r.direction)]
    if randoms:
        fig.add_trace(
            go.Box(
                x=[x(r) for r in randoms],
                y=[_value(r, panel).value for r in randoms],
                name="random directions",
                legendgroup="random",
                showlegend=first,
                boxpoints="all",
                pointpos=0,
                jitter=0.4,
                marker={"color": "grey", "size": 4},
                line={"color": "grey"},
                meta=panel,
            ),
            row,
            col,
        )
    named = list(dict.fromkeys(r.direction for r in rows if not is_random(r.direction)))
    for i, direction in enumerate(named):
        chosen = [r for r in rows if r.direction == direction]
        estimates = [_value(r, panel) for r in chosen]
        fig.add_trace(
            go.Scatter(
                x=[x(r) for r in chosen],
                y=[e.value for e in estimates],
                error_y=_interval(estimates),
                mode="markers",
                marker={"symbol": "star", "size": 14, "color": _COLORS[i % len(_COLORS)]},
                name=direction,
                legendgroup=direction,
                showlegend=first,
                hovertext=[_null_text(r, panel) for r in chosen],
                meta=panel,
            ),
            row,
            col,
        )
    if panel not in RATES:
        fig.add_hline(y=0, line={"color": "lightgrey", "dash": "dot"}, row=row, col=col)


def _value(row: Any, panel: str) -> Estimate:
    """What a panel plots of a row: its estimate (a rate) or its effect's estimate."""
    found = getattr(row, panel)
    return getattr(found, "estimate", found)


def _interval(estimates: Sequence[Estimate]) -> dict[str, Any]:
    return {
        "type": "data",
        "symmetric": False,
        "array": [e.high - e.value for e in estimates],
        "arrayminus": [e.value - e.low for e in estimates],
    }


def _null_text(row: Any, panel: str) -> str:
    """A named direction's effect beside its null, as the CLI prints it."""
    null = getattr(getattr(row, panel), "null", None)
    if null is None:
        return ""
    return (
        f"random x{null.n_null}: median {null.null_median:+.3f} [{null.null_low:+.3f}, {null.null_high:+.3f}], "
        f"percentile {null.percentile:.0f}"
    )


def _estimates(result: dict[str, Any]) -> dict[str, Estimate]:
    """An unedited cell's rates as `summary.json`'s `unedited` holds them."""
    return {k: Estimate(**result[k]) for k in RATES}
