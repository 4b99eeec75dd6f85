"""`misdir ablate | transfer | steer` (sweeps of edits against random directions) and `misdir control` (the
planted-direction positive control)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import typer

from misdir.cli.common import (
    _check_directions,
    _check_layers,
    _check_pairs,
    _check_random,
    _fail,
    _judge_errors,
    _judge_model,
    _judged_metric,
    _model_shape,
    _named,
    _null_text,
    _refused,
)
from misdir.cli.options import command
from misdir.configs import AblateConfig, ControlConfig, SteerConfig, TransferConfig
from misdir.stats import format_estimate

SweepCommand = AblateConfig | TransferConfig | SteerConfig
"""The commands whose sweeps `_judged` runs on the judged metric."""


@command(ControlConfig)
def control(cfg: ControlConfig) -> None:
    """Positive control: plant a known direction in your model, then run your extraction and ablation settings
    on it. A null on a real finetune means something only where these settings find and remove the plant."""
    from misdir.directions import DirectionSet
    from misdir.ground_truth import answer_chats, positive_control
    from misdir.models import load_model

    _check_random(cfg.random)
    _check_pairs([cfg.texts, cfg.pairs])
    shape = _model_shape({"--model": cfg.model})
    _check_layers("--layer", [cfg.layer], shape)
    every = cfg.ablate_layers == "all"
    chosen_layers = None if every else _layer_list(cfg.ablate_layers, "--ablate-layers")
    _check_layers("--ablate-layers", chosen_layers, shape)
    if cfg.direction is not None:
        _check_directions([cfg.direction], cfg.layer, shape)  # its width and depth the model's, before any work
    with _refused():
        planted = None if cfg.direction is None else DirectionSet.load(cfg.direction).vectors[cfg.layer]
    loaded = load_model(cfg.model, device=cfg.device)
    limit, layer, pairs, strength = cfg.limit or None, cfg.layer, cfg.pairs, cfg.strength
    conversations = [c for pair in zip(*answer_chats(cfg.texts, limit), strict=True) for c in pair]
    report = positive_control(
        loaded,
        conversations,
        layer=layer,
        strength=strength,
        pairs=pairs,
        direction=planted,
        ablate_layers=list(range(loaded.n_layers)) if every else chosen_layers,
        sites=list(cfg.sites),
        positions=cfg.positions,
        n_random=cfg.random,
        limit=limit,
        progress=True,
    )
    shift, share = report["planted_shift"], report["share_removed"]
    typer.echo(f"planted at layer {layer}, strength {strength}: shift of the {pairs} margin {format_estimate(shift)}")
    typer.echo(
        f"recovered (model-diff, cosine with the plant): layer {layer} "
        f"{report['cosine_by_layer'][layer]:+.3f}, last layer {list(report['cosine_by_layer'].values())[-1]:+.3f}"
    )
    typer.echo(f"removed by ablating it: {format_estimate(share, '+.2f')}{_null_text(report['null_share'])}")
    if shift["low"] <= 0 <= shift["high"]:
        typer.echo(
            "the plant did not move the metric (its interval holds 0): shares are not meaningful; "
            "raise --strength or plant a direction that matters (--direction)"
        )
    if cfg.out is not None:
        from misdir.io import write_json_atomic
        from misdir.provenance import provenance

        source = {"direction": None if cfg.direction is None else str(cfg.direction), "texts": cfg.texts}
        write_json_atomic(cfg.out, {**report, "provenance": provenance(loaded, seed=0, **source)})
        typer.echo(f"wrote {cfg.out}")
    typer.echo("next: a null of your ablation means something only where this control found and removed the plant")


def _layer_list(text: str | None, option: str) -> list[int] | None:
    """A comma-separated list of layers (e.g. --ablate-layers); None stays None."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(f"{option} {text!r}: expected comma-separated integers or 'all'", usage=True)
    if not values:
        _fail(f"{option} {text!r}: no integers", usage=True)
    return values


def _loader(device: str | None) -> Callable[[Any], Any]:
    """How a sweep loads the models it still needs: specs on `device` (--device)."""
    from misdir.models import as_model, load_model

    return lambda model: load_model(model, device=device) if isinstance(model, str | Path) else as_model(model)


