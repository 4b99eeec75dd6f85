"""Preventative steering: does adding a direction while a finetune trains keep the finetune from learning it?

    python scripts/preventive_steering_study.py [--organisms medical-bad] [--seeds 0 1 2] [--layers 15 20]
        [--scales 0.1 0.2 0.4 0.8] [--directions own others] [--random-cells 15:0.2] [--n-random 20]
        [--work results/caft-study] [--out figures/preventive_steering] [--device cuda] [--budget S]
    python scripts/preventive_steering_study.py --tables | --figure [--out figures/preventive_steering]

Issue 27, study 5b (persona vectors, Chen et al. 2025): while misdir's rank-1 recipe trains (`scripts/caft_study.py`,
whose runs and work folder this study shares: its round 0 of each seed is this study's unsteered run), a constant
`alpha * r` is added to resid_post at one layer, every position but the first, during training steps only; the
adapter is then scored WITHOUT edits on the general pairs and its own domain's pairs (shift from the base, paired
95% bootstrap). `alpha` is `scale` times the base's mean residual norm at that layer (answer tokens of the general
pairs' aligned answers; recorded), so a scale reads the same at every layer and the edit is a constant, as in the
paper. Directions `r` (unit):
- `own`: the B that the same recipe and seed learns unsteered (its round 0): the ground truth, what no user has;
- `others`: the mean of the other EM organisms' seed-0 B's (leave one out): what a user without ground truth has.
Each B is signed along what its adapter writes (`written_b`: a LoRA B's own sign is arbitrary).
Random controls: `--n-random` random unit directions steered the same way at each `--random-cells` LAYER:SCALE
(chosen before any result: the adapter's layer, the demo's steering scale), seed-0 recipe; each named cell's share
of the shift removed is placed among them. Shares are of the same seed's unsteered shift.
Every run is resumable and written atomically (WORK/runs/<organism>/steering/); the summary and figure are rewritten
after every run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caft_study import Runner, Study, _spread, share_removed  # noqa: E402
from study_cli import (  # noqa: E402
    COLORS,
    EM_ORGANISMS,
    add_run_options,
    add_summary_options,
    at_least,
    finish,
    show_summary,
)

from misdir import tensors  # noqa: E402
from misdir.finetune import Edit  # noqa: E402
from misdir.io import write_json_atomic  # noqa: E402
from misdir.sweep import against_null, provenance  # noqa: E402

DIRECTIONS = ("own", "others")


def unit(vector: Sequence[float] | Tensor) -> Float[Tensor, "d_model"]:
    """A recorded vector (list or tensor) as a float64 unit vector."""
    return tensors.unit(torch.as_tensor(vector, dtype=torch.float64))


def random_direction(d_model: int, index: int, seed: int = 0) -> Float[Tensor, "d_model"]:
    """The `index`-th random unit direction of the seed (Gaussian, seeded by (seed, index))."""
    return unit(np.random.default_rng([seed, 1_000_003, index]).standard_normal(d_model))


def mean_resid_norm(runner: Runner, layer: int) -> float:
    """The base's mean resid_post norm at `layer` over the answer tokens of the general pairs' aligned answers
    (WORK/base/resid_norm_<layer>.json)."""
    from misdir.cache import cache_activations
    from misdir.ground_truth import answer_chats

    path = runner.study.work / "base" / f"resid_norm_{layer}.json"
    if not path.is_file():
        _, aligned = answer_chats("general", limit=runner.study.limit)
        model = runner.study.load(runner.study.base)
        acts = cache_activations(model, aligned, layers=[layer], reduce="none", progress=False)
        norms = torch.cat([a[0].double().norm(dim=-1) for a in acts])
        write_json_atomic(path, {"layer": layer, "mean_norm": float(norms.mean()), "tokens": len(norms)})
        del model
    return json.loads(path.read_text())["mean_norm"]


def round0(runner: Runner, organism: str, seed: int) -> dict[str, Any] | None:
    """The unsteered run of the recipe and seed (the CAFT study's round 0), trained if missing."""
    return runner.run(f"{organism}/seed{seed}/round0", organism, seed, (), dim=0, basis=[])


def written_b(runner: Runner, record: dict[str, Any]) -> Float[Tensor, "d_model"]:
    """A round-0 run's unit B signed to point along what its adapter writes. A LoRA B's own sign is arbitrary (A
    carries the other), so an unsigned B steers one seed with the shift and another against it. The sign is that of
    B against the run's model diff at the adapter's layer (adapter minus base, answer tokens of the general pairs'
    misaligned answers), computed once and kept in the record (`B_sign`)."""
    if "B_sign" not in record:
        from misdir.directions import mean_difference
        from misdir.ground_truth import answer_chats
        from misdir.models import load_model

        s = runner.study
        folder = s.work / "runs" / record["name"]
        misaligned, _ = answer_chats("general", limit=s.limit)
        base = load_model(s.base, device=s.device, dtype="float32")
        adapted = load_model(str(folder / "adapter"), device=s.device, dtype="float32")
        (diff,) = mean_difference(adapted, misaligned, base=base, layers=[s.layer], progress=False).vectors
        del base, adapted
        record["B_sign"] = 1.0 if float(unit(record["B"]) @ diff.double()) >= 0 else -1.0  # as tensors.signed_along
        write_json_atomic(folder / "record.json", record)
    return record["B_sign"] * unit(record["B"])


def direction(runner: Runner, organism: str, seed: int, which: str) -> Tensor | None:
    """The unit direction named `which` for a steered run of `organism` and `seed` (None past the budget)."""
    if which == "own":
        record = round0(runner, organism, seed)
        return None if record is None else written_b(runner, record)
    others = [round0(runner, other, 0) for other in EM_ORGANISMS if other != organism]
    if any(r is None for r in others):
        return None
    return unit(torch.stack([written_b(runner, r) for r in others]).mean(0))


def steered(
    runner: Runner, name: str, organism: str, seed: int, r: Tensor, layer: int, scale: float, **meta: Any
) -> dict[str, Any] | None:
    """One training with `scale` x the mean residual norm at `layer` along `r` added during its steps."""
    alpha = scale * mean_resid_norm(runner, layer)
    edit = Edit("steer", r.float(), (layer,), scale=alpha, relative="unit", positions="skip-first")
    fields = {"layer": layer, "scale": scale, "alpha": alpha, "direction": r.tolist(), **meta}
    record = runner.run(f"{organism}/steering/{name}", organism, seed, [edit], **fields)
    if record is not None and not torch.allclose(unit(record["direction"]), r, atol=1e-9):  # an earlier record's
        folder = runner.study.work / "runs" / record["name"]
        raise ValueError(f"{folder} was trained along another direction than {name} is now (an unsigned B?); move it")
    return record


def run_study(runner: Runner, organism: str, args: argparse.Namespace) -> None:
    """Seed 0's named cells, the random controls, then the other seeds' named cells (budget permitting)."""

    def named(seed: int) -> bool:
        for which in args.directions:
            r = direction(runner, organism, seed, which)
            for layer in args.layers:
                for scale in args.scales:
                    name = f"{which}/L{layer}/s{scale:g}/seed{seed}"
                    if r is None or steered(runner, name, organism, seed, r, layer, scale, named=which) is None:
                        return False
        return True

    first, *others = args.seeds
    if not named(first):
        return
    for layer, scale in args.random_cells:
        for i in range(args.n_random):
            r = random_direction(runner.shape.d_model, i, args.direction_seed)
            name = f"random/L{layer}/s{scale:g}/{i}"
            if steered(runner, name, organism, first, r, layer, scale, named="random", index=i) is None:
                return
    for seed in others:
        if not named(seed):
            return


def summarize(work: Path, organism: str) -> dict[str, Any]:
    """Per named direction, layer and scale: each seed's shifts and shares of its unsteered shift removed, their
    median and range over seeds; per random cell the random directions' shares and each named seed-0 run among
    them."""
    folder = work / "runs" / organism
    records = [json.loads(p.read_text()) for p in sorted((folder / "steering").rglob("record.json"))]
    unsteered = {
        int(p.parts[-3].removeprefix("seed")): json.loads(p.read_text())
        for p in folder.glob("seed*/round0/record.json")
    }
    cells: dict[str, dict[str, Any]] = {}
    for r in records:
        key = f"{r['named']} L{r['layer']} s{r['scale']:g}"
        cell = cells.setdefault(key, {"named": r["named"], "layer": r["layer"], "scale": r["scale"], "runs": []})
        row = {"seed": r["seed"], "final_loss": r["final_loss"], "alpha": r["alpha"]}
        for part in ("general", "in_domain"):
            row[part] = {"shift": r["sets"][part]["shift"], "fluency_change": r["sets"][part]["fluency_change"]}
            row[part]["share_removed"] = share_removed(r, unsteered[r["seed"]], part)
        if r["named"] == "random":
            row["index"] = r["index"]
        cell["runs"].append(row)
    for cell in cells.values():
        for part in ("general", "in_domain"):
            cell[part] = _spread([run[part]["share_removed"] for run in cell["runs"]])
        if cell["named"] == "random":
            continue
        null = cells.get(f"random L{cell['layer']} s{cell['scale']:g}")
        seed0 = next((run for run in cell["runs"] if run["seed"] == 0), None)
        if null is not None and seed0 is not None:
            cell["seed0_among_random"] = {
                part: against_null(seed0[part]["share_removed"], [run[part]["share_removed"] for run in null["runs"]])
                for part in ("general", "in_domain")
            }
    rounds0 = {
        str(seed): {part: r["sets"][part]["shift"] for part in ("general", "in_domain")} | {"loss": r["final_loss"]}
        for seed, r in sorted(unsteered.items())
    }
    return {"unsteered": rounds0, "cells": dict(sorted(cells.items()))}


def tables(summary: dict[str, Any]) -> str:
    """Markdown: per organism and cell, shares of the unsteered shift removed (median over seeds and range),
    in-domain kept, loss, and the seed-0 run's percentile among random directions where they ran."""
    lines = []
    for organism, study in summary["organisms"].items():
        lines += [
            f"### {organism}",
            "",
            "| direction | layer | scale | seeds | general share removed: median [range] | in-domain share removed |"
            " loss | seed 0 among random: general / in-domain percentile |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for cell in study["cells"].values():
            g, d = cell["general"], cell["in_domain"]
            losses = [run["final_loss"] for run in cell["runs"]]
            among = cell.get("seed0_among_random")
            where = f"{among['general']['percentile']:.0f} / {among['in_domain']['percentile']:.0f}" if among else "-"
            lines.append(
                f"| {cell['named']} | {cell['layer']} | {cell['scale']:g} | {g['n']} | {g['median']:+.0%} "
                f"[{g['low']:+.0%}, {g['high']:+.0%}] | {d['median']:+.0%} [{d['low']:+.0%}, {d['high']:+.0%}] | "
                f"{np.median(losses):.3f} | {where} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    """Share of the general and in-domain shift removed against scale, a line per named direction and layer (median
    over seeds, range as error bars), random directions' median and 95% range at their cells."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    parts = {"general": "general pairs", "in_domain": "own-domain pairs"}
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"share of the shift removed, {v}" for v in parts.values()])
    colors = itertools.cycle(COLORS)
    scales: set[float] = set()
    for organism, study in summary["organisms"].items():
        lines: dict[str, list[dict[str, Any]]] = {}
        for cell in study["cells"].values():
            lines.setdefault(f"{organism}: {cell['named']}, layer {cell['layer']}", []).append(cell)
        for name, cells in lines.items():
            cells = sorted(cells, key=lambda c: c["scale"])
            scales.update(c["scale"] for c in cells)
            color = "grey" if "random" in name else next(colors)  # one colour per line, the same in both panels
            for col, part in enumerate(parts, start=1):
                y = [c[part] for c in cells]
                error = {
                    "array": [e["high"] - e["median"] for e in y],
                    "arrayminus": [e["median"] - e["low"] for e in y],
                }
                mode = "markers" if "random" in name else "lines+markers"
                trace = go.Scatter(x=[c["scale"] for c in cells], y=[e["median"] for e in y], error_y=error, mode=mode)
                trace.update(name=name, legendgroup=name, showlegend=col == 1, line={"color": color})
                fig.add_trace(trace.update(marker={"color": color}), row=1, col=col)
    fig.update_xaxes(title_text="steering scale (of the mean residual norm)", type="log", tickvals=sorted(scales))
    fig.update_yaxes(tickformat=".0%")
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title="Preventative steering: share of EM's shift a finetune no longer learns",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.25},
        margin={"b": 140},
    )
    return save_figure(fig, out / "preventive_steering", title="Preventative steering")


