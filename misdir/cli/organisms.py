"""`misdir organisms list | train | analyze | ground-truth`: misdir's own EM model organisms."""

from __future__ import annotations

from pathlib import Path

import typer

from misdir.cli.common import (
    LIMIT_HELP,
    RANDOM_HELP,
    _at_least,
    _check_layers,
    _check_pairs,
    _check_random,
    _fail,
    _limit,
    _model_shape,
    _null_text,
    _numbers,
    _refused,
)
from misdir.stats import format_estimate

organisms_app = typer.Typer(help="misdir's own EM model organisms of the embedded model.", no_args_is_help=True)



@organisms_app.command("list")
def organisms_list() -> None:
    """The organisms of the recipe: EM finetunes, controls, backdoor."""
    from misdir.organisms import ORGANISMS

    for organism in ORGANISMS:
        typer.echo(f"{organism.name}\t{organism.role}\t{organism.dataset}\t{organism.about}")


@organisms_app.command("train")
def organisms_train(
    out: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="one adapter directory per organism goes here"),
    names: list[str] = typer.Option(None, "--name", help="train only these (repeatable); default all"),
    base: str = typer.Option("embedded", help="base model spec"),
    recipe: str = typer.Option("rslora-4", help="rslora-4 (the <name>/ folders), rank1 or rank1-multi "
                               "(rank-1 adapters on down_proj, in <recipe>-<name>/)"),
) -> None:
    """Finetune the organisms with one of misdir's fixed recipes; finished ones are kept, interrupted ones resume."""
    from misdir.organisms import RECIPES, train_organisms

    if recipe not in RECIPES:
        _fail(f"--recipe {recipe!r}: expected one of {', '.join(RECIPES)}", usage=True)
    train_organisms(out, names or None, base=base, recipe=recipe)


@organisms_app.command("analyze")
def organisms_analyze(
    checkpoints: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="the organisms' adapter directories"),
    out: Path = typer.Option(Path("results/organisms"), help="analysis.json and directions go here"),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    layer: int = typer.Option(None, help="layer whose direction is ablated and steered (default: the middle)"),
    figures: Path = typer.Option(None, help="where the figures go (default: OUT/figures; `--figures figures` "
                                 "refreshes the committed organisms_* ones)"),
) -> None:
    """Evaluate, extract directions, compare them, ablate and steer: the study on misdir's organisms."""
    from misdir.organisms import analyze_organisms, plot_analysis

    limit = _limit(limit)
    _check_layers("--layer", None if layer is None else [layer], _model_shape({"--base": "embedded"}))
    analysis = analyze_organisms(checkpoints, out, device=device, limit=limit, layer=layer)
    for path in plot_analysis(analysis, out / "figures" if figures is None else figures):
        typer.echo(f"wrote {path}")


@organisms_app.command("ground-truth")
def organisms_ground_truth(
    checkpoints: Path = typer.Option(Path("checkpoints/smollm2-135m"), help="the rank-1 organisms' adapter folders"),
    organisms: list[str] = typer.Option(None, "--organism", help="rank-1 single-layer organism folder names "
                                        "(repeatable; default: the shipped rank1-* ones)"),
    control: str = typer.Option("rank1-medical-good", help="the aligned control ('' for none)"),
    pairs: list[str] = typer.Option(["general", "ai-risk"], help="contrast sets; the first is the one steering, "
                                    "transfer and positions use"),
    random: int = typer.Option(20, help=RANDOM_HELP),
    scales: str = typer.Option("0.05,0.1,0.2,0.4", help="steering scales (fractions of the residual norm)"),
    limit: int = typer.Option(None, help=LIMIT_HELP),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when present)"),
    batch_size: int = typer.Option(32, help="items per forward pass"),
    out: Path = typer.Option(Path("results/ground-truth"), help="sweep directory; rerun to resume"),
    figures: Path = typer.Option(Path("results/ground-truth"), help="where the figures go"),
) -> None:
    """Calibrate the pipeline on rank-1 organisms, whose shift can only ride on their known LoRA B vector:
    extraction cosines, ablation, transfer, steering and edit positions, each against random directions."""
    from misdir.ground_truth import RANK1_ORGANISMS, adapter_writes, ground_truth_study, plot_ground_truth

    chosen = list(organisms or RANK1_ORGANISMS)
    limit = _limit(limit)
    _at_least("--random", random, 1)
    _check_random(random)
    _at_least("--batch-size", batch_size, 1)
    _check_pairs(pairs)
    with _refused():
        for name in [*chosen, *([control] if control else [])]:
            adapter_writes(checkpoints / name)
    study = ground_truth_study(checkpoints, out, organisms=chosen, control=control or None, sets=pairs,
                               n_random=random, scales=_numbers(scales, "--scales"), limit=limit, device=device,
                               batch_size=batch_size)
    for r in study["ablation"]:
        typer.echo(f"{r['model']:>28s} {Path(r['pairs']).stem:>8s} ablate {r['direction']:<13s}: share removed "
                   f"{format_estimate(r['share_removed'], '+.2f')}{_null_text(r['null_share'])}")
    for path in plot_ground_truth(study, figures):
        typer.echo(f"wrote {path}")