def _load_directions(files: list[Path], layer: int | None, per_layer: bool) -> dict[str, Any]:
    """Direction files by stem: each layer's own (`per_layer`), else one layer's unit vector (default: the middle)."""
    from misdir.directions import DirectionSet

    out: dict[str, Any] = {}
    for path in files:
        with _refused():
            directions = DirectionSet.load(path)
        chosen = directions.n_layers // 2 if layer is None else layer
        if not 0 <= chosen < directions.n_layers:
            _fail(f"--layer {chosen}: out of range; {path} has layers 0 to {directions.n_layers - 1}", usage=True)
        out[path.stem] = directions if per_layer else directions.unit()[chosen]
    return out


@command(AblateConfig)
def ablate(cfg: AblateConfig) -> None:
    """Share of a finetune's excess misalignment that ablating each direction removes, against random directions."""
    from misdir.experiments import ablation_sweep
    from misdir.sweep_plots import plot_ablation_sweep

    models = dict(_named(spec) for spec in cfg.model)
    _check_random(cfg.random)
    _check_pairs(cfg.pairs)
    metric = _judged_metric(cfg)
    shape = _model_shape(
        {"--base": cfg.base, **{f"--model {name}": spec for name, spec in models.items()}, **_judge_model(cfg)}
    )
    _check_directions(cfg.directions, cfg.layer, shape)
    if not cfg.directions and metric is None:
        _fail("give --directions, or --judge to extract each --model's judged-split direction", usage=True)
    if not cfg.directions:
        _judged_study(cfg, models, metric, shape)
        return
    figures = cfg.figures or cfg.out / "ablation"
    if metric is not None:
        from misdir.judged import judged_ablation_sweep

        _judged(
            partial(
                judged_ablation_sweep,
                cfg.base,
                models,
                _load_directions(list(cfg.directions), cfg.layer, cfg.per_layer),
                n_random=cfg.random,
                positions=cfg.positions,
                batch_size=cfg.batch_size,
                load=_loader(cfg.device),
            ),
            cfg,
            metric,
            figures,
        )
        return
    summary = ablation_sweep(
        cfg.base,
        models,
        _load_directions(list(cfg.directions), cfg.layer, cfg.per_layer),
        out=cfg.out,
        pairs=list(cfg.pairs),
        n_random=cfg.random,
        positions=cfg.positions,
        limit=cfg.limit or None,
        batch_size=cfg.batch_size,
        load=_loader(cfg.device),
    )
    _print_ablation(summary)
    for path in plot_ablation_sweep(summary, figures):
        typer.echo(f"wrote {path}")
    typer.echo(
        "next: misdir control --model FINETUNE --layer LAYER (with these --positions, --sites and layers): would "
        "these settings find and remove a direction that is there?"
    )


@command(TransferConfig)
def transfer(cfg: TransferConfig) -> None:
    """The transfer matrix: each EM organism's direction ablated in every EM organism and control present."""
    from misdir.experiments import ablation_sweep
    from misdir.organisms import domain_of, organisms_in
    from misdir.sweep_plots import plot_ablation_sweep

    checkpoints, layer = cfg.checkpoints, cfg.layer
    _check_random(cfg.random)
    metric = _judged_metric(cfg)
    _check_layers(
        "--layer", None if layer is None else [layer], _model_shape({"--base": cfg.base, **_judge_model(cfg)})
    )

    rows = [o for o in organisms_in(checkpoints) if o.role in ("em", "control")]
    files = [checkpoints / "directions" / f"{o.name}.safetensors" for o in rows if o.role == "em"]
    figures = cfg.out / "transfer" if cfg.figures is None else cfg.figures
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(
            f"--checkpoints {checkpoints}: no direction file {', '.join(missing)}; make them with `misdir "
            "organisms analyze`",
            usage=True,
        )
    if metric is not None:
        from misdir.judged import judged_ablation_sweep

        _judged(
            partial(
                judged_ablation_sweep,
                cfg.base,
                {o.name: str(checkpoints / o.name) for o in rows},
                _load_directions(files, layer, False),
                n_random=cfg.random,
                positions=cfg.positions,
                load=_loader(cfg.device),
            ),
            cfg,
            metric,
            figures,
        )
        return
    pairs = {o.name: ["general", domain_of(o)] if cfg.own_domain else ["general"] for o in rows}
    summary = ablation_sweep(
        cfg.base,
        {o.name: str(checkpoints / o.name) for o in rows},
        _load_directions(files, layer, False),
        out=cfg.out,
        pairs=pairs,
        n_random=cfg.random,
        positions=cfg.positions,
        limit=cfg.limit or None,
        load=_loader(cfg.device),
    )
    _print_ablation(summary)
    for path in plot_ablation_sweep(summary, figures):
        typer.echo(f"wrote {path}")
    typer.echo(
        "next: misdir control --model FINETUNE --layer LAYER (with these --positions, --sites and layers): would "
        "these settings find and remove a direction that is there?"
    )


