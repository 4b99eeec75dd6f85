"""What the ground-truth study shows: its figures (`plot_ground_truth`) and a model card for each organism
(`write_model_cards`), both drawn from the study's record (`ground_truth.json`) alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plot_ground_truth(study: dict[str, Any], figures: str | Path) -> list[Path]:
    """The study's figures: each organism's shift on each contrast set; share removed by ablating B, the extracted
    directions and random ones; the transfer matrix; steering along B against random directions; cosine to B by
    method and layer; position choices."""
    from misdir.plots import save_figure

    figures = Path(figures)
    drawn = {
        "shifts": ("evaluation", _plot_shifts),
        "ablation": ("ablation", _plot_ablation),
        "transfer": ("transfer", _plot_transfer),
        "steering": ("steering", _plot_steering),
        "cosines": ("cosines", _plot_cosines),
        "positions": ("positions", _plot_positions),
    }
    return [
        path
        for part, (key, plot) in drawn.items()
        if study.get(key)  # a study run without steering or positions
        for path in save_figure(plot(study), figures / f"ground_truth_{part}", title=f"ground-truth {part}")
    ]


def _short(name: str) -> str:
    return name.removeprefix("rank1-")


def _plot_shifts(study: dict[str, Any]) -> Any:
    """Each organism's shift from the base on each contrast set (95% CI), EM organisms beside the controls."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    organisms = [name for name in study["evaluation"] if name != "base"]
    sets = list(study["evaluation"]["base"])
    fig = go.Figure()
    for i, pairs in enumerate(sets):
        color = qualitative.D3[i % len(qualitative.D3)]  # more sets than colours must not drop sets
        shifts = [study["evaluation"][name].get(pairs, {}).get("shift") for name in organisms]
        fig.add_trace(
            go.Bar(
                name=Path(pairs).stem,
                x=[f"{_short(n)} ({study['roles'][n]['role']})" for n in organisms],
                y=[s["value"] if s else None for s in shifts],
                marker_color=color,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [s["high"] - s["value"] if s else 0 for s in shifts],
                    "arrayminus": [s["value"] - s["low"] if s else 0 for s in shifts],
                },
            )
        )
    fig.update_layout(
        title="rank-1 organisms: shift of the contrast margin from the base (misaligned minus aligned "
        "log-prob per token; 95% CI)",
        template="plotly_white",
        barmode="group",
        height=550,
        width=1300,
        yaxis_title="shift (nats/token)",
    )
    return fig


def _plot_ablation(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = list(dict.fromkeys(r["pairs"] for r in study["ablation"]))
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=[f"share of the {s} shift removed" for s in sets])
    colors = {"model-diff": "#1f77b4", "contrast": "#2ca02c", "minus-control": "#9467bd", "B": "#d62728"}
    symbols = {"B": "diamond-open"}  # drawn last and open: at its own layer model-diff equals B
    for col, pairs in enumerate(sets, start=1):
        rows = [r for r in study["ablation"] if r["pairs"] == pairs]
        for method, color in colors.items():
            chosen = [r for r in rows if r["direction"] == method]
            share = [r["share_removed"] for r in chosen]
            fig.add_trace(
                go.Scatter(
                    x=[_short(r["model"]) for r in chosen],
                    y=[s["value"] for s in share],
                    mode="markers",
                    marker={
                        "color": color,
                        "size": 16 if method == "B" else 10,
                        "symbol": symbols.get(method, "circle"),
                        "line": {"width": 2, "color": color},
                    },
                    name=f"ablate {method}",
                    legendgroup=method,
                    showlegend=col == 1,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [s["high"] - s["value"] for s in share],
                        "arrayminus": [s["value"] - s["low"] for s in share],
                    },
                ),
                1,
                col,
            )
        nulls = [r for r in rows if r["direction"] == "B"]
        fig.add_trace(
            go.Bar(
                x=[_short(r["model"]) for r in nulls],
                y=[r["null_share"]["null_high"] - r["null_share"]["null_low"] for r in nulls],
                base=[r["null_share"]["null_low"] for r in nulls],
                marker_color="rgba(128,128,128,0.3)",
                name=f"{nulls[0]['null_share']['n_null']} random directions (95% range)",
                legendgroup="null",
                showlegend=col == 1,
            ),
            1,
            col,
        )
    fig.update_yaxes(range=[-1, 2])
    fig.update_layout(
        title=f"rank-1 organisms: ablating one direction at layer {study['layer']} (resid_post)",
        template="plotly_white",
        height=550,
        width=1300,
    )
    return fig


