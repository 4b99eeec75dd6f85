"""Watching a finetune become misaligned: does a direction's projection rise before the contrast margin shifts?

    python scripts/watch_study.py [--organisms medical-bad] [--seeds 0 1 2 3 4] [--every 5] [--watch-layer 20]
        [--n-random 20] [--directions-dir checkpoints/smollm2-135m/directions] [--work results/watch-study]
        [--out figures/watch] [--device cuda] [--budget S]
    python scripts/watch_study.py --tables | --figure [--out figures/watch]

Issue 27, study 5d (the early warning of Wang et al. 2025). misdir's rank-1 recipe trains each organism per seed
with a `misdir.monitor.Watch`: at step 0 (the base), every `--every` steps and the end it records, on the general
questions, each question's projection (last prompt token, `--watch-layer`) on the watched direction and on
`--n-random` seeded random unit directions, and each pair's contrast margin. The watched direction is what a user
without the finetune has: the mean of the unit model-diff directions of the OTHER rank-1 EM organisms (shipped in
`--directions-dir` as rank1-<organism>.safetensors), leave one out.
Per run and step: the paired change from step 0 of the mean projection and of the mean margin (paired 95%
bootstrap over the questions). A quantity's onset is the first step from which every later step's interval
excludes 0 on the same side (a rise for the watched projection and the margin; either side for a random
direction); the lead is the margin's onset minus the projection's, in steps (positive: the warning came first).
An interval leaving 0 is a weak test once the adapter moves (random directions' projections move too), so each
run also gives the step from which the watched projection's change exceeds every random direction's absolute
change at that and every later step (first of n_random + 1), and the margin's lead over that step.
Over seeds: the lead's mean with a bootstrap interval over seeds; per seed the random directions whose onset came
no later than the margin's (false alarms: a monitor of an arbitrary direction would have warned as early).
Runs resume (`misdir.finetune`'s own resume) under WORK/runs/<organism>/seed<s>/; the summary is rewritten after
each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cli import (  # noqa: E402
    COLORS,
    EM_ORGANISMS,
    Budget,
    add_run_options,
    add_summary_options,
    at_least,
    finish,
    show_summary,
)

from misdir.directions import DirectionSet  # noqa: E402
from misdir.finetune import finetune  # noqa: E402
from misdir.io import check_settings, write_json_atomic  # noqa: E402
from misdir.monitor import MONITOR_FILE, Watch  # noqa: E402
from misdir.organisms import RECIPES  # noqa: E402
from misdir.stats import bootstrap_mean, format_estimate, paired_difference  # noqa: E402
from misdir.sweep import provenance  # noqa: E402


def watched_direction(directions_dir: Path, organism: str) -> DirectionSet:
    """The mean of the other EM organisms' unit rank-1 model-diff directions, layer by layer (leave one out)."""
    others = [DirectionSet.load(directions_dir / f"rank1-{o}.safetensors") for o in EM_ORGANISMS if o != organism]
    mean = sum(d.unit() for d in others) / len(others)
    meta = {
        "kind": "leave-one-out mean of rank-1 model-diff directions",
        "of": [o for o in EM_ORGANISMS if o != organism],
    }
    return DirectionSet(mean, site=others[0].site, meta=meta)


def onset(changes: Sequence[dict[str, float]], side: int | None) -> int | None:
    """The index of the first change from which every later one's interval excludes 0 on one side (`side` +1:
    above, -1: below, None: either, the same for all); None if the last one's does not."""
    found = None
    for i in range(len(changes) - 1, -1, -1):
        c = changes[i]
        sign = 1 if c["low"] > 0 else -1 if c["high"] < 0 else 0
        if sign == 0 or (side is not None and sign != side) or (found is not None and sign != found[1]):
            break
        found = (i, sign)
    return None if found is None else found[0]


def above_random(projection: Sequence[dict[str, float]], randoms: Sequence[Sequence[dict[str, float]]]) -> int | None:
    """The index of the first change of the watched projection from which every later one rises more than every
    random direction's moves (in absolute value) at the same step: ranked first of n_random + 1, a rise specific to
    the watched direction; None without random directions or if the last one is not."""
    if not randoms:
        return None
    flags = [p["value"] > max(abs(r[k]["value"]) for r in randoms) for k, p in enumerate(projection)]
    later_all = [all(flags[k:]) for k in range(len(flags))]
    return later_all.index(True) if flags[-1] else None


