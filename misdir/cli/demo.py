"""`misdir demo`: the main job on a base and its finetunes."""

from __future__ import annotations

from pathlib import Path

import typer

from misdir.cli.common import LIMIT_HELP, RANDOM_HELP, _check_layers, _check_random, _limit, _model_shape, _named


def demo(
    model: str = typer.Option("embedded", help="base model spec"),
    finetune: list[str] = typer.Option(None, help="EM finetune NAME=SPEC (default: the shipped organisms)"),
    control: list[str] = typer.Option(None, help="control finetune NAME=SPEC (default: the shipped controls)"),
    out: Path = typer.Option(Path("results/demo"), help="where the runs, summary.md and summary.json go"),
    figures: Path = typer.Option(None, help="where figures go (default: OUT/figures; `make figures` passes "
                                 "figures/demo to refresh the committed ones)"),
    limit: int = typer.Option(24, help=LIMIT_HELP),
    layer: int = typer.Option(None, help="layer of the directions ablated and steered (default: the middle)"),
    random: int = typer.Option(20, help=RANDOM_HELP),
) -> None:
    """The main job: evaluation, directions, cosines, ablation and steering on a base and its finetunes (resumable)."""
    from misdir.demo import run_demo

    _limit(limit)
    _check_random(random)
    _check_layers("--layer", None if layer is None else [layer], _model_shape({"--model": model}))
    run_demo(model, finetunes=dict(map(_named, finetune)) if finetune else None,
             controls=dict(map(_named, control)) if control else None, out=out, figures=figures,
             limit=limit or None, layer=layer, n_random=random)
