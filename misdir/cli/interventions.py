"""`misdir ablate | transfer | steer` (sweeps of edits against random directions) and `misdir control` (the
planted-direction positive control)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from misdir.cli.common import (
    LIMIT_HELP,
    POSITIONS_HELP,
    RANDOM_HELP,
    _at_least,
    _check_directions,
    _check_layers,
    _check_pairs,
    _check_positions,
    _check_random,
    _fail,
    _ints,
    _limit,
    _model_shape,
    _named,
    _null_text,
    _numbers,
    _refused,
)
from misdir.experiments import SWEEP_POSITIONS
from misdir.stats import format_estimate


def control(
    model: str = typer.Option("embedded", help="the model to plant a direction in (your base or finetune)"),
    layer: int = typer.Option(..., help="the layer the planted direction is written at (resid_post)"),
    strength: float = typer.Option(0.3, help="how much is written, in residual norms (as steer --relative resid)"),
    direction: Path = typer.Option(None, help="plant this direction set's row at --layer (default: a random one)"),
    texts: str = typer.Option("general", help="contrast set whose answers the extraction averages over"),
    pairs: str = typer.Option("general", help="contrast set the shift and its removal are measured on"),
    ablate_layers: str = typer.Option(None, help="comma-separated layers the extracted direction is ablated at "
                                      "(default: --layer); 'all' for every layer"),
    sites: str = typer.Option("resid_post", help="comma-separated sites it is ablated at"),
    positions: str = typer.Option("all", help=POSITIONS_HELP),
    random: int = typer.Option(20, help=RANDOM_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    out: Path = typer.Option(None, help="write the report here as JSON"),
) -> None:
    """Positive control: plant a known direction in your model, then run your extraction and ablation settings
    on it. A null on a real finetune means something only where these settings find and remove the plant."""
    from misdir.directions import DirectionSet
    from misdir.ground_truth import answer_chats, positive_control
    from misdir.hooks import check_site
    from misdir.models import load_model

    limit = _limit(limit)
    _at_least("--random", random, 1)
    _check_random(random)
    _check_positions(positions)
    _check_pairs([texts, pairs])
    _at_least("--strength", abs(strength), 1e-6)
    shape = _model_shape({"--model": model})
    _check_layers("--layer", [layer], shape)
    every = ablate_layers == "all"
    chosen_layers = None if every else _ints(ablate_layers, "--ablate-layers")
    _check_layers("--ablate-layers", chosen_layers, shape)
    site_list = [s.strip() for s in sites.split(",") if s.strip()]
    with _refused():
        for site in site_list:
            check_site(site)
        planted = None if direction is None else DirectionSet.load(direction).vectors[layer]
    loaded = load_model(model)
    conversations = [c for pair in zip(*answer_chats(texts, limit), strict=True) for c in pair]
    report = positive_control(loaded, conversations, layer=layer, strength=strength, pairs=pairs, direction=planted,
                              ablate_layers=list(range(loaded.n_layers)) if every else chosen_layers, sites=site_list,
                              positions=positions, n_random=random, limit=limit)
    shift, share = report["planted_shift"], report["share_removed"]
    typer.echo(f"planted at layer {layer}, strength {strength}: shift of the {pairs} margin {format_estimate(shift)}")
    typer.echo(f"recovered (model-diff, cosine with the plant): layer {layer} "
               f"{report['cosine_by_layer'][layer]:+.3f}, last layer {list(report['cosine_by_layer'].values())[-1]:+.3f}")
    typer.echo(f"removed by ablating it: {format_estimate(share, '+.2f')}{_null_text(report['null_share'])}")
    if shift["low"] <= 0 <= shift["high"]:
        typer.echo("the plant did not move the metric (its interval holds 0): shares are not meaningful; "
                   "raise --strength or plant a direction that matters (--direction)")
    if out is not None:
        from misdir.io import write_json_atomic

        write_json_atomic(out, report)
        typer.echo(f"wrote {out}")


def _load_directions(files: list[Path], layer: int | None, per_layer: bool) -> dict[str, Any]:
    """Direction files by stem: each layer's own (`per_layer`), else one layer's unit vector (default: the middle)."""
    from misdir.directions import DirectionSet

    out: dict[str, Any] = {}
    for path in files:
        with _refused():
            directions = DirectionSet.load(path)
        chosen = directions.n_layers // 2 if layer is None else layer
        if not 0 <= chosen < directions.n_layers:
            _fail(f"--layer {chosen}: out of range; {path} has layers 0 to {directions.n_layers - 1}",
                  usage=True)
        out[path.stem] = directions if per_layer else directions.unit()[chosen]
    return out


def ablate(
    model: list[str] = typer.Option(..., help="finetune spec(s) to ablate in; NAME=SPEC to name one"),
    directions: list[Path] = typer.Option(..., help="direction set file(s) (safetensors), named by their stem"),
    base: str = typer.Option("embedded", help="the base model: the share removed is of the excess over it"),
    layer: int = typer.Option(None, help="use this layer's direction at every layer (default: the middle)"),
    per_layer: bool = typer.Option(False, help="ablate each layer's own direction instead"),
    pairs: list[str] = typer.Option(["general"], help="contrast set(s): name or JSONL"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    positions: str = typer.Option(SWEEP_POSITIONS, help=POSITIONS_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    batch_size: int = typer.Option(16, help="items per forward pass"),
    out: Path = typer.Option(..., help="sweep directory (cells.jsonl, summary.json); rerun to resume"),
    figures: Path = typer.Option(None, help="figure stem (default: OUT/ablation)"),
) -> None:
    """Share of a finetune's excess misalignment that ablating each direction removes, against random directions."""
    from misdir.experiments import ablation_sweep, plot_ablation_sweep

    models = dict(_named(spec) for spec in model)
    limit = _limit(limit)
    _check_random(random)
    _check_positions(positions)
    _at_least("--batch-size", batch_size, 1)
    _check_pairs(pairs)
    shape = _model_shape({"--base": base, **{f"--model {name}": spec for name, spec in models.items()}})
    _check_directions(directions, layer, shape)
    summary = ablation_sweep(base, models, _load_directions(directions, layer, per_layer), out=out, pairs=pairs,
                             n_random=random, positions=positions, limit=limit, batch_size=batch_size)
    _print_ablation(summary)
    for path in plot_ablation_sweep(summary, figures or out / "ablation"):
        typer.echo(f"wrote {path}")