def changes(records: Sequence[dict[str, Any]], values: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Each step's paired change of the item mean from step 0 (`values[k]`: step k's items), with its interval."""
    return [
        paired_difference(values[0], v)._asdict() | {"step": r["step"]} for r, v in zip(records, values, strict=False)
    ]


def analyze(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One run's changes from step 0, onsets (as steps), lead and false alarms."""
    records = sorted(records, key=lambda r: r["step"])
    steps = [r["step"] for r in records]
    projection = changes(records, [r["items"]["projection"] for r in records])
    margin = changes(records, [r["items"]["margin"] for r in records])
    randoms = [changes(records, [r["random_projections"][j] for r in records]) for j in range(_n_random(records))]
    at = {
        "projection": onset(projection, +1),
        "margin": onset(margin, +1),
        "above_random": above_random(projection, randoms),
    }
    onsets = {k: None if i is None else steps[i] for k, i in at.items()}
    random_onsets = [None if (i := onset(c, None)) is None else steps[i] for c in randoms]
    m = onsets["margin"]
    lead, lead_above_random = (
        None if m is None or o is None else m - o for o in (onsets["projection"], onsets["above_random"])
    )
    return {
        "steps": steps,
        "projection": projection,
        "margin": margin,
        "random_final": [c[-1] for c in randoms],
        "onset": onsets,
        "lead": lead,
        "lead_above_random": lead_above_random,
        "random_onsets": random_onsets,
        "false_alarms": None if m is None else sum(o is not None and o <= m for o in random_onsets),
    }


def _n_random(records: Sequence[dict[str, Any]]) -> int:
    return len(records[0].get("random_projections", []))


def summarize(work: Path, organism: str) -> dict[str, Any]:
    """Per finished seed its analysis; over seeds each lead's mean with a bootstrap interval."""
    seeds = {}
    for folder in sorted((work / "runs" / organism).glob("seed*")):
        if (folder / "misdir.json").is_file():
            records = [json.loads(line) for line in (folder / MONITOR_FILE).read_text().splitlines() if line]
            seeds[folder.name.removeprefix("seed")] = analyze(records)
    leads, above = ([s[k] for s in seeds.values() if s[k] is not None] for k in ("lead", "lead_above_random"))
    return {
        "seeds": seeds,
        "lead": bootstrap_mean(leads)._asdict() if len(leads) > 1 else None,
        "lead_above_random": bootstrap_mean(above)._asdict() if len(above) > 1 else None,
        "seeds_with_both_onsets": len(leads),
    }


