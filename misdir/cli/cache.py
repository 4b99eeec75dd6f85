"""`misdir cache`: activations of a model over a dataset, as their mean or as per-token shards."""

from __future__ import annotations

import json

import typer

from misdir.cli.common import _check_layers, _model_shape, _refused
from misdir.cli.options import command
from misdir.configs import CacheConfig


@command(CacheConfig)
def cache(cfg: CacheConfig) -> None:
    """Cache activations of MODEL over DATA: their mean, or every selected token's as shards for SAE training."""
    from safetensors.torch import save_file
    from torch import Tensor

    from misdir.cache import cache_activations
    from misdir.data import load_conversations
    from misdir.io import atomic_path
    from misdir.models import load_model

    layers = None if cfg.layers is None else list(cfg.layers)
    _check_layers("--layers", layers, _model_shape({"--model": cfg.model}))
    with _refused():
        conversations, source = load_conversations(cfg.data, n=cfg.n)
    loaded = load_model(cfg.model, device=cfg.device)
    result = cache_activations(
        loaded,
        conversations,
        layers=layers,
        site=cfg.site,
        positions=cfg.positions,
        reduce=cfg.reduce,
        batch_size=cfg.batch_size,
        out=cfg.out if cfg.reduce == "none" else None,
    )
    if cfg.reduce == "mean":
        assert isinstance(result, Tensor)  # the mean; "none" wrote shards into cfg.out
        metadata = {
            "model": json.dumps(loaded.provenance),
            "data": json.dumps(source),
            "site": cfg.site,
            "positions": cfg.positions,
            "layers": json.dumps(layers),
        }
        with atomic_path(cfg.out) as tmp:
            save_file({"mean": result.contiguous()}, str(tmp), metadata=metadata)
    typer.echo(f"wrote {cfg.out}")