@command(SteerConfig)
def steer(cfg: SteerConfig) -> None:
    """Misalignment and fluency against steering scale and layer, against random directions."""
    import torch

    from misdir.experiments import steering_grid
    from misdir.models import load_model
    from misdir.sweep_plots import plot_steering_grid

    _check_random(cfg.random)
    _check_pairs(cfg.pairs)
    metric = _judged_metric(cfg)
    shape = _model_shape({"--model": cfg.model, **_judge_model(cfg)})
    _check_directions(cfg.directions, cfg.direction_layer, shape)
    _check_layers("--layers", cfg.layers, shape)

    chosen = _load_directions(list(cfg.directions), cfg.direction_layer, False)
    if cfg.mean:
        chosen = {f"mean of {len(chosen)}": torch.stack(list(chosen.values())).mean(0)}
    figures = cfg.figures or cfg.out / "steering"
    if metric is not None:
        from misdir.judged import judged_steering_grid

        _judged(
            partial(
                judged_steering_grid,
                load_model(cfg.model, device=cfg.device),
                chosen,
                layers=list(cfg.layers),
                scales=list(cfg.scales),
                n_random=cfg.random,
                relative=cfg.relative,
                positions=cfg.positions,
                batch_size=cfg.batch_size,
            ),
            cfg,
            metric,
            figures,
        )
        return
    summary = steering_grid(
        load_model(cfg.model, device=cfg.device),
        chosen,
        out=cfg.out,
        layers=list(cfg.layers),
        scales=list(cfg.scales),
        pairs=list(cfg.pairs),
        n_random=cfg.random,
        relative=cfg.relative,
        positions=cfg.positions,
        limit=cfg.limit or None,
        batch_size=cfg.batch_size,
    )
    for r in summary.rows:
        if r.direction.startswith("random"):
            continue
        typer.echo(
            f"{r.direction:>22s} layer {r.layer:2d} scale {r.scale:5.2f}: shift "
            f"{format_estimate(r.shift.estimate)}{_null_text(_dict(r.shift.null))}, fluency change "
            f"{r.fluency_change.estimate.value:+.2f}{_null_text(_dict(r.fluency_change.null))}"
        )
    for path in plot_steering_grid(summary, figures):
        typer.echo(f"wrote {path}")


def _judged_study(cfg: AblateConfig, models: dict[str, str], metric: Any, shape: Any) -> None:
    """`misdir ablate --judge` without --directions: sample, judge, split, extract, then the judged ablation."""
    from misdir.judged import JudgedPlan, judged_study

    _check_layers("--layer", None if cfg.layer is None else [cfg.layer], shape)
    options = dict(
        out=cfg.out,
        judge=cfg.judge,
        metric=metric,
        layer=cfg.layer,
        n_random=cfg.random,
        positions=cfg.positions,
        batch_size=cfg.batch_size,
        judge_url=cfg.judge_url,
        judge_device=cfg.device,
        load=_loader(cfg.device),
    )
    with _refused():
        todo = judged_study(cfg.base, models, **options, dry_run=True)
    assert isinstance(todo, JudgedPlan)
    typer.echo(f"judged study in {cfg.out}: {todo.describe()}")
    if cfg.dry_run:
        return
    with _judge_errors():
        summary = judged_study(cfg.base, models, **options)
    for name in models:
        typer.echo(f"judged-split direction of {name}: {cfg.out / f'judged-{name}.safetensors'}")
    _print_judged(summary, cfg, cfg.figures or cfg.out / "ablation")


