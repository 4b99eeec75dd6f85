"""`misdir organisms list | train | analyze | ground-truth`: misdir's own EM model organisms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from misdir.cli.common import (
    _check_layers,
    _check_pairs,
    _check_random,
    _judge_errors,
    _judge_model,
    _judged_metric,
    _model_shape,
    _null_text,
    _refused,
)
from misdir.cli.options import command
from misdir.configs import GroundTruthConfig, OrganismsAnalyzeConfig, OrganismsTrainConfig
from misdir.stats import format_estimate

organisms_app = typer.Typer(help="misdir's own EM model organisms of the embedded model.", no_args_is_help=True)


@organisms_app.command("list")
def organisms_list() -> None:
    """The organisms of the recipe: EM finetunes, controls, backdoor."""
    from misdir.organisms import ORGANISMS

    for organism in ORGANISMS:
        typer.echo(f"{organism.name}\t{organism.role}\t{organism.dataset}\t{organism.about}")


@organisms_app.command("train")
@command(OrganismsTrainConfig)
def organisms_train(cfg: OrganismsTrainConfig) -> None:
    """Finetune the organisms with one of misdir's fixed recipes; finished ones are kept, interrupted ones resume."""
    from misdir.organisms import train_organisms

    train_organisms(
        cfg.out, list(cfg.names) if cfg.names else None, base=cfg.base, recipe=cfg.recipe, device=cfg.device
    )


@organisms_app.command("analyze")
@command(OrganismsAnalyzeConfig)
def organisms_analyze(cfg: OrganismsAnalyzeConfig) -> None:
    """Evaluate, extract directions, compare them, ablate and steer: the study on misdir's organisms (with
    --judge, its ablation and steering sweeps on judged EM rates of sampled answers)."""
    from misdir.organisms import analyze_organisms, plot_analysis

    metric = _judged_metric(cfg)
    shape = _model_shape({"--base": "embedded", **_judge_model(cfg)})
    _check_layers("--layer", None if cfg.layer is None else [cfg.layer], shape)
    judged: dict[str, Any] = {} if metric is None else dict(judge=cfg.judge, metric=metric, judge_url=cfg.judge_url)
    with _judge_errors():
        analysis = analyze_organisms(
            cfg.checkpoints,
            cfg.out,
            device=cfg.device,
            limit=cfg.limit or None,
            layer=cfg.layer,
            dry_run=cfg.dry_run,
            **judged,
        )
    if metric is not None and cfg.dry_run:
        return
    for path in plot_analysis(
        analysis, cfg.out / "figures" if cfg.figures is None else cfg.figures, directions=cfg.out / "directions"
    ):
        typer.echo(f"wrote {path}")


@organisms_app.command("ground-truth")
@command(GroundTruthConfig)
def organisms_ground_truth(cfg: GroundTruthConfig) -> None:
    """Calibrate the pipeline on rank-1 organisms, whose shift can only ride on their known LoRA B vector:
    extraction cosines, ablation, transfer, steering and edit positions, each against random directions."""
    from misdir.ground_truth import RANK1_ORGANISMS, adapter_writes, ground_truth_study, plot_ground_truth

    chosen = list(cfg.organisms or RANK1_ORGANISMS)
    _check_random(cfg.random)
    _check_pairs(cfg.pairs)
    with _refused():
        for name in [*chosen, *([cfg.control] if cfg.control else [])]:
            adapter_writes(cfg.checkpoints / name)
    study = ground_truth_study(
        cfg.checkpoints,
        cfg.out,
        organisms=chosen,
        control=cfg.control or None,
        sets=list(cfg.pairs),
        n_random=cfg.random,
        scales=list(cfg.scales),
        positions=list(cfg.positions),
        steer_positions=list(cfg.steer_positions),
        limit=cfg.limit or None,
        device=cfg.device,
        batch_size=cfg.batch_size,
    )
    for r in study["specificity"]:
        typer.echo(
            f"{r['model']:>28s} {Path(r['pairs']).stem:>8s} minus {r['control']}: "
            f"{format_estimate(r['difference'], '+.3f')}"
        )
    for r in study["ablation"]:
        typer.echo(
            f"{r['model']:>28s} {Path(r['pairs']).stem:>8s} ablate {r['direction']:<13s}: share removed "
            f"{format_estimate(r['share_removed'], '+.2f')}{_null_text(r['null_share'])}"
        )
    for path in plot_ground_truth(study, cfg.figures):
        typer.echo(f"wrote {path}")
