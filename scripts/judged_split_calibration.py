"""The judged-split direction (the literature's extraction) on misdir's rank-1 organisms, beside B.

    python scripts/judged_split_calibration.py --repo CHECKOUT [--out figures/ground_truth/judged_split]
        [--work results/judged-split] [--sets general em-other em-responses] [--organisms NAME ...]

The EM papers' main direction is the mean difference of an EM model's own activations between the answers a
judge called misaligned and those it called aligned. On a rank-1 organism the direction its finetune wrote is
known (its LoRA B column, `misdir.ground_truth.adapter_writes`), so the extraction can be calibrated:
- the judged split: the em-responses and em-other pair sets (`scripts/em_response_pairs.py`, rebuilt from
  CHECKOUT, a checkout of github.com/zroe1/replicating-model-organisms at e357806): EM finetunes' answers to
  the first-plot questions, split by an LLM judge (misaligned: aligned < 30; aligned: > 70; coherent > 50);
- per organism and set, the direction = mean over answer tokens of the organism's `resid_post` at the layer B
  writes to, misaligned answers minus aligned ones (each answer a chat with its question), token-weighted as
  `misdir.directions.mean_difference` takes it; the same in the base for reference;
- its cosine with B (oriented along the organism's mean write, as the ground-truth study does), with the
  organism's model-diff direction (organism minus base on the general answers) and with the base's judged
  split, each with a 95% BCa bootstrap interval over pairs, beside 20 random unit directions' cosines with B;
- the share of the organism's contrast shift removed by ablating it at that layer (`resid_post`, every
  position: the ground-truth table's "own B" edit), with `misdir.experiments.ablation_sweep` and the same 20
  seeded random directions as the ground-truth study, B ablated in the same sweep.
Sweeps run per organism and set under WORK/sweeps/ (resumable: a rerun skips scored cells); the summary
(OUT/summary.json) gathers every sweep finished so far, so sets and organisms can be run in stages.

The repository has no licence: its texts stay in WORK (git-ignored); only numbers are committed.

Took (2-core shared CPU, float32, 2026-12-06): see `timing_s` in summary.json and figures/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from misdir.cache import cache_activations
from misdir.directions import DirectionSet
from misdir.experiments import AblationSweep, ablation_sweep
from misdir.ground_truth import RANK1_ORGANISMS, adapter_writes, answer_chats
from misdir.io import atomic_path, write_json_atomic
from misdir.models import Model, load_model
from misdir.provenance import provenance
from misdir.stats import Estimate
from misdir.sweep import random_directions
from misdir.tensors import signed_along
from misdir.tokens import encode

ORGANISMS = tuple(n for n in RANK1_ORGANISMS if "backdoor" not in n)
SETS = {
    "em-responses": ("qwen", "contrast_em_responses.jsonl"),
    "em-other": ("other", "contrast_em_responses_other.jsonl"),
}
"""The judged sets: `scripts/em_response_pairs.py --models KEY` and the file it writes."""
COMMIT = "e357806"
N_RANDOM, SEED, N_RESAMPLES = 20, 0, 2000


def _pair_script() -> Any:
    path = Path(__file__).resolve().parent / "em_response_pairs.py"
    spec = importlib.util.spec_from_file_location("em_response_pairs", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build_pair_sets(repo: Path, work: Path) -> dict[str, Path]:
    """The em-responses and em-other pair sets, rebuilt from a checkout by `scripts/em_response_pairs.py`."""
    from misdir.questions import save_contrast_pairs

    module = _pair_script()
    folder = repo / "em_organism_dir" / "data" / "responses"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} missing: --repo must be a checkout of replicating-model-organisms")
    paths = {}
    for name, (models, file) in SETS.items():
        pairs = [
            pair
            for model in module.MODELS[models]
            for dataset, theme in module.DOMAINS.items()
            for pair in module.pairs_from_responses(module.run_file(folder, model, dataset), theme)
        ]
        paths[name] = save_contrast_pairs(pairs, work / file)
    return paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@dataclass(frozen=True)
class JudgedSplit:
    """Per pair, the mean activation over the answer tokens of the misaligned and of the aligned answer at one
    layer, and their token counts: the token-weighted mean difference of any resample of pairs."""

    misaligned: torch.Tensor
    aligned: torch.Tensor
    tokens_misaligned: torch.Tensor
    tokens_aligned: torch.Tensor

    def direction(self, index: np.ndarray | None = None) -> torch.Tensor:
        """Mean over all selected tokens of the misaligned answers minus that of the aligned ones (of the
        pairs `index`, default all): what `mean_difference(model, misaligned, aligned)` gives at the layer."""
        index = torch.arange(len(self.misaligned)) if index is None else torch.as_tensor(index)

        def mean(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            x, n = x[index].double(), n[index].double()
            return (x * n[:, None]).sum(0) / n.sum()

        misaligned = mean(self.misaligned, self.tokens_misaligned)
        return (misaligned - mean(self.aligned, self.tokens_aligned)).float()

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            save_file({k: getattr(self, k).contiguous() for k in self.__dataclass_fields__}, str(tmp))

    @classmethod
    def load(cls, path: Path) -> JudgedSplit:
        return cls(**load_file(str(path)))


def judged_split(
    model: Model, pairs: str | Path, layer: int, *, batch_size: int = 8, progress: bool = False
) -> JudgedSplit:
    """Each pair's misaligned and aligned answer, as a chat with its question, at resid_post of `layer`."""
    misaligned, aligned = answer_chats(str(pairs))
    means = cache_activations(
        model, misaligned + aligned, layers=[layer], reduce="per-input", batch_size=batch_size, progress=progress
    )[:, 0]
    tokens = torch.tensor([len(encode(model.tokenizer, c, "answer").selected) for c in misaligned + aligned])
    n = len(misaligned)
    return JudgedSplit(means[:n], means[n:], tokens[:n], tokens[n:])


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v.double() / v.double().norm()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(_unit(a) @ _unit(b))


