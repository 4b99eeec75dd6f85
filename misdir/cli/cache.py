"""`misdir cache`: activations of a model over a dataset, as their mean or as per-token shards."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from misdir.cli.common import _at_least, _check_layers, _fail, _ints, _model_shape, _refused


def cache(
    model: str = typer.Option("embedded", help="model spec"),
    data: str = typer.Option(..., help="chat JSONL file or misdir dataset name"),
    out: Path = typer.Option(..., help="FILE.safetensors for the mean, or a directory for per-token shards"),
    n: int = typer.Option(None, help="first N examples (dataset default: 1000)"),
    layers: str = typer.Option(None, help="comma-separated layers (default: all)"),
    site: str = typer.Option("resid_post", help="resid_pre, resid_mid, resid_post, attn_out or mlp_out"),
    positions: str = typer.Option("answer", help="all, answer or last"),
    reduce: str = typer.Option("mean", help=r"mean (one \[layer, d_model] tensor) or none (shards in OUT/)"),
    batch_size: int = typer.Option(8, help="inputs per forward pass"),
) -> None:
    """Cache activations of MODEL over DATA: their mean, or every selected token's as shards for SAE training."""
    from safetensors.torch import save_file

    from misdir.cache import cache_activations
    from misdir.data import load_conversations
    from misdir.hooks import SITES
    from misdir.io import atomic_path
    from misdir.models import load_model
    from misdir.tokens import POSITIONS

    _at_least("--n", n, 1)
    _at_least("--batch-size", batch_size, 1)
    for option, value, allowed in (("--site", site, SITES), ("--positions", positions, POSITIONS),
                                   ("--reduce", reduce, ("mean", "none"))):
        if value not in allowed:
            _fail(f"{option} {value!r}: expected one of {', '.join(allowed)}", usage=True)
    _check_layers("--layers", _ints(layers), _model_shape({"--model": model}))
    with _refused():
        conversations, source = load_conversations(data, n=n)
    loaded = load_model(model)
    result = cache_activations(loaded, conversations, layers=_ints(layers), site=site, positions=positions,
                               reduce=reduce, batch_size=batch_size, out=out if reduce == "none" else None)
    if reduce == "mean":
        metadata = {"model": json.dumps(loaded.provenance), "data": json.dumps(source), "site": site,
                    "positions": positions, "layers": json.dumps(_ints(layers))}
        with atomic_path(out) as tmp:
            save_file({"mean": result.contiguous()}, str(tmp), metadata=metadata)
    typer.echo(f"wrote {out}")