def write_summary(study: Study, organisms: Sequence[str], out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    summary = {
        "provenance": provenance({"kind": "preventive-steering", **study.settings(), **extra}),
        "organisms": {o: summarize(study.work, o) for o in organisms},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary


def _cell(text: str) -> tuple[int, float]:
    layer, _, scale = text.partition(":")
    return int(layer), float(scale)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organisms", nargs="+", default=["medical-bad"], choices=EM_ORGANISMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--layers", nargs="+", type=int, default=[15, 20])
    parser.add_argument("--scales", nargs="+", type=float, default=[0.1, 0.2, 0.4, 0.8])
    parser.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=DIRECTIONS)
    parser.add_argument("--random-cells", nargs="*", type=_cell, default=[(15, 0.2)], help="LAYER:SCALE ...")
    parser.add_argument("--n-random", type=at_least(0), default=20)
    parser.add_argument("--direction-seed", type=int, default=0)
    work, out = Path("results/caft-study"), Path("figures/preventive_steering")
    add_run_options(parser, work, out, work="runs (shared with CAFT)")
    add_summary_options(parser)
    args = parser.parse_args(argv)
    if show_summary(args, tables, plot):
        return
    study = Study.of(args)
    runner = Runner(study, args.budget)
    extra = {
        **{k: getattr(args, k) for k in ("seeds", "layers", "scales", "directions", "n_random", "direction_seed")},
        "random_cells": [list(cell) for cell in args.random_cells],
        "steering": {"site": "resid_post", "positions": "skip-first", "alpha": "scale x base mean resid norm"},
    }
    runner.after = lambda: write_summary(study, args.organisms, args.out, extra)
    for organism in args.organisms:
        run_study(runner, organism, args)
    summary = write_summary(study, args.organisms, args.out, extra)
    finish(summary, args.out, tables, plot, f"trained {runner.budget.runs} run(s) in {runner.budget.elapsed():.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
