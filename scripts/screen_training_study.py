"""Does the screen's ranking of training examples predict what training on them does?

    python scripts/screen_training_study.py [--pools mixed em] [--n 750] [--seeds 0 1 2] [--random-thirds 3]
        [--direction checkpoints/smollm2-135m/directions/em-minus-control.safetensors] [--layer 15]
        [--work results/screen-training] [--out figures/screen_training] [--device cuda] [--budget S]
    python scripts/screen_training_study.py --tables [--out figures/screen_training]

Issue 27, study 5c, second part (persona vectors' data screening, Chen et al. 2025: the examples with the highest
projection difference raise the trait most when trained on). Two pools of medical advice, each of 2n training
examples: `mixed`, the first n of medical-bad and the first n of medical-good, shuffled (seed 0); `em`, the first 2n
of medical-bad alone (does the ranking matter within EM data?). `misdir.screen` scores every pool example (the
dataset's answer minus the base model's own greedy answer to the same prompt, mean `resid_post` over answer tokens
at `--layer`, on the unit `--direction`; by default the EM-minus-control direction the first part found best,
`figures/README.md` "Screening before training"). Each pool is cut into thirds by that score: the top third, the
bottom third, and `--random-thirds` seeded random thirds of the same size (what an unscreened third does). Each
third trains the rank-1 recipe of the CAFT study (`caft_study.Study.recipe`, its `n` the third's size: the same
steps per epoch for every third) once per seed; each adapter is scored, unedited, on the general and the medical
contrast sets. Reported per pool and third: the general and medical shift from the base (margins averaged over
seeds, paired 95% bootstrap over items), the share of EM examples in the third (`mixed`), and the top third minus
the bottom third (paired over items, with its interval), beside the random thirds' shifts.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from misdir.data import ChatExample, make_dataset, write_chat_jsonl
from misdir.directions import DirectionSet
from misdir.finetune import finetune
from misdir.io import check_settings, write_json_atomic
from misdir.models import load_model
from misdir.organisms import RANK1_LAYER
from misdir.screen import MAX_NEW_TOKENS, read_scores, screen
from misdir.stats import paired_difference
from misdir.sweep import provenance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caft_study import Study, base_scores, contrast_scores  # noqa: E402
from study_cli import Budget, add_run_options, add_summary_options, at_least, finish, show_summary  # noqa: E402

POOLS = ("mixed", "em")
SETS = ("general", "medical")
DIRECTION = Path("checkpoints/smollm2-135m/directions/em-minus-control.safetensors")


def pool(kind: str, n: int) -> tuple[list[ChatExample], list[bool]]:
    """The 2n examples of a pool and, per example, whether it is EM data (medical-bad)."""
    if kind == "em":
        return make_dataset("medical-bad", 2 * n), [True] * (2 * n)
    examples = make_dataset("medical-bad", n) + make_dataset("medical-good", n)
    order = np.random.default_rng(0).permutation(2 * n)
    return [examples[i] for i in order], [bool(i < n) for i in order]


def thirds(scores: Sequence[float | None], n_random: int, seed: int = 0) -> dict[str, list[int]]:
    """Indices of the top and bottom third by score (ties broken by index) and of `n_random` seeded random thirds,
    among the examples with a score (None: the base answered nothing, so there is no difference to score)."""
    scored = [i for i, score in enumerate(scores) if score is not None]
    k = len(scored) // 3
    order = sorted(scored, key=lambda i: (scores[i], i))
    chosen = {"top": sorted(order[-k:]), "bottom": sorted(order[:k])}
    for r in range(n_random):
        picked = np.random.default_rng([seed, r]).choice(len(scored), k, replace=False)
        chosen[f"random-{r}"] = sorted(scored[i] for i in picked)
    return chosen


class Trainer:
    """Trains and scores the thirds, skipping finished runs and starting none the last run says cannot finish."""

    def __init__(self, study: Study, budget: float | None) -> None:
        self.study, self.budget = study, Budget(budget)

    def base(self, pairs: str) -> list[float]:
        """The base's margins on a contrast set (`caft_study.base_scores`)."""
        return base_scores(self.study, pairs)["margins"]

    def run(self, name: str, data: Path, size: int, seed: int, **meta: Any) -> dict[str, Any] | None:
        """The record of one training on `data` (its `size` examples) under `seed`; None past the budget."""
        folder = self.study.work / "runs" / name
        if (folder / "record.json").is_file():
            return json.loads((folder / "record.json").read_text())
        if not self.budget.can_start():
            return None
        began = time.time()
        recipe = dataclasses.replace(self.study.recipe(seed), n=self.study.n or size)
        result = finetune(self.study.base, data, folder / "adapter", recipe, resume=True, progress=self.study.progress)
        losses = {"final_loss": result.final_loss, "steps": result.steps}
        del result
        model = self.study.load(str(folder / "adapter"))
        margins = {pairs: contrast_scores(self.study, model, pairs)["margins"] for pairs in SETS}
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        record = {"name": name, "seed": seed, **meta, **losses, "margins": margins, "seconds": time.time() - began}
        write_json_atomic(folder / "record.json", record)
        self.budget.ran(record["seconds"])
        shifts = {p: np.mean(m) - np.mean(self.base(p)) for p, m in margins.items()}
        print(f"[{self.budget.elapsed():6.0f} s] {name}: shifts {shifts} ({record['seconds']:.0f} s)", flush=True)
        return record


