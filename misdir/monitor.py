"""Watching a finetune: at its start, at every checkpoint and at its end, how misaligned the model is and, given
a direction, how strongly it expresses it, measured with any training edits closed.

Each record (a line of `monitor.jsonl` in the run folder) holds the step; the contrast margin on a contrast set
(default `general`; `misdir.contrast`: mean log-prob per token of the misaligned answer minus the aligned one)
with its bootstrap interval over the items, and each item's margin; and, where a direction set is watched, the
mean projection of the model's residual stream at the last prompt token of each question onto the unit
direction at one layer (the persona-vector monitor of Chen et al. 2025, which predicts how strongly the answer
will express the direction), with its interval. `plot_monitor` draws them against the step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from misdir.cache import cache_activations
from misdir.contrast import contrast_margins
from misdir.directions import DirectionSet
from misdir.interventions import describe_directions
from misdir.io import atomic_path
from misdir.models import Model
from misdir.questions import ContrastPair, load_contrast_pairs
from misdir.stats import bootstrap_mean
from misdir.sweep import random_directions

MONITOR_FILE = "monitor.jsonl"


@dataclass(frozen=True)
class Watch:
    """What a finetune watches: the contrast margin on a contrast set and, given a direction set, the projection
    of the set's questions onto one layer's row."""

    directions: DirectionSet | None = None
    """The direction set projected on (None: the margin alone is watched)."""
    layer: int | None = None
    """The layer whose activations are projected onto its row (None: the middle one)."""
    pairs: str = "general"
    """Contrast-pair set (a shipped name or a JSONL file): its pairs give the margin, its questions are
    projected."""
    source: str | None = None
    """The file the directions came from, for errors and the record."""
    limit: int | None = None
    """Only the first items of the contrast set (None: all)."""
    n_random: int = 0
    """Random unit directions (`misdir.sweep.random_directions`) whose projections are recorded beside the
    watched one's: the control an early warning is read against."""
    random_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_random < 0:
            raise ValueError(f"n_random must be >= 0, got {self.n_random}")

    @classmethod
    def from_option(cls, text: str, n_random: int = 0) -> Watch:
        """`--watch FILE` or `FILE@LAYER`: the direction file read (refused naming it if it cannot be)."""
        path, at, layer = text.rpartition("@")
        if not at or Path(text).exists():
            path, layer = text, ""
        elif not layer.strip().isdigit():
            raise ValueError(f"--watch {text!r}: expected FILE or FILE@LAYER, LAYER a whole number")
        return cls(DirectionSet.load(path), int(layer) if layer else None, source=path, n_random=n_random)

    def at(self, n_layers: int) -> int:
        return n_layers // 2 if self.layer is None else self.layer

    def check(self, n_layers: int, d_model: int) -> None:
        """Refuse a direction set of another shape than the model's, a layer out of range, or a contrast set
        that cannot be read."""
        load_contrast_pairs(self.pairs)
        if self.directions is None:
            return
        name = f"--watch {self.source}" if self.source else "the watched direction set"
        if (self.directions.n_layers, self.directions.d_model) != (n_layers, d_model):
            raise ValueError(
                f"{name} has {self.directions.n_layers} layers of width "
                f"{self.directions.d_model}, but the model has {n_layers} of width {d_model}: "
                "it was made on another model"
            )
        if not 0 <= self.at(n_layers) < n_layers:
            raise ValueError(f"{name}: layer {self.layer} out of range; the model has layers 0 to " f"{n_layers - 1}")

    def identity(self, n_layers: int) -> dict[str, Any]:
        """What the watch measures (part of the run's identity, so resumed records stay comparable)."""
        identity: dict[str, Any] = {"pairs": self.pairs} | ({} if self.limit is None else {"limit": self.limit})
        if self.n_random:
            identity |= {"n_random": self.n_random, "random_seed": self.random_seed}
        if self.directions is None:
            return identity
        described = describe_directions(self.directions)
        return {
            "directions_sha256": described["sha256"],
            "site": self.directions.site,
            "layer": self.at(n_layers),
            **identity,
        }

    def contrast_pairs(self) -> list[ContrastPair]:
        """The pairs whose margins are measured (the first `limit` of the set)."""
        return load_contrast_pairs(self.pairs)[: self.limit]


