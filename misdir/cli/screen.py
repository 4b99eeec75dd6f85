"""`misdir screen`: score training data before finetuning by the projection difference (Chen et al. 2025)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from misdir.cli.common import _check_directions, _fail, _model_shape, _null_text, _refused
from misdir.cli.options import command
from misdir.configs import CommandConfig, batch_field, device_field, opt
from misdir.screen import DEFAULT_DIRECTION, MAX_NEW_TOKENS
from misdir.stats import format_estimate


def _random_problem(n: int) -> str | None:
    return None if n == 0 or n >= 20 else "fewer than 20 random directions cannot place a mean among them; 0: none"


@dataclass(frozen=True, kw_only=True)
class ScreenConfig(CommandConfig):
    """`misdir screen`: each example's projection difference along a direction, and each file's mean."""

    data: tuple[Path, ...] = opt(
        help="chat JSONL file(s) of one-turn examples (a finetune's training data)", argument=True
    )
    model: str = opt(help="the base model the data would finetune; it answers each prompt itself (greedy)")
    direction: Path | None = opt(
        None,
        f"direction set file (its site is used). Default with --model embedded: "
        f"{DEFAULT_DIRECTION}, the EM organisms' mean direction minus the controls' (the best "
        "screen of misdir's screening study: figures/README.md)",
    )
    layer: int | None = opt(None, "layer of the direction and the activations (default: the middle)", at_least=0)
    max_new_tokens: int = opt(MAX_NEW_TOKENS, "longest greedy answer of the base model, in tokens", at_least=1)
    random: int = opt(
        20,
        "random unit directions each file's mean is placed among (at least 20; 0: none)",
        at_least=0,
        check=_random_problem,
    )
    seed: int = opt(0, "seed of the random directions and the bootstrap")
    batch_size: int = batch_field(8, "examples per forward pass and per generate batch")
    out: Path = opt(help="run folder: scores.jsonl, summary.json, screen.html; rerun to resume")
    device: str | None = device_field()


@command(ScreenConfig)
def screen(cfg: ScreenConfig) -> None:
    """Projection difference of each example: its answer's mean projection on the unit direction minus that of
    the base model's own greedy answer (> 0: training on it pushes the model along the direction)."""
    from misdir.directions import DirectionSet
    from misdir.models import load_model
    from misdir.screen import load_screen_data
    from misdir.screen import screen as run

    with _refused():
        for data in cfg.data:
            load_screen_data(data)
    path = cfg.direction or (DEFAULT_DIRECTION if cfg.model == "embedded" else None)
    if path is None:
        _fail("--direction is needed: the default direction is the embedded model's", usage=True)
    _check_directions([path], cfg.layer, _model_shape({"--model": cfg.model}))
    direction = DirectionSet.load(path)
    layer = direction.n_layers // 2 if cfg.layer is None else cfg.layer
    result = run(
        load_model(cfg.model, device=cfg.device),
        cfg.data,
        direction,
        layer,
        out=cfg.out,
        max_new_tokens=cfg.max_new_tokens,
        n_random=cfg.random,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
    )
    for f in result.files:
        null = None if f.mean.null is None else f.mean.null._asdict()
        typer.echo(
            f"{f.file}: {format_estimate(f.mean.estimate)} over {f.n_examples - f.n_unscored} examples"
            f"{_null_text(null)}" + (f", {f.n_unscored} left out (empty base answer)" if f.n_unscored else "")
        )
    for written in result.written:
        typer.echo(f"wrote {written}")