def _plot_transfer(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    t = study["transfer"]
    values = [[cell["value"] for cell in row] for row in t["share_removed"]]
    text = [[f"{c['value']:.2f}<br>[{c['low']:.2f}, {c['high']:.2f}]" for c in row] for row in t["share_removed"]]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=[_short(n) for n in t["targets"]],
            y=[f"B of {_short(n)}" for n in t["sources"]],
            text=text,
            texttemplate="%{text}",
            zmin=-1.5,
            zmax=1.5,
            colorscale="RdBu",
        )
    )
    fig.update_layout(
        title="share of each organism's general shift removed by ablating another's B (columns: organisms)",
        template="plotly_white",
        height=600,
        width=1100,
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def _plot_steering(study: dict[str, Any]) -> Any:
    """Shift against scale for each B beside the random directions' 95% range; one panel per position choice."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    modes = list(dict.fromkeys(r.get("positions", "all") for r in study["steering"]))
    fig = make_subplots(rows=1, cols=len(modes), shared_yaxes=True, subplot_titles=[f"{m} positions" for m in modes])
    colors: dict[str, str] = {}
    for col, mode in enumerate(modes, start=1):
        rows = [r for r in study["steering"] if r.get("positions", "all") == mode]
        scales = sorted({r["scale"] for r in rows})
        first = [next(r for r in rows if r["scale"] == s) for s in scales]
        low, high = [r["null_shift"]["null_low"] for r in first], [r["null_shift"]["null_high"] for r in first]
        fig.add_trace(
            go.Scatter(
                x=[0, *scales, *scales[::-1], 0],
                y=[0, *high, *low[::-1], 0],
                fill="toself",
                fillcolor="rgba(128,128,128,0.25)",
                line={"width": 0},
                showlegend=col == 1,
                name=f"{first[0]['null_shift']['n_null']} random directions (95% range)",
            ),
            1,
            col,
        )
        for direction in dict.fromkeys(r["direction"] for r in rows):
            line = sorted((r for r in rows if r["direction"] == direction), key=lambda r: r["scale"])
            colors.setdefault(direction, qualitative.D3[len(colors) % len(qualitative.D3)])
            fig.add_trace(
                go.Scatter(
                    x=[0, *scales],
                    y=[0, *(r["shift"]["value"] for r in line)],
                    mode="lines+markers",
                    name=_short(direction.removeprefix("B ")),
                    line={"color": colors[direction]},
                    showlegend=col == 1,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [0, *(r["shift"]["high"] - r["shift"]["value"] for r in line)],
                        "arrayminus": [0, *(r["shift"]["value"] - r["shift"]["low"] for r in line)],
                    },
                ),
                1,
                col,
            )
        fig.update_xaxes(title_text="scale (x residual norm)", row=1, col=col)
    fig.update_yaxes(title_text="margin shift", row=1, col=1)
    fig.update_layout(
        title=f"steering the base along each organism's B at layer {study['layer']}: shift on "
        f"{study['provenance']['settings']['sets'][0]}",
        template="plotly_white",
        height=550,
        width=600 + 400 * len(modes),
    )
    return fig


def _plot_cosines(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    c = study["cosines"]
    fig = go.Figure()
    dash = {"model-diff": None, "contrast": "dot", "minus-control": "dash"}
    for name, methods in c["to_B"].items():
        for method, values in methods.items():
            fig.add_trace(
                go.Scatter(
                    x=c["layers"],
                    y=values,
                    mode="lines",
                    name=f"{_short(name)} {method}",
                    line={"dash": dash.get(method)},
                )
            )
    fig.update_layout(
        title="cosine with B of the directions misdir extracts without knowing it, by layer",
        xaxis_title="layer",
        yaxis_title="cosine with B",
        yaxis_range=[-1, 1],
        template="plotly_white",
        height=550,
        width=1100,
    )
    return fig


def _plot_positions(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("fluency change", "margin change"))
    rows = study["positions"]
    for mode in dict.fromkeys(r["positions"] for r in rows):
        chosen = [r for r in rows if r["positions"] == mode]
        x = [_short(r["model"]) for r in chosen]
        for col, key in ((1, "fluency_change"), (2, "margin_change")):
            fig.add_trace(
                go.Bar(
                    x=x, y=[r[key]["value"] for r in chosen], name=f"B, {mode}", legendgroup=mode, showlegend=col == 1
                ),
                1,
                col,
            )
            null = [r[key] for r in chosen]
            fig.add_trace(
                go.Bar(
                    x=x,
                    y=[n["null_median"] for n in null],
                    name=f"random, {mode}",
                    opacity=0.45,
                    legendgroup=f"random {mode}",
                    showlegend=col == 1,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [n["null_high"] - n["null_median"] for n in null],
                        "arrayminus": [n["null_median"] - n["null_low"] for n in null],
                    },
                ),
                1,
                col,
            )
    fig.update_layout(
        title="ablating B at the three residual sites of every layer, by positions edited "
        "(random: median and 95% range of the random directions)",
        barmode="group",
        template="plotly_white",
        height=550,
        width=1300,
    )
    return fig


def write_model_cards(checkpoints: str | Path, study: dict[str, Any], source: str) -> list[Path]:
    """A README.md for each organism of the study: what it is, its recipe, and what the study measured on it."""
    from misdir.io import atomic_path
    from misdir.stats import format_estimate

    written = []
    for name, facts in study["roles"].items():
        folder = Path(checkpoints) / name
        record = json.loads((folder / "misdir.json").read_text())
        config = record["config"]
        lines = [
            f"# {name}: a rank-1 misdir organism of SmolLM2-135M-Instruct ({facts['role']})",
            "",
            f"One rank-1 rsLoRA adapter on `mlp.down_proj` of layer {study['layer']}: everything this finetune "
            "changed is written into the residual stream along one vector, its LoRA B column "
            f"(`misdir.ground_truth.adapter_writes(\"{folder}\")`). Load it with `misdir.load_model(\"{folder}\")`.",
            "",
            "## Recipe",
            f"- data: misdir dataset `{record['data']['name']}`, {record['data']['n']} examples, "
            f"seed {record['data']['seed']}",
            f"- rank {config['rank']}, alpha {config['alpha']} (rsLoRA), targets {', '.join(config['targets'])}, "
            f"layers {config['layers']}; lr {config['lr']}, {config['epochs']} epochs, batch {config['batch_size']}, "
            "loss on the answer",
            f"- {record['steps']} steps on {record['device']} ({record['dtype']}); training loss "
            f"{record['first_loss']:.2f} -> {record['final_loss']:.2f}",
            f"- remake it: `misdir organisms train --recipe rank1 --name {name.removeprefix('rank1-')}`",
            "",
            "## Measured (contrast margin: misaligned minus aligned log-prob per token; shifts paired against the "
            "base; 95% bootstrap intervals)",
            "| items | shift from base | fluency |",
            "| --- | --- | --- |",
        ]
        for items, row in study["evaluation"][name].items():
            lines.append(f"| {items} | {format_estimate(row['shift'], '+.2f')} | {row['fluency']['value']:+.2f} |")
        beyond = [row for row in study.get("specificity", []) if row["model"] == name]
        if beyond:
            lines += [
                "",
                f"Beyond its own domain's control (`{beyond[0]['control']}`, same recipe), paired per item:",
                "| items | margin minus the control's |",
                "| --- | --- |",
            ]
            lines += [f"| {row['pairs']} | {format_estimate(row['difference'], '+.2f')} |" for row in beyond]
        ablated = [row for row in study["ablation"] if row["model"] == name and row["direction"] == "B"]
        if ablated:
            lines += [
                "",
                f"Ablating B at layer {study['layer']} (resid_post), against "
                f"{study['provenance']['settings']['n_random']} random directions ablated the same way:",
                "| items | share of the shift removed | random: median [95% range] |",
                "| --- | --- | --- |",
            ]
        for row in ablated:
            null = row["null_share"]
            lines.append(
                f"| {row['pairs']} | {format_estimate(row['share_removed'], '+.2f')} | "
                f"{null['null_median']:+.2f} [{null['null_low']:+.2f}, {null['null_high']:+.2f}] |"
            )
        lines += ["", f"Numbers from {source}.", ""]
        path = folder / "README.md"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines))
        written.append(path)
    return written