def measure(model: Model, watch: Watch, step: int) -> dict[str, Any]:
    """One monitor record of `model` as it is now (under whatever edits are open: the trainer has none): the mean
    margin and, with directions, the mean projection, with their intervals; each item's values (`items`, for
    paired comparisons between steps) and, with `n_random`, each item's projection on each random direction."""
    pairs = watch.contrast_pairs()
    margins = contrast_margins(model, pairs, progress=False).double()
    record: dict[str, Any] = {"step": step}
    items = {"margin": margins.tolist()}
    if watch.directions is not None:
        questions = [[{"role": "user", "content": pair.question}] for pair in pairs]
        layer = watch.at(model.n_layers)
        site = watch.directions.site
        activations: Float[Tensor, "item d_model"] = cache_activations(
            model, questions, layers=[layer], site=site, positions="last", reduce="per-input", progress=False
        )[:, 0].double()
        projections = activations @ watch.directions.unit()[layer].double()
        record |= {"layer": layer, "projection": bootstrap_mean(projections.numpy())._asdict()}
        items["projection"] = projections.tolist()
        if watch.n_random:
            randoms = random_directions(activations.shape[-1], watch.n_random, seed=watch.random_seed).double()
            record["random_projections"] = (randoms @ activations.T).tolist()
    return record | {"margin": bootstrap_mean(margins.numpy())._asdict(), "items": items}


def monitor_records(out: str | Path) -> list[dict[str, Any]]:
    """The records of the run in `out` (its `monitor.jsonl`), in step order; none before its first."""
    path = Path(out) / MONITOR_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Monitor:
    """The records of one run, in `out/monitor.jsonl`: measured in eval mode, kept across resumes."""

    def __init__(self, model: Model, trained: nn.Module, watch: Watch, out: Path) -> None:
        self.model, self.trained, self.watch, self.path = model, trained, watch, out / MONITOR_FILE

    def records(self) -> list[dict[str, Any]]:
        return monitor_records(self.path.parent)

    def resume_at(self, step: int) -> None:
        """Keep the records up to `step` (those after it came from steps a killed run will redo); measure
        `step` itself if it has no record."""
        kept = [r for r in self.records() if r["step"] <= step]
        self._write(kept)
        if not kept or kept[-1]["step"] != step:
            self.record(step)

    def record(self, step: int) -> None:
        with evaluating(self.trained), torch.no_grad():
            found = measure(self.model, self.watch, step)
        self._write([*self.records(), found])

    def _write(self, records: list[dict[str, Any]]) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records))


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """`module` in eval mode (no dropout) inside the block, back in its former mode after."""
    training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(training)


def plot_monitor(records: list[dict[str, Any]], stem: str | Path, title: str = "") -> list[Path]:
    """The projection (where a direction was watched) and the margin, with their intervals, against the step:
    `stem.html`, and `stem.png` where it can be made."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    steps = [r["step"] for r in records]
    layer = records[0].get("layer", "?") if records else "?"
    names = {
        "projection": f"mean projection on the direction (layer {layer}, last prompt token)",
        "margin": "contrast margin (nats/token, misaligned minus aligned)",
    }
    names = {key: name for key, name in names.items() if all(key in r for r in records)}
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=list(names.values()))
    colours = {"projection": "#1f77b4", "margin": "#d62728"}
    for row, key in enumerate(names, start=1):
        values = [r[key] for r in records]
        band_y = [v["high"] for v in values] + [v["low"] for v in values][::-1]
        band = go.Scatter(
            x=steps + steps[::-1],
            y=band_y,
            mode="lines",
            fill="toself",
            fillcolor=colours[key],
            opacity=0.2,
            line={"width": 0},
            hoverinfo="skip",
            name=f"{key} 95% interval",
        )
        line = go.Scatter(
            x=steps, y=[v["value"] for v in values], mode="lines+markers", name=key, line={"color": colours[key]}
        )
        fig.add_trace(band, row=row, col=1)
        fig.add_trace(line, row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(names), col=1)
    fig.update_layout(title=title or "finetune monitor", showlegend=False)
    return save_figure(fig, stem, title=title or "finetune monitor")
