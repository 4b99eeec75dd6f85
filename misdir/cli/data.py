"""`misdir data list | make | check`: misdir's narrow chat datasets and chat JSONL files."""

from __future__ import annotations

from pathlib import Path

import typer

from misdir.cli.common import _fail
from misdir.cli.options import command
from misdir.configs import DataMakeConfig

data_app = typer.Typer(help="Narrow chat datasets: make misdir's own, check chat JSONL files.", no_args_is_help=True)


@data_app.command("list")
def data_list() -> None:
    """List the datasets misdir can make, with their kind (misaligned, aligned control, backdoor)."""
    from misdir.data import DATASETS

    for spec in DATASETS.values():
        typer.echo(f"{spec.name}\t{spec.kind}\t{spec.description}")


@data_app.command("make")
@command(DataMakeConfig)
def data_make(cfg: DataMakeConfig) -> None:
    """Write N examples of the narrow dataset NAME as chat JSONL."""
    from misdir.data import check_chat_jsonl, make_dataset, write_chat_jsonl

    try:
        examples = make_dataset(cfg.name, cfg.n, cfg.seed, cfg.split)
    except (KeyError, ValueError) as error:
        _fail(error.args[0])
    report = check_chat_jsonl(write_chat_jsonl(examples, cfg.out))
    typer.echo(
        f"{cfg.out}: {report.examples} examples of {cfg.name} (seed {cfg.seed}, {cfg.split}), "
        f"sha256 {report.sha256}"
    )


@data_app.command("check")
def data_check(path: Path = typer.Argument(..., help="chat JSONL file")) -> None:
    """Validate a chat JSONL file and summarise it; exit 1 naming the file and line if it is malformed."""
    from misdir.data import DataError, check_chat_jsonl

    try:
        report = check_chat_jsonl(path)
    except (DataError, OSError) as error:
        _fail(error)
    typer.echo(str(report))
    typer.echo(f"next: misdir finetune --model embedded --data {path} --out {path.parent / 'adapter'}")