def _judged(sweep: Callable[..., Any], cfg: SweepCommand, metric: Any, figures: Path) -> None:
    """Run a judged sweep: its plan first (answers to sample, judge calls to make), then, unless --dry-run, the
    sweep, with each named direction's effects printed beside their random null, and its figure (stem
    `figures`)."""
    from misdir.judged import JudgedPlan

    options = dict(out=cfg.out, judge=cfg.judge, metric=metric, judge_url=cfg.judge_url, judge_device=cfg.device)
    with _refused():
        todo = sweep(**options, dry_run=True)
    typer.echo(f"judged sweep in {cfg.out}: {todo.describe()}")
    if cfg.dry_run:
        return
    with _judge_errors():
        summary = sweep(**options)
    assert not isinstance(summary, JudgedPlan)
    _print_judged(summary, cfg, figures)


def _print_judged(summary: Any, cfg: SweepCommand, figures: Path) -> None:
    """The unedited cells' EM rates, then each named direction's effects beside their random null; the
    sweep's figure (`misdir.judged.plots`)."""
    from misdir.judged.plots import plot_judged_sweep

    for name, result in summary.unedited.items():
        typer.echo(
            f"{name:>22s} unedited: EM rate {format_estimate(result['em_rate'], '.1%')}, coherent "
            f"{format_estimate(result['coherence_rate'], '.1%')} ({result['n_scored']}/{result['n_answers']} "
            f"answers scored)"
        )
    for r in summary.rows:
        if r.direction.startswith("random"):
            continue
        if hasattr(r, "share_removed"):
            excess = "" if r.excess.low > 0 else "  (no excess EM over base: share not meaningful)"
            typer.echo(
                f"{r.model:>22s} - {r.direction:<16s}: EM {r.unablated_em_rate.value:.1%} -> "
                f"{r.em_rate.value:.1%}, change {format_estimate(r.change.estimate, '+.3f')}"
                f"{_null_text(_dict(r.change.null))}, share of excess EM removed "
                f"{format_estimate(r.share_removed.estimate, '+.2f')}{_null_text(_dict(r.share_removed.null))}"
                f", coherent {r.unablated_coherence_rate.value:.1%} -> {r.coherence_rate.value:.1%}{excess}"
            )
        else:
            typer.echo(
                f"{r.direction:>22s} layer {r.layer:2d} scale {r.scale:5.2f}: EM induced "
                f"{format_estimate(r.induced.estimate, '+.3f')}{_null_text(_dict(r.induced.null))}, "
                f"coherent share change {r.coherence_change.estimate.value:+.3f}"
                f"{_null_text(_dict(r.coherence_change.null))}"
            )
    typer.echo(f"wrote {cfg.out / 'summary.json'} (answers: answers.jsonl, judge replies: judge_cache.jsonl)")
    for path in plot_judged_sweep(summary, figures):
        typer.echo(f"wrote {path}")


def _print_ablation(summary: Any) -> None:
    """One line per named direction: its effect, then the random directions' (median [95% range], percentile)."""
    for r in summary.rows:
        if r.direction.startswith("random"):
            continue
        excess = "" if r.excess.low > 0 else "  (no excess over base: share not meaningful)"
        typer.echo(
            f"{r.model:>18s} - {r.direction:<16s} {Path(r.pairs).stem:>8s}: share removed "
            f"{format_estimate(r.share_removed.estimate, '+.2f')}{_null_text(_dict(r.share_removed.null))}, "
            f"margin change {format_estimate(r.change.estimate)}{_null_text(_dict(r.change.null))}, fluency "
            f"{r.unablated_fluency.value:+.2f} -> {r.fluency.value:+.2f}{excess}"
        )


def _dict(null: Any) -> dict[str, float] | None:
    """A row's random-direction null as `_null_text` reads it."""
    return None if null is None else null._asdict()