def transfer(
    checkpoints: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="organisms and their directions/"),
    base: str = typer.Option("embedded", help="the organisms' base model"),
    layer: int = typer.Option(None, help="use this layer's direction at every layer (default: the middle)"),
    own_domain: bool = typer.Option(True, help="also score each organism on its own domain's contrast set"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    positions: str = typer.Option(SWEEP_POSITIONS, help=POSITIONS_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    out: Path = typer.Option(Path("results/transfer"), help="sweep directory; rerun to resume"),
    figures: Path = typer.Option(None, help="figure stem (default: OUT/transfer)"),
) -> None:
    """The transfer matrix: each EM organism's direction ablated in every EM organism and control."""
    from misdir.experiments import ablation_sweep, plot_ablation_sweep
    from misdir.organisms import ORGANISMS, domain_of

    limit = _limit(limit)
    _check_random(random)
    _check_positions(positions)
    _check_layers("--layer", None if layer is None else [layer], _model_shape({"--base": base}))

    rows = [o for o in ORGANISMS if o.role in ("em", "control")]
    files = [checkpoints / "directions" / f"{o.name}.safetensors" for o in rows if o.role == "em"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"--checkpoints {checkpoints}: no direction file {', '.join(missing)}; make them with `misdir "
              "organisms analyze`", usage=True)
    pairs = {o.name: ["general", domain_of(o)] if own_domain else ["general"] for o in rows}
    summary = ablation_sweep(base, {o.name: str(checkpoints / o.name) for o in rows},
                             _load_directions(files, layer, False), out=out, pairs=pairs, n_random=random,
                             positions=positions, limit=limit)
    _print_ablation(summary)
    for path in plot_ablation_sweep(summary, out / "transfer" if figures is None else figures):
        typer.echo(f"wrote {path}")


def steer(
    model: str = typer.Option("embedded", help="the model to steer (usually the base)"),
    directions: list[Path] = typer.Option(..., help="direction set file(s), named by their stem"),
    layer: int = typer.Option(None, "--direction-layer", help="the layer of each direction set whose vector "
                              "is added (default: the middle; formerly --layer); --layers: where it goes"),
    old_layer: int = typer.Option(None, "--layer", hidden=True, help="the former name of --direction-layer"),
    mean: bool = typer.Option(False, help="steer along the mean of the given unit directions only"),
    layers: str = typer.Option(..., help="comma-separated layers to add it at (one at a time)"),
    scales: str = typer.Option("0.05,0.1,0.2,0.4,0.8", help="comma-separated scales"),
    relative: str = typer.Option("resid", help="scale counts in: resid (each token's residual norm), unit, direction"),
    pairs: list[str] = typer.Option(["general"], help="contrast set(s): name or JSONL"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    positions: str = typer.Option("all", help=POSITIONS_HELP),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    batch_size: int = typer.Option(16, help="items per forward pass"),
    out: Path = typer.Option(..., help="sweep directory (cells.jsonl, summary.json); rerun to resume"),
    figures: Path = typer.Option(None, help="figure stem (default: OUT/steering)"),
) -> None:
    """Misalignment and fluency against steering scale and layer, against random directions."""
    import torch

    from misdir.experiments import plot_steering_grid, steering_grid
    from misdir.interventions import RELATIVE

    if old_layer is not None and layer is not None and old_layer != layer:
        _fail("--layer is the former name of --direction-layer: give one of them", usage=True)
    layer = layer if old_layer is None else old_layer
    limit = _limit(limit)
    _check_random(random)
    _check_positions(positions)
    _at_least("--batch-size", batch_size, 1)
    _numbers(scales, "--scales")
    if relative not in RELATIVE:
        _fail(f"--relative {relative!r}: expected one of {', '.join(RELATIVE)}", usage=True)
    _check_pairs(pairs)
    shape = _model_shape({"--model": model})
    _check_directions(directions, layer, shape)
    _check_layers("--layers", _ints(layers, "--layers"), shape)

    chosen = _load_directions(directions, layer, False)
    if mean:
        chosen = {f"mean of {len(chosen)}": torch.stack(list(chosen.values())).mean(0)}
    summary = steering_grid(model, chosen, out=out, layers=_ints(layers), scales=[float(s) for s in scales.split(",")],
                            pairs=pairs, n_random=random, relative=relative, positions=positions, limit=limit,
                            batch_size=batch_size)
    for r in summary.rows:
        if r.direction.startswith("random"):
            continue
        typer.echo(f"{r.direction:>22s} layer {r.layer:2d} scale {r.scale:5.2f}: shift "
                   f"{format_estimate(r.shift.estimate)}{_null_text(_dict(r.shift.null))}, fluency change "
                   f"{r.fluency_change.estimate.value:+.2f}{_null_text(_dict(r.fluency_change.null))}")
    for path in plot_steering_grid(summary, figures or out / "steering"):
        typer.echo(f"wrote {path}")


def _print_ablation(summary: Any) -> None:
    """One line per named direction: its effect, then the random directions' (median [95% range], percentile)."""
    for r in summary.rows:
        if r.direction.startswith("random"):
            continue
        excess = "" if r.excess.low > 0 else "  (no excess over base: share not meaningful)"
        typer.echo(f"{r.model:>18s} - {r.direction:<16s} {Path(r.pairs).stem:>8s}: share removed "
                   f"{format_estimate(r.share_removed.estimate, '+.2f')}{_null_text(_dict(r.share_removed.null))}, "
                   f"margin change {format_estimate(r.change.estimate)}{_null_text(_dict(r.change.null))}, fluency "
                   f"{r.unablated_fluency.value:+.2f} -> {r.fluency.value:+.2f}{excess}")


def _dict(null: Any) -> dict[str, float] | None:
    """A row's random-direction null as `_null_text` reads it."""
    return None if null is None else null._asdict()