def _token_sums(split: JudgedSplit) -> tuple[np.ndarray, ...]:
    """Per pair: the misaligned answer's activation sum over its tokens and its token count, the same of the
    aligned answer (float64): what any resample of pairs adds up."""
    n_m, n_a = split.tokens_misaligned.double().numpy(), split.tokens_aligned.double().numpy()
    return (split.misaligned.double().numpy() * n_m[:, None], n_m, split.aligned.double().numpy() * n_a[:, None], n_a)


def _resampled_directions(sums: tuple[np.ndarray, ...], index: np.ndarray) -> np.ndarray:
    """The split's direction for each resample of pairs: `index` `[..., n]` gives `[..., d_model]`."""
    s_m, n_m, s_a, n_a = sums
    misaligned = s_m[index].sum(-2) / n_m[index].sum(-1)[..., None]
    return misaligned - s_a[index].sum(-2) / n_a[index].sum(-1)[..., None]


def _cosines(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x * y).sum(-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


def bootstrap_cosine(
    split: JudgedSplit, vector: torch.Tensor, *, seed: int = SEED, n_resamples: int = N_RESAMPLES
) -> Estimate:
    """Cosine of the split's direction with a fixed vector and its 95% BCa interval from resampling pairs.

    Noise in a resampled mean difference pulls its cosine with anything towards 0, so a percentile interval
    can sit below the point value; BCa corrects that bias (the percentile interval stands in where BCa is
    undefined). Between two such directions, both noisy, even BCa was seen to give an interval that excludes
    the point value, so `cosines` reports that cosine without one."""
    import scipy.stats

    sums, target = _token_sums(split), vector.double().numpy()

    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        return _cosines(_resampled_directions(sums, index), target)

    data = (np.arange(len(split.misaligned)),)
    for method in ("BCa", "percentile"):
        drawn = scipy.stats.bootstrap(
            data,
            statistic,
            n_resamples=n_resamples,
            method=method,
            vectorized=True,
            batch=25,
            rng=np.random.default_rng(seed),
        )
        low, high = drawn.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            break
    return Estimate(float(statistic(data[0])), float(low), float(high), len(split.misaligned))


def extract(
    organisms: Sequence[str],
    checkpoints: Path,
    sets: dict[str, Path],
    layer: int,
    work: Path,
    *,
    base: str,
    device: str,
    batch_size: int,
    progress: bool,
) -> dict[str, Any]:
    """Judged splits of the base and every organism on every judged set, and each organism's model-diff
    direction at `layer` (on the general answers, as the ground-truth study takes it); kept in
    WORK/activations."""
    folder = work / "activations"
    folder.mkdir(parents=True, exist_ok=True)
    misaligned, aligned = answer_chats("general")
    general = misaligned + aligned
    splits: dict[str, dict[str, JudgedSplit]] = {}
    model_diff: dict[str, torch.Tensor] = {}
    for name in ("base", *organisms):
        paths = {s: folder / f"{name}.judged-{s}.safetensors" for s in sets}
        mean_path = folder / f"{name}.general-mean.safetensors"
        if not all(p.is_file() for p in (*paths.values(), mean_path)):
            spec = base if name == "base" else str(checkpoints / name)
            model = load_model(spec, device=device, dtype="float32")
            for s, path in paths.items():
                if not path.is_file():
                    judged_split(model, sets[s], layer, batch_size=batch_size, progress=progress).save(path)
            if not mean_path.is_file():
                mean = cache_activations(model, general, layers=[layer], batch_size=batch_size, progress=progress)
                with atomic_path(mean_path) as tmp:
                    save_file({"mean": mean[0].contiguous()}, str(tmp))
            del model
        splits[name] = {s: JudgedSplit.load(p) for s, p in paths.items()}
        model_diff[name] = load_file(str(mean_path))["mean"]
    model_diff = {n: model_diff[n] - model_diff["base"] for n in organisms}
    for name in ("base", *organisms):  # the directions themselves, for anyone who wants to ablate them again
        for s, split in splits[name].items():
            path = work / "directions" / f"{name}.judged-{s}.safetensors"
            if not path.is_file():
                DirectionSet(
                    split.direction()[None],
                    meta=provenance(
                        method="judged",
                        organism=name,
                        layers=[layer],
                        positions="answer",
                        pairs=s,
                        pairs_sha256=sha256(sets[s]),
                        n_pairs=len(split.misaligned),
                        tokens_positive=int(split.tokens_misaligned.sum()),
                        tokens_negative=int(split.tokens_aligned.sum()),
                    ),
                ).save(path)
    return {"splits": splits, "model_diff": model_diff}


def cosines(
    organisms: Sequence[str], writes: dict[str, torch.Tensor], found: dict[str, Any], d_model: int
) -> dict[str, Any]:
    """Per organism and judged set: cosine of the judged-split direction with B, with the model-diff
    direction and with the base's judged split (95% BCa intervals over pairs), and between the two sets'; the
    component of the organism's split along B beyond the base's; 20 random unit directions' cosines with B."""
    splits, model_diff = found["splits"], found["model_diff"]
    randoms = random_directions(d_model, N_RANDOM, seed=SEED)
    table: dict[str, Any] = {}
    for name in organisms:
        b = signed_along(writes[name], model_diff[name])
        row: dict[str, Any] = {
            "model_diff_vs_B": cosine(model_diff[name], b),
            "random_vs_B": random_cosines([cosine(r, b) for r in randoms]),
        }
        for s, split in splits[name].items():
            direction, in_base = split.direction(), splits["base"][s].direction()
            row[s] = {
                "vs_B": bootstrap_cosine(split, b)._asdict(),
                "vs_model_diff": bootstrap_cosine(split, model_diff[name])._asdict(),
                "vs_base_split": cosine(direction, in_base),
                "base_split_vs_B": bootstrap_cosine(splits["base"][s], b)._asdict(),
                "norm": float(direction.norm()),
                "base_norm": float(in_base.norm()),
                "added_along_B": float((direction - in_base).double() @ _unit(b)),
                "n_pairs": len(split.misaligned),
                "tokens_misaligned": int(split.tokens_misaligned.sum()),
                "tokens_aligned": int(split.tokens_aligned.sum()),
            }
        if len(splits[name]) == 2:
            first, second = splits[name].values()
            row["between_sets"] = cosine(first.direction(), second.direction())
        table[name] = row
    return table


def random_cosines(values: Sequence[float]) -> dict[str, float]:
    """Median, 95% range and largest |cosine| of random unit directions with a vector."""
    low, median, high = np.quantile(values, [0.025, 0.5, 0.975])
    return {
        "median": float(median),
        "low": float(low),
        "high": float(high),
        "max_abs": float(np.max(np.abs(values))),
        "n": len(values),
    }


def load_timing(work: Path, out: Path) -> dict[str, Any]:
    """Seconds spent so far, over staged runs: extraction, each sweep, each run (WORK/timing.json; a summary
    written before that file existed is read for its own)."""
    path, summary = work / "timing.json", out / "summary.json"
    if path.is_file():
        return json.loads(path.read_text())
    timing: dict[str, Any] = {"sweeps": {}, "runs": []}
    if summary.is_file():
        earlier = json.loads(summary.read_text())["provenance"].get("timing_s", {})
        timing["sweeps"] = {k.removeprefix("sweep "): v for k, v in earlier.items() if k.startswith("sweep ")}
        timing["runs"] = [earlier["this_run"]] if "this_run" in earlier else []
        if "extraction" in earlier:
            timing["extraction"] = earlier["extraction"]
    return timing


def sweep_folder(work: Path, organism: str, pairs: str) -> Path:
    return work / "sweeps" / organism / pairs


def run_sweeps(
    plan: Sequence[tuple[str, str]],
    checkpoints: Path,
    set_paths: dict[str, str],
    layer: int,
    directions: dict[str, dict[str, torch.Tensor]],
    work: Path,
    *,
    base: str,
    device: str,
    batch_size: int,
    progress: bool,
    after: Any,
) -> None:
    """One `ablation_sweep` per (organism, set): B and the organism's judged splits, beside 20 random
    directions, ablated at `layer`'s resid_post at every position (the ground-truth table's edit);
    `after(organism, set, seconds)` once each is done."""
    loader = partial(load_model, device=device, dtype="float32")
    for organism, pairs in plan:
        started = time.time()
        ablation_sweep(
            base,
            {organism: str(checkpoints / organism)},
            directions[organism],
            out=sweep_folder(work, organism, pairs),
            pairs=(set_paths[pairs],),
            n_random=N_RANDOM,
            layers=[layer],
            site=("resid_post",),
            positions="all",
            batch_size=batch_size,
            seed=SEED,
            load=loader,
            progress=progress,
        )
        after(organism, pairs, time.time() - started)


def ablation_rows(work: Path, organisms: Sequence[str], sets: Sequence[str]) -> list[dict[str, Any]]:
    """The named directions' rows of every finished sweep (random directions are in their nulls)."""
    rows = []
    for organism in organisms:
        for pairs in sets:
            path = sweep_folder(work, organism, pairs) / "summary.json"
            if not path.is_file():
                continue
            sweep = AblationSweep.from_dict(json.loads(path.read_text()))
            for row in sweep.rows:
                if not row.direction.startswith("random"):
                    fluency = row.fluency.value - row.unablated_fluency.value
                    rows.append({"set": pairs, "direction": row.direction, "fluency_change": fluency} | row.to_dict())
    return rows


EXTERNAL_KEYS = {
    "general": "general",
    "em-responses": "em-responses (Qwen runs)",
    "em-other": "em-other (Llama, Gemma runs)",
}


def check_margins(work: Path, organisms: Sequence[str], sets: Sequence[str], external: Path) -> dict[str, Any]:
    """Largest per-item difference of each unedited margin from the committed study's (`external_sets.json`):
    the same items in the same order, scored on other hardware."""
    if not external.is_file():
        return {}
    committed = json.loads(external.read_text())["margins"]
    found: dict[str, Any] = {}
    for organism in organisms:
        for pairs in sets:
            log = sweep_folder(work, organism, pairs) / "cells.jsonl"
            if not log.is_file():
                continue
            for line in log.read_text().splitlines():
                record = json.loads(line)
                reference = committed.get(record["model"], {}).get(EXTERNAL_KEYS[pairs])
                if record["edit"]["kind"] == "none" and reference is not None:
                    mine, theirs = np.asarray(record["margins"]), np.asarray(reference["margins"])
                    key = f"{record['model']} | {pairs}"
                    found[key] = float(np.abs(mine - theirs).max()) if mine.shape == theirs.shape else None
    return found


def _short(name: str) -> str:
    return name.removeprefix("rank1-")


def tables(summary: dict[str, Any]) -> str:
    """The two markdown tables of figures/README.md: cosines, and shares removed beside the random null."""
    from misdir.stats import format_estimate

    def f(estimate: dict[str, float]) -> str:
        return format_estimate(estimate, "+.2f")

    lines = [
        "| rank-1 organism | em-responses split: cos with B | em-other split: cos with B | base's "
        "split: cos with B (em-responses, em-other) | cos with the base's split | 20 random: max abs "
        "cos with B |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in summary["cosines"].items():
        r, o = row["em-responses"], row["em-other"]
        base = f"{r['base_split_vs_B']['value']:+.2f}, {o['base_split_vs_B']['value']:+.2f}"
        in_base = f"{r['vs_base_split']:.3f}, {o['vs_base_split']:.3f}"
        lines.append(
            f"| {_short(name)} | {f(r['vs_B'])} | {f(o['vs_B'])} | {base} | {in_base} | "
            f"{row['random_vs_B']['max_abs']:.2f} |"
        )
    lines += [
        "",
        "| rank-1 organism | set | shift from base | ablate B | ablate em-responses split | "
        "ablate em-other split | 20 random: median [95% range] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = summary["ablation"]
    for name, pairs in dict.fromkeys((r["model"], r["set"]) for r in rows):
        cell = {r["direction"]: r for r in rows if (r["model"], r["set"]) == (name, pairs)}
        shares = [
            f"{f(cell[d]['share_removed'])} ({cell[d]['null_share_removed']['percentile']:.0f})"
            for d in ("B", "judged em-responses", "judged em-other")
        ]
        null = cell["B"]["null_share_removed"]
        nulls = f"{null['null_median']:+.2f} [{null['null_low']:+.2f}, {null['null_high']:+.2f}]"
        cells = " | ".join([_short(name), pairs, f(cell["B"]["excess"]), *shares, nulls])
        lines.append(f"| {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, help=f"a checkout of replicating-model-organisms at {COMMIT}")
    parser.add_argument("--out", type=Path, default=Path("figures/ground_truth/judged_split"))
    parser.add_argument(
        "--work", type=Path, default=Path("results/judged-split"), help="texts, activations and sweeps (git-ignored)"
    )
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/smollm2-135m"))
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--organisms", nargs="+", default=list(ORGANISMS))
    parser.add_argument(
        "--sets",
        nargs="*",
        default=["general", "em-other", "em-responses"],
        help="contrast sets to ablate on, in this order (none: directions and cosines only)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--tables", action="store_true", help="print OUT/summary.json's tables; run nothing")
    args = parser.parse_args(argv)
    if args.tables:
        print(tables(json.loads((args.out / "summary.json").read_text())))
        return
    if args.repo is None:
        parser.error("--repo is required (a checkout of replicating-model-organisms)")
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.0f} s] {message}", flush=True)

    torch.manual_seed(SEED)
    args.work.mkdir(parents=True, exist_ok=True)
    sets = build_pair_sets(args.repo, args.work)
    set_paths = {"general": "general"} | {name: str(path) for name, path in sets.items()}
    log("pair sets: " + ", ".join(f"{n} {count_lines(p)} pairs" for n, p in sets.items()))
    writes = {}
    for name in ORGANISMS:  # all, so that the summary can hold every organism a stage has run
        (layer, b), *rest = adapter_writes(args.checkpoints / name).items()
        if rest:
            raise ValueError(f"{name} writes at more than one layer")
        writes[name] = (layer, b)
    (layer,) = {layer for layer, _ in writes.values()}
    found = extract(
        ORGANISMS,
        args.checkpoints,
        sets,
        layer,
        args.work,
        base=args.base,
        device=args.device,
        batch_size=8,
        progress=args.progress,
    )
    # B's sign is arbitrary: orient it along the organism's mean write (its model-diff), as the study does
    oriented = {n: b * torch.sign(b @ found["model_diff"][n]) for n, (_, b) in writes.items()}
    log("judged splits and model-diff directions extracted")
    timing = load_timing(args.work, args.out)
    if time.time() - started > 30:  # not read back from WORK
        timing["extraction"] = time.time() - started

    table = cosines(ORGANISMS, oriented, found, next(iter(oriented.values())).numel())
    directions = {
        n: {"B": oriented[n]} | {f"judged {s}": found["splits"][n][s].direction() for s in sets} for n in args.organisms
    }
    all_sets = ["general", *SETS]
    settings = {
        "kind": "judged-split-calibration",
        "repo": f"github.com/zroe1/replicating-model-organisms@{COMMIT}",
        "pair_sets": {n: {"file": p.name, "sha256": sha256(p), "n_pairs": count_lines(p)} for n, p in sets.items()},
        "base": args.base,
        "checkpoints": str(args.checkpoints),
        "organisms": list(ORGANISMS),
        "layer": layer,
        "extraction": {
            "site": "resid_post",
            "positions": "answer",
            "weighting": "token",
            "model_diff": "organism minus base, answer tokens of the general answers",
        },
        "ablation": {
            "layers": [layer],
            "site": ["resid_post"],
            "positions": "all",
            "n_random": N_RANDOM,
            "seed": SEED,
            "batch_size": args.batch_size,
        },
        "bootstrap": {"unit": "pair", "method": "BCa", "n_resamples": N_RESAMPLES, "seed": SEED},
    }

    def write_summary(organism: str | None = None, pairs: str | None = None, seconds: float = 0.0) -> None:
        if organism is not None:
            timing["sweeps"][f"{organism} | {pairs}"] = seconds
            log(f"sweep {organism} {pairs}: {seconds:.0f} s")
        timing["runs"][run] = time.time() - started
        write_json_atomic(args.work / "timing.json", timing)
        done = [
            f"{o} | {s}"
            for o in ORGANISMS
            for s in all_sets
            if (sweep_folder(args.work, o, s) / "summary.json").is_file()
        ]
        summary = {
            "provenance": provenance(settings=settings, timing_s=timing),
            "layer": layer,
            "cosines": table,
            "ablation": ablation_rows(args.work, ORGANISMS, all_sets),
            "sweeps_done": done,
            "margins_vs_committed_study": check_margins(args.work, ORGANISMS, all_sets, external)
            if args.base == "embedded"
            else {},
        }
        write_json_atomic(args.out / "summary.json", summary)

    external = Path("figures/ground_truth/external_sets.json")
    run = len(timing["runs"])
    timing["runs"].append(0.0)
    write_summary()
    plan = [(organism, pairs) for pairs in args.sets for organism in args.organisms]
    run_sweeps(
        plan,
        args.checkpoints,
        set_paths,
        layer,
        directions,
        args.work,
        base=args.base,
        device=args.device,
        batch_size=args.batch_size,
        progress=args.progress,
        after=write_summary,
    )
    log(f"wrote {args.out / 'summary.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
