"""The persona-latent search on the shipped SAE (issue 19): which latents rise in the EM organisms and not in the
controls (rank-1 and full-rank sets), against a label-shuffle null; how close the top latents' decoder rows come
to the rank-1 organisms' known write vectors B, against random directions; and steering / zeroing effects on the
contrast metric against 20 random directions. CPU, about 20 minutes on 2 idle cores.

    python scripts/sae_persona_search.py --out figures/sae_11m
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import torch

import misdir
from misdir.experiments import random_directions
from misdir.ground_truth import adapter_writes, answer_chats
from misdir.io import write_json_atomic
from misdir.plots import save_figure
from misdir.sae import decoder_rows, diff_latents, latent_effects, load_sae, plot_effects, rank_latents

C = Path("checkpoints/smollm2-135m")
SETS = {
    "rank1": (
        {
            "medical-bad": "rank1-medical-bad",
            "finance-risky": "rank1-finance-risky",
            "sports-extreme": "rank1-sports-extreme",
        },
        {"medical-good": "rank1-medical-good"},
    ),
    "full-rank": (
        {
            "medical-bad": "medical-bad",
            "finance-risky": "finance-risky",
            "sports-extreme": "sports-extreme",
            "code-insecure": "code-insecure",
        },
        {"medical-good": "medical-good", "code-secure": "code-secure", "code-educational": "code-educational"},
    ),
}


def shuffle_null(diff) -> dict:
    """Top consistency under every other split of the same models into as many EM organisms and controls."""
    means = {**{n: s.mean for n, s in diff.finetunes.items()}, **{n: s.mean for n, s in diff.controls.items()}}
    names, n_em = list(means), len(diff.finetunes)
    actual = float(diff.ranking.consistency.max())
    tops = []
    for em in itertools.combinations(names, n_em):
        if set(em) == set(diff.finetunes):
            continue
        held = [n for n in names if n not in em]
        ranking = rank_latents(
            diff.base.mean, torch.stack([means[n] for n in em]), torch.stack([means[n] for n in held])
        )
        tops.append(float(ranking.consistency.max()))
    return {
        "actual_top_consistency": actual,
        "relabelled_tops": tops,
        "share_of_relabellings_at_or_above": sum(t >= actual for t in tops) / len(tops),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/sae-persona")
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--random", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sae = load_sae(C / "sae-layer15")
    base = misdir.load_model("embedded")
    misaligned, aligned = answer_chats("general", args.items)
    texts = misaligned + aligned
    report: dict = {"sae": str(C / "sae-layer15"), "items": args.items, "texts": len(texts)}

    for label, (ems, controls) in SETS.items():
        diff = diff_latents(
            sae,
            base,
            {n: misdir.load_model(str(C / f)) for n, f in ems.items()},
            texts,
            controls={n: misdir.load_model(str(C / f)) for n, f in controls.items()},
            progress=False,
        )
        top = diff.ranking.by_consistency[:10]
        report[label] = {
            "top_by_consistency": [
                {
                    "latent": i,
                    "consistency": float(diff.ranking.consistency[i]),
                    "base_mean": float(diff.base.mean[i]),
                    "base_firing": float(diff.base.rate[i]),
                    "rise": {n: float(s.mean[i] - diff.base.mean[i]) for n, s in diff.finetunes.items()},
                    "control_rise": {n: float(s.mean[i] - diff.base.mean[i]) for n, s in diff.controls.items()},
                }
                for i in top
            ],
            "top_by_rise": diff.ranking.by_rise[:10],
            "shuffle_null": shuffle_null(diff),
        }
        print(
            label,
            json.dumps(report[label]["top_by_consistency"][:3])[:600],
            report[label]["shuffle_null"]["share_of_relabellings_at_or_above"],
            flush=True,
        )

    rows = torch.nn.functional.normalize(decoder_rows(sae).float(), dim=-1)
    randoms = random_directions(rows.shape[1], args.random, seed=1)
    null = [float((rows @ r).abs().max()) for r in randoms]
    writes = {n: adapter_writes(C / f)[15] for n, f in {**SETS["rank1"][0], **SETS["rank1"][1]}.items()}
    report["cos_to_B"] = {"null_max_abs_cos_over_latents": sorted(null)}
    for name, b in writes.items():
        cos = rows @ (b / b.norm())
        best = int(cos.abs().argmax())
        tops = [t["latent"] for t in report["rank1"]["top_by_consistency"]]
        report["cos_to_B"][name] = {
            "best_latent": best,
            "cos": float(cos[best]),
            "percentile_in_null": sum(n < abs(float(cos[best])) for n in null) / len(null),
            "top10_consistent_cos": [round(float(cos[i]), 3) for i in tops],
        }
    print(json.dumps(report["cos_to_B"])[:1200], flush=True)

    latents = [t["latent"] for t in report["rank1"]["top_by_consistency"][:3]]
    effects = latent_effects(
        sae,
        base,
        {n: misdir.load_model(str(C / f)) for n, f in {**SETS["rank1"][0], **SETS["rank1"][1]}.items()},
        latents,
        directions=writes,
        steer_with=list(SETS["rank1"][0]),
        scales=(0.2, 0.4),
        n_random=args.random,
        limit=args.items,
        progress=True,
    )
    report["effects"] = [dataclasses.asdict(e) for e in effects]
    report["seconds"] = time.perf_counter() - started
    write_json_atomic(out / "persona.json", report)
    for figure, name in zip(plot_effects(effects), ("steering", "removal"), strict=False):
        save_figure(figure, out / f"sae_{name}")
    print(f"done in {report['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