def tables(summary: dict[str, Any]) -> str:
    lines = []
    for organism, study in summary["organisms"].items():
        n_random = summary["provenance"]["settings"]["n_random"]
        lines += [
            f"### {organism}",
            "",
            "| seed | projection onset (step) | margin onset (step) | lead (steps) | final projection change | "
            f"final margin shift | random directions with an onset <= the margin's (of {n_random}) | "
            "projection above every random one from (step) | lead over that (steps) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for seed, s in study["seeds"].items():
            p, m = s["onset"]["projection"], s["onset"]["margin"]
            lines.append(
                f"| {seed} | {p if p is not None else 'none'} | {m if m is not None else 'none'} | "
                f"{s['lead'] if s['lead'] is not None else '-'} | {format_estimate(s['projection'][-1])} | "
                f"{format_estimate(s['margin'][-1])} | {s['false_alarms'] if s['false_alarms'] is not None else '-'} | "
                f"{_or_dash(s['onset'].get('above_random'))} | {_or_dash(s.get('lead_above_random'))} |"
            )
        for key, what in (("lead", "Lead"), ("lead_above_random", "Lead of the rise above every random direction")):
            lead = study.get(key)
            lines.append(f"{what} over seeds: {format_estimate(lead, '+.1f') if lead else 'too few seeds'} steps.")
        lines.append("")
    return "\n".join(lines)


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    """Per organism: the watched projection's and the margin's change from step 0 against step, one line per seed
    (intervals as bands), and the random directions' 95% range of projection changes."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.plots import save_figure

    organisms = [o for o, study in summary["organisms"].items() if study["seeds"]]  # those that ran
    titles = [f"{o}: {what}" for o in organisms for what in ("projection change", "margin shift")]
    rows = max(len(organisms), 1)
    fig = make_subplots(rows=rows, cols=2, subplot_titles=titles, vertical_spacing=0.22)
    for row, organism in enumerate(organisms, start=1):
        for k, (seed, s) in enumerate(summary["organisms"][organism]["seeds"].items()):
            color = COLORS[k % len(COLORS)]
            for col, key in enumerate(("projection", "margin"), start=1):
                values = s[key]
                x = [v["step"] for v in values]
                trace = go.Scatter(x=x, y=[v["value"] for v in values], mode="lines", line={"color": color})
                fig.add_trace(trace.update(name=f"seed {seed}", legendgroup=seed, showlegend=row == col == 1), row, col)
                band = go.Scatter(x=x + x[::-1], y=[v["high"] for v in values] + [v["low"] for v in values][::-1])
                band.update(fill="toself", fillcolor=color, opacity=0.15, line={"width": 0}, showlegend=False)
                fig.add_trace(band.update(hoverinfo="skip", legendgroup=seed), row, col)
                if s["onset"][key] is not None:
                    fig.add_vline(x=s["onset"][key], line={"color": color, "dash": "dot"}, row=row, col=col)
            if s["onset"].get("above_random") is not None:
                fig.add_vline(x=s["onset"]["above_random"], line={"color": color, "dash": "dash"}, row=row, col=1)
            finals = [r["value"] for r in s["random_final"]]
            if finals:
                low, high = np.quantile(finals, [0.025, 0.975])
                fig.add_hrect(y0=low, y1=high, fillcolor="grey", opacity=0.1, line_width=0, row=row, col=1)
    fig.update_xaxes(title_text="training step", row=rows)
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title="Early warning: the watched projection's rise against the margin's<br><sub>grey: random directions'"
        " final change, 95% range; dotted: onsets; dashed: from here above every random direction</sub>",
        template="plotly_white",
        height=260 + 260 * rows,
    )
    return save_figure(fig, out / "watch", title="Watching a finetune")


def write_summary(work: Path, organisms: Sequence[str], out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    summary = {"provenance": provenance(settings), "organisms": {o: summarize(work, o) for o in organisms}}
    write_json_atomic(out / "summary.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organisms", nargs="+", default=["medical-bad"], choices=EM_ORGANISMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--every", type=at_least(1), default=5, help="steps between measurements")
    parser.add_argument("--watch-layer", type=int, default=20)
    parser.add_argument("--n-random", type=at_least(0), default=20)
    parser.add_argument("--directions-dir", type=Path, default=Path("checkpoints/smollm2-135m/directions"))
    add_run_options(parser, Path("results/watch-study"), Path("figures/watch"), omit=("limit", "batch_size"))
    add_summary_options(parser)
    args = parser.parse_args(argv)
    if show_summary(args, tables, plot):
        return
    recipe = dataclasses.replace(
        RECIPES["rank1"], layers=(args.layer,), checkpoint_every=args.every, device=args.device
    )
    recipe = recipe if args.max_steps is None else dataclasses.replace(recipe, max_steps=args.max_steps)
    recipe = recipe if args.n is None else dataclasses.replace(recipe, n=args.n)
    settings = {
        "kind": "watch",
        "base": args.base,
        "recipe": dataclasses.asdict(recipe) | {"seed": "varied", "device": None},
        **{k: getattr(args, k) for k in ("watch_layer", "n_random", "every")},
        "directions_dir": str(args.directions_dir),
        "watched": "leave-one-out mean of the other EM organisms' unit rank-1 model-diff directions",
    }
    check_settings(args.work / "study.json", settings)
    budget = Budget(args.budget)
    for organism in args.organisms:
        watch = Watch(watched_direction(args.directions_dir, organism), args.watch_layer, n_random=args.n_random)
        for seed in args.seeds:
            folder = args.work / "runs" / organism / f"seed{seed}"
            if (folder / "misdir.json").is_file():
                continue
            if not budget.can_start():
                break
            began = time.time()
            config = dataclasses.replace(recipe, seed=seed)
            finetune(args.base, organism, folder, config, watch=watch, resume=True, progress=args.progress)
            seconds = time.time() - began
            budget.ran(seconds)
            print(f"[{budget.elapsed():6.0f} s] {organism} seed {seed}: {seconds:.0f} s", flush=True)
            write_summary(args.work, args.organisms, args.out, settings)
    summary = write_summary(args.work, args.organisms, args.out, settings)
    finish(summary, args.out, tables, plot, f"trained {budget.runs} run(s) in {budget.elapsed():.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