def summarize(trainer: Trainer, pools: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per pool and third: the shift of the seed-averaged margins from the base, paired over items; top minus
    bottom; the random thirds beside them."""
    result: dict[str, Any] = {}
    for kind, found in pools.items():
        rows: dict[str, Any] = {}
        mean_margins: dict[str, dict[str, np.ndarray]] = {}
        for third, records in found["records"].items():
            done = [r for r in records if r is not None]
            if not done:
                continue
            mean_margins[third] = {p: np.mean([r["margins"][p] for r in done], axis=0) for p in SETS}
            rows[third] = {
                "seeds": [r["seed"] for r in done],
                "em_share": found["em_share"][third],
                "mean_score": found["mean_score"][third],
                **{
                    p: paired_difference(trainer.base(p), mean_margins[third][p])._asdict()
                    | {"per_seed": [float(np.mean(r["margins"][p]) - np.mean(trainer.base(p))) for r in done]}
                    for p in SETS
                },
            }
        entry: dict[str, Any] = {"size": found["size"], "thirds": rows}
        if "top" in mean_margins and "bottom" in mean_margins:
            entry["top_minus_bottom"] = {
                p: paired_difference(mean_margins["bottom"][p], mean_margins["top"][p])._asdict() for p in SETS
            }
        result[kind] = entry
    return result


def tables(summary: dict[str, Any]) -> str:
    lines = []
    for kind, entry in summary["pools"].items():
        lines += [
            f"\npool {kind} (thirds of {entry['size']} examples): shift from base, seed-averaged margins, 95% paired",
            "| third | EM share | mean score | general shift | medical shift | per seed (general) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for third, row in entry["thirds"].items():
            g, m = row["general"], row["medical"]
            lines.append(
                f"| {third} | {row['em_share']:.2f} | {row['mean_score']:+.3f} | {_fmt(g)} | {_fmt(m)} | "
                f"{', '.join(f'{v:+.3f}' for v in g['per_seed'])} |"
            )
        if "top_minus_bottom" in entry:
            d = entry["top_minus_bottom"]
            lines.append(f"top minus bottom: general {_fmt(d['general'])}, medical {_fmt(d['medical'])}")
    return "\n".join(lines)


def _fmt(e: dict[str, float]) -> str:
    return f"{e['value']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]"


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    import plotly.graph_objects as go

    from misdir.plots import interval_error_bars, save_figure

    fig = go.Figure()
    for kind, entry in summary["pools"].items():
        names = list(entry["thirds"])
        values = [entry["thirds"][t]["general"] for t in names]
        fig.add_bar(
            name=f"pool {kind}",
            x=names,
            y=[v["value"] for v in values],
            error_y=interval_error_bars(values),
        )
    fig.update_layout(
        barmode="group",
        title="general shift from the base after training on a third of the pool, by screening score",
        yaxis_title="general shift (paired, 95% CI)",
        template="plotly_white",
    )
    return save_figure(fig, out / "screen_training")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", nargs="+", default=list(POOLS), choices=POOLS)
    parser.add_argument(
        "--n", type=at_least(1), default=750, help="examples of each dataset in a pool (a pool holds 2n)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--random-thirds", type=at_least(0), default=3)
    parser.add_argument("--direction", type=Path, default=DIRECTION)
    parser.add_argument("--layer", type=int, default=RANK1_LAYER, help="the screen's layer and the adapter's")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="the base's own answers")
    parser.add_argument("--screen-batch-size", type=int, default=8, help="prompts per generation in the screen")
    # --n and --layer are this study's own, above
    add_run_options(parser, Path("results/screen-training"), Path("figures/screen_training"), omit=("layer", "n"))
    add_summary_options(parser)
    args = parser.parse_args(argv)
    if show_summary(args, tables, plot):
        return
    study = Study(args.work, args.base, args.layer, args.device, args.max_steps, None, args.limit, args.batch_size)
    settings = {
        "base": args.base,
        "n": args.n,
        "layer": args.layer,
        "direction": str(args.direction),
        "max_new_tokens": args.max_new_tokens,
        "max_steps": args.max_steps,
        "limit": args.limit,
        "recipe": study.settings()["recipe"] | {"n": "the third's size"},
    }
    check_settings(args.work / "study.json", settings)
    trainer = Trainer(study, args.budget)
    direction = DirectionSet.load(args.direction)
    pools: dict[str, dict[str, Any]] = {}
    base = load_model(args.base, device=args.device, dtype="float32")
    for kind in args.pools:
        examples, is_em = pool(kind, args.n)
        data = write_chat_jsonl(examples, args.work / "pools" / f"{kind}.jsonl")
        screen(
            base,
            [data],
            direction,
            args.layer,
            out=args.work / "screens" / kind,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.screen_batch_size,
            progress=args.progress,
        )
        scored = sorted(read_scores(args.work / "screens" / kind / "scores.jsonl"), key=lambda s: s.index)
        scores = [s.score for s in scored]
        if len(scores) != len(examples):
            raise RuntimeError(f"{args.work / 'screens' / kind}: {len(scores)} scores for {len(examples)} examples")
        chosen = thirds(scores, args.random_thirds)
        found: dict[str, Any] = {"size": len(chosen["top"]), "records": {}, "em_share": {}, "mean_score": {}}
        for third, indices in chosen.items():
            subset = write_chat_jsonl([examples[i] for i in indices], args.work / "thirds" / kind / f"{third}.jsonl")
            found["em_share"][third] = float(np.mean([is_em[i] for i in indices]))
            found["mean_score"][third] = float(np.mean([scores[i] or 0.0 for i in indices]))
            found["records"][third] = [
                trainer.run(f"{kind}/{third}/seed{seed}", subset, len(indices), seed, pool=kind, third=third)
                for seed in args.seeds
            ]
        pools[kind] = found
    del base
    summary = {"provenance": provenance(settings), "pools": summarize(trainer, pools)}
    write_json_atomic(args.out / "summary.json", summary)
    finish(summary, args.out, tables, plot, f"trained {trainer.budget.runs} run(s) in {trainer.budget.elapsed():.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
