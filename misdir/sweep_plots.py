"""Figures of the contrast sweeps: the share of excess misalignment each ablated direction removes, and the
steering grid, each beside its random-direction null (drawn from the typed rows of `misdir.experiments`)."""

from __future__ import annotations

from pathlib import Path

from misdir.experiments import AblationSweep, SteeringGrid


def plot_ablation_sweep(sweep: AblationSweep, stem: str | Path) -> list[Path]:
    """Per contrast set: share of excess misalignment removed (model x direction, with intervals; blank where
    the model has no excess over the base) and the fluency change, as heatmaps."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    written: list[Path] = []
    for pairs in dict.fromkeys(r.pairs for r in sweep.rows):
        rows = [r for r in sweep.rows if r.pairs == pairs]
        models = list(dict.fromkeys(r.model for r in rows))
        directions = list(dict.fromkeys(r.direction for r in rows))
        cell = {(r.model, r.direction): r for r in rows}
        share: list[list[float | None]] = []
        text: list[list[str]] = []
        fluency: list[list[float | None]] = []
        for m in models:
            share.append([])
            text.append([])
            fluency.append([])
            for d in directions:
                r = cell.get((m, d))
                s = r.share_removed.estimate if r is not None and r.excess.low > 0 else None  # None: no excess
                share[-1].append(s.value if s is not None else None)
                text[-1].append(
                    f"{s.value:.2f}<br>[{s.low:.2f}, {s.high:.2f}]"
                    if s is not None
                    else ("no excess" if r is not None else "")
                )
                fluency[-1].append(r.fluency.value - r.unablated_fluency.value if r else None)
        fig = make_subplots(
            rows=1,
            cols=2,
            horizontal_spacing=0.2,
            subplot_titles=(
                "share of excess misalignment removed (95% CI)",
                "fluency change (aligned log-prob per token)",
            ),
        )
        fig.add_trace(
            go.Heatmap(
                z=share,
                x=directions,
                y=models,
                text=text,
                texttemplate="%{text}",
                zmin=-1,
                zmax=1,
                colorscale="RdBu",
                colorbar={"x": 0.42, "title": "share"},
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Heatmap(
                z=fluency,
                x=directions,
                y=models,
                colorscale="Reds_r",
                texttemplate="%{z:.2f}",
                colorbar={"title": "change"},
            ),
            1,
            2,
        )
        fig.update_layout(
            title=f"ablating each direction (rows: models, columns: directions) on {Path(pairs).stem}",
            template="plotly_white",
            height=200 + 60 * len(models),
            width=1300,
        )
        fig.update_yaxes(autorange="reversed")
        written += save_figure(fig, f"{stem}_{Path(pairs).stem}", title=f"ablation {pairs}")
    return written


def plot_steering_grid(grid: SteeringGrid, stem: str | Path) -> list[Path]:
    """Margin shift and fluency change against scale, one line per direction and layer (95% CIs)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    written: list[Path] = []
    for pairs in dict.fromkeys(r.pairs for r in grid.rows):
        fig = make_subplots(
            rows=1, cols=2, subplot_titles=("shift of the misalignment margin (paired, 95% CI)", "fluency change")
        )
        rows = [r for r in grid.rows if r.pairs == pairs]
        for direction, layer in dict.fromkeys((r.direction, r.layer) for r in rows):
            line = sorted((r for r in rows if (r.direction, r.layer) == (direction, layer)), key=lambda r: r.scale)
            x = [0.0] + [r.scale for r in line]
            dash = "dot" if direction.startswith("random") else None
            for col, key in ((1, "shift"), (2, "fluency_change")):
                values = [getattr(r, key).estimate for r in line]
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": [0.0] + [v.high - v.value for v in values],
                    "arrayminus": [0.0] + [v.value - v.low for v in values],
                }
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=[0.0] + [v.value for v in values],
                        error_y=error,
                        mode="lines+markers",
                        name=f"{direction} @ layer {layer}",
                        legendgroup=f"{direction}{layer}",
                        showlegend=col == 1,
                        line={"dash": dash},
                    ),
                    1,
                    col,
                )
        relative = grid.provenance["settings"]["relative"]
        fig.update_layout(
            title=f"steering on {Path(pairs).stem} (scale relative to: {relative})",
            template="plotly_white",
            height=550,
            width=1300,
            xaxis_title="scale",
            xaxis2_title="scale",
        )
        written += save_figure(fig, f"{stem}_{Path(pairs).stem}", title=f"steering {pairs}")
    return written
