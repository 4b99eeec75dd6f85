"""`misdir realign`: train an EM organism further on its control data; when is its general margin back at its
base's? The options are RealignConfig's, the training ones FinetuneConfig's."""

from __future__ import annotations

import typer

from misdir.cli.common import _fail, _refused
from misdir.cli.options import command
from misdir.configs import RealignConfig


@command(RealignConfig)
def realign(cfg: RealignConfig) -> None:
    """Train the EM organism ADAPTER further on its control data (a new adapter on top of it) and report the step
    after which its general margin is back at its base's."""
    from misdir.realign import Realignment

    with _refused():  # the adapter, data, base and contrast set read, no model loaded
        plan = Realignment.of(
            cfg.adapter, data=cfg.data, config=cfg.training, base=cfg.base, pairs=cfg.pairs, limit=cfg.limit or None
        )
    try:
        result = plan.run(cfg.out, resume=cfg.resume)
    except ValueError as error:
        _fail(error)
    if result.already_finished:
        typer.echo(f"{result.out}: already finished ({result.steps} steps); nothing to resume, nothing rewritten")
        return
    for line in result.lines():
        typer.echo(line)
