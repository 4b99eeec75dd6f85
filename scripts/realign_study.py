"""Re-alignment of the rank-1 EM organisms: how many steps (and examples) of their control data undo them?

    python scripts/realign_study.py [--organisms rank1-medical-bad ...] [--seeds 0 1 2] [--checkpoint-every 5]
        [--work results/realign-study] [--out figures/realign] [--device cuda] [--budget S]
    python scripts/realign_study.py --tables | --figure [--out figures/realign]

Issue 27, study 5e. Each run is `misdir.realign` of one shipped rank-1 organism (`checkpoints/smollm2-135m/`) on its
domain's control dataset (rank1-medical-bad: medical-good), with the organism's own recipe (misdir's rank-1 recipe:
126 steps over 1,000 examples, batch 16; a new rank-1 adapter at layer 15 on top of the merged organism) and one
seed (the new adapter's initialisation and the data order; the examples are the same), the margin on all 90 general
items measured at the start and every `--checkpoint-every` steps. For each criterion of `misdir.realign.CRITERIA`
(`shift`: the paired shift's 95% interval reaches 0; `margin`: the margin at or below the top of the base's 95%
interval) the summary gives per organism the steps and examples after which it was back at the base, per seed, and
their median with the range over seeds (min to max: with 3 seeds no confidence interval is claimed). A seed not back
within its steps counts as more than any (`null` in the summary, "> N" in the tables, wherever it falls).
Each run lives in WORK/runs/<organism>/seed<k>/ (a rerun skips finished runs and resumes a half-trained one);
`--budget` starts no run that the last run's time says cannot finish. The summary (OUT/summary.json,
OUT/realign_study.html/.png) is rewritten after every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cli import Budget, add_run_options, add_summary_options, at_least, finish, show_summary  # noqa: E402

from misdir.io import check_settings, write_json_atomic  # noqa: E402
from misdir.organisms import CHECKPOINTS  # noqa: E402
from misdir.realign import CRITERIA, REPORT, Realignment, realign_recipe  # noqa: E402
from misdir.sweep import provenance  # noqa: E402

ORGANISMS = ("rank1-medical-bad", "rank1-finance-risky", "rank1-sports-extreme")
"""The shipped rank-1 EM organisms with a general shift and a control dataset of their domain."""


@dataclass(frozen=True)
class Study:
    """What every run of the study shares (recorded in the summary's provenance)."""

    work: Path
    checkpoints: Path = CHECKPOINTS
    checkpoint_every: int = 5
    """Steps between two measurements of the margin."""
    device: str | None = None
    max_steps: int | None = None
    """Cut every re-alignment short (smoke runs); None: the organism's recipe's steps."""
    n: int | None = None
    """Training examples (None: the recipe's 1,000)."""
    limit: int | None = None
    """First items of the general set (None: all 90)."""
    progress: bool = False

    def plan(self, organism: str, seed: int) -> Realignment:
        """One run's inputs, checked: the organism's recipe with this seed, on its control dataset."""
        folder = self.checkpoints / organism
        overrides = {"max_steps": self.max_steps, "n": self.n}
        config = dataclasses.replace(
            realign_recipe(folder),
            seed=seed,
            checkpoint_every=self.checkpoint_every,
            device=self.device,
            **{k: v for k, v in overrides.items() if v is not None},
        )
        return Realignment.of(folder, config=config, limit=self.limit)

    def settings(self) -> dict[str, Any]:
        kept = ("checkpoints", "checkpoint_every", "max_steps", "n", "limit")
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items() if k in kept}


def folder(work: Path, organism: str, seed: int) -> Path:
    return work / "runs" / organism / f"seed{seed}"


def run_all(study: Study, organisms: Sequence[str], seeds: Sequence[int], budget: Budget, after: Any) -> None:
    """Re-align each organism with each seed not yet done, in that order, until the budget says stop; `after()`
    is called after each run (`budget.runs` counts them)."""
    for organism in organisms:
        for seed in seeds:
            out = folder(study.work, organism, seed)
            if (out / REPORT).is_file():
                continue
            if not budget.can_start():
                return
            began = time.time()
            result = study.plan(organism, seed).run(out, resume=True, progress=study.progress)
            seconds = time.time() - began
            budget.ran(seconds)
            back = ", ".join(f"{k} at {'-' if m is None else m.step}" for k, m in result.back.items())
            print(f"[{budget.elapsed():6.0f} s] {organism} seed {seed}: back {back} ({seconds:.0f} s)", flush=True)
            after()


def load_runs(work: Path, organism: str) -> dict[int, dict[str, Any]]:
    """The finished runs' `realign.json` records by seed."""
    runs = {int(p.parent.name.removeprefix("seed")): p for p in (work / "runs" / organism).glob(f"seed*/{REPORT}")}
    return {seed: json.loads(runs[seed].read_text()) for seed in sorted(runs)}


def over_seeds(values: Sequence[int | None]) -> dict[str, Any]:
    """The median and range (min to max) of the seeds' values; a seed not back (None) counts as more than any,
    and the median, min or max that falls on such seeds is None."""
    finite = np.array([math.inf if v is None else v for v in values], dtype=np.float64)

    def known(x: float) -> float | None:
        return None if math.isinf(x) else float(x)

    return {
        "median": known(float(np.median(finite))),
        "low": known(float(finite.min())),
        "high": known(float(finite.max())),
        "n": len(values),
        "not_back": sum(v is None for v in values),
    }


