"""The `misdir` command line: a thin layer over the library.

One module a command group (`models`, `demo`, `finetune`, `realign`, `data`, `organisms`, `evaluate`, `cache`,
`directions`, `interventions`, `sae`), the checks and error handling they share in `common`; the commands are
registered here, in the order `misdir --help` lists them.
"""

from __future__ import annotations

import typer

from misdir.cli import (
    cache,
    data,
    demo,
    directions,
    evaluate,
    finetune,
    interventions,
    models,
    organisms,
    realign,
    sae,
    screen,
)
from misdir.cli.common import LIMIT_HELP, _say_error

app = typer.Typer(help="misdir: emergent misalignment, mechanistically.", no_args_is_help=True)

for command in (
    models.models,
    demo.demo,
    finetune.finetune,
    realign.realign,
    interventions.control,
    evaluate.evaluate,
    interventions.ablate,
    interventions.transfer,
    interventions.steer,
    cache.cache,
    directions.directions,
    directions.similarity,
    screen.screen,
):
    app.command()(command)
app.add_typer(data.data_app, name="data")
app.add_typer(organisms.organisms_app, name="organisms")
app.add_typer(sae.sae_app, name="sae")


def main() -> None:
    """The `misdir` command: an error is one `misdir: ...` line on stderr and exit status 1 (2 for a bad
    option; MISDIR_TRACEBACK=1: the traceback)."""
    import os

    from misdir.io import RunLockedError

    try:
        app()
    except (ValueError, OSError, RunLockedError) as error:
        if os.environ.get("MISDIR_TRACEBACK"):
            raise
        _say_error(error)
        raise SystemExit(1) from None


__all__ = ["LIMIT_HELP", "app", "main"]
