"""Which direction screens training data for emergent misalignment before any training?

    python scripts/screening_study.py [--n 60] [--layer 15] [--work results/screening-study]
        [--out figures/screening] [--directions-dir checkpoints/smollm2-135m/directions] [--device cuda]
    python scripts/screening_study.py --tables [--out figures/screening]

Issue 27, study 5c, first part (persona vectors' projection difference, Chen et al. 2025). For each of misdir's 13
datasets, the first `--n` training examples (split train, seed 0: what a finetune would see): per example the
base model's mean `resid_post` at `--layer` over the dataset's answer tokens minus that over its own greedy answer
to the same prompt (`misdir.screen.answer_differences`, computed once per dataset and kept in WORK). Each candidate
unit direction then scores every example (difference . direction), so all candidates are read on the same
differences:
- single: each shipped EM organism's model-diff direction (full-rank recipe, and rank-1 where shipped);
- mean EM: the mean of the four full-rank EM organisms' unit directions;
- EM minus control: that mean minus the mean of the shipped controls' unit directions (medical-good, code-secure,
  code-educational), renormalised;
- leave one out: each dataset scored with the mean of the EM directions of the OTHER domains (what a user with
  organisms of other domains has);
- `--n-random` seeded random unit directions, the null every candidate is placed in.
Per candidate: each dataset's mean score (95% bootstrap over examples), and the AUROC of examples of the 4 EM
(misaligned) datasets against examples of the 5 control (aligned) datasets, with a 95% bootstrap interval
(examples resampled within each class); backdoor datasets (half each) are scored but not in the AUROC. A
candidate's AUROC is placed among the random directions' AUROCs (percentile); an AUROC below 0.5 means the
direction ranks controls above EM data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study_cli import add_run_options, add_summary_options, show_summary  # noqa: E402

from misdir.data import make_dataset  # noqa: E402
from misdir.datasets import DATASETS  # noqa: E402
from misdir.directions import DirectionSet  # noqa: E402
from misdir.io import atomic_path, check_settings, write_json_atomic  # noqa: E402
from misdir.organisms import ORGANISMS  # noqa: E402
from misdir.plots import optional_figure  # noqa: E402
from misdir.screen import MAX_NEW_TOKENS, answer_differences  # noqa: E402
from misdir.stats import bootstrap_mean  # noqa: E402
from misdir.sweep import against_null, provenance, random_directions  # noqa: E402
from misdir.tensors import unit  # noqa: E402

EM = tuple(o.name for o in ORGANISMS if o.role == "em")
CONTROLS = ("medical-good", "code-secure", "code-educational")
"""The controls whose model-diff directions are shipped."""
N_RESAMPLES = 2000


def domain(name: str) -> str:
    return name.split("-")[0]


def differences(work: Path, args: argparse.Namespace) -> dict[str, Float[Tensor, "example d_model"]]:
    """Each dataset's per-example differences (WORK/differences/<dataset>.safetensors; NaN rows: the base said
    nothing), computed where missing."""
    found, model = {}, None
    for name in DATASETS:
        path = work / "differences" / f"{name}.safetensors"
        if not path.is_file():
            if model is None:
                from misdir.models import load_model

                model = load_model(args.base, device=args.device, dtype="float32")
            began = time.time()
            examples = make_dataset(name, args.n, seed=0, split="train")
            diff = answer_differences(
                model,
                [list(e.messages) for e in examples],
                args.layer,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                progress=args.progress,
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path.with_suffix(".answers.json")) as tmp:
                tmp.write_text(json.dumps(diff.base_answers))
            with atomic_path(path) as tmp:
                save_file({"differences": diff.vectors.contiguous()}, str(tmp))
            print(f"{name}: {len(examples)} examples in {time.time() - began:.0f} s", flush=True)
        found[name] = load_file(str(path))["differences"].double()
    return found


def read_directions(directions_dir: Path) -> dict[str, Float[Tensor, "layer d_model"]]:
    """The shipped direction sets by file stem, unit rows (float64)."""
    return {p.stem: unit(DirectionSet.load(p).vectors.double()) for p in sorted(directions_dir.glob("*.safetensors"))}


def em_minus_control(read: dict[str, Tensor]) -> Float[Tensor, "layer d_model"]:
    """Per layer: the mean of the EM organisms' unit directions minus the mean of the controls', renormalised."""
    mean_em = unit(torch.stack([read[name] for name in EM]).mean(0))
    return unit(mean_em - unit(torch.stack([read[c] for c in CONTROLS]).mean(0)))


def candidates(directions_dir: Path, layer: int) -> dict[str, Any]:
    """Candidate directions at `layer`: name -> a unit vector, or (leave one out) a function of the dataset."""
    read = read_directions(directions_dir)
    chosen: dict[str, Any] = {name: read[name][layer] for name in EM if name in read}
    chosen |= {f"rank1-{name}": read[f"rank1-{name}"][layer] for name in EM if f"rank1-{name}" in read}
    chosen["mean EM"] = unit(torch.stack([read[name][layer] for name in EM]).mean(0))
    chosen["EM minus control"] = em_minus_control(read)[layer]
    by_domain = {domain(name): read[name][layer] for name in EM}

    def leave_one_out(dataset: str) -> Tensor:
        return unit(torch.stack([v for d, v in by_domain.items() if d != domain(dataset)]).mean(0))

    chosen["leave one out"] = leave_one_out
    return chosen


def ship_em_minus_control(directions_dir: Path, summary: dict[str, Any], path: Path) -> Path:
    """Write the EM-minus-control direction set (every layer) with its card in the file's metadata: how it was
    made and what this study measured with it."""
    entry = summary["candidates"]["EM minus control"]
    meta = {
        "kind": "EM minus control: per layer, the mean of the EM organisms' unit model-diff directions minus the mean "
        "of the controls', renormalised (scripts/screening_study.py)",
        "em": list(EM),
        "controls": list(CONTROLS),
        "from": str(directions_dir),
        "screening_auroc_at_layer": summary["provenance"]["settings"]["layer"],
        "screening_auroc": entry["auroc"],
        "screening_auroc_percentile_among_random": entry["auroc_among_random"]["percentile"],
        "caveat": "in-sample for medical-bad, finance-risky, sports-extreme, code-insecure and their shipped controls: "
        "the directions come from finetunes on those datasets; the leave-one-out AUROC is the out-of-sample one",
    }
    return DirectionSet(em_minus_control(read_directions(directions_dir)).float(), meta=meta).save(path)


def scores(diffs: dict[str, Tensor], direction: Any) -> dict[str, np.ndarray]:
    """Each dataset's example scores along the direction (NaN rows dropped)."""
    found = {}
    for name, d in diffs.items():
        v = direction(name) if callable(direction) else direction
        s = (d @ v).numpy()
        found[name] = s[~np.isnan(s)]
    return found


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive example scores above a negative one), ties counted half."""
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * ties)


def auroc_interval(positive: np.ndarray, negative: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The AUROC with a 95% percentile bootstrap interval, examples resampled within each class."""
    rng = np.random.default_rng(seed)
    resampled = [
        auroc(rng.choice(positive, len(positive)), rng.choice(negative, len(negative))) for _ in range(N_RESAMPLES)
    ]
    low, high = np.quantile(resampled, [0.025, 0.975])
    return {
        "value": auroc(positive, negative),
        "low": float(low),
        "high": float(high),
        "n": len(positive) + len(negative),
    }