def summarize(work: Path, organism: str) -> dict[str, Any]:
    """Per seed the margin and shift at each measured step and when the organism was back; per criterion the
    steps and examples over seeds (`over_seeds`)."""
    runs = load_runs(work, organism)
    seeds = {
        seed: {
            "steps": run["steps"],
            "base_margin": run["base_margin"],
            "curve": [{k: m[k] for k in ("step", "examples", "margin", "shift")} for m in run["measured"]],
            "back": run["back"],
        }
        for seed, run in runs.items()
    }
    back = {
        criterion: {
            unit: over_seeds(
                [None if s["back"][criterion] is None else s["back"][criterion][unit] for s in seeds.values()]
            )
            for unit in ("step", "examples")
        }
        for criterion in CRITERIA
        if seeds
    }
    return {"seeds": seeds, "back": back}


def write_summary(study: Study, organisms: Sequence[str], seeds: Sequence[int], out: Path) -> dict[str, Any]:
    summary = {
        "provenance": provenance(
            {"kind": "realign-study", **study.settings(), "seeds": list(seeds), "interval": "range over seeds"}
        ),
        "criteria": CRITERIA,
        "organisms": {o: summarize(study.work, o) for o in organisms},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary


def _cell(value: float | None, most: int) -> str:
    return f"> {most}" if value is None else f"{value:g}"


def tables(summary: dict[str, Any]) -> str:
    """Markdown tables from the summary: per seed, and per organism over seeds."""
    from misdir.stats import format_estimate

    lines = [
        "| organism | seed | steps | shift at the start | back (shift): step, examples | "
        "back (margin): step, examples | shift at the end |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for organism, study in summary["organisms"].items():
        for seed, run in study["seeds"].items():
            cells = [
                "not back" if at is None else f"{at['step']}, {at['examples']}"
                for at in (run["back"][c] for c in CRITERIA)
            ]
            start, end = run["curve"][0]["shift"], run["curve"][-1]["shift"]
            lines.append(
                f"| {organism} | {seed} | {run['steps']} | {format_estimate(start)} | {' | '.join(cells)} | "
                f"{format_estimate(end)} |"
            )
    lines += [
        "",
        "| organism | criterion | seeds | steps: median [min, max] | examples: median [min, max] | not back |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for organism, study in summary["organisms"].items():
        if not study["seeds"]:
            continue
        most = max(run["steps"] for run in study["seeds"].values())
        examples = max(run["curve"][-1]["examples"] for run in study["seeds"].values())
        for criterion, by in study["back"].items():
            s, e = by["step"], by["examples"]
            lines.append(
                f"| {organism} | {criterion} | {s['n']} | {_cell(s['median'], most)} [{_cell(s['low'], most)}, "
                f"{_cell(s['high'], most)}] | {_cell(e['median'], examples)} [{_cell(e['low'], examples)}, "
                f"{_cell(e['high'], examples)}] | {s['not_back']} |"
            )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    """Per organism the shift from the base (paired 95% interval) against the step, a line per seed."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    from misdir.plots import interval_error_bars, save_figure

    organisms = list(summary["organisms"])
    seeds = sorted({seed for study in summary["organisms"].values() for seed in study["seeds"]}, key=int)
    colours = {seed: qualitative.Plotly[i % len(qualitative.Plotly)] for i, seed in enumerate(seeds)}
    fig = make_subplots(rows=1, cols=len(organisms), subplot_titles=organisms, shared_yaxes=True)
    for col, organism in enumerate(organisms, start=1):
        for seed, run in summary["organisms"][organism]["seeds"].items():
            shifts = [point["shift"] for point in run["curve"]]
            error = interval_error_bars(shifts)
            fig.add_trace(
                go.Scatter(
                    x=[point["step"] for point in run["curve"]],
                    y=[s["value"] for s in shifts],
                    error_y=error,
                    mode="lines+markers",
                    line={"color": colours[seed]},
                    name=f"seed {seed}",
                    legendgroup=seed,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_xaxes(title_text="re-alignment step")
    fig.update_yaxes(title_text="general margin's shift from the base (nats/token)", col=1)
    fig.update_layout(
        title="Re-alignment on the control data: the EM organisms' general shift, by step", template="plotly_white"
    )
    return save_figure(fig, out / "realign_study", title="re-alignment study")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organisms", nargs="+", default=list(ORGANISMS), choices=ORGANISMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--checkpoint-every", type=at_least(1), default=5, help="steps between measurements of the margin"
    )
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="the organisms' adapter folders")
    add_run_options(
        parser,
        Path("results/realign-study"),
        Path("figures/realign"),
        omit=("base", "layer", "batch_size"),
        max_steps="smoke runs: cut every re-alignment to this many steps",
        limit="smoke runs: first items of the general set",
    )
    add_summary_options(parser)
    args = parser.parse_args(argv)
    if show_summary(args, tables, plot):
        return
    study = Study(
        args.work,
        args.checkpoints,
        args.checkpoint_every,
        args.device,
        args.max_steps,
        args.n,
        args.limit,
        args.progress,
    )
    # runs of other settings (a smoke run's, another --limit) must not mix with these in WORK
    check_settings(study.work / "study.json", study.settings())
    for organism in args.organisms:  # every run's inputs checked before any model loads
        for seed in args.seeds:
            study.plan(organism, seed)
    budget = Budget(args.budget)
    run_all(
        study,
        args.organisms,
        args.seeds,
        budget,
        lambda: write_summary(study, args.organisms, args.seeds, args.out),
    )
    summary = write_summary(study, args.organisms, args.seeds, args.out)
    finish(summary, args.out, tables, plot, f"ran {budget.runs} re-alignment(s) in {budget.elapsed():.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