def classes(found: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(scores of the EM datasets' examples, of the control datasets')."""
    kinds = {name: spec.kind for name, spec in DATASETS.items()}
    positive = np.concatenate([s for n, s in found.items() if kinds[n] == "misaligned"])
    negative = np.concatenate([s for n, s in found.items() if kinds[n] == "aligned"])
    return positive, negative


def summarize(diffs: dict[str, Tensor], chosen: dict[str, Any], n_random: int, seed: int) -> dict[str, Any]:
    d_model = next(iter(diffs.values())).shape[-1]
    randoms = random_directions(d_model, n_random, seed=seed).double()
    null = [auroc(*classes(scores(diffs, r))) for r in randoms]
    table = {}
    for name, direction in chosen.items():
        found = scores(diffs, direction)
        entry = {"auroc": auroc_interval(*classes(found))}
        entry["auroc_among_random"] = against_null(entry["auroc"]["value"], null)
        entry["datasets"] = {n: bootstrap_mean(s)._asdict() for n, s in found.items()}
        table[name] = entry
    low, median, high = np.quantile(null, [0.025, 0.5, 0.975])
    return {
        "candidates": table,
        "random_auroc": {"median": float(median), "low": float(low), "high": float(high), "n": n_random},
        "kinds": {name: spec.kind for name, spec in DATASETS.items()},
    }


def tables(summary: dict[str, Any]) -> str:
    from misdir.stats import format_estimate

    r = summary["random_auroc"]
    lines = [
        f"AUROC of EM examples against control examples; {r['n']} random directions: median {r['median']:.2f} "
        f"[95% range {r['low']:.2f}, {r['high']:.2f}].",
        "",
        "| direction | AUROC [95% CI] | percentile among random |",
        "| --- | --- | --- |",
    ]
    ranked = sorted(summary["candidates"].items(), key=lambda kv: -kv[1]["auroc"]["value"])
    for name, entry in ranked:
        a = entry["auroc"]
        lines.append(f"| {name} | {format_estimate(a, '.2f')} | {entry['auroc_among_random']['percentile']:.0f} |")
    names = list(summary["kinds"])
    lines += ["", "| dataset | kind | " + " | ".join(n for n, _ in ranked) + " |", "|---" * (len(ranked) + 2) + "|"]
    for dataset in names:
        cells = [format_estimate(entry["datasets"][dataset], "+.2f") for _, entry in ranked]
        lines.append(f"| {dataset} | {summary['kinds'][dataset]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    """Each candidate's AUROC with its interval, the random directions' 95% range as a band."""
    import plotly.graph_objects as go

    from misdir.plots import save_figure

    ranked = sorted(summary["candidates"].items(), key=lambda kv: kv[1]["auroc"]["value"])
    a = [e["auroc"] for _, e in ranked]
    error = {"array": [x["high"] - x["value"] for x in a], "arrayminus": [x["value"] - x["low"] for x in a]}
    fig = go.Figure(go.Bar(y=[n for n, _ in ranked], x=[x["value"] for x in a], error_x=error, orientation="h"))
    r = summary["random_auroc"]
    fig.add_vrect(x0=r["low"], x1=r["high"], fillcolor="grey", opacity=0.2, line_width=0)
    fig.add_vline(x=0.5, line={"color": "black", "width": 1})
    fig.update_layout(
        title="Screening before training: AUROC of EM against control examples by projection difference"
        " (grey: 95% range of random directions)",
        xaxis_title="AUROC (examples of the 4 EM datasets vs the 5 control datasets)",
        template="plotly_white",
    )
    return save_figure(fig, out / "screening", title="Screening study")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="training examples per dataset")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--n-random", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="random directions' seed")
    parser.add_argument("--directions-dir", type=Path, default=Path("checkpoints/smollm2-135m/directions"))
    add_run_options(
        parser,
        Path("results/screening-study"),
        Path("figures/screening"),
        omit=("layer", "budget", "max_steps", "n", "limit"),  # --n and --layer are this study's own, above
        work="differences (git-ignored)",
        batch_size=None,
    )
    parser.add_argument("--ship", type=Path, help="write the EM-minus-control direction set (all layers) here")
    add_summary_options(parser, figure=False)
    args = parser.parse_args(argv)
    if show_summary(args, tables):
        return
    settings = {k: getattr(args, k) for k in ("n", "layer", "max_new_tokens", "base")}
    check_settings(args.work / "settings.json", settings)
    diffs = differences(args.work, args)
    summary = summarize(diffs, candidates(args.directions_dir, args.layer), args.n_random, args.seed)
    summary["provenance"] = provenance(
        {
            "kind": "screening",
            **settings,
            "n_random": args.n_random,
            "seed": args.seed,
            "split": "train",
            "data_seed": 0,
        }
    )
    write_json_atomic(args.out / "summary.json", summary)
    if args.ship is not None:
        print(f"wrote {ship_em_minus_control(args.directions_dir, summary, args.ship)}")
    optional_figure(plot, summary, args.out)  # none on the GPU machine: a rerun here redraws it
    print(tables(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
